/**
 * Who this process is, and whether the process that holds a lock is still
 * alive.
 *
 * A holder is identified by (host, boot, pid namespace, pid, start time), so
 * that a reused PID, a reboot or a container that is PID 1 on every start is
 * never mistaken for the process that took the lock. Everything is read
 * through the `FileSystem` service, so an in-memory file system with a fake
 * process table (see `effect-pidlock/testing`) can stand in for `/proc`.
 *
 * @since 0.1.0
 */
import type { PlatformError } from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Context from "effect/Context"
import type * as Data from "effect/Data"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import { TaggedError, withNextStep } from "./internal/errors.js"
import * as internal from "./internal/processInfo.js"
import type * as Posix from "./Posix.js"
import type * as SystemCommand from "./SystemCommand.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = internal.TypeId

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * The identity of a process: enough to tell it apart from any other process
 * that ever had, or will have, the same PID.
 *
 * @since 0.1.0
 * @category models
 */
export interface Identity {
  readonly pid: number
  /**
   * When the process started, as a decimal string, in the clock that
   * {@link Identity.startClock} names: field 22 of `/proc/<pid>/stat` (clock
   * ticks since boot), or whole seconds since 1970 from `ps -o lstart`.
   */
  readonly startTime: string
  /**
   * The clock of `startTime`: absent for clock ticks since boot (the `/proc`
   * layer, and every record before release 0.2), `"unix-seconds"` for the
   * portable layer's. Start times in two clocks are never compared: a live
   * process with the recorded PID counts as the holder.
   *
   * @since 0.2.0
   */
  readonly startClock?: "unix-seconds" | undefined
  /**
   * `/proc/sys/kernel/random/boot_id`: changes on every boot. Where the
   * system has no boot id (macOS, FreeBSD), `boottime:<seconds>` from
   * `sysctl kern.boottime`, which also moves when the clock is set, and so
   * never proves a reboot by itself.
   */
  readonly bootId: string
  /**
   * `readlink /proc/<pid>/ns/pid`, e.g. `pid:[4026531836]`; `jail:<jid>` on
   * FreeBSD; empty on macOS, which has neither.
   */
  readonly pidNamespace: string
  readonly hostname: string
  /** Shown to people; never used to declare a live process dead. */
  readonly cmdline: ReadonlyArray<string>
  /**
   * `/etc/machine-id` (else `/var/lib/dbus/machine-id`): the same for every
   * boot of one installation. `sysctl kern.uuid` (the hardware's
   * `IOPlatformUUID`) on macOS, `kern.hostuuid` on FreeBSD. Absent where
   * there is none, and in records of release 0.1.
   */
  readonly machineId?: string | undefined
}

/**
 * Why a holder was judged to be gone.
 *
 * - `Rebooted`: same machine id and hostname, another boot id.
 * - `Exited`: no such process (`ENOENT`, `ESRCH`, state `X`).
 * - `Zombie`: the process has exited and waits to be reaped (state `Z`).
 * - `PidReused`: a process with that PID runs, but it started at another time.
 *
 * @since 0.1.0
 * @category models
 */
export type StaleReason = "Rebooted" | "Exited" | "Zombie" | "PidReused"

/**
 * The verdict on a holder.
 *
 * - `Alive`: the very process that took the lock still runs.
 * - `Foreign`: it runs on another host or in another pid namespace, where it
 *   cannot be seen; it is treated as alive.
 * - `Stale`: it is gone, for the given reason.
 *
 * @since 0.1.0
 * @category models
 */
export type Verdict = Data.TaggedEnum<{
  Alive: {}
  Foreign: { readonly scope: "host" | "namespace" }
  Stale: { readonly reason: StaleReason }
}>

/**
 * Constructors and matchers for {@link Verdict}.
 *
 * @since 0.1.0
 * @category models
 */
export const Verdict: Data.TaggedEnum.Constructor<Verdict> = internal.Verdict

/**
 * @since 0.1.0
 * @category models
 */
export interface ProcessInfo {
  readonly [TypeId]: TypeId
  /** This process, read once when the service is built. */
  readonly self: Identity
  /** The effective user id of this process, where the platform has one. */
  readonly uid: Option.Option<number>
  /** The identity of a running process, `None` when there is no such process or it has exited. */
  readonly identify: (pid: number) => Effect.Effect<Option.Option<Identity>, PlatformError>
  /**
   * Judge a recorded holder. Errs toward `Alive` or `Foreign` wherever it
   * cannot see; any I/O error other than "no such process" is an error, never
   * `Stale`.
   *
   * `socket`, given where the holder named one, connects to it (at most once,
   * however often it is run). An implementation whose own look is dearer than
   * a connection (the portable one starts `ps`) may ask it first: `Listening`
   * proves the holder alive; any other answer proves nothing by itself, and
   * the process is looked at. The `/proc` implementation does not ask it: the
   * lock asks the socket itself wherever a verdict leaves room for it.
   * (`socket` since 0.2.0.)
   */
  readonly judge: (
    holder: Identity,
    options?: { readonly socket?: Effect.Effect<Posix.Probe, PlatformError> | undefined }
  ) => Effect.Effect<Verdict, PlatformError>
}

/**
 * @since 0.1.0
 * @category tags
 */
