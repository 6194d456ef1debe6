/**
 * A single-instance lock: at most one live holder per lock name on a machine,
 * under any interleaving of contenders and any crash, with instant takeover of
 * a dead holder's lock.
 *
 * ```ts
 * import * as PidLock from "effect-pidlock/PidLock"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   yield* PidLock.acquire({ name: "my-daemon" })
 *   // … only one copy of this runs at a time
 * }))
 * ```
 *
 * On disk, for lock `name` in directory `dir`: the lock home `<dir>/<name>/`,
 * the lock `<dir>/<name>/lock/` (held iff non-empty), staging directories
 * `<dir>/<name>/<pid>.<token>/`, and the owner entry
 * `<dir>/<name>/lock/<pid>.<token>`, a symlink whose target text is the JSON
 * {@link OwnerRecord}; beside them the generation counter
 * `<dir>/<name>/generation`, a symlink whose target is the last generation
 * handed out.
 *
 * @since 0.1.0
 */
import type { PlatformError } from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Cause from "effect/Cause"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as Path from "node:path"
import * as internalDuration from "./internal/duration.js"
import {
  allowedFor,
  cliCommand,
  commandLine,
  isDatabaseLocation,
  nameAt,
  TaggedError,
  withNextStep
} from "./internal/errors.js"
import { describeHeld, describeHolder, describeStale } from "./internal/ownerRecord.js"
import * as internal from "./internal/pidLock.js"
import { show } from "./internal/text.js"
import type * as Posix from "./Posix.js"
import type * as ProcessInfo from "./ProcessInfo.js"

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
 * What a holder writes into its owner entry, so that the next contender can
 * judge whether it is still alive and a person can see who it is
 * (`ls -l <dir>/<name>/lock`).
 *
 * @since 0.1.0
 * @category models
 */
export interface OwnerRecord extends ProcessInfo.Identity {
  /** Version of the record format. */
  readonly v: 1
  /** When the lock was taken, ISO 8601. */
  readonly acquiredAt: string
  /** Random token, lowercase hex: tells apart two lives of one PID (a container's PID 1). */
  readonly token: string
  /**
   * The name of the holder's socket in the lock home, `<pid>.<token>.sock`:
   * a contender that cannot see the holder in `/proc` connects to it (see
   * `Posix`). Absent in records of release 0.1, and where no socket could be
   * made.
   */
  readonly socket?: string | undefined
}

/**
 * A duration as the options take it: any `Duration.DurationInput`, or the
 * short form the CLI takes (`"30s"`, `"500ms"`, `"2m"`, `"1.5h"`). A string
 * that is neither fails with {@link InvalidOptions}.
 *
 * @since 0.2.0
 * @category models
 */
export type DurationInput = Duration.DurationInput | `${number}${"ms" | "s" | "m" | "h"}`

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** 1 to 100 characters of `A-Z a-z 0-9 . _ -`, not starting with `.`. */
  readonly name: string
  /**
   * Where the lock home is made; created if missing. Default: `$PIDLOCK_DIR`
   * (an absolute path) when it is set, else a directory of the user's own
   * that the lock makes 0700: `/run/lock/effect-pidlock-<euid>`, or
   * `/tmp/effect-pidlock-<euid>` where `/run/lock` is not a shared sticky
   * directory. No other environment variable changes it, so that cron and a
   * login shell meet in one place. A directory that other users may write
   * must be sticky.
   */
  readonly dir?: string | undefined
  /**
   * What to do with the lock of a holder that is gone: take it over (the
   * default; logged with `Effect.logInfo`) or fail with {@link StaleLock}.
   */
  readonly onStale?: "takeover" | "fail" | undefined
  /**
   * Wait for a held lock instead of failing at once: for at most this long
   * (then {@link LockHeld}), waking as soon as the holder releases; or retry
   * on the given `Schedule`. Default: fail fast.
   */
  readonly wait?: DurationInput | Schedule.Schedule<unknown, LockHeld> | undefined
  /**
   * How often the watchdog checks that the lock is still ours, besides on
   * every change in the lock directory; `false` turns it off. Default: 5
   * seconds.
   */
  readonly checkInterval?: DurationInput | false | undefined
  /**
   * Answer each message that {@link send} brings with what this returns:
   * its success is the reply (a JSON value), its failure declines the
   * message (the sender gets {@link Refused}, with the error's message).
   * Up to 16 messages are handled at once, each in a fiber of its own in
   * the lock's runtime, interrupted when its sender hangs up (its `timeout`
   * ran out) or the lock is released; a 17th sender is told that the holder
   * is busy. With a handler, {@link FileLock.messages} stays empty. Default:
   * the messages wait in `messages` for the program to read them.
   *
   * @since 0.2.0
   */
  readonly onMessage?: ((message: Message) => Effect.Effect<unknown, unknown>) | undefined
}

