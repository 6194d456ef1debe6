/**
 * The same lock across hosts and replicas, over PostgreSQL: a session-level
 * advisory lock, which the server frees the moment the holder's session ends,
 * so that a crashed holder's lock is free at once, with no TTL and no clock.
 *
 * ```ts
 * import * as PgLock from "effect-pidlock/PgLock"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const lock = yield* PgLock.acquire({ name: "nightly-migration" })
 *   // … only one copy of this runs in the whole fleet; stamp writes with lock.generation
 * }))
 * ```
 *
 * It provides the same {@link PidLock.PidLock} tag as the file lock, so a
 * service that depends on the lock runs unchanged on either backend. It needs
 * a `PgClient` from `@effect/sql-pg` (and `ProcessInfo` for the owner
 * record), and keeps one connection of the client's pool for as long as the
 * lock is held.
 *
 * In the database: the registry table {@link schema} (`effect_pidlock`, made
 * on first use), one row per name with its advisory lock key, its generation
 * and the holder's owner record beside its backend pid; the lock itself is
 * `pg_advisory_lock(0x7069646c, key)`.
 *
 * @since 0.2.0
 */
import type * as PgClient from "@effect/sql-pg/PgClient"
import type { SqlError } from "@effect/sql/SqlError"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/pgLock.js"
import type * as PidLock from "./PidLock.js"
import type * as ProcessInfo from "./ProcessInfo.js"

/**
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** 1 to 100 characters of `A-Z a-z 0-9 . _ -`, not starting with `.`. */
  readonly name: string
  /**
   * Wait for a held lock instead of failing at once: for at most this long
   * (then `LockHeld`), waiting in the server, which wakes the moment the
   * holder releases or its session ends; or retry on the given `Schedule`.
   * Default: fail fast.
   */
  readonly wait?: PidLock.DurationInput | Schedule.Schedule<unknown, PidLock.LockHeld> | undefined
  /**
   * How often the watchdog asks the server that the lock is still this
   * session's, each question under a timeout of the same length; `false`
   * turns it off. A failed or unanswered question completes
   * {@link PidLock.PidLock.lost}. Default: 5 seconds.
   */
  readonly checkInterval?: PidLock.DurationInput | false | undefined
}

/**
 * What acquiring a lock over PostgreSQL fails with, besides `SqlError`:
 *
 * - `LockHeld`: another session holds it; `holder` is the owner record its
 *   holder stored, believed only while `pg_locks` shows that session holding
 *   the lock.
 * - `InvalidOptions`: nothing was sent to the database.
 * - `CorruptLock`: the registry row holds what this package does not write
 *   (`UnreadableRecord`), or a session that left no owner record holds the
 *   advisory lock (`UnexpectedEntry`): it is left as it is.
 * - `LockCompromised`: the lock was lost while held.
 *
 * As the file lock's, each message ends with the next step, here the
 * database's: `effect-pidlock status --name <name> --postgres <url>` for a
 * held lock, the registry row and `pg_locks` to look at for a corrupt one.
 * The url is never shown.
 *
 * @since 0.2.0
 * @category errors
 */
export type PgLockError = PidLock.LockHeld | PidLock.InvalidOptions | PidLock.CorruptLock | PidLock.LockCompromised

/**
 * The registry table, for teams that apply migrations themselves. The lock
 * runs it on first use otherwise, under a transaction-level advisory lock so
 * that instances starting at once against a fresh database do not race.
 *
 * @since 0.2.0
 * @category schema
 */
export const schema: string = internal.schema

/**
 * Take the lock for the life of the current scope, on a session of its own.
 *
 * Fails fast with `LockHeld` when another session holds it, unless `wait`
 * says otherwise. There is no stale lock: the server frees a dead holder's
 * lock when its session ends.
 *
 * @since 0.2.0
 * @category constructors
 */
export const acquire: (
  options: Options
) => Effect.Effect<
  PidLock.PidLock<SqlError>,
  PgLockError | SqlError,
  Scope.Scope | PgClient.PgClient | ProcessInfo.ProcessInfo
