// What only the PostgreSQL lock has: the registry, sessions and the pool,
// owner rows checked against pg_locks, waiting in the server.
import * as PgClient from "@effect/sql-pg/PgClient"
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import * as PgLock from "../src/PgLock.js"
import * as ProcessInfo from "../src/ProcessInfo.js"
import { recordOf } from "./support/environment.js"
import { nodeLayer } from "./support/nodeEnvironment.js"
import { freshDatabase } from "./support/postgres.js"

const NAME = "app"
const LOCK_CLASS = 0x7069646c

// A database of its own, a client pool on it (of `maxConnections`), and this process.
const database = (maxConnections = 10) =>
  Effect.gen(function*() {
    const url = yield* freshDatabase
    const context = yield* Layer.build(
      Layer.merge(PgClient.layer({ url: Redacted.make(url), maxConnections }), nodeLayer)
    ).pipe(Effect.orDie)
    return { url, context, sql: Context.get(context, PgClient.PgClient) }
  })

// Advisory locks of this package granted to any session of the database.
const advisoryLocks = (sql: PgClient.PgClient) =>
  sql<{ readonly pid: number; readonly objid: string }>`SELECT pid, objid::text FROM pg_locks
    WHERE locktype = 'advisory' AND classid = ${LOCK_CLASS}::oid AND granted`