/**
 * A message that another process sent to the holder with {@link send}: who
 * sent it, and its JSON `data`. Answer it once, with `reply` or `decline`; a
 * message left unanswered leaves its sender waiting until its `timeout`.
 *
 * @since 0.2.0
 * @category models
 */
export interface Message {
  /** The sender's command line. */
  readonly argv: ReadonlyArray<string>
  /** The sender's working directory: resolve the paths in `argv` and `data` against it. */
  readonly cwd: string
  /** The sender's pid, as its own pid namespace sees it. */
  readonly pid: number
  /** What the sender sent: a JSON value. */
  readonly data: unknown
  /**
   * Answer with `data` (a JSON value, at most 64 KiB encoded). Only the first
   * answer counts; one that JSON cannot hold, or too long, reaches the sender
   * as {@link Refused}.
   */
  readonly reply: (data: unknown) => Effect.Effect<void>
  /** Refuse the message: the sender's {@link send} fails with {@link Refused} (`Declined`), with this reason. */
  readonly decline: (reason: string) => Effect.Effect<void>
}

/**
 * @since 0.2.0
 * @category models
 */
export interface SendOptions {
  /** The lock's name, as its holder took it. */
  readonly name: string
  /** The lock's directory, as its holder took it (default as in {@link Options}). */
  readonly dir?: string | undefined
  /** What to send: a JSON value, at most 64 KiB encoded with the sender's command line and directory. */
  readonly data: unknown
  /** How long to wait for the reply. Default: 5 seconds. */
  readonly timeout?: DurationInput | undefined
}

/**
 * A held lock, whichever backend holds it. It is released when the scope it
 * was acquired in closes, or earlier by {@link PidLock.release}. `E` is what
 * the backend's own operations fail with besides {@link LockCompromised}: file
 * system errors for this module's {@link FileLock}, `SqlError` for `PgLock`'s;
 * a service that only depends on the {@link PidLock} tag sees either.
 *
 * @since 0.1.0
 * @category models
 */
export interface PidLock<E = BackendError> {
  readonly [TypeId]: TypeId
  readonly name: string
  /**
   * Where the lock lives, for messages and logs: the lock directory
   * `<dir>/<name>/lock`, or for `PgLock` the database and the name.
   */
  readonly location: string
  /**
   * Grows with every acquisition of this name (1 for the first): a fencing
   * token for the writes the holder makes, so that a store can refuse a write
   * stamped with an older generation than one it has seen.
   */
  readonly generation: number
  readonly owner: OwnerRecord
  /**
   * Release now rather than when the scope closes. Once it has succeeded, or
   * failed with {@link LockCompromised} (the lock was already gone), later
   * calls do nothing; after any other failure the next call, or the scope's
   * finalizer, tries again.
   */
  readonly release: Effect.Effect<void, LockCompromised | E>
  /**
   * Check now that the lock is still ours: it fails with
   * {@link LockCompromised} when it is gone or replaced (a deleted lock home,
   * a temporary-file cleaner, a wrong takeover; a terminated database
   * session). After {@link PidLock.release} there is nothing left to check,
   * and it succeeds.
   */
  readonly verify: Effect.Effect<void, LockCompromised | E>
  /**
   * Fails with {@link LockCompromised} once the watchdog finds the lock gone or
   * replaced (see `checkInterval`); never succeeds. {@link withLock} races the
   * guarded effect against it.
   */
  readonly lost: Effect.Effect<never, LockCompromised>
}

/**
 * What a backend's own operations fail with, as a service that depends only
 * on the {@link PidLock} tag sees it: a tagged error of either backend.
 *
 * @since 0.2.0
 * @category errors
 */
export interface BackendError extends Cause.YieldableError {
  readonly _tag: string
}

