/**
 * The lock for Node programs that do not use Effect: Promises and callbacks.
 * They reject with the error classes of `effect-pidlock/PidLock`, exported
 * here too, so that `error instanceof LockHeld` works without Effect.
 *
 * Everything runs on one Effect runtime with the Node file system, built on
 * first use.
 *
 * **The life of the process.**
 * - A lock taken by {@link acquire} or {@link withLock} keeps the process
 *   alive until it is released, whatever `checkInterval` says. The lock of
 *   {@link guard} does not: the process exits when its work is done.
 * - A lock still held when the process exits (the event loop ran dry,
 *   `process.exit()`, an uncaught exception) is removed on `exit`.
 * - On `SIGINT`, `SIGTERM` or `SIGHUP`, when the program does not listen for
 *   that signal itself, the held locks are removed and the process then ends
 *   by the signal, as it would without this package (a shell reports 130 for
 *   `SIGINT`). A program that listens for the signal handles it: release the
 *   lock in the handler, or call `process.exit()`, which removes it.
 * - After `SIGKILL`, or another signal's default action, the lock is left
 *   stale, and the next contender takes it over at once.
 *
 * **Logs** are logfmt lines on stderr, never on stdout: a takeover of a dead
 * holder's lock at `info`, a failure the lock works around (a check or a
 * release that failed) at `warning`. The `log` option of {@link acquire} and
 * {@link withLock} sets the least severe level written, or `false` for none.
 *
 * @example
 * ```ts
 * import { acquire, LockHeld } from "effect-pidlock/promise"
 *
 * const run = async () => console.log("the only copy running")
 *
 * try {
 *   const lock = await acquire({ name: "promise-module-example", wait: "10s" })
 *   try {
 *     await run()
 *   } finally {
 *     await lock.release()
 *   }
 * } catch (error) {
 *   if (!(error instanceof LockHeld)) throw error
 *   console.error(`another copy runs: ${error.message}`)
 * }
 * ```
 *
 * @since 0.1.0
 */
import type { PlatformError } from "@effect/platform/Error"
import * as internal from "./internal/promise.js"
import type * as PidLock from "./PidLock.js"

// -----------------------------------------------------------------------------
// models
// -----------------------------------------------------------------------------

/**
 * The least severe level of the lock's logs that is written to stderr.
 *
 * @since 0.2.0
 * @category models
 */
export type LogLevel = "error" | "warning" | "info" | "debug"

/**
 * The options of {@link acquire} and {@link withLock}: those of
 * `PidLock.Options`, where a duration (`wait`, `checkInterval`) may also be
 * written `"30s"`, `"500ms"`, `"2m"`, `"1.5h"` or `"30 seconds"`, and `log`.
 *
 * @since 0.2.0
 * @category models
 */
export interface Options extends Omit<PidLock.Options, "onMessage"> {
  /**
   * Answer each message that {@link send} brings: what it returns (or the
   * promise resolves with) is the reply, a JSON value; what it throws (or
   * the promise rejects with) declines the message, and the sender gets
   * {@link Refused} with the error's message. Up to 16 messages are handled
   * at once. Without it, the lock refuses every message at once
   * ({@link Refused}, `NotServed`): a lock of this module has no other way
   * to read them.
   *
   * @since 0.2.0
   */
  readonly onMessage?: ((message: Message) => unknown) | undefined
  /**
   * The least severe level of the lock's logs written to stderr (never to
   * stdout), or `false` for none. Default: `"info"`, which writes one line
   * for a takeover of a dead holder's lock and one for each failure the lock
   * works around.
   */
  readonly log?: false | LogLevel | undefined
}

/**
 * A message that another process sent with {@link send}, as `onMessage`
 * gets it.
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
}

/**
 * The options of {@link send}: which lock's holder to reach, what to send it,
 * and how long to wait for its reply (default 5 seconds).
 *
 * @since 0.2.0
 * @category models
 */
export type SendOptions = PidLock.SendOptions

/**
 * A held lock. It stays held until {@link Lock.release}, or until the process
 * ends (see the module's documentation for what an exit or a signal does).
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
  /**
   * Grows with every acquisition of this name (1 for the first): a fencing
   * token to stamp the holder's writes with (since 0.2.0).
   */
  readonly generation: number
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
    | [error: PidLockError | PlatformError, lock: undefined, cleanup: () => Promise<void>]
) => void

/**
 * What a holder writes into its owner entry: its process's identity, when it
 * took the lock and its token.
 *
 * @since 0.2.0
 * @category models
 */