> = internal.acquire

/**
 * Hold the lock for the lifetime of the layer; it provides the same
 * {@link PidLock.PidLock} tag as `PidLock.layer`.
 *
 * @example
 * ```ts
 * import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
 * import * as PgClient from "@effect/sql-pg/PgClient"
 * import * as Config from "effect/Config"
 * import * as Effect from "effect/Effect"
 * import * as Layer from "effect/Layer"
 * import * as PgLock from "effect-pidlock/PgLock"
 * import * as PidLock from "effect-pidlock/PidLock"
 * import * as ProcessInfo from "effect-pidlock/ProcessInfo"
 *
 * // One scheduler among all the replicas that reach the database. The service asks for PidLock.PidLock, so it runs
 * // unchanged over the file lock (PidLock.layer) on one machine.
 * const Scheduler = Layer.scopedDiscard(Effect.gen(function*() {
 *   const lock = yield* PidLock.PidLock
 *   yield* Effect.log(`scheduler started, holding ${lock.location}, generation ${lock.generation}`)
 * }))
 *
 * export const Main = Scheduler.pipe(
 *   Layer.provide(PgLock.layer({ name: "scheduler", wait: "2m" })),
 *   Layer.provide(PgClient.layerConfig({ url: Config.redacted("DATABASE_URL") })),
 *   Layer.provide(ProcessInfo.layer),
 *   Layer.provide(NodeFileSystem.layer)
 * )
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer: (
  options: Options
) => Layer.Layer<PidLock.PidLock, PgLockError | SqlError, PgClient.PgClient | ProcessInfo.ProcessInfo> = internal.layer

/**
 * Hold the lock for the lifetime of the layer, with options read from
 * configuration.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig: (
  config: Config.Config.Wrap<Options>
) => Layer.Layer<
  PidLock.PidLock,
  PgLockError | SqlError | ConfigError.ConfigError,
  PgClient.PgClient | ProcessInfo.ProcessInfo
> = internal.layerConfig

/**
 * Run an effect while holding the lock; the lock is released when it ends.
 * A lock lost meanwhile interrupts the effect, and it fails with
 * `LockCompromised`.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withLock: {
  (options: Options): <A, E, R>(
    self: Effect.Effect<A, E, R>
  ) => Effect.Effect<
    A,
    E | PgLockError | SqlError,
    Exclude<R, Scope.Scope> | PgClient.PgClient | ProcessInfo.ProcessInfo
  >
  <A, E, R>(
    self: Effect.Effect<A, E, R>,
    options: Options
  ): Effect.Effect<
    A,
    E | PgLockError | SqlError,
    Exclude<R, Scope.Scope> | PgClient.PgClient | ProcessInfo.ProcessInfo
  >
} = internal.withLock

/**
 * Who holds the lock, as the registry and `pg_locks` agree, without touching
 * it. `None` when it is free. The verdict is always `Alive`: the server holds
 * no lock of a session that ended.
 *
 * @since 0.2.0
 * @category accessors
 */
export const inspect: (
  options: { readonly name: string }
) => Effect.Effect<
  Option.Option<PidLock.Status>,
  PidLock.InvalidOptions | PidLock.CorruptLock | SqlError,
  PgClient.PgClient | ProcessInfo.ProcessInfo
> = internal.inspect

/**
 * End the session of the holder that {@link inspect} found
 * (`pg_terminate_backend`), which frees its lock; its `lost` fires at its
 * next check. `true` when this call ended it; `false` when that holder is
 * gone already, and then nothing is touched, not even a holder who moved in
 * since. Needs the right to signal the holder's backend (the same role, or
 * `pg_signal_backend`).
 *
 * @since 0.2.0
 * @category combinators
 */
export const breakLock: (
  status: PidLock.Status
) => Effect.Effect<
  boolean,
  PidLock.InvalidOptions | PidLock.CorruptLock | SqlError,
  PgClient.PgClient | ProcessInfo.ProcessInfo
> = internal.breakLock