/**
 * A lock held by this module's file lock: a {@link PidLock} with its owner
 * entry.
 *
 * @since 0.2.0
 * @category models
 */
export interface FileLock extends PidLock<PermissionDenied | PlatformError> {
  /** The owner entry, `<dir>/<name>/lock/<pid>.<token>`. */
  readonly entry: string
  /**
   * The messages that other processes send to the holder ({@link send}),
   * while the lock is held; one reader takes each. At most 16 wait to be
   * read: beyond that, senders are told at once that the holder is busy
   * ({@link Refused}). Empty when `onMessage` handles them.
   *
   * @since 0.2.0
   */
  readonly messages: Stream.Stream<Message>
}

/**
 * The lock held by this program, provided by {@link layer}: services that
 * depend on it run only in the single instance.
 *
 * @since 0.1.0
 * @category tags
 */
export const PidLock: Context.Tag<PidLock, PidLock> = internal.tag

/**
 * What {@link inspect} finds in a held lock.
 *
 * @since 0.1.0
 * @category models
 */
export interface Status {
  /** Where the lock lives (see {@link PidLock.location}). */
  readonly location: string
  readonly holder: OwnerRecord
  readonly verdict: ProcessInfo.Verdict
  readonly heldByThisProcess: boolean
}

/**
 * The lock is held by a live process, or by one on another host or in another
 * pid namespace that cannot be seen. When `heldByThisProcess` is true, another
 * fiber of this very process holds it: there is no re-entrancy. The message
 * names the holder (pid, host, since when, command line) and ends with what
 * to do: wait for it, or look at it with `effect-pidlock status`.
 *
 * @since 0.1.0
 * @category errors
 */
export class LockHeld extends TaggedError("LockHeld")<{
  /** Where the lock lives (see {@link PidLock.location}). */
  readonly location: string
  readonly holder: OwnerRecord
  readonly verdict: ProcessInfo.Verdict
  readonly heldByThisProcess: boolean
}> {
  /**
   * @since 0.1.0
   */
  get message(): string {
    const waitOption = `the option wait (e.g. wait: "30s"; --wait 30s on the command line)`
    if (this.heldByThisProcess) {
      return withNextStep(
        `${this.location} is held by this very process (${
          describeHolder(this.holder)
        }): another fiber holds it, and the lock is not re-entrant`,
        `Take it once and share it (one PidLock.layer for every service that needs it), or wait for the other ` +
          `fiber's release with ${waitOption}`
      )
    }
    return withNextStep(
      describeHeld(this),
      this.verdict._tag === "Foreign"
        ? `Wait for its release with ${waitOption}; if you know that process is gone, remove its lock: ${
          cliCommand("break", this.location, "--force")
        }`
        : `Wait for its release with ${waitOption}, or see who holds it: ${cliCommand("status", this.location)}`
    )
  }
}

/**
 * The holder is gone, and `onStale: "fail"` asked not to take its lock over.
 *
 * @since 0.1.0
 * @category errors
 */
export class StaleLock extends TaggedError("StaleLock")<{
  readonly path: string
  readonly holder: OwnerRecord
  readonly reason: ProcessInfo.StaleReason
}> {
  /**
   * @since 0.1.0
   */
  get message(): string {
    const breakIt = cliCommand("break", this.path)
    return withNextStep(
      describeStale(this.path, this.holder, this.reason),
      `Remove it with ${breakIt}, or let the lock take it over: onStale: "takeover" (the default)`
    )
  }
}

/**
 * The operating system refused an operation on the lock (`EACCES`, `EPERM`,
 * `EROFS`).
 *
 * @since 0.1.0
 * @category errors
 */
export class PermissionDenied extends TaggedError("PermissionDenied")<{
  readonly path: string
  /** The `FileSystem` method that was refused, e.g. `makeDirectory`. */
  readonly operation: string
  /** The errno code. */
  readonly code: string
  readonly cause: PlatformError
}> {
  /**
   * @since 0.1.0
   */
  get message(): string {
    return withNextStep(
      `permission denied (${this.code}): ${this.operation} ${this.path}`,
      `Give the lock a directory this user can write to: the option dir, or $PIDLOCK_DIR (--dir on the command line)`
    )
  }
}

