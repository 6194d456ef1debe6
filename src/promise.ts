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
 * first use. While a lock taken by {@link acquire} or {@link withLock} is
 * held, its watchdog (see `checkInterval`) keeps the event loop alive:
 * release the lock to let the process exit. The lock of {@link guard} does not
 * keep the process alive. A lock still held when the process exits (the
 * event loop ran dry, `process.exit()`, an uncaught exception) is removed on
 * `exit`; after a signal's default action or `SIGKILL` it is left stale, and
 * the next contender takes it over.
 *
 * @since 0.1.0
 */
import type { PlatformError } from "@effect/platform/Error"
import * as internal from "./internal/promise.js"
import type * as PidLock from "./PidLock.js"

/**
 * A held lock. It stays held until {@link Lock.release}, or until the process
 * exits: it is then removed on `exit`, or, after a signal or `SIGKILL`, taken
 * over by the next contender.
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
   * Release the lock and stop its watchdog. Calling it again, even while the
   * first call runs, returns the first call's promise: every caller gets the
   * same outcome. Rejects with `LockCompromised` when the owner entry was
   * already gone.
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
 * The callback of {@link guard}, as in the original `pidlock`: `null`, the
 * held lock and a function that releases it; or an error, no lock, and a
 * `cleanup` that does nothing and resolves.
 *
 * @since 0.1.0
 * @category models
 */
export type GuardCallback = (
  ...args:
    | [error: null, lock: Lock, cleanup: () => Promise<void>]
    | [error: PidLock.PidLockError | PlatformError, lock: undefined, cleanup: () => Promise<void>]
) => void

/**
 * Take the lock; it is held until {@link Lock.release}.
 *
 * Rejects with the error itself, never wrapped: `LockHeld` when a live
 * process holds the lock (after waiting for at most `wait`, if given),
 * `StaleLock`, `PermissionDenied`, `InvalidOptions` (option `"options"` when
 * `options` is not an object), `CorruptLock`, or a `PlatformError`.
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
 * `callback(null, lock, cleanup)`, or `callback(error, undefined, cleanup)`
 * when it cannot be taken (`LockHeld` when another instance runs), without
 * waiting. `cleanup()` releases the lock; it need not be awaited, calling it
 * again does nothing more, and without a lock it does nothing and resolves.
 *
 * As with the original, the lock does not keep the process alive: the process
 * exits when its work is done, and the lock is removed on exit even if
 * `cleanup()` was never called. Its watchdog still runs while the process
 * does. What the callback throws is an uncaught exception, as a throw out of
 * the original's callback is when `guard` is called at top level; the process
 * ends unless an `uncaughtException` handler is installed, and the lock is
 * removed on exit.
 *
 * @since 0.1.0
 * @category combinators
 */
export const guard: (dir: string, key: string, callback: GuardCallback) => void = internal.guard
