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
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/pidLock.js"
import { describeHolder } from "./internal/ownerRecord.js"
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
 * fiber of this very process holds it: there is no re-entrancy.
 *
 * @since 0.1.0
 * @category errors
 */
export class LockHeld extends Data.TaggedError("LockHeld")<{
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
    const who = describeHolder(this.holder)
    if (this.heldByThisProcess) {
      return `${this.location} is held by this very process (${who}): another fiber holds it, and the lock is not re-entrant`
    }
    const where = this.verdict._tag === "Foreign"
      ? ` (${
        this.verdict.scope === "host" ? "on another host" : "in another pid namespace"
      }: it cannot be checked, so it counts as alive)`
      : ""
    return `${this.location} is held by ${who}${where}`
  }
}

/**
 * The holder is gone, and `onStale: "fail"` asked not to take its lock over.
 *
 * @since 0.1.0
 * @category errors
 */
export class StaleLock extends Data.TaggedError("StaleLock")<{
  readonly path: string
  readonly holder: OwnerRecord
  readonly reason: ProcessInfo.StaleReason
}> {
  /**
   * @since 0.1.0
   */
  get message(): string {
    return `${this.path} is stale (${this.reason}): it was held by ${describeHolder(this.holder)}`
  }
}

/**
 * The operating system refused an operation on the lock (`EACCES`, `EPERM`,
 * `EROFS`).
 *
 * @since 0.1.0
 * @category errors
 */
export class PermissionDenied extends Data.TaggedError("PermissionDenied")<{
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
    return `permission denied (${this.code}): ${this.operation} ${this.path}`
  }
}

/**
 * An option was not valid. Nothing was touched on disk.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidOptions extends Data.TaggedError("InvalidOptions")<{
  readonly option: string
  readonly value: unknown
  readonly reason: string
}> {
  /**
   * @since 0.1.0
   */
  get message(): string {
    return `invalid option ${this.option}=${show(this.value)}: ${this.reason}`
  }
}

/**
 * What the lock found on disk is not what it creates: it is left exactly as
 * it is, for a person to look at.
 *
 * - `NotADirectory`: the lock path, or the lock home, is not a directory.
 * - `SymlinkedHome`: the lock home is a symbolic link (never followed).
 * - `ForeignOwner`: the lock home belongs to another user.
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
export class CorruptLock extends Data.TaggedError("CorruptLock")<{
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
    return `${this.path}: ${this.detail} (${this.reason}); left untouched`
  }
}

/**
 * Our owner entry was gone when we looked: someone removed the lock while we
 * held it.
 *
 * @since 0.1.0
 * @category errors
 */
export class LockCompromised extends Data.TaggedError("LockCompromised")<{
  /** Where the lock lives (see {@link PidLock.location}). */
  readonly location: string
  readonly owner: OwnerRecord
  /** How it was lost, where the backend can tell more than that it is gone. */
  readonly detail?: string | undefined
}> {
  /**
   * @since 0.1.0
   */
  get message(): string {
    return `${this.location} was lost while this process held it (${
      this.detail ?? "its owner entry was removed"
    }): the lock was compromised`
  }
}

/**
 * @since 0.1.0
 * @category errors
 */
export type PidLockError =
  | LockHeld
  | StaleLock
  | PermissionDenied
  | InvalidOptions
  | CorruptLock
  | LockCompromised

/**
 * Take the lock for the life of the current scope.
 *
 * Fails fast with {@link LockHeld} when a live process holds it; takes over
 * the lock of a holder that is gone (unless `onStale: "fail"`).
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
 * @since 0.1.0
 * @category layers
 */
export const layer: (
  options: Options
) => Layer.Layer<PidLock, PidLockError | PlatformError, FileSystem.FileSystem | ProcessInfo.ProcessInfo | Posix.Posix> =
  internal.layer

/**
 * Hold the lock for the lifetime of the layer, with options read from
 * configuration, e.g.
 * `PidLock.layerConfig({ name: Config.succeed("app"), dir: Config.option(Config.string("LOCK_DIR")).pipe(Config.map(Option.getOrUndefined)) })`.
 * Without a `dir`, `$PIDLOCK_DIR` is used when set (see {@link Options}).
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
  InvalidOptions | CorruptLock | PermissionDenied | PlatformError,
  FileSystem.FileSystem | ProcessInfo.ProcessInfo | Posix.Posix
> = internal.inspect

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
) => Effect.Effect<boolean, PermissionDenied | PlatformError, FileSystem.FileSystem> = internal.breakLock