/**
 * An option was not valid. Nothing was touched on disk. The message ends with
 * what the option allows.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidOptions extends TaggedError("InvalidOptions")<{
  readonly option: string
  readonly value: unknown
  readonly reason: string
}> {
  /**
   * @since 0.1.0
   */
  get message(): string {
    const invalid = `invalid option ${this.option}=${show(this.value)}: ${this.reason}`
    const allowed = allowedFor(this.option)
    return allowed === undefined ? invalid : withNextStep(invalid, allowed)
  }
}

/**
 * What the lock found on disk is not what it creates: it is left exactly as
 * it is, for a person to look at (the lock removes only what it made). The
 * message names the path to inspect, and how to repair or remove it by hand.
 *
 * - `NotADirectory`: the lock path, or the lock home, is not a directory.
 * - `SymlinkedHome`: the lock home is a symbolic link (never followed).
 * - `ForeignOwner`: the per-user default directory belongs to another user,
 *   or a directory the lock makes keeps vanishing as it is made (someone else
 *   makes and removes it). A lock home of another user's is {@link NameClash}.
 * - `MultipleEntries`: the lock directory holds more than one entry.
 * - `UnexpectedEntry`: an entry that is not an owner entry.
 * - `UnreadableRecord`: an owner record that is not valid, or a generation
 *   counter that is not a symbolic link to a whole number below 2^53 (the lock
 *   is given back).
 * - `InsecureMode`: the lock home or the lock directory is writable by other
 *   users (who could remove the owner entry), or the per-user default
 *   directory is open to them at all.
 *
 * @since 0.1.0
 * @category errors
 */
export class CorruptLock extends TaggedError("CorruptLock")<{
  readonly path: string
  readonly reason:
    | "NotADirectory"
    | "SymlinkedHome"
    | "ForeignOwner"
    | "MultipleEntries"
    | "UnexpectedEntry"
    | "UnreadableRecord"
    | "InsecureMode"
  readonly detail: string
}> {
  /**
   * @since 0.1.0
   */
  get message(): string {
    return withNextStep(`${this.path}: ${this.detail} (${this.reason})`, repairOf(this))
  }
}

// How a person repairs what a `CorruptLock` found, which the lock leaves as it is.
const repairOf = ({ path, reason }: CorruptLock): string => {
  if (isDatabaseLocation(path)) {
    return `It is left as it is: look at its row (SELECT * FROM effect_pidlock WHERE name = '${
      nameAt(path)
    }') and at the sessions that hold its advisory lock (pg_locks), and end one that should not hold it (pg_terminate_backend)`
  }
  if (reason === "InsecureMode") {
    return `It is left as it is; if it is yours, make it private: ${commandLine("chmod", "700", path)}`
  }
  return `It is left as it is, since the lock removes only what it made: inspect it (${
    commandLine("ls", "-la", path)
  }) and, if nothing of yours uses it, remove it by hand (${commandLine("rm", "-r", path)})`
}

/**
 * The lock home `<dir>/<name>` belongs to another user: in a directory that
 * users share (such as `/tmp`), someone else uses this lock name. Nothing of
 * theirs is touched.
 *
 * @since 0.2.0
 * @category errors
 */
export class NameClash extends TaggedError("NameClash")<{
  /** The lock home, `<dir>/<name>`. */
  readonly path: string
  /** The uid that owns the lock home. */
  readonly ownerUid: number
  /** This process's effective uid. */
  readonly effectiveUid: number
}> {
  /**
   * @since 0.2.0
   */
  get message(): string {
    return withNextStep(
      `${this.path} belongs to uid ${this.ownerUid}, not to this process's effective uid ${this.effectiveUid}: ` +
        `another user uses the lock name ${show(Path.basename(this.path))} in ${Path.dirname(this.path)}`,
      `Choose another name, or a directory of your own: the option dir, or $PIDLOCK_DIR (--dir on the command line)`
    )
  }
}

/**
 * Our owner entry was gone when we looked: someone removed the lock while we
 * held it (for `PgLock`: the holding session ended or stopped answering).
 * Another process may hold the lock now.
 *
 * @since 0.1.0
 * @category errors
 */
