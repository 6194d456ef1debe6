// PgLock's statements and interruption: what an interrupted statement leaves
// on the lock's session once it is back in the pool.
import * as PgClient from "@effect/sql-pg/PgClient"
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as PgLock from "../src/PgLock.js"
import { nodeLayer } from "./support/nodeEnvironment.js"
import { freshDatabase } from "./support/postgres.js"

const LOCK_CLASS = 0x7069646c
const ROUNDS = 60

const pool = (url: string, config: Partial<PgClient.PgClientConfig> = {}) =>
  Layer.build(Layer.merge(PgClient.layer({ url: Redacted.make(url), ...config }), nodeLayer)).pipe(Effect.orDie)

// The backend pids that hold an advisory lock of this package.
const lockHolders = (sql: PgClient.PgClient) =>
  Effect.map(
    sql<{ readonly pid: number }>`SELECT pid FROM pg_locks
      WHERE locktype = 'advisory' AND classid = ${LOCK_CLASS}::oid AND granted ORDER BY pid`,
    (rows) => rows.map((row) => row.pid)
  )

describe("PgLock and interruption", () => {
  it.scopedLive(
    "a lock released while its watchdog's first check is in flight leaves no cancel for the next wait on its session",
    () =>
      Effect.gen(function*() {
        const url = yield* freshDatabase
        // Idle connections close after 10 ms and each round outlasts that, so
        // the pool has no spare connection when a round begins: a cancel would
        // have to open one (tens of ms) and would arrive while the lock's
        // session, back in the pool, runs the next wait.
        const shared = yield* pool(url, { idleTimeout: "10 millis" })
        // The holder that the wait queues behind: a session of another pool.
        const other = yield* pool(url)
        const failures: Array<string> = []
        for (let round = 0; round < ROUNDS; round++) {
          const holder = yield* Effect.provide(PgLock.acquire({ name: "busy", wait: "10 seconds" }), other)
          // Taken with the default checkInterval and released by its scope,
          // which stops the watchdog first; the yield lets the watchdog send
          // its first check before that.
          yield* Effect.scoped(
            Effect.zipRight(Effect.provide(PgLock.acquire({ name: "brief" }), shared), Effect.yieldNow())
          )
          yield* Effect.fork(Effect.zipRight(Effect.sleep("60 millis"), holder.release))
          const waited = yield* Effect.either(
            Effect.scoped(Effect.provide(PgLock.acquire({ name: "busy", wait: "10 seconds" }), shared))
          )
          if (waited._tag === "Left") {
            const cause = waited.left._tag === "SqlError" && waited.left.cause instanceof Error
              ? `: ${waited.left.cause.message}`
              : ""
            failures.push(`round ${round}: ${waited.left._tag}${cause}`)
          }
          yield* Effect.sleep("30 millis")
        }
        assert.strictEqual(
          failures.length,
          0,
          `${failures.length} of ${ROUNDS} waits failed: ${failures.slice(0, 3).join("; ")}`
        )
      }),
    120_000
  )

  for (
    const [what, wait] of [["in the server", "20 seconds"], ["by a schedule", Schedule.spaced("50 millis")]] as const
  ) {
    it.scopedLive(
      `an acquire waiting ${what} stops at once when interrupted, holds nothing, and its session can wait again`,
      () =>
        Effect.gen(function*() {
          const url = yield* freshDatabase
          // Three connections: the holder's, the waiter's, and one for the
          // cancel of the interrupted wait, which @effect/sql-pg sends from
          // another connection of the pool.
          const context = yield* pool(url, { maxConnections: 3 })
          const sql = Context.get(context, PgClient.PgClient)
          const holder = yield* Effect.provide(PgLock.acquire({ name: "busy" }), context)
          const held = yield* lockHolders(sql)
          for (let round = 0; round < 3; round++) {
            const waiter = yield* Effect.fork(
              Effect.scoped(Effect.provide(PgLock.acquire({ name: "busy", wait }), context))
            )
            yield* Effect.sleep("100 millis")
            const startedAt = Date.now()
            yield* Fiber.interrupt(waiter)
            assert.isBelow(Date.now() - startedAt, 2_000, `round ${round}: the interruption waited for the lock`)
            assert.deepStrictEqual(yield* lockHolders(sql), held, `round ${round}`)
            // Both free connections, the waiter's among them: its lock_timeout was put back.
            const settings = yield* Effect.scoped(
              Effect.flatMap(
                Effect.all([sql.reserve, sql.reserve]),
                Effect.forEach((connection) => connection.execute("SHOW lock_timeout", [], undefined))
              )
            )
            assert.deepStrictEqual(settings.flat(), [{ lock_timeout: "0" }, { lock_timeout: "0" }], `round ${round}`)
          }
          // A cancel of the interrupted wait that came late would end this one.
          yield* Effect.fork(Effect.zipRight(Effect.sleep("60 millis"), holder.release))
          const next = yield* Effect.provide(PgLock.acquire({ name: "busy", wait: "10 seconds" }), context)
          assert.isAbove(next.generation, holder.generation)
        }),
      60_000
    )
  }
})
