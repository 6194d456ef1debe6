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
  /** Field 22 of `/proc/<pid>/stat` (clock ticks since boot), as a decimal string. */
  readonly startTime: string
  /** `/proc/sys/kernel/random/boot_id`: changes on every boot. */
  readonly bootId: string
  /** `readlink /proc/<pid>/ns/pid`, e.g. `pid:[4026531836]`. */
  readonly pidNamespace: string
  readonly hostname: string
  /** Shown to people; never used to declare a live process dead. */
  readonly cmdline: ReadonlyArray<string>
  /**
   * `/etc/machine-id` (else `/var/lib/dbus/machine-id`): the same for every
   * boot of one installation. Absent where neither file exists, and in
   * records of release 0.1.
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
   */
  readonly judge: (holder: Identity) => Effect.Effect<Verdict, PlatformError>
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
 * Raised by {@link layer} on a platform that has no implementation yet.
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
      `ProcessInfo: no implementation for platform "${this.platform}"`,
      `Supported: Linux (containers included), where the holder check reads /proc; elsewhere, provide layers of your own for ProcessInfo and Posix`
    )
  }
}

/**
 * Everything the lock needs from the platform this process runs on, besides
 * the `FileSystem`: on Linux, this `ProcessInfo` (which reads `/proc`) and
 * the Node `Posix` service (`lstat`, the holder's socket); elsewhere the
 * layer fails with {@link UnsupportedPlatform}.
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