export class LockCompromised extends TaggedError("LockCompromised")<{
  /** Where the lock lives (see {@link PidLock.location}). */
  readonly location: string
  readonly owner: OwnerRecord
  /** How it was lost, where the backend can tell more than that it is gone. */
  readonly detail?: string | undefined
  /**
   * True when {@link withLock} interrupted the work it guarded because of
   * this loss.
   *
   * @since 0.2.0
   */
  readonly workStopped?: boolean | undefined
}> {
  /**
   * @since 0.1.0
   */
  get message(): string {
    const cause = isDatabaseLocation(this.location)
      ? "a terminated session, a failover, a network partition"
      : "a temporary-file cleaner, effect-pidlock break --force"
    return withNextStep(
      `${this.location} was lost while this process held it (${this.detail ?? "its owner entry was removed"})`,
      `${
        this.workStopped === true ? "The work under the lock was stopped" : "Stop the work that relies on the lock"
      }: another process may hold it now. Find out what took it (${cause}) before starting again`
    )
  }
}

/**
 * {@link send} found nobody to send to: the lock is free (`Free`), or its
 * holder is gone (`Gone`).
 *
 * @since 0.2.0
 * @category errors
 */
export class NoHolder extends TaggedError("NoHolder")<{
  /** The lock directory. */
  readonly location: string
  readonly reason: "Free" | "Gone"
}> {
  /**
   * @since 0.2.0
   */
  get message(): string {
    return withNextStep(
      this.reason === "Free" ? `${this.location} is free: nobody holds it` : `the holder of ${this.location} is gone`,
      `Start the program that holds it (effect-pidlock run --forward starts the command when nobody holds it)`
    )
  }
}

/**
 * The holder did not reply to {@link send} in time: it is busy, or it does
 * not read its messages.
 *
 * @since 0.2.0
 * @category errors
 */
export class Timeout extends TaggedError("Timeout")<{
  readonly location: string
  readonly holder: OwnerRecord
  readonly timeout: Duration.Duration
}> {
  /**
   * @since 0.2.0
   */
  get message(): string {
    return withNextStep(
      `${describeHolder(this.holder)}, the holder of ${this.location}, did not reply within ${
        Duration.format(this.timeout)
      }`,
      `Give it longer (the option timeout; --timeout on the command line), or see whether it reads its messages (lock.messages, onMessage)`
    )
  }
}

/**
 * The holder got the message of {@link send} and would not answer it:
 *
 * - `Busy`: too many messages wait for it to read them.
 * - `NotServed`: it reads no messages: a process that inherited the
 *   holder's socket (the command of `effect-pidlock run`, its wrapper gone),
 *   a holder without a socket (release 0.1), or on another host.
 * - `Declined`: its handler failed, or declined the message (`detail` says why).
 *
 * @since 0.2.0
 * @category errors
 */
export class Refused extends TaggedError("Refused")<{
  readonly location: string
  readonly holder: OwnerRecord
  readonly reason: "Busy" | "NotServed" | "Declined"
  readonly detail: string
}> {
  /**
   * @since 0.2.0
   */
  get message(): string {
    return withNextStep(
      `${
        describeHolder(this.holder)
      }, the holder of ${this.location}, refused the message: ${this.detail} (${this.reason})`,
      this.reason === "Busy"
        ? "Try again shortly"
        : this.reason === "NotServed"
        ? `It reads no messages; see who holds it: ${cliCommand("status", this.location)}`
        : "See the holder's own logs for why"
    )
  }
}

/**
 * The message of {@link send} does not fit in one frame (64 KiB, with the
 * sender's command line and directory): nothing was sent.
 *
 * @since 0.2.0
 * @category errors
 */
export class MessageTooLarge extends TaggedError("MessageTooLarge")<{
  /** Its size, encoded, in bytes. */
  readonly size: number
  readonly limit: number
}> {
  /**
   * @since 0.2.0
   */
  get message(): string {
    return withNextStep(
      `the message is ${this.size} bytes encoded; a message holds at most ${this.limit}`,
      "Send less: a path to a file with the rest, rather than its contents"
    )
  }
}

/**
 * What {@link send} fails with, besides the errors of reading the lock.
 *
 * @since 0.2.0
 * @category errors
 */
export type SendError = NoHolder | Timeout | Refused | MessageTooLarge

/**
 * Every error of the file lock. Each message says what happened and ends with
 * the next step a person can take, and each error prints as that one line,
 * `<tag>: <message>`.
 *
 * @since 0.1.0
 * @category errors
 */
