/**
 * The lock for Node programs that do not use Effect: Promises and callbacks,
 * rejecting with the same error classes as `effect-pidlock/PidLock`.
 *
 * ```ts
 * import { acquire } from "effect-pidlock/promise"
 *
 * try {
 *   const lock = await acquire({ name: "nightly-report" })
 *   try {
 *     await run()
 *   } finally {
 *     await lock.release()
 *   }
 * } catch (e) {
 *   if (e._tag === "LockHeld") console.warn(e.message)
 *   else throw e
 * }
 * ```
 *
 * Everything runs on one Effect runtime with the Node file system, built on
 * first use. While a lock is held, its watchdog (see `checkInterval`) keeps
 * the event loop alive: release the lock to let the process exit.
 *
 * @since 0.1.0
 */
import type { PlatformError } from "@effect/platform/Error"
import * as internal from "./internal/promise.js"
import type * as PidLock from "./PidLock.js"

/**
 * A held lock. It stays held until {@link Lock.release}, or until the process
 * ends (the next contender then takes it over).
 *
 * @since 0.1.0
 * @category models
 */
export interface Lock {
  readonly name: string
  /** The lock directory, `<dir>/<name>/lock`. */
  readonly path: string
  /** The owner entry, `<dir>/<name>/lock/<pid>.<token>`. */
  readonly entry: string
  readonly owner: PidLock.OwnerRecord
  /**
   * Release the lock and stop its watchdog. Calling it again returns the
   * first call's promise. Rejects with `LockCompromised` when the owner entry
   * was already gone.
   */
  release(): Promise<void>
  /**
   * Check now that the owner entry is still ours; rejects with
   * `LockCompromised` when it is gone or replaced. Resolves after release.
   */
  verify(): Promise<void>
  /**
   * Rejects with `LockCompromised` once the watchdog finds the lock gone or
   * replaced; never resolves, and never settles once the lock is released.
   * Its rejection is marked handled: leaving it unobserved never ends the
   * process.
   */
  readonly lost: Promise<never>
}

/**
 * The callback of {@link guard}, as in the original `pidlock`: either an
 * error, or `null`, the held lock and a function that releases it.
 *
 * @since 0.1.0
 * @category models
 */
export type GuardCallback = (
  ...args:
    | [error: null, lock: Lock, cleanup: () => Promise<void>]
    | [error: PidLock.PidLockError | PlatformError, lock: undefined, cleanup: undefined]
) => void

/**
 * Take the lock; it is held until {@link Lock.release}.
 *
 * Rejects with the error itself, never wrapped: `LockHeld` when a live
 * process holds the lock (after waiting for at most `wait`, if given),
 * `StaleLock`, `PermissionDenied`, `InvalidOptions`, `CorruptLock`, or a
 * `PlatformError`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const acquire: (options: PidLock.Options) => Promise<Lock> = internal.acquire

/**
 * Take the lock, run `body`, and release the lock when `body` settles,
 * whether it resolves or rejects; resolves with `body`'s result.
 *
 * `body` cannot be interrupted: when the lock is lost meanwhile, it is still
 * awaited to its end, and then the result is a rejection with
 * `LockCompromised`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withLock: <A>(options: PidLock.Options, body: (lock: Lock) => A | PromiseLike<A>) => Promise<A> =
  internal.withLock

/**
 * The original `pidlock.guard`: take lock `key` in directory `dir` and call
 * `callback(null, lock, cleanup)`, or `callback(error)` when it cannot be
 * taken (`LockHeld` when another instance runs). `cleanup()` releases the
 * lock; it need not be awaited, and calling it again does nothing more.
 *
 * @since 0.1.0
 * @category combinators
 */
export const guard: (dir: string, key: string, callback: GuardCallback) => void = internal.guard
