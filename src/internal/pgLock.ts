import * as PgClient from "@effect/sql-pg/PgClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import { type SqlError, SqlError as SqlErrorClass } from "@effect/sql/SqlError"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import type * as PgLock from "../PgLock.js"
import * as PidLock from "../PidLock.js"
import * as ProcessInfo from "../ProcessInfo.js"
import { type Held, type Loss, makeLoss, makeReleaser, releaseInFinalizer, watchdog, withLockOf } from "./heldLock.js"
import { validateCheckInterval, validateName, validateObject, validateWait, type Wait } from "./options.js"
import { decodeRecord, encodeRecord, newToken } from "./ownerRecord.js"
import { tag } from "./pidLock.js"
import { isSameProcess, tag as processInfoTag } from "./processInfo.js"
import { show } from "./text.js"

// -----------------------------------------------------------------------------
// SQL
// -----------------------------------------------------------------------------

/** @internal */
export const TABLE = "effect_pidlock"

// The first half of every advisory lock key this package takes, "pidl" in
// ASCII; the second half is the name's `key` in the registry, so no two names
// share a lock, and key 0 (which no name gets) serializes the registry's
// creation.
/** @internal */
export const LOCK_CLASS = 0x7069646c

/** @internal */
export const schema = `CREATE TABLE IF NOT EXISTS ${TABLE} (
  name text PRIMARY KEY,
  key integer GENERATED ALWAYS AS IDENTITY UNIQUE,
  generation bigint NOT NULL DEFAULT 0,
  backend_pid integer,
  owner jsonb
)`

// Without parameters, `pg` sends the two statements as one simple query,
// which PostgreSQL runs as one transaction: the transaction-level lock makes
// instances that start at once against a fresh database create the table
// one after the other (a bare CREATE TABLE IF NOT EXISTS races on pg_type).
const CREATE_SCHEMA = `SELECT pg_advisory_xact_lock(${LOCK_CLASS}, 0); ${schema}`

const REGISTER = `INSERT INTO ${TABLE} (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`

// One round trip: the lock, and when it is taken, the owner record and the
// next generation stamped beside this session's backend pid. No row: the
// name is not registered yet.
const lockStatement = (lock: string) =>
  `WITH registered AS (SELECT key FROM ${TABLE} WHERE name = $1),
attempt AS (${lock}),
stamped AS (
  UPDATE ${TABLE} AS t SET generation = t.generation + 1, backend_pid = pg_backend_pid(), owner = $2::jsonb
  FROM attempt WHERE t.key = attempt.key AND attempt.taken
  RETURNING t.generation::text AS generation
)
SELECT attempt.key::text AS key, attempt.taken, stamped.generation, pg_backend_pid()::text AS backend_pid
FROM attempt LEFT JOIN stamped ON true`

const TRY_LOCK = lockStatement(`SELECT key, pg_try_advisory_lock(${LOCK_CLASS}, key) AS taken FROM registered`)

// `pg_advisory_lock` returns void: it is called in a CTE of its own, which
// runs because the next one reads it.
const WAIT_LOCK = lockStatement(
  `SELECT key, true AS taken FROM (SELECT key, pg_advisory_lock(${LOCK_CLASS}, key) FROM registered) AS locked`
)

const heldBy = (key: string) =>
  `SELECT l.pid FROM pg_locks AS l
  WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND l.classid = ${LOCK_CLASS}::oid AND l.objid = ${key}::oid AND l.objsubid = 2 AND l.granted`

// The row's owner is believed only when its backend holds the lock now: a
// row left by a dead session says nothing.
const HOLDER = `SELECT t.owner::text AS owner, t.backend_pid::text AS backend_pid,
  (${heldBy("t.key")} LIMIT 1)::text AS holder_pid
FROM ${TABLE} AS t WHERE t.name = $1`

const STILL_HELD = `SELECT EXISTS (${heldBy("$1::integer")} AND l.pid = pg_backend_pid()) AS held`

// The unlock also clears the row's backend pid, so that a later lock of that
// session (a pooled connection) by other means is not taken for ours.
const UNLOCK = `WITH unlocked AS (
  SELECT key, pg_advisory_unlock(${LOCK_CLASS}, key) AS released FROM ${TABLE} WHERE name = $1
),
cleared AS (
  UPDATE ${TABLE} AS t SET backend_pid = NULL FROM unlocked
  WHERE t.key = unlocked.key AND unlocked.released AND t.backend_pid = pg_backend_pid()
)
SELECT released FROM unlocked`

// -----------------------------------------------------------------------------
// Errors
// -----------------------------------------------------------------------------