export type PidLockError =
  | LockHeld
  | StaleLock
  | PermissionDenied
  | InvalidOptions
  | CorruptLock
  | NameClash
  | LockCompromised

/**
 * Take the lock for the life of the current scope.
 *
 * Fails fast with {@link LockHeld} when a live process holds it; takes over
 * the lock of a holder that is gone (unless `onStale: "fail"`).
 *
 * @example
 * ```ts
 * import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
 * import * as Effect from "effect/Effect"
 * import * as Layer from "effect/Layer"
 * import * as PidLock from "effect-pidlock/PidLock"
 * import * as ProcessInfo from "effect-pidlock/ProcessInfo"
 *
 * // At most one copy of the report runs on the machine: a second one waits up to 30 s, then gives up.
 * // The lock is released when the scope closes, here at the end of `Effect.scoped`.
 * export const report = Effect.scoped(Effect.gen(function*() {
 *   const lock = yield* PidLock.acquire({ name: "nightly-report", wait: "30s" })
 *   yield* Effect.log(`holding ${lock.location}, generation ${lock.generation}`)
 *   // … the work, which may stamp its writes with lock.generation
 * })).pipe(
 *   Effect.catchTag("LockHeld", (error) => Effect.logWarning(`skipped: ${error.message}`)),
 *   Effect.provide(ProcessInfo.layer.pipe(Layer.provideMerge(NodeFileSystem.layer)))
 * )
 *
 * // NodeRuntime.runMain(report) from "@effect/platform-node/NodeRuntime" runs it, and releases the lock on SIGINT
 * // and SIGTERM.
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const acquire: (
  options: Options
) => Effect.Effect<
  FileLock,
  PidLockError | PlatformError,
  Scope.Scope | FileSystem.FileSystem | ProcessInfo.ProcessInfo | Posix.Posix
> = internal.acquire

/**
 * Hold the lock for the lifetime of the layer.
 *
 * @example
 * ```ts
 * import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
 * import * as Effect from "effect/Effect"
 * import * as Layer from "effect/Layer"
 * import * as PidLock from "effect-pidlock/PidLock"
 * import * as ProcessInfo from "effect-pidlock/ProcessInfo"
 *
 * // A service that exists only in the single instance: it needs the held lock.
 * const Scheduler = Layer.scopedDiscard(Effect.gen(function*() {
 *   const lock = yield* PidLock.PidLock
 *   yield* Effect.log(`scheduler started, holding ${lock.location}`)
 * }))
 *
 * export const Main = Scheduler.pipe(
 *   Layer.provide(PidLock.layer({ name: "scheduler" })),
 *   Layer.provide(ProcessInfo.layer),
 *   Layer.provide(NodeFileSystem.layer)
 * )
 *
 * // NodeRuntime.runMain(Layer.launch(Main)): a second copy fails with LockHeld and exits 1.
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: (
  options: Options
) => Layer.Layer<PidLock, PidLockError | PlatformError, FileSystem.FileSystem | ProcessInfo.ProcessInfo | Posix.Posix> =
  internal.layer

/**
 * A `Config` of a duration written as the options and the command line take
 * it: `"30s"`, `"500ms"`, `"2m"`, `"1.5h"` or `"30 seconds"`, for
 * {@link layerConfig}'s `wait` and `checkInterval`. Effect's `Config.duration`
 * reads only the long form (`"30 seconds"`). Anything else fails with a
 * `ConfigError` that says what is allowed.
 *
 * @example
 * ```ts
 * import * as Config from "effect/Config"
 * import * as ConfigProvider from "effect/ConfigProvider"
 * import * as Duration from "effect/Duration"
 * import * as Effect from "effect/Effect"
 * import * as PidLock from "effect-pidlock/PidLock"
 *
 * const wait = Effect.runSync(
 *   Effect.withConfigProvider(
 *     Config.option(PidLock.durationConfig("APP_LOCK_WAIT")),
 *     ConfigProvider.fromMap(new Map([["APP_LOCK_WAIT", "30s"]]))
 *   )
 * )
 * console.log(wait._tag === "Some" && Duration.toSeconds(wait.value)) // 30
 * ```
 *
 * @since 0.2.0
 * @category config
 */
export const durationConfig: (name?: string) => Config.Config<Duration.Duration> = internalDuration.durationConfig