export type OwnerRecord = PidLock.OwnerRecord

/**
 * What {@link inspect} finds in a held lock: where it lives, its holder's
 * owner record, the verdict on the holder, and whether it is this process.
 *
 * @since 0.2.0
 * @category models
 */
export type Status = PidLock.Status

// -----------------------------------------------------------------------------
// errors
// -----------------------------------------------------------------------------

/**
 * Every error the lock rejects with, besides a `PlatformError` for another
 * failure of the file system.
 *
 * @since 0.2.0
 * @category errors
 */
export type PidLockError = PidLock.PidLockError

/**
 * What {@link send} rejects with, besides the errors of reading the lock.
 *
 * @since 0.2.0
 * @category errors
 */
export type SendError = PidLock.SendError

// The errors the lock rejects with: the very classes of `effect-pidlock/PidLock`,
// so that `error instanceof LockHeld` holds and narrows to the error's fields.
export {
  /**
   * The lock's files are not what the lock makes; they are left as they are.
   *
   * @since 0.2.0
   * @category errors
   */
  CorruptLock,
  /**
   * An option was not valid (`option`, `value`, `reason`); nothing was touched.
   *
   * @since 0.2.0
   * @category errors
   */
  InvalidOptions,
  /**
   * The lock was lost while held: someone removed the owner entry.
   *
   * @since 0.2.0
   * @category errors
   */
  LockCompromised,
  /**
   * A live process holds the lock (`holder`), or one on another host or in another pid namespace that
   * cannot be checked; `heldByThisProcess` when it is this very process (the lock is not re-entrant).
   *
   * @example
   * ```ts
   * import { acquire, LockHeld } from "effect-pidlock/promise"
   *
   * const first = await acquire({ name: "promise-lockheld-example" })
   * try {
   *   const second = await acquire({ name: "promise-lockheld-example" })
   *   await second.release()
   * } catch (error) {
   *   if (!(error instanceof LockHeld)) throw error
   *   console.error(`held by pid ${error.holder.pid}, this process: ${error.heldByThisProcess}`)
   * } finally {
   *   await first.release()
   * }
   * ```
   *
   * @since 0.2.0
   * @category errors
   */
  LockHeld,
  /**
   * {@link send}'s message is over 64 KiB encoded (`size`, `limit`): nothing was sent.
   *
   * @since 0.2.0
   * @category errors
   */
  MessageTooLarge,
  /**
   * The lock home `<dir>/<name>` belongs to another user: someone else uses this lock name in a shared
   * directory. Nothing of theirs is touched.
   *
   * @since 0.2.0
   * @category errors
   */
  NameClash,
  /**
   * {@link send} found nobody to send to: the lock is free (`Free`), or its holder is gone (`Gone`).
   *
   * @since 0.2.0
   * @category errors
   */
  NoHolder,
  /**
   * The operating system refused an operation on the lock (`EACCES`, `EPERM`, `EROFS`).
   *
   * @since 0.2.0
   * @category errors
   */
  PermissionDenied,
  /**
   * The holder would not answer {@link send}'s message: `Busy` (too many wait), `NotServed` (it reads no
   * messages) or `Declined` (its handler threw); `detail` says why.
   *
   * @since 0.2.0
   * @category errors
   */
  Refused,
  /**
   * The holder is gone, and `onStale: "fail"` asked not to take its lock over.
   *
   * @since 0.2.0
   * @category errors
   */
  StaleLock,
  /**
   * The holder did not reply to {@link send} within its `timeout`.
   *
   * @since 0.2.0
   * @category errors
   */
  Timeout
} from "./PidLock.js"

// -----------------------------------------------------------------------------
// constructors
// -----------------------------------------------------------------------------