const sqlStateOf = (error: SqlError): string | undefined => {
  const cause = error.cause
  return typeof cause === "object" && cause !== null && typeof (cause as { code?: unknown }).code === "string"
    ? (cause as { code: string }).code
    : undefined
}

const isUndefinedTable = (error: SqlError) => sqlStateOf(error) === "42P01"
const isLockTimeout = (error: SqlError) => sqlStateOf(error) === "55P03"

// -----------------------------------------------------------------------------
// Options
// -----------------------------------------------------------------------------

interface Resolved {
  readonly name: string
  readonly location: string
  readonly wait: Wait | undefined
  readonly checkInterval: Duration.Duration | false
  readonly sql: PgClient.PgClient
  readonly info: ProcessInfo.ProcessInfo
}

// Where the lock lives, for messages: the server and database from the
// client's configuration, never its credentials.
const locationOf = (config: PgClient.PgClientConfig, name: string): string => {
  if (config.url !== undefined) {
    const url = Either.try(() => new URL(Redacted.value(config.url!)))
    if (Either.isRight(url)) {
      const { hostname, pathname, port } = url.right
      return `postgresql://${hostname}:${port || 5432}${pathname}#${name}`
    }
  }
  const host = config.path ?? config.host ?? "localhost"
  return `postgresql://${host}:${config.port ?? 5432}/${config.database ?? config.username ?? ""}#${name}`
}

// The name at the end of a location, `postgresql://host:port/database#name`.
const nameOf = (location: string) => location.slice(location.lastIndexOf("#") + 1)

const resolve = (input: unknown) =>
  Effect.gen(function*() {
    const options = yield* validateObject(input)
    const name = yield* validateName(options.name)
    const wait = yield* validateWait(options.wait)
    const checkInterval = yield* validateCheckInterval(options.checkInterval)
    const sql = yield* PgClient.PgClient
    const info = yield* processInfoTag
    return { name, location: locationOf(sql.config, name), wait, checkInterval, sql, info } satisfies Resolved
  })

// -----------------------------------------------------------------------------
// Taking the lock
// -----------------------------------------------------------------------------

type Row = Record<string, string | boolean | null>

const run = (connection: SqlConnection.Connection, statement: string, params: ReadonlyArray<unknown> = []) =>
  connection.execute(statement, params, undefined) as Effect.Effect<ReadonlyArray<Row>, SqlError>

// Gives back whatever advisory lock the session holds: the session is the
// lock's alone, and a session-level advisory lock outlives the statement that
// failed after taking it.
const unlockAll = (connection: SqlConnection.Connection): Effect.Effect<void> =>
  Effect.ignore(run(connection, "SELECT pg_advisory_unlock_all()"))

// Runs `statement`, making the registry first when it does not exist yet.
const runRegistered = (connection: SqlConnection.Connection, statement: string, params: ReadonlyArray<unknown>) =>
  run(connection, statement, params).pipe(
    Effect.catchIf(
      isUndefinedTable,
      () => Effect.zipRight(run(connection, CREATE_SCHEMA), run(connection, statement, params))
    )
  )

interface Taken {
  readonly _tag: "Taken"
  readonly generation: number
  /** The name's key in the registry, the second half of its advisory lock. */
  readonly key: string
  readonly backendPid: number
}

type Attempt = Taken | { readonly _tag: "Held" }

const parseGeneration = (text: unknown, location: string): Effect.Effect<number, PidLock.CorruptLock> => {
  const generation = Number(text)
  return typeof text === "string" && Number.isSafeInteger(generation) && generation > 0
    ? Effect.succeed(generation)
    : Effect.fail(
      new PidLock.CorruptLock({
        path: location,
        reason: "UnreadableRecord",
        detail: `generation ${show(text)} is not a whole number below 2^53`
      })
    )
}

const lockOnce = (
  connection: SqlConnection.Connection,
  resolved: Resolved,
  statement: string,
  ownerText: string
): Effect.Effect<Attempt, SqlError | PidLock.CorruptLock> =>
  Effect.gen(function*() {
    for (;;) {
      const [row] = yield* runRegistered(connection, statement, [resolved.name, ownerText])
      if (row === undefined) {
        yield* run(connection, REGISTER, [resolved.name])
        continue
      }
      if (row.taken !== true) return { _tag: "Held" } as const
      // The lock is this session's by now: a failure gives it back, or the
      // connection would go back to the pool holding it.
      return {
        _tag: "Taken",
        generation: yield* parseGeneration(row.generation, resolved.location).pipe(
          Effect.tapError(() => unlockAll(connection))
        ),
        key: String(row.key),
        backendPid: Number(row.backend_pid)
      } as const
    }
  })