/**
 * Hold the lock for the lifetime of the layer, with options read from
 * configuration, e.g.
 * `PidLock.layerConfig({ name: Config.succeed("app"), dir: Config.option(Config.string("LOCK_DIR")).pipe(Config.map(Option.getOrUndefined)) })`.
 * Without a `dir`, `$PIDLOCK_DIR` is used when set (see {@link Options}).
 *
 * @example
 * ```ts
 * import * as Config from "effect/Config"
 * import * as Option from "effect/Option"
 * import * as PidLock from "effect-pidlock/PidLock"
 *
 * // APP_LOCK_NAME is required; APP_LOCK_WAIT (e.g. "30s") is optional: without it, fail fast.
 * export const Lock = PidLock.layerConfig({
 *   name: Config.string("APP_LOCK_NAME"),
 *   wait: Config.option(PidLock.durationConfig("APP_LOCK_WAIT")).pipe(Config.map(Option.getOrUndefined))
 * })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: (
  config: Config.Config.Wrap<Options>
) => Layer.Layer<
  PidLock,
  PidLockError | PlatformError | ConfigError.ConfigError,
  FileSystem.FileSystem | ProcessInfo.ProcessInfo | Posix.Posix
> = internal.layerConfig

/**
 * Run an effect while holding the lock; the lock is released when it ends.
 * A lock lost meanwhile (see {@link PidLock.lost}) interrupts the effect, and
 * it fails with {@link LockCompromised}, as does a lock found gone at release.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withLock: {
  (options: Options): <A, E, R>(
    self: Effect.Effect<A, E, R>
  ) => Effect.Effect<
    A,
    E | PidLockError | PlatformError,
    Exclude<R, Scope.Scope> | FileSystem.FileSystem | ProcessInfo.ProcessInfo | Posix.Posix
  >
  <A, E, R>(
    self: Effect.Effect<A, E, R>,
    options: Options
  ): Effect.Effect<
    A,
    E | PidLockError | PlatformError,
    Exclude<R, Scope.Scope> | FileSystem.FileSystem | ProcessInfo.ProcessInfo | Posix.Posix
  >
} = internal.withLock

/**
 * Who holds the lock and whether they are alive, without touching it.
 * `None` when the lock is free.
 *
 * @since 0.1.0
 * @category accessors
 */
export const inspect: (
  options: { readonly name: string; readonly dir?: string | undefined }
) => Effect.Effect<
  Option.Option<Status>,
  InvalidOptions | CorruptLock | NameClash | PermissionDenied | PlatformError,
  FileSystem.FileSystem | ProcessInfo.ProcessInfo | Posix.Posix
> = internal.inspect

/**
 * Send `data` to the process that holds the lock, and get its reply (a JSON
 * value): the holder reads it from {@link FileLock.messages}, or answers it
 * with its `onMessage` option. The message carries this process's command
 * line, working directory and pid. Only the lock's own user can reach the
 * holder: its socket lies in the lock home, which is theirs alone.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import * as PidLock from "effect-pidlock/PidLock"
 *
 * // A second copy of an editor hands its file to the first one, and exits.
 * export const openInRunningInstance = (file: string) =>
 *   PidLock.send({ name: "editor", data: { open: file }, timeout: "2s" }).pipe(
 *     Effect.map((reply) => `the running instance says: ${JSON.stringify(reply)}`),
 *     Effect.catchTag("NoHolder", () => Effect.succeed("no instance runs: start one"))
 *   )
 * ```
 *
 * @since 0.2.0
 * @category combinators
 */
export const send: (
  options: SendOptions
) => Effect.Effect<
  unknown,
  SendError | InvalidOptions | CorruptLock | NameClash | PermissionDenied | PlatformError,
  FileSystem.FileSystem | ProcessInfo.ProcessInfo | Posix.Posix
> = internal.send

/**
 * Remove the lock of the holder that {@link inspect} found, by the exact name
 * of its owner entry: the same compare-and-swap as a takeover. `true` when
 * this call removed it; `false` when it was gone already (someone else broke
 * it, or the holder released), and then nothing is touched, not even the entry
 * of a holder who moved in since. It does not judge the holder: that is the
 * caller's part.
 *
 * @since 0.2.0
 * @category combinators
 */
export const breakLock: (
  status: Status
) => Effect.Effect<boolean, PermissionDenied | PlatformError, Posix.Posix> = internal.breakLock