describe("PgLock", () => {
  it.scopedLive("the registry is made on first use by many at once: one holds, the rest are LockHeld, none fails", () =>
    Effect.gen(function*() {
      const { context, sql } = yield* database(20)
      const outcomes = yield* Effect.all(
        Array.from({ length: 20 }, () =>
          // The winner keeps the lock until the test ends.
          PgLock.acquire({ name: NAME }).pipe(
            Effect.as("held"),
            Effect.catchTag("LockHeld", () => Effect.succeed("refused"))
          )),
        { concurrency: "unbounded" }
      ).pipe(Effect.provide(context))
      assert.strictEqual(outcomes.filter((outcome) => outcome === "held").length, 1)
      assert.strictEqual(outcomes.filter((outcome) => outcome === "refused").length, 19)
      const [row] = yield* sql<{ readonly names: string }>`SELECT count(*)::text AS names FROM effect_pidlock`
      assert.strictEqual(row?.names, "1")
    }))

  it.scopedLive("PgLock.schema is the registry a team can apply itself; the lock then uses it as it is", () =>
    Effect.gen(function*() {
      const { context, sql } = yield* database()
      yield* sql.unsafe(PgLock.schema)
      const lock = yield* Effect.provide(PgLock.acquire({ name: NAME }), context)
      assert.strictEqual(lock.generation, 1)
      assert.match(lock.location, /^postgresql:\/\/127\.0\.0\.1:\d+\/test_\w+#app$/)
      assert.notInclude(lock.location, "@", "no credentials in the location")
    }))

  it.scopedLive("the connection goes back to the pool with no lock held and its lock_timeout as it was", () =>
    Effect.gen(function*() {
      const { context, sql } = yield* database(1)
      yield* Effect.scoped(Effect.provide(PgLock.acquire({ name: NAME, wait: "5 seconds" }), context))
      yield* Effect.scoped(Effect.provide(PgLock.acquire({ name: NAME }), context))
      // A release gives the session back at once, while the scope is still open.
      const released = yield* Effect.provide(PgLock.acquire({ name: NAME }), context)
      yield* released.release
      // One connection in the pool: these run on the very session the locks used.
      assert.deepStrictEqual(yield* advisoryLocks(sql), [])
      const [setting] = yield* sql<{ readonly lock_timeout: string }>`SHOW lock_timeout`
      assert.strictEqual(setting?.lock_timeout, "0")
    }))

  it.scopedLive("a refused acquire gives its connection back at once, not when the caller's scope ends", () =>
    Effect.gen(function*() {
      const { context, sql } = yield* database(2)
      yield* Effect.provide(PgLock.acquire({ name: NAME }), context)
      // All in this one scope: with two connections, the second refusal would wait forever for a connection kept by the first.
      for (let attempt = 0; attempt < 10; attempt++) {
        const refused = yield* Effect.flip(Effect.provide(PgLock.acquire({ name: NAME }), context))
        assert.strictEqual(refused._tag, "LockHeld")
      }
      assert.strictEqual((yield* advisoryLocks(sql)).length, 1)
    }))

  it.scopedLive("an interrupted wait leaves no lock behind, even one granted as it was cancelled", () =>
    Effect.gen(function*() {
      const { context, sql } = yield* database()
      for (let round = 0; round < 5; round++) {
        const holder = yield* Effect.provide(PgLock.acquire({ name: NAME }), context)
        const waiter = yield* Effect.fork(
          Effect.scoped(Effect.provide(PgLock.acquire({ name: NAME, wait: "20 seconds" }), context))
        )
        yield* Effect.sleep("50 millis")
        // The release and the interruption race: whichever wins, nothing may stay locked.
        yield* Effect.all([holder.release, Fiber.interrupt(waiter)], { concurrency: "unbounded" })
        yield* Effect.sleep("50 millis")
        assert.deepStrictEqual(yield* advisoryLocks(sql), [], `round ${round}`)
      }
      const lock = yield* Effect.provide(PgLock.acquire({ name: NAME }), context)
      assert.isAtLeast(lock.generation, 6)
    }))

  it.scopedLive("a row left by a dead session is never believed", () =>
    Effect.gen(function*() {
      const { context, sql } = yield* database()
      yield* Effect.scoped(Effect.provide(PgLock.acquire({ name: NAME }), context))
      const self = yield* Effect.provide(Effect.map(ProcessInfo.ProcessInfo, (info) => info.self), context)
      const dead = recordOf({ ...self, pid: 999_999 })
      yield* sql`UPDATE effect_pidlock SET backend_pid = 999999, owner = ${
        JSON.stringify(dead)
      }::jsonb WHERE name = ${NAME}`
      assert.isTrue(Option.isNone(yield* Effect.provide(PgLock.inspect({ name: NAME }), context)))
      const lock = yield* Effect.provide(PgLock.acquire({ name: NAME }), context)
      assert.strictEqual(lock.generation, 2)
    }))

  it.scopedLive("a session that holds the lock without an owner record, or with a bad one, is CorruptLock and left as it is", () =>
    Effect.gen(function*() {
      const { context, sql } = yield* database()
      yield* Effect.scoped(Effect.provide(PgLock.acquire({ name: NAME }), context))
      const stranger = yield* sql.reserve
      yield* stranger.execute(
        `SELECT pg_advisory_lock(${LOCK_CLASS}, key) FROM effect_pidlock WHERE name = $1`,
        [NAME],
        undefined
      )
      const unstamped = yield* Effect.flip(Effect.scoped(Effect.provide(PgLock.acquire({ name: NAME }), context)))
      assert.deepStrictEqual([unstamped._tag, unstamped._tag === "CorruptLock" ? unstamped.reason : ""], [
        "CorruptLock",
        "UnexpectedEntry"
      ])
      assert.include(unstamped.message, "left no owner record")
      // The next step is the database's, and the url is never shown.
      assert.include(unstamped.message, `look at its row (SELECT * FROM effect_pidlock WHERE name = '${NAME}')`)

      yield* stranger.execute(
        `UPDATE effect_pidlock SET backend_pid = pg_backend_pid(), owner = '{"v":2}'::jsonb WHERE name = $1`,
        [NAME],
        undefined
      )
      const unreadable = yield* Effect.flip(Effect.provide(PgLock.inspect({ name: NAME }), context))
      assert.deepStrictEqual([unreadable._tag, unreadable._tag === "CorruptLock" ? unreadable.reason : ""], [
        "CorruptLock",
        "UnreadableRecord"
      ])
      if (unreadable._tag === "CorruptLock") {
        assert.strictEqual(
          unreadable.detail,
          "owner record is unreadable: field v is 2, not 1, the only version there is"
        )
      }
      const [row] = yield* sql<{ readonly owner: string }>`SELECT owner::text FROM effect_pidlock WHERE name = ${NAME}`
      assert.strictEqual(row?.owner, `{"v": 2}`, "left as it was")
      assert.strictEqual((yield* advisoryLocks(sql)).length, 1)
    }))

  it.scopedLive("a generation past 2^53 is CorruptLock, and the lock just taken is given back", () =>
    Effect.gen(function*() {
      const { context, sql } = yield* database(1)
      yield* Effect.scoped(Effect.provide(PgLock.acquire({ name: NAME }), context))
      yield* sql`UPDATE effect_pidlock SET generation = 9007199254740992 WHERE name = ${NAME}`
      const error = yield* Effect.flip(Effect.scoped(Effect.provide(PgLock.acquire({ name: NAME }), context)))
      assert.deepStrictEqual([error._tag, error._tag === "CorruptLock" ? error.reason : ""], [
        "CorruptLock",
        "UnreadableRecord"
      ])
      // One connection in the pool: the session that took the lock holds nothing now.
      assert.deepStrictEqual(yield* advisoryLocks(sql), [])
    }))

  it.scopedLive("breakLock ends the found holder's session, whose lost fires; a holder found earlier is not broken", () =>
    Effect.gen(function*() {
      const { context } = yield* database()
      const lock = yield* Effect.provide(PgLock.acquire({ name: NAME, checkInterval: "100 millis" }), context)
      const status = Option.getOrThrow(yield* Effect.provide(PgLock.inspect({ name: NAME }), context))
      assert.isTrue(yield* Effect.provide(PgLock.breakLock(status), context))
      assert.strictEqual((yield* Effect.flip(lock.lost))._tag, "LockCompromised")
      const next = yield* Effect.provide(PgLock.acquire({ name: NAME }), context)
      assert.isFalse(yield* Effect.provide(PgLock.breakLock(status), context), "the earlier holder is gone")
      yield* next.verify
    }))

  it.scopedLive("withLock over a session that is ended: the work stops, and the loss is its failure alone, not a warning too", () =>
    Effect.gen(function*() {
      const { context } = yield* database()
      const logs: Array<string> = []
      const guarded = yield* Effect.fork(
        PgLock.withLock(Effect.never, { name: NAME, checkInterval: "100 millis" }).pipe(
          Effect.provide(context),
          Effect.provide(
            Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => void logs.push(String(message))))
          )
        )
      )
      const status = yield* Effect.provide(PgLock.inspect({ name: NAME }), context).pipe(
        Effect.flatten,
        Effect.retry({ schedule: Schedule.spaced("10 millis"), times: 500 })
      )
      assert.isTrue(yield* Effect.provide(PgLock.breakLock(status), context))
      const error = yield* Effect.flip(Fiber.join(guarded))
      assert.strictEqual(error._tag, "LockCompromised")
      if (error._tag === "LockCompromised") {
        assert.isTrue(error.workStopped)
        assert.include(error.message, "The work under the lock was stopped")
      }
      assert.deepStrictEqual(logs.filter((line) => line.includes("was lost")), [])
    }))

  it.scopedLive("a server that cannot be reached is SqlError, not a defect", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(
        Layer.merge(
          PgClient.layer({ url: Redacted.make("postgres://nobody@127.0.0.1:1/none"), connectTimeout: "2 seconds" }),
          nodeLayer
        )
      ).pipe(Effect.either)
      // The pool may refuse at once (its first connection) or at the first query.
      if (context._tag === "Left") return assert.strictEqual(context.left._tag, "SqlError")
      const error = yield* Effect.flip(Effect.scoped(Effect.provide(PgLock.acquire({ name: NAME }), context.right)))
      assert.strictEqual(error._tag, "SqlError")
    }))

  it("importing the file lock's modules loads neither pg nor @effect/sql", () => {
    const dist = Path.resolve(import.meta.dirname, "../dist")
    const refuse = `export async function resolve(specifier, context, next) {
      if (/^(pg|pg-[a-z-]+|@effect\\/sql(-pg)?)(\\/|$)/.test(specifier)) throw new Error("loaded " + specifier)
      return next(specifier, context)
    }`
    const script = `import { register } from "node:module"
      register("data:text/javascript," + encodeURIComponent(${JSON.stringify(refuse)}))
      for (const module of ["index", "PidLock", "ProcessInfo", "Posix", "promise", "testing/index"]) await import(${
      JSON.stringify(dist)
    } + "/" + module + ".js")
      const refused = await import(${
      JSON.stringify(dist)
    } + "/PgLock.js").then(() => "loaded", (error) => error.message)
      process.stdout.write(refused)`
    const output = ChildProcess.execFileSync(process.execPath, ["--input-type=module", "-e", script], {
      encoding: "utf8"
    })
    // The hook works: the PostgreSQL module is refused, as its imports reach pg.
    assert.match(output, /^loaded @effect\/sql/)
  })
})