// How long a lock may be seen held by a session whose stamp is not visible
// yet (the stamp commits a moment after the lock is taken) before the holder
// counts as one that did not use this package: pauses from 5 ms doubling up
// to 200 ms, about 3 s in all, so that a holder stalled by a busy machine
// between its lock and its commit is still seen as the holder it is.
const UNSTAMPED_ROUNDS = 20
const unstampedPause = (round: number) => Duration.millis(Math.min(5 * 2 ** round, 200))

interface Holder {
  readonly record: PidLock.OwnerRecord
  readonly backendPid: number
}

// The holder that the registry names and pg_locks confirms; `None` when the
// lock is free.
const readHolder = (
  connection: SqlConnection.Connection,
  resolved: Resolved
): Effect.Effect<Option.Option<Holder>, SqlError | PidLock.CorruptLock> =>
  Effect.gen(function*() {
    for (let round = 0;; round++) {
      const [row] = yield* run(connection, HOLDER, [resolved.name]).pipe(
        Effect.catchIf(isUndefinedTable, () => Effect.succeed([]))
      )
      if (row === undefined || row.holder_pid === null) return Option.none()
      if (row.holder_pid === row.backend_pid && typeof row.owner === "string") {
        const record = decodeRecord(row.owner)
        if (Either.isLeft(record)) {
          return yield* new PidLock.CorruptLock({
            path: resolved.location,
            reason: "UnreadableRecord",
            detail: `owner record is unreadable: ${record.left}`
          })
        }
        return Option.some({ record: record.right, backendPid: Number(row.backend_pid) })
      }
      if (round === UNSTAMPED_ROUNDS) {
        return yield* new PidLock.CorruptLock({
          path: resolved.location,
          reason: "UnexpectedEntry",
          detail: `the advisory lock (${LOCK_CLASS}, key of ${show(resolved.name)}) is held by backend ${
            show(row.holder_pid)
          }, which left no owner record: a session that does not use this package`
        })
      }
      yield* Effect.sleep(unstampedPause(round))
    }
  })

const lockHeld = (resolved: Resolved, holder: Holder) =>
  new PidLock.LockHeld({
    location: resolved.location,
    holder: holder.record,
    verdict: ProcessInfo.Verdict.Alive(),
    heldByThisProcess: isSameProcess(holder.record, resolved.info.self)
  })

// One try: taken, or `LockHeld` with the holder; a holder that left between
// the try and the look is tried again.
const tryOnce = (connection: SqlConnection.Connection, resolved: Resolved, ownerText: string) =>
  Effect.gen(function*() {
    for (;;) {
      const attempt = yield* lockOnce(connection, resolved, TRY_LOCK, ownerText)
      if (attempt._tag === "Taken") return attempt
      const holder = yield* readHolder(connection, resolved)
      if (Option.isSome(holder)) return yield* lockHeld(resolved, holder.value)
    }
  })

// Waits in the server, which wakes the call the moment the holder's lock is
// released or its session ends, for at most `wait` (the session's
// lock_timeout, put back afterwards, also when the setting itself was
// interrupted). An interruption is handled by `attemptOnce`.
const waitOnce = (
  connection: SqlConnection.Connection,
  resolved: Resolved,
  ownerText: string,
  wait: Duration.Duration
) =>
  Effect.gen(function*() {
    const deadline = (yield* Clock.currentTimeMillis) + Duration.toMillis(wait)
    for (;;) {
      const remaining = Math.max(1, Math.ceil(deadline - (yield* Clock.currentTimeMillis)))
      const attempt = yield* run(connection, "SELECT set_config('lock_timeout', $1, false)", [`${remaining}ms`]).pipe(
        Effect.zipRight(lockOnce(connection, resolved, WAIT_LOCK, ownerText)),
        Effect.map(Option.some),
        Effect.catchIf((error) => error._tag === "SqlError" && isLockTimeout(error), () => Effect.succeedNone),
        Effect.ensuring(Effect.ignore(run(connection, "RESET lock_timeout")))
      )
      if (Option.isSome(attempt) && attempt.value._tag === "Taken") return attempt.value
      const holder = yield* readHolder(connection, resolved)
      if (Option.isSome(holder)) return yield* lockHeld(resolved, holder.value)
    }
  })

// -----------------------------------------------------------------------------
// The held lock
// -----------------------------------------------------------------------------

const DEFAULT_ANSWER_TIMEOUT = Duration.seconds(5)

const describeFailure = (error: SqlError) =>
  error.cause instanceof Error ? `${error.message}: ${error.cause.message}` : error.message

