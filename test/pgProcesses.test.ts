// Real processes against the run's real PostgreSQL server: every holder runs
// test/fixtures/pgHolder.mjs, which loads the built package (dist/). `npm test`
// builds first; after changing src/, run `npm run build`.
//
// The figures (how long a takeover or a loss took) go to stderr; only bounds
// that catch a stuck lock are asserted, besides the one the lock promises:
// a holder notices the end of its session within `checkInterval`.
import * as PgClient from "@effect/sql-pg/PgClient"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"
import { formatPgReport, runPgStress } from "./stress/pgStress.js"
import {
  type Child,
  describeChild,
  lineOf,
  spawnNode,
  waitForExit,
  waitForLine,
  waitUntil
} from "./support/children.js"
import { freshDatabase, layerPgClient } from "./support/postgres.js"

const PG_HOLDER = fileURLToPath(new URL("./fixtures/pgHolder.mjs", import.meta.url))
const TCP_PROXY = fileURLToPath(new URL("./fixtures/tcpProxy.mjs", import.meta.url))
const NAME = "app"
const CHECK_INTERVAL_MS = 500
/** Catches a stuck lock, not a slow one: the machine may be busy. */
const STUCK_MS = 10_000

// Server-side TCP keepalive for the frozen-path tests, set per session by
// the client: the first probe after 1 s idle, then one a second, the
// connection dropped after 2 unanswered (3 s in all); and sent data
// unacknowledged for 2 s drops it too.
const KEEPALIVE_OPTIONS = "-c tcp_keepalives_idle=1 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=2 " +
  "-c tcp_user_timeout=2000"
const KEEPALIVE_DEADLINE_MS = 3_000

// -----------------------------------------------------------------------------
// Helpers
// -----------------------------------------------------------------------------

const spawnHolder = (url: string, ...options: ReadonlyArray<string>) =>
  spawnNode(PG_HOLDER, ["--url", url, "--name", NAME, ...options])

/** Waits for the first line of the child that is one of `words`. */
const waitForOneOf = (child: Child, words: ReadonlyArray<string>, seconds = 20) =>
  waitUntil(
    `${words.join(" or ")} from ${child.pid}`,
    Effect.try({
      try: () => {
        const line = child.lines.find((line) => words.some((word) => line.startsWith(`${word} `)))
        if (line === undefined && child.status() !== undefined) {
          throw new Error(`no ${words.join(" or ")} from ${describeChild(child)}`)
        }
        if (line === undefined) return undefined
        const space = line.indexOf(" ")
        return { word: line.slice(0, space), data: JSON.parse(line.slice(space + 1)) as Record<string, unknown> }
      },
      catch: (error) => error as Error
    }),
    seconds
  )

/** Runs `body` with a new database's url and a `PgClient` on it. */
const onFreshDatabase = <A, E, R>(body: (url: string) => Effect.Effect<A, E, R>) =>
  Effect.flatMap(freshDatabase, (url) => Effect.provide(body(url), layerPgClient(url)))

