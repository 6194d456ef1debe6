// The PostgreSQL server of the test run (test/support/postgresSetup.ts): it
// answers queries, gives each caller a database of its own, and runs as an
// unprivileged user.
import * as PgClient from "@effect/sql-pg/PgClient"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import { freshDatabase, layerPgClient } from "./support/postgres.js"

const NOBODY = 65534
const isRoot = process.getuid?.() === 0

/** The fields of `/proc/<pid>/status`, by name. */
const procStatus = (pid: number): Record<string, string> =>
  Object.fromEntries(
    Fs.readFileSync(`/proc/${pid}/status`, "utf8")
      .split("\n")
      .filter((line) => line.includes(":"))
      .map((line) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 1).trim()])
  )

/** Runs `body` with a `PgClient` on a new database. */
const onFreshDatabase = <A, E>(body: Effect.Effect<A, E, PgClient.PgClient>) =>
  Effect.flatMap(freshDatabase, (url) => Effect.provide(body, layerPgClient(url)))

describe("postgres server", () => {
  it.live("answers queries on a fresh database, as the superuser postgres", () =>
    onFreshDatabase(Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      const one = yield* sql<{ one: number }>`SELECT 1 AS one`
      assert.deepStrictEqual(one, [{ one: 1 }])
      const [session] = yield* sql<{ user: string; database: string }>`
        SELECT current_user AS user, current_database() AS database`
      assert.strictEqual(session?.user, "postgres")
      assert.match(session?.database ?? "", /^test_\d+_[0-9a-f]{12}$/)
    })))

  it.live("gives each caller a database of its own", () =>
    Effect.gen(function*() {
      const tables = (sql: PgClient.PgClient) =>
        sql<{ count: number }>`SELECT count(*)::int AS count FROM pg_tables WHERE tablename = 'mine'`
      yield* onFreshDatabase(Effect.gen(function*() {
        const sql = yield* PgClient.PgClient
        yield* sql`CREATE TABLE mine (id int)`
        assert.deepStrictEqual(yield* tables(sql), [{ count: 1 }])
      }))
      yield* onFreshDatabase(Effect.gen(function*() {
        const sql = yield* PgClient.PgClient
        assert.deepStrictEqual(yield* tables(sql), [{ count: 0 }])
      }))
    }))

  it.live(`runs the postmaster as ${isRoot ? `uid ${NOBODY} (the tests run as root)` : "the user of the tests"}`, () =>
    onFreshDatabase(Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      const [backend] = yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`
      // Each connection is served by a process the postmaster forks.
      const postmasterPid = Number(procStatus(backend!.pid).PPid)
      const postmaster = procStatus(postmasterPid)
      assert.strictEqual(postmaster.Name, "postgres")
      const uid = isRoot ? NOBODY : process.getuid!()
      const gid = isRoot ? NOBODY : process.getgid!()
      // Real, effective, saved and file-system ids.
      assert.deepStrictEqual(postmaster.Uid?.split(/\s+/).map(Number), [uid, uid, uid, uid])
      assert.deepStrictEqual(postmaster.Gid?.split(/\s+/).map(Number), [gid, gid, gid, gid])
      if (isRoot) assert.strictEqual(postmaster.Groups, "", "none of root's supplementary groups")
    })))
})