// The session can no longer be trusted (a failed unlock): it is ended from
// another connection, so that it does not go back to the pool holding the
// lock. True when it was still there, false when it had ended already.
const endSession = (sql: PgClient.PgClient, backendPid: number, timeout: Duration.Duration) =>
  sql.unsafe<{ readonly ended: boolean }>("SELECT pg_terminate_backend($1, 1000) AS ended", [backendPid]).pipe(
    answeredWithin(timeout, "ending a session"),
    Effect.map(([row]) => row?.ended === true)
  )

// A statement that gets no answer (a network partition) fails after
// `timeout` instead of hanging. Neither the timeout nor an interruption (the
// watchdog's, stopped by the release) cancels it, only the waiting for it:
// @effect/sql-pg would send the cancel later, from a new connection of the
// pool, and by then it could end the statement that runs after this one on
// the session (the next acquisition's wait, once the session is back in the
// pool). The statement finishes on its session, and the next one queues
// behind it in the driver.
const answeredWithin =
  (timeout: Duration.Duration, what: string) =>
  <A>(statement: Effect.Effect<A, SqlError>): Effect.Effect<A, SqlError> =>
    statement.pipe(
      Effect.uninterruptible,
      Effect.disconnect,
      Effect.timeoutFail({
        duration: timeout,
        onTimeout: () =>
          new SqlErrorClass({ message: `${what}: no answer from the server within ${Duration.format(timeout)}` })
      })
    )

const makeLock = (
  connection: SqlConnection.Connection,
  resolved: Resolved,
  owner: PidLock.OwnerRecord,
  { backendPid, generation, key }: Taken,
  loss: Loss,
  giveBack: Effect.Effect<void>
): Held<PidLock.PidLock<SqlError>> => {
  const compromised = (detail: string) => new PidLock.LockCompromised({ location: resolved.location, owner, detail })
  // How long the server may take to answer the lock's own questions.
  const timeout = resolved.checkInterval === false ? DEFAULT_ANSWER_TIMEOUT : resolved.checkInterval
  const unlock = run(connection, UNLOCK, [resolved.name]).pipe(
    answeredWithin(timeout, "releasing the lock"),
    Effect.flatMap(([row]) =>
      row?.released === true ? Effect.void : Effect.fail(compromised("its session no longer held it"))
    ),
    Effect.catchTag("SqlError", (error) =>
      endSession(resolved.sql, backendPid, timeout).pipe(
        Effect.flatMap((ended) =>
          ended
            ? Effect.void
            : Effect.fail(compromised(`its session had ended: ${describeFailure(error)}`))
        )
      ))
  )
  const releaser = makeReleaser(unlock)
  const { isHeld } = releaser
  // Once released, the session goes back to the pool at once rather than
  // when the scope ends.
  const release = releaser.release.pipe(
    Effect.onExit(() => isHeld() ? Effect.void : giveBack),
    Effect.uninterruptible
  )
  // Any failure of the check is a loss: the lock is only known to be ours
  // while the session that holds it answers.
  const verify = Effect.suspend(() =>
    !isHeld() ? Effect.void : run(connection, STILL_HELD, [key]).pipe(
      answeredWithin(timeout, "checking the lock"),
      Effect.flatMap(([row]) =>
        row?.held === true ? Effect.void : Effect.fail(compromised("its session no longer holds it"))
      ),
      Effect.catchTag("SqlError", (error) => Effect.fail(compromised(`its session failed: ${describeFailure(error)}`))),
      Effect.catchAll((error) => isHeld() ? Effect.fail(error) : Effect.void)
    )
  )
  const lock: PidLock.PidLock<SqlError> = {
    [PidLock.TypeId]: PidLock.TypeId,
    name: resolved.name,
    location: resolved.location,
    generation,
    owner,
    release,
    verify: loss.tell(verify),
    lost: loss.lost
  }
  return { lock, verify }
}

// -----------------------------------------------------------------------------
// Entry points
// -----------------------------------------------------------------------------