/** Waits until a session waits in the server for an advisory lock: a waiter is queued. */
const awaitQueuedWaiter = waitUntil(
  "a waiter queued in the server",
  Effect.flatMap(PgClient.PgClient, (sql) =>
    sql<{ readonly waiting: number }>`
      SELECT count(*)::int AS waiting FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).pipe(
      Effect.map(([row]) => row !== undefined && row.waiting > 0 ? true : undefined)
    )
)

const figure = (text: string) => Effect.sync(() => process.stderr.write(`pgProcesses: ${text}\n`))

/** The url of the same database through `port` on 127.0.0.1, with `options` for the server. */
const throughPort = (url: string, port: number, options: string) => {
  const proxied = new URL(url)
  proxied.port = String(port)
  proxied.search = `?options=${encodeURIComponent(options)}`
  return proxied.href
}

/** A TCP proxy to the server of `url`, in a process of its own; its port. */
const startProxy = (url: string) =>
  Effect.gen(function*() {
    const proxy = yield* spawnNode(TCP_PROXY, ["--target-port", new URL(url).port])
    const { port } = yield* waitForLine(proxy, "listening")
    return { proxy, port: port as number }
  })

/** No tick after the `interrupted` line: the work stopped when the lock was lost. */
const assertWorkStopped = (holder: Child) => {
  const interrupted = holder.lines.findIndex((line) => line.startsWith("interrupted "))
  assert.isAtLeast(interrupted, 0, describeChild(holder))
  const ticksAfter = holder.lines.slice(interrupted).filter((line) => line.startsWith("tick "))
  assert.deepStrictEqual(ticksAfter, [], `ticks after the work was interrupted: ${describeChild(holder)}`)
}

// -----------------------------------------------------------------------------
// Tests
// -----------------------------------------------------------------------------

describe("PgLock: real processes", () => {
  it.scopedLive(
    "a SIGKILLed holder's lock goes at once to a process waiting in the server, with a greater generation",
    () =>
      onFreshDatabase((url) =>
        Effect.gen(function*() {
          const holder = yield* spawnHolder(url, "--check-interval", String(CHECK_INTERVAL_MS))
          const held = yield* waitForLine(holder, "ready")
          const waiter = yield* spawnHolder(url, "--wait", "60000")
          yield* awaitQueuedWaiter

          const killedAt = Date.now()
          holder.process.kill("SIGKILL")
          const taken = yield* waitForLine(waiter, "ready", STUCK_MS / 1000)
          yield* figure(`SIGKILL of the holder → the waiter holds: ${taken.at - killedAt} ms`)
          assert.isAbove(taken.generation as number, held.generation as number)
          assert.isBelow(taken.at - killedAt, STUCK_MS)
        })
      ),
    60_000
  )

  it.scopedLive(
    "a holder whose session is terminated loses the lock within checkInterval, its work stops, and the lock is free at once",
    () =>
      onFreshDatabase((url) =>
        Effect.gen(function*() {
          const sql = yield* PgClient.PgClient
          const holder = yield* spawnHolder(url, "--check-interval", String(CHECK_INTERVAL_MS))
          const held = yield* waitForLine(holder, "ready")
          yield* waitForLine(holder, "tick")

          const terminatedAt = Date.now()
          // Waits until the backend has exited.
          const [row] = yield* sql<{ readonly ended: boolean }>`SELECT pg_terminate_backend(${held
            .backendPid as number}, 5000) AS ended`
          assert.isTrue(row?.ended)
          const interrupted = yield* waitForLine(holder, "interrupted")
          yield* figure(`pg_terminate_backend of the holder's session → its lost: ${interrupted.at - terminatedAt} ms`)
          assert.isAtMost(interrupted.at - terminatedAt, CHECK_INTERVAL_MS + 1_000)

          const lost = yield* waitForLine(holder, "lost")
          assert.strictEqual(lost._tag, "LockCompromised")
          assert.deepStrictEqual(yield* waitForExit(holder), { code: 3, signal: null }, describeChild(holder))
          assertWorkStopped(holder)

          // Without `wait`: it fails fast if the lock is not free.
          const next = yield* spawnHolder(url)
          const taken = yield* waitForOneOf(next, ["ready", "error"])
          assert.strictEqual(taken.word, "ready", describeChild(next))
          assert.isAbove(taken.data.generation as number, held.generation as number)
        })
      ),
    60_000
  )

  describe("a holder whose path to the server freezes (its TCP proxy SIGSTOPped)", () => {
    // The frozen end's kernel still acknowledges whatever the server sends,
    // keepalive probes included: the server sees a healthy idle connection,
    // and keeps the session and its lock until the path is cut.
    it.scopedLive(
      "loses the lock; server-side keepalives do not end its session, cutting the path frees the lock at once",
      () =>
        onFreshDatabase((url) =>
          Effect.gen(function*() {
            const { port, proxy } = yield* startProxy(url)
            const holder = yield* spawnHolder(
              throughPort(url, port, KEEPALIVE_OPTIONS),
              "--check-interval",
              String(CHECK_INTERVAL_MS)
            )
            const held = yield* waitForLine(holder, "ready")
            const waiter = yield* spawnHolder(url, "--wait", "60000")
            yield* awaitQueuedWaiter

            const stoppedAt = Date.now()
            proxy.process.kill("SIGSTOP")
            const interrupted = yield* waitForLine(holder, "interrupted")
            yield* figure(`SIGSTOP of the holder's proxy → its lost: ${interrupted.at - stoppedAt} ms`)
            // Well past the keepalive's deadline, the server still keeps the session.
            yield* Effect.sleep(Math.max(0, stoppedAt + 2 * KEEPALIVE_DEADLINE_MS + 2_000 - Date.now()))
            assert.isUndefined(
              lineOf(waiter, "ready"),
              `the waiter got the lock while the path was frozen: ${describeChild(waiter)}`
            )
            yield* figure(
              `with ${KEEPALIVE_OPTIONS}: no one else held the lock ${Date.now() - stoppedAt} ms after the SIGSTOP`
            )

            const cutAt = Date.now()
            proxy.process.kill("SIGKILL")
            const taken = yield* waitForLine(waiter, "ready", STUCK_MS / 1000)
            yield* figure(`SIGKILL of the frozen proxy → the waiter holds: ${taken.at - cutAt} ms`)
            assert.isAbove(taken.generation as number, held.generation as number)
            assert.isBelow(interrupted.at, taken.at, "the holder's lost fired before another process held the lock")
            assertWorkStopped(holder)
          })
        ),
      90_000
    )

    // What bounds the freeze is the server's `idle_session_timeout`: it ends
    // the session that the frozen holder's heartbeat no longer keeps busy.
    // Six check intervals: a live holder's session is never idle that long,
    // and the frozen holder has given up (within two) before the lock is
    // anyone else's.
    it.scopedLive(
      "loses the lock before the server ends its idle session (idle_session_timeout) and another process holds it",
      () =>
        onFreshDatabase((url) =>
          Effect.gen(function*() {
            const idleSessionTimeoutMs = 6 * CHECK_INTERVAL_MS
            const { port, proxy } = yield* startProxy(url)
            const holder = yield* spawnHolder(
              throughPort(url, port, `${KEEPALIVE_OPTIONS} -c idle_session_timeout=${idleSessionTimeoutMs}`),
              "--check-interval",
              String(CHECK_INTERVAL_MS)
            )
            const held = yield* waitForLine(holder, "ready")
            const waiter = yield* spawnHolder(url, "--wait", "60000")
            yield* awaitQueuedWaiter

            const stoppedAt = Date.now()
            proxy.process.kill("SIGSTOP")
            const taken = yield* waitForLine(waiter, "ready", 60)
            const interrupted = yield* waitForLine(holder, "interrupted")
            yield* figure(
              `SIGSTOP of the holder's proxy, idle_session_timeout=${idleSessionTimeoutMs}: the waiter holds after ` +
                `${taken.at - stoppedAt} ms, the holder's lost after ${interrupted.at - stoppedAt} ms`
            )
            assert.isAbove(taken.generation as number, held.generation as number)
            assert.isBelow(interrupted.at, taken.at, "the holder's lost fired before another process held the lock")
            assertWorkStopped(holder)
          })
        ),
      90_000
    )
  })

  it.scopedLive(
    "processes starting at once against a fresh database: one holds, every other gets LockHeld",
    () =>
      onFreshDatabase((url) =>
        Effect.gen(function*() {
          const sql = yield* PgClient.PgClient
          const contenders = yield* Effect.all(Array.from({ length: 8 }, () => spawnHolder(url, "--wait-stdin")))
          // All connected and loaded: their tries, and the registry's creation, start together.
          yield* Effect.forEach(contenders, (child) => waitForLine(child, "waiting", 60), { discard: true })
          for (const child of contenders) child.process.stdin!.write("go\n")
          const outcomes = yield* Effect.forEach(contenders, (child) => waitForOneOf(child, ["ready", "error"], 30))

          const holders = contenders.filter((_, index) => outcomes[index]!.word === "ready")
          assert.strictEqual(holders.length, 1, contenders.map(describeChild).join("\n"))
          const refused = outcomes.filter((outcome) => outcome.word === "error")
          assert.deepStrictEqual(
            refused.map((outcome) => ({ _tag: outcome.data._tag, holderPid: outcome.data.holderPid })),
            refused.map(() => ({ _tag: "LockHeld", holderPid: holders[0]!.pid })),
            contenders.map(describeChild).join("\n")
          )
          const registry = yield* sql<{ readonly name: string; readonly generation: string }>`
          SELECT name, generation::text AS generation FROM effect_pidlock`
          assert.deepStrictEqual(registry, [{ name: NAME, generation: "1" }])
        })
      ),
    120_000
  )

  it.live(
    "a race of 4 processes with SIGKILLed holders and terminated sessions: never two holders unfenced",
    () =>
      Effect.gen(function*() {
        const report = yield* runPgStress({
          url: yield* freshDatabase,
          processes: 4,
          acquisitions: 100,
          killProbability: 0.1,
          terminateProbability: 0.1,
          pauseMs: [20, 80],
          minKills: 3,
          minTerminations: 3
        })
        console.log(formatPgReport(report))
        assert.deepStrictEqual(
          report.problems,
          [],
          "overlaps, generations out of order, stuck locks or failed children"
        )
        assert.strictEqual(report.overlaps, 0)
        assert.strictEqual(report.stuck, 0)
        assert.isAtLeast(report.kills, 3, "holders SIGKILLed while holding, and taken over")
        assert.isAtLeast(report.terminations, 3, "holders whose session was ended while holding")
        assert.isAtLeast(report.acquisitions, 100)
      }),
    180_000
  )
})