/**
 * Take the lock; it is held, and keeps the process alive, until
 * {@link Lock.release}.
 *
 * Rejects with the error itself, never wrapped: {@link LockHeld} when a live
 * process holds the lock (after waiting for at most `wait`, if given),
 * {@link StaleLock}, {@link PermissionDenied}, {@link InvalidOptions} (option
 * `"options"` when `options` is not an object), {@link CorruptLock},
 * {@link NameClash}, or a `PlatformError`.
 *
 * @example
 * ```ts
 * import { acquire } from "effect-pidlock/promise"
 *
 * const lock = await acquire({ name: "promise-acquire-example", wait: "30s", checkInterval: "2s" })
 * try {
 *   console.log(`holding ${lock.path} as generation ${lock.generation}`)
 * } finally {
 *   await lock.release()
 * }
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const acquire: (options: Options) => Promise<Lock> = internal.acquire

// -----------------------------------------------------------------------------
// combinators
// -----------------------------------------------------------------------------

/**
 * Take the lock, run `body`, and release the lock when `body` settles,
 * whether it resolves or rejects; resolves with `body`'s result.
 *
 * `body` cannot be interrupted: when the lock is lost meanwhile, it is still
 * awaited to its end, and then the result is a rejection with
 * {@link LockCompromised}.
 *
 * @example
 * ```ts
 * import { withLock } from "effect-pidlock/promise"
 *
 * const applied = await withLock({ name: "promise-withlock-example", wait: "2m", log: "debug" }, async (lock) => {
 *   console.log(`migrating as generation ${lock.generation}`)
 *   return 3
 * })
 * console.log(`${applied} migrations applied`)
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const withLock: <A>(options: Options, body: (lock: Lock) => A | PromiseLike<A>) => Promise<A> = internal.withLock

/**
 * The original `pidlock.guard`: take lock `key` in directory `dir` and call
 * `callback(null, lock, cleanup)`, or `callback(error, undefined, cleanup)`
 * when it cannot be taken ({@link LockHeld} when another instance runs),
 * without waiting. `cleanup()` releases the lock; it need not be awaited,
 * calling it again does nothing more, and without a lock it does nothing and
 * resolves. It logs as {@link acquire} does by default.
 *
 * As with the original, the lock does not keep the process alive: the process
 * exits when its work is done, and the lock is removed on exit even if
 * `cleanup()` was never called. Its watchdog still runs while the process
 * does. What the callback throws is an uncaught exception, as a throw out of
 * the original's callback is when `guard` is called at top level; the process
 * ends unless an `uncaughtException` handler is installed, and the lock is
 * removed on exit.
 *
 * @example
 * ```ts
 * import { guard } from "effect-pidlock/promise"
 * import * as Os from "node:os"
 *
 * guard(Os.tmpdir(), "promise-guard-example", (error, _lock, cleanup) => {
 *   if (error) {
 *     console.error(`not running: ${error.message}`)
 *     return
 *   }
 *   console.log("the only copy running")
 *   void cleanup()
 * })
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const guard: (dir: string, key: string, callback: GuardCallback) => void = internal.guard

// -----------------------------------------------------------------------------
// accessors
// -----------------------------------------------------------------------------

/**
 * Who holds the lock and whether they are alive, without touching it; the
 * promise resolves with `undefined` when the lock is free, as `guard` passes
 * `undefined` for a lock it did not get. Rejects with {@link InvalidOptions},
 * {@link CorruptLock}, {@link NameClash}, {@link PermissionDenied} or a
 * `PlatformError`.
 *
 * @example
 * ```ts
 * import { inspect } from "effect-pidlock/promise"
 *
 * const status = await inspect({ name: "promise-inspect-example" })
 * if (status === undefined) console.log("free")
 * else console.log(`held by pid ${status.holder.pid} (${status.verdict._tag})`)
 * ```
 *
 * @since 0.2.0
 * @category accessors
 */
export const inspect: (
  options: { readonly name: string; readonly dir?: string | undefined }
) => Promise<Status | undefined> = internal.inspect

/**
 * Send `data` (a JSON value) to the process that holds the lock, and resolve
 * with its reply: the holder answers with its `onMessage` option. Rejects
 * with {@link NoHolder} when nobody holds the lock, {@link Timeout},
 * {@link Refused}, {@link MessageTooLarge}, or an error of reading the lock
 * ({@link InvalidOptions}, {@link CorruptLock}, {@link NameClash},
 * {@link PermissionDenied}, a `PlatformError`).
 *
 * @example
 * ```ts
 * import { acquire, NoHolder, send } from "effect-pidlock/promise"
 *
 * const lock = await acquire({
 *   name: "promise-send-example",
 *   onMessage: async (message) => ({ opened: message.data })
 * })
 * try {
 *   console.log(await send({ name: "promise-send-example", data: "notes.txt", timeout: "2s" }))
 * } catch (error) {
 *   if (!(error instanceof NoHolder)) throw error
 *   console.log("nobody runs")
 * } finally {
 *   await lock.release()
 * }
 * ```
 *
 * @since 0.2.0
 * @category combinators
 */
export const send: (options: SendOptions) => Promise<unknown> = internal.send