// Runs in the acquisition, which is uninterruptible so that a lock taken is
// always registered for release; `interruptibly` gives the attempt back the
// caller's interruptibility, so that an interrupted wait stops at once. An
// interruption while a statement is in flight has @effect/sql-pg cancel it
// (pg_cancel_backend from another connection of the pool), the only way to
// stop a blocked pg_advisory_lock; unlike the watchdog's, this cancel is
// awaited (for up to 5 s, longer than any answer of a pool with a free
// connection) before the session runs anything else or goes back to the pool.
// A lock granted just before the cancel, or taken before the interruption was
// seen, is given back.
const attemptOnce = (
  connection: SqlConnection.Connection,
  resolved: Resolved,
  ownerText: string,
  interruptibly: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
) => {
  const { wait } = resolved
  const attempt = wait === undefined
    ? tryOnce(connection, resolved, ownerText)
    : Schedule.isSchedule(wait)
    ? Effect.retry(tryOnce(connection, resolved, ownerText), {
      schedule: wait as unknown as Schedule.Schedule<unknown, PidLock.LockHeld | PidLock.CorruptLock | SqlError>,
      while: (error) => error._tag === "LockHeld"
    })
    : waitOnce(connection, resolved, ownerText, wait)
  return interruptibly(attempt).pipe(Effect.onInterrupt(() => unlockAll(connection)))
}

/** @internal */
export const acquire = Effect.fn("PgLock.acquire")(function*(options: PgLock.Options) {
  const resolved = yield* resolve(options)
  const owner: PidLock.OwnerRecord = {
    v: 1,
    ...resolved.info.self,
    acquiredAt: new Date(yield* Clock.currentTimeMillis).toISOString(),
    token: newToken()
  }
  const ownerText = encodeRecord(owner)
  const loss = makeLoss()
  // A scope of the lock's own inside the caller's, closed at once when the
  // acquisition fails: a refused attempt gives its connection back now, not
  // when the caller's scope ends.
  const lockScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
  return yield* Effect.gen(function*() {
    // A session of its own for the life of the lock: the lock is the
    // session's, and the connection goes back to the pool only after it was
    // given back (the reservation's finalizer runs after the release's).
    const connection = yield* resolved.sql.reserve
    const { lock, verify } = yield* Effect.uninterruptibleMask((interruptibly) =>
      Effect.acquireRelease(
        Effect.map(
          attemptOnce(connection, resolved, ownerText, interruptibly),
          (taken) => makeLock(connection, resolved, owner, taken, loss, Scope.close(lockScope, Exit.void))
        ),
        ({ lock }) => releaseInFinalizer(loss)(lock)
      )
    )
    // Forked after the release was registered, so it is stopped before the release runs.
    if (resolved.checkInterval !== false) {
      yield* Effect.forkScoped(
        watchdog(lock.location, verify, loss.deferred, resolved.checkInterval, (check) => check(Effect.never))
      )
    }
    return lock
  }).pipe(
    Scope.extend(lockScope),
    Effect.onExit((exit) => Exit.isFailure(exit) ? Scope.close(lockScope, exit) : Effect.void)
  )
})

/** @internal */
export const layer = (options: PgLock.Options) => Layer.scoped(tag, acquire(options))

/** @internal */
export const layerConfig = (config: Config.Config.Wrap<PgLock.Options>) =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))

type Requirements = PgClient.PgClient | ProcessInfo.ProcessInfo

/** @internal */
export const withLock = dual<
  (options: PgLock.Options) => <A, E, R>(
    self: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | PgLock.PgLockError | SqlError, Exclude<R, Scope.Scope> | Requirements>,
  <A, E, R>(
    self: Effect.Effect<A, E, R>,
    options: PgLock.Options
  ) => Effect.Effect<A, E | PgLock.PgLockError | SqlError, Exclude<R, Scope.Scope> | Requirements>
>(2, (self, options) => withLockOf(acquire(options), self))

/** @internal */
export const inspect = Effect.fn("PgLock.inspect")(function*(options: { readonly name: string }) {
  const resolved = yield* resolve({ name: options?.name })
  const holder = yield* Effect.scoped(
    Effect.flatMap(resolved.sql.reserve, (connection) => readHolder(connection, resolved))
  )
  return Option.map(holder, (holder): PidLock.Status => ({
    location: resolved.location,
    holder: holder.record,
    verdict: ProcessInfo.Verdict.Alive(),
    heldByThisProcess: isSameProcess(holder.record, resolved.info.self)
  }))
})

/** @internal */
export const breakLock = Effect.fn("PgLock.breakLock")(function*(status: PidLock.Status) {
  const resolved = yield* resolve({ name: nameOf(status.location) })
  const holder = yield* Effect.scoped(
    Effect.flatMap(resolved.sql.reserve, (connection) => readHolder(connection, resolved))
  )
  // Only the very holder that `inspect` found: its token tells its life apart
  // from a holder that moved in since.
  if (Option.isNone(holder) || holder.value.record.token !== status.holder.token) return false
  return yield* endSession(resolved.sql, holder.value.backendPid, DEFAULT_ANSWER_TIMEOUT)
})