export const ProcessInfo: Context.Tag<ProcessInfo, ProcessInfo> = internal.tag

/**
 * Whether two identities name the same process life.
 *
 * @since 0.1.0
 * @category utils
 */
export const isSameProcess: (a: Identity, b: Identity) => boolean = internal.isSameProcess

/**
 * Build the Linux implementation, which reads `/proc` through `FileSystem`.
 *
 * `pid` defaults to this process; the in-memory test kit passes the PID of a
 * fake process.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeLinux: (
  options?: { readonly pid?: number | undefined; readonly uid?: number | undefined }
) => Effect.Effect<ProcessInfo, PlatformError, FileSystem.FileSystem> = internal.makeLinux

/**
 * The Linux implementation for this process.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerLinux: Layer.Layer<ProcessInfo, PlatformError, FileSystem.FileSystem> = internal.layerLinux

/**
 * Build the portable implementation, for systems without `/proc` (macOS,
 * FreeBSD) and usable on Linux too: it asks the system through
 * `SystemCommand` and `Posix` rather than reading files.
 *
 * - Who this process is: `LC_ALL=C TZ=UTC ps -o stat= [-o pidns=|-o jid=]
 *   -o lstart= -o args= -p PID` (the start time at one second's
 *   resolution, recorded as seconds since 1970 with `startClock:
 *   "unix-seconds"`), `sysctl -n` for the boot (`kernel.random.boot_id` on
 *   Linux, `kern.boottime` on the BSDs) and the host name, and the machine
 *   id (`/etc/machine-id` on Linux, `kern.uuid` on macOS, `kern.hostuuid` on
 *   FreeBSD).
 * - Whether a holder lives: `kill(pid, 0)` first (`ESRCH`: exited); for a
 *   PID that exists, `ps` tells a zombie, and its start time tells a reused
 *   PID. An equal start time, to the second, is the holder: one second of
 *   resolution errs toward held only. A holder recorded by the `/proc` layer
 *   (clock ticks since boot) cannot be compared: a live PID holds.
 * - Before both, the holder's socket, where the lock passes one to `judge`
 *   (same boot, same namespace): a socket that answers is a live holder, and
 *   no `ps` is started, so that a contended acquire against a live holder
 *   runs no command; one that refuses, or is missing, or cannot be asked,
 *   proves nothing by itself, and `kill` and `ps` decide. The lock reads the
 *   same answer again before it calls a holder gone.
 * - A boot time moves when the wall clock is set: a changed one never
 *   proves a reboot by itself; the process is looked at instead.
 *
 * `platform` (by default this one: `linux`, `darwin` or `freebsd`) chooses
 * the formats; another fails with a `SystemError`. `pid` defaults to this
 * process.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makePortable: (
  options?: {
    readonly platform?: string | undefined
    readonly pid?: number | undefined
    readonly uid?: number | undefined
  }
) => Effect.Effect<
  ProcessInfo,
  PlatformError,
  FileSystem.FileSystem | SystemCommand.SystemCommand | Posix.Posix
> = internal.makePortable

/**
 * The portable implementation for this process, on the services it asks.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerPortable: Layer.Layer<
  ProcessInfo,
  PlatformError,
  FileSystem.FileSystem | SystemCommand.SystemCommand | Posix.Posix
> = internal.layerPortable

/**
 * The portable implementation for this process with the Node `Posix` and
 * `SystemCommand` services: what {@link layer} provides on macOS and FreeBSD,
 * and the way to run it on Linux.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerPortableNode: Layer.Layer<ProcessInfo | Posix.Posix, PlatformError, FileSystem.FileSystem> =
  internal.layerPortableNode

/**
 * Raised by {@link layer} on a platform that has no implementation: Windows
 * (where renaming a directory onto an existing one is refused, even an
 * empty one, and the lock's atomic step is exactly that rename), and systems
 * whose `ps` and `sysctl` formats are not known.
 *
 * @since 0.1.0
 * @category errors
 */
export class UnsupportedPlatform extends TaggedError("UnsupportedPlatform")<{
  readonly platform: string
}> {
  /**
   * @since 0.1.0
   */
  get message(): string {
    return withNextStep(
      this.platform === "win32"
        ? `ProcessInfo: Windows is not supported: it refuses to rename a directory onto an existing one, even an empty one, and that rename is how the lock is taken atomically`
        : `ProcessInfo: no implementation for platform "${this.platform}"`,
      `Supported: Linux (containers included), macOS and FreeBSD; elsewhere, provide layers of your own for ProcessInfo and Posix`
    )
  }
}

/**
 * Everything the lock needs from the platform this process runs on, besides
 * the `FileSystem`, chosen by `process.platform`: on Linux, the `ProcessInfo`
 * that reads `/proc`; on macOS and FreeBSD, the portable one
 * ({@link layerPortableNode}), which asks `ps`, `sysctl` and `kill(pid, 0)`;
 * with the Node `Posix` service (`lstat`, the holder's socket). Elsewhere,
 * Windows included, the layer fails with {@link UnsupportedPlatform}.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<
  ProcessInfo | Posix.Posix,
  PlatformError | UnsupportedPlatform,
  FileSystem.FileSystem
> = internal
  .layerFor(process.platform, (platform) => new UnsupportedPlatform({ platform }))
