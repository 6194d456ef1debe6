/**
 * `npm run bench [-- --quick] [--dir <lock directory>] [--only takeover,…]`: effect-pidlock
 * against a raw synchronous `node:fs` floor and the anchors (proper-lockfile,
 * lockfile, the original pidlock), side by side in one run; and PgLock
 * against the same statements sent with `pg` alone, on a PostgreSQL server
 * that the run starts (test/support/postgresServer.ts) when a pg_ figure is
 * asked for. Every figure is measured in child `node` processes that import
 * the built package (`dist/`), and printed as one line, followed by whether
 * its target is met.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { Client } from "pg"
import { createDatabase, type PostgresServer, startPostgres } from "../test/support/postgresServer.js"

const here = Path.dirname(fileURLToPath(import.meta.url))
const args = process.argv.slice(2)
const quick = args.includes("--quick")
const dirFlag = args.indexOf("--dir")
const root = Path.resolve(dirFlag === -1 ? Os.tmpdir() : args[dirFlag + 1]!)
// `--only takeover,handoff`: some of the figures (cycle, takeover, handoff, contention, send, import, cli, heap,
// pg_cycle, pg_takeover, pg_handoff).
const onlyFlag = args.indexOf("--only")
const only = onlyFlag === -1 ? undefined : args[onlyFlag + 1]!.split(",")
const base = Fs.mkdtempSync(Path.join(root, "pidlock-bench-"))

// -----------------------------------------------------------------------------
// Helpers
// -----------------------------------------------------------------------------

const median = (values: ReadonlyArray<number>): number => quantile(values, 0.5)
const quantile = (values: ReadonlyArray<number>, q: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!
}
const fixed = (value: number, digits = 1) => value.toFixed(digits)
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const now = () => performance.timeOrigin + performance.now()
const verdict = (met: boolean, target: string) => `  [target ${target}: ${met ? "met" : "MISSED"}]`

/** Runs `node <script> …args` to completion and parses its last stdout line as JSON. */
const runJson = <A>(script: string, scriptArgs: ReadonlyArray<string>, nodeFlags: ReadonlyArray<string> = []): A => {
  const out = execFileSync(process.execPath, [...nodeFlags, Path.join(here, script), ...scriptArgs], {
    encoding: "utf8",
    maxBuffer: 1 << 28
  })
  return JSON.parse(out.trim().split("\n").at(-1)!) as A
}

/** A child speaking JSON lines: `next()` is its next message. */
interface Child {
  readonly process: ChildProcess
  readonly next: () => Promise<Record<string, any>>
  readonly send: (message: unknown) => void
}

const start = (script: string, scriptArgs: ReadonlyArray<string>): Child => {
  const child = spawn(process.execPath, [Path.join(here, script), ...scriptArgs], {
    stdio: ["pipe", "pipe", "inherit"]
  })
  const queue: Array<Record<string, any>> = []
  const waiting: Array<(message: Record<string, any>) => void> = []
  let buffer = ""
  child.stdout!.setEncoding("utf8")
  child.stdout!.on("data", (chunk: string) => {
    buffer += chunk
    let index: number
    while ((index = buffer.indexOf("\n")) !== -1) {
      const line = buffer.slice(0, index)
      buffer = buffer.slice(index + 1)
      // Anything else on stdout is a log line of the library (a takeover).
      if (!line.startsWith("{")) continue
      const message = JSON.parse(line) as Record<string, any>
      const resolve = waiting.shift()
      if (resolve) resolve(message)
      else queue.push(message)
    }
  })
  return {
    process: child,
    next: () => {
      const message = queue.shift()
      return message ? Promise.resolve(message) : new Promise((resolve) => waiting.push(resolve))
    },
    send: (message) => child.stdin!.write((typeof message === "string" ? message : JSON.stringify(message)) + "\n")
  }
}

const stop = (child: Child) =>
  new Promise<void>((resolve) => {
    if (child.process.exitCode !== null || child.process.signalCode !== null) return resolve()
    child.process.once("exit", () => resolve())
    child.process.kill("SIGKILL")
  })

// -----------------------------------------------------------------------------
// 1. Uncontended acquire + release cycle, in-process
// -----------------------------------------------------------------------------

const IMPLS = [
  "effect-pidlock",
  "floor",
  "proper-lockfile",
  "lockfile",
  "pidlock",
  "effect-pidlock-nowatchdog",
  "effect-pidlock-withlock",
  "effect-pidlock-withlock-yield",
  "floor-effect"
] as const

const cycle = () => {
  const [rounds, batch] = quick ? [3, 150] : [20, 300]
  const { cpu, samples } = runJson<{
    samples: Record<(typeof IMPLS)[number], Array<number>>
    cpu: Record<(typeof IMPLS)[number], number>
  }>("cycle.mjs", [
    Path.join(base, "cycle"),
    String(rounds),
    String(batch),
    IMPLS.join(",")
  ])
  const m = Object.fromEntries(IMPLS.map((impl) => [impl, median(samples[impl])])) as Record<
    (typeof IMPLS)[number],
    number
  >
  const ratioFloor = m["effect-pidlock"] / m.floor
  const ratioProper = m["effect-pidlock"] / m["proper-lockfile"]
  const withLock = m["effect-pidlock-withlock"]
  const withLockYield = m["effect-pidlock-withlock-yield"]
  console.log(
    `cycle: effect-pidlock=${fixed(m["effect-pidlock"], 0)} floor=${fixed(m.floor, 0)} proper-lockfile=${
      fixed(m["proper-lockfile"], 0)
    } lockfile=${fixed(m.lockfile, 0)} pidlock=${fixed(m.pidlock, 0)} ratio_proper_lockfile=${
      fixed(ratioProper, 2)
    } ratio_floor=${fixed(ratioFloor, 2)}` +
      verdict(ratioProper <= 1.5 && ratioFloor <= 1.3, "ratio_proper_lockfile ≤ 1.5 and ratio_floor ≤ 1.3")
  )
  console.log(
    `#   median µs over ${
      rounds * batch
    } cycles each, default options, Effect.scoped(PidLock.acquire(…)); the floor is the cycle's 7 system calls (mkdir, symlink, rename; readlink, symlink, rename of the generation; unlink) made synchronously, as the Node layer makes them, with no Effect`
  )
  console.log(
    `#   PidLock.withLock(Effect.void, …), whose body ends without yielding, so no watchdog starts: ${
      fixed(withLock, 0)
    } (ratio_proper_lockfile=${fixed(withLock / m["proper-lockfile"], 2)} ratio_floor=${
      fixed(withLock / m.floor, 2)
    }); PidLock.withLock(Effect.yieldNow(), …), whose body yields once, so the watchdog starts every cycle: ${
      fixed(withLockYield, 0)
    } (ratio_floor=${
      fixed(withLockYield / m.floor, 2)
    }); checkInterval: false, to cost as the default does, which starts no watchdog while lost is not awaited: ${
      fixed(m["effect-pidlock-nowatchdog"], 0)
    } (ratio_floor=${
      fixed(m["effect-pidlock-nowatchdog"] / m.floor, 2)
    }); the floor's calls each in Effect.try in a plain Effect.gen: ${fixed(m["floor-effect"], 0)} (ratio_floor=${
      fixed(m["floor-effect"] / m.floor, 2)
    })`
  )
  console.log(`#   CPU µs per cycle (all threads): ${IMPLS.map((impl) => `${impl}=${fixed(cpu[impl], 0)}`).join(" ")}`)
}

// -----------------------------------------------------------------------------
// 2. Takeover after SIGKILL
// -----------------------------------------------------------------------------

/**
 * A holder is SIGKILLed; once it is reaped (dead to the kernel, as a
 * supervisor that restarts a crashed service sees it), a contender (modules
 * loaded, one cycle on another lock done) tries to take the lock. Times from
 * the kill: to the reaping, and to the contender holding the lock.
 */
let takeoverRuns = 0
const takeoverOnce = async (
  impl: "effect-pidlock" | "effect-pidlock-portable" | "proper-lockfile",
  stale?: number
): Promise<{ total: number; reaped: number }> => {
  const dir = Path.join(base, "takeover")
  Fs.mkdirSync(dir, { recursive: true })
  // A fresh lock each run: the contender is killed holding it.
  const name = `${impl}-${stale ?? "default"}-${++takeoverRuns}`
  const holder = start("agent.mjs", [impl, dir, name])
  const contender = start("agent.mjs", [impl, dir, name])
  await Promise.all([holder.next(), contender.next()])
  holder.send({ op: "acquire", ...(stale ? { stale } : {}) })
  const held = await holder.next()
  if (!held.ok) throw new Error(`takeover: the holder did not get the lock: ${JSON.stringify(held)}`)
  // Let proper-lockfile's holder age its lock as a long-running one would.
  await sleep(impl === "proper-lockfile" ? 100 : 20)
  const reaped = new Promise<number>((resolve) => holder.process.once("exit", () => resolve(now())))
  const killedAt = now()
  holder.process.kill("SIGKILL")
  const reapedAt = await reaped
  contender.send({ op: "acquire", wait: true, ...(stale ? { stale } : {}) })
  const took = await contender.next()
  await stop(contender)
  if (!took.ok) throw new Error(`takeover: the contender failed: ${JSON.stringify(took)}`)
  return { total: took.t - killedAt, reaped: reapedAt - killedAt }
}

/**
 * One contender process (modules loaded, one cycle on another lock done, as
 * above) takes over from `count` killed holders in turn, each on a lock of its
 * own with a freshly started holder, starting each time when the holder is
 * reaped. Times from each kill to the contender holding: the first is the
 * process's first takeover, whose code runs for the first time.
 */
const takeoverSeries = async (count: number): Promise<Array<number>> => {
  const dir = Path.join(base, "takeover-series")
  Fs.mkdirSync(dir, { recursive: true })
  const series = ++takeoverRuns
  const contender = start("agent.mjs", ["effect-pidlock", dir, `series-${series}`])
  const times: Array<number> = []
  try {
    for (let i = 0; i < count; i++) {
      const name = `series-${series}-${i}`
      const holder = start("agent.mjs", ["effect-pidlock", dir, name])
      await Promise.all([holder.next(), i === 0 ? contender.next() : undefined])
      holder.send({ op: "acquire" })
      const held = await holder.next()
      if (!held.ok) {
        await stop(holder)
        throw new Error(`takeover series: holder ${i} did not get the lock: ${JSON.stringify(held)}`)
      }
      await sleep(20)
      const reaped = new Promise<void>((resolve) => holder.process.once("exit", () => resolve()))
      const killedAt = now()
      holder.process.kill("SIGKILL")
      await reaped
      contender.send({ op: "acquire", wait: true, name })
      const took = await contender.next()
      if (!took.ok) throw new Error(`takeover series: takeover ${i} failed: ${JSON.stringify(took)}`)
      times.push(took.t - killedAt)
      // Released, so that the next acquisition starts as this one did.
      contender.send({ op: "release" })
      await contender.next()
    }
  } finally {
    await stop(contender)
  }
  return times
}

/**
 * A contender already waiting for the lock (`wait`, blocked for 1.5 s, so
 * that its poll is at its slowest, once a second) when the holder is
 * SIGKILLed. The death changes nothing on disk: the waiter learns of it when
 * the holder's socket hangs up its connection. Times from the kill.
 */
const takeoverWaitingOnce = async (): Promise<{ total: number; reaped: number }> => {
  const dir = Path.join(base, "takeover-waiting")
  Fs.mkdirSync(dir, { recursive: true })
  const name = `waiting-${++takeoverRuns}`
  const holder = start("agent.mjs", ["effect-pidlock", dir, name])
  const waiter = start("agent.mjs", ["effect-pidlock", dir, name])
  await Promise.all([holder.next(), waiter.next()])
  holder.send({ op: "acquire" })
  const held = await holder.next()
  if (!held.ok) throw new Error(`waiting takeover: the holder did not get the lock: ${JSON.stringify(held)}`)
  waiter.send({ op: "acquire", wait: true })
  await sleep(1500)
  const reaped = new Promise<number>((resolve) => holder.process.once("exit", () => resolve(now())))
  const killedAt = now()
  holder.process.kill("SIGKILL")
  const took = await waiter.next()
  const reapedAt = await reaped
  await stop(waiter)
  if (!took.ok) throw new Error(`waiting takeover: the waiter failed: ${JSON.stringify(took)}`)
  return { total: took.t - killedAt, reaped: reapedAt - killedAt }
}

const takeover = async () => {
  const runs = quick ? 2 : 10
  const ours: Array<{ total: number; reaped: number }> = []
  for (let i = 0; i < runs; i++) ours.push(await takeoverOnce("effect-pidlock"))
  // The portable ProcessInfo (ps, kill(pid, 0)), as macOS and FreeBSD judge a holder.
  const portableRuns: Array<number> = []
  for (let i = 0; i < runs; i++) portableRuns.push((await takeoverOnce("effect-pidlock-portable")).total)
  // Its default stale alone takes 5 to 10 s: the full run only.
  const properDefault = quick ? undefined : await takeoverOnce("proper-lockfile")
  const properMin: Array<number> = []
  for (let i = 0; i < (quick ? 1 : 3); i++) properMin.push((await takeoverOnce("proper-lockfile", 2000)).total)
  const m = median(ours.map((run) => run.total))
  console.log(
    `takeover_ms: effect-pidlock=${fixed(m)} (/proc) ${
      fixed(median(portableRuns))
    } (portable: ps, kill) proper-lockfile=${
      properDefault === undefined ? "(not in --quick)" : fixed(properDefault.total, 0)
    } (stale 10000, its default) ${fixed(median(properMin), 0)} (stale 2000, its minimum)` +
      verdict(m <= 25, "median ≤ 25 ms")
  )
  console.log(
    `#   from the SIGKILL to the contender holding the lock, the contender starting when the holder is reaped; effect-pidlock median of ${runs}, a fresh contender each: kill to reaped ${
      fixed(median(ours.map((run) => run.reaped)))
    } (the kernel tearing the process down), reaped to holding ${
      fixed(median(ours.map((run) => run.total - run.reaped)))
    } (the lock); proper-lockfile: ${
      quick ? 0 : 1
    } run at its default stale, median of ${properMin.length} at its minimum`
  )
  // The first takeover of a process against its later ones: what the first
  // run of the takeover's code costs (its modules, the JIT).
  const [seriesCount, seriesLength] = quick ? [1, 6] : [3, 6]
  const allSeries: Array<Array<number>> = []
  for (let i = 0; i < seriesCount; i++) allSeries.push(await takeoverSeries(seriesLength))
  const first = median(allSeries.map((times) => times[0]!))
  const later = median(allSeries.flatMap((times) => times.slice(1)))
  const ratioFirst = first / later
  console.log(
    `takeover_first_ms: first=${fixed(first)} later=${fixed(later)} ratio=${fixed(ratioFirst, 2)}` +
      verdict(ratioFirst <= 2, "first ≤ 2 × later")
  )
  console.log(
    `#   ${seriesCount} series: one contender process takes over from ${seriesLength} killed holders in turn (each on a lock of its own, its holder freshly started), from the SIGKILL to holding, the contender starting when the holder is reaped; first: the process's first takeover (median over the series), later: the median of the takeovers after it (${
      seriesLength - 1
    } per series); per series: ${allSeries.map((times) => times.map((time) => fixed(time)).join(" ")).join(" | ")}`
  )
  const waiting: Array<{ total: number; reaped: number }> = []
  for (let i = 0; i < runs; i++) waiting.push(await takeoverWaitingOnce())
  const waitingMedian = median(waiting.map((run) => run.total))
  console.log(
    `takeover_waiting_ms: effect-pidlock=${fixed(waitingMedian)}` +
      verdict(waitingMedian <= 25, "median ≤ 25 ms, as takeover_ms")
  )
  console.log(
    `#   from the SIGKILL to a contender that was already waiting (wait: "60 seconds", for 1.5 s: its poll at once a second) holding the lock, median of ${runs}, a fresh pair each: kill to reaped ${
      fixed(median(waiting.map((run) => run.reaped)))
    }; the waiter learns of the death from the holder's socket, which hangs up its connection`
  )
}

// -----------------------------------------------------------------------------
// 3. Hand-off from a releasing holder to a blocked waiter
// -----------------------------------------------------------------------------

/** Times from the holder's release (its return: the unlink done) to the waiter holding the lock, and from the call. */
const handoffRun = async (
  impl: "effect-pidlock" | "proper-lockfile",
  count: number
): Promise<{ times: Array<number>; fromStart: Array<number> }> => {
  const dir = Path.join(base, "handoff")
  Fs.mkdirSync(dir, { recursive: true })
  const holder = start("agent.mjs", [impl, dir, impl])
  const waiter = start("agent.mjs", [impl, dir, impl])
  await Promise.all([holder.next(), waiter.next()])
  const times: Array<number> = []
  const fromStart: Array<number> = []
  for (let i = 0; i < count; i++) {
    holder.send({ op: "acquire" })
    const held = await holder.next()
    if (!held.ok) throw new Error(`hand-off: the holder did not get the lock: ${JSON.stringify(held)}`)
    waiter.send({ op: "acquire", wait: true })
    await sleep(30) // the waiter has tried once and is blocked
    holder.send({ op: "release" })
    const released = await holder.next()
    const acquired = await waiter.next()
    if (!acquired.ok) throw new Error(`hand-off: the waiter failed: ${JSON.stringify(acquired)}`)
    times.push(acquired.t - released.t1)
    fromStart.push(acquired.t - released.t0)
    waiter.send({ op: "release" })
    await waiter.next()
  }
  await Promise.all([stop(holder), stop(waiter)])
  return { times, fromStart }
}

const handoff = async () => {
  const count = quick ? 50 : 100
  const ours = await handoffRun("effect-pidlock", count)
  const proper = await handoffRun("proper-lockfile", count)
  const m = median(ours.times)
  console.log(
    `handoff_ms: effect-pidlock=${fixed(m)} (p99 ${fixed(quantile(ours.times, 0.99))}) proper-lockfile=${
      fixed(median(proper.times))
    } (p99 ${fixed(quantile(proper.times, 0.99))}) n=${count}` + verdict(m <= 10, "median ≤ 10 ms")
  )
  console.log(
    `#   from the end of the holder's release; from its start: effect-pidlock=${fixed(median(ours.fromStart))} (p99 ${
      fixed(quantile(ours.fromStart, 0.99))
    }) proper-lockfile=${fixed(median(proper.fromStart))} (p99 ${fixed(quantile(proper.fromStart, 0.99))})`
  )
  console.log(
    `#   effect-pidlock wait: "60 seconds" (watch + poll); proper-lockfile retries: 10 ms doubling to 1 s; the holder releases 30 ms after the waiter started`
  )
}

// -----------------------------------------------------------------------------
// 4. Contention: 16 processes at once
// -----------------------------------------------------------------------------

const contentionRound = async (round: number) => {
  const dir = Path.join(base, "contention")
  Fs.mkdirSync(dir, { recursive: true })
  const spawnedAt = now()
  const children = Array.from({ length: 16 }, () => start("contend.mjs", [dir, `round-${round}`]))
  await Promise.all(children.map((child) => child.next()))
  const readyAt = now()
  const goAt = now()
  for (const child of children) child.send("go")
  const results = await Promise.all(children.map((child) => child.next()))
  for (const child of children) child.process.stdin!.end()
  await Promise.all(children.map(stop))
  const losers = results.filter((result) => !result.won)
  const winners = results.length - losers.length
  const wrong = losers.filter((result) => result.tag !== "LockHeld")
  if (wrong.length > 0) throw new Error(`contention: losers failed otherwise: ${JSON.stringify(wrong)}`)
  return { winners, settled: Math.max(...losers.map((result) => result.t)) - goAt, startup: readyAt - spawnedAt }
}

const contention = async () => {
  const rounds = quick ? 1 : 3
  const results = []
  for (let round = 0; round < rounds; round++) results.push(await contentionRound(round))
  const winners = results.map((result) => result.winners)
  const settled = median(results.map((result) => result.settled))
  console.log(
    `contention: winners=${[...new Set(winners)].join(",")} all_settled_ms=${fixed(settled)}` +
      verdict(winners.every((count) => count === 1), "exactly one winner")
  )
  console.log(
    `#   median of ${rounds} rounds, from the word "go" to the last loser's LockHeld; the 16 processes took ${
      fixed(median(results.map((result) => result.startup)), 0)
    } ms to start and load their modules`
  )
}

// -----------------------------------------------------------------------------
// 5. Start-up cost
// -----------------------------------------------------------------------------

const importCost = () => {
  const results: Array<{ base: number; added: number }> = []
  for (let i = 0; i < 10; i++) results.push(runJson("import.mjs", []))
  const added = median(results.map((result) => result.added))
  console.log(`import_ms: added=${fixed(added)}` + verdict(added <= 20, "≤ 20 ms"))
  console.log(
    `#   median of 10 fresh processes, on top of effect/Effect + @effect/platform/FileSystem + @effect/platform-node/NodeFileSystem (${
      fixed(median(results.map((result) => result.base)), 0)
    } ms)`
  )
}

/**
 * The CLI's start-up, as a shell pays it: `effect-pidlock status` on a free
 * lock against a bare `node -e 0` and `flock -n`, taken in turn.
 */
const cliStartup = () => {
  const rounds = quick ? 10 : 30
  const samples = runJson<{ cli: Array<number>; node: Array<number>; flock: Array<number> | null }>("cli.mjs", [
    Path.join(base, "cli"),
    String(rounds)
  ])
  const [cli, node] = [median(samples.cli), median(samples.node)]
  const flock = samples.flock === null ? "missing (util-linux is not installed)" : fixed(median(samples.flock))
  console.log(
    `cli_ms: status=${fixed(cli)} node=${fixed(node)} ratio_node=${fixed(cli / node, 2)} flock=${flock}` +
      verdict(cli <= node + 100, "status ≤ node -e 0 + 100 ms")
  )
  console.log(
    `#   median wall-clock ms of ${rounds} fresh processes each, in turn: effect-pidlock status --name … --dir … (dist/cli/bin.cjs) on a free lock, node -e 0, flock -n <file> true`
  )
}

// -----------------------------------------------------------------------------
// 6. Steady state
// -----------------------------------------------------------------------------

const heap = () => {
  const [warmUp, cycles] = quick ? [3_000, 2_000] : [20_000, 100_000]
  const result = runJson<{ growthKb: number; warmUpGrowthKb: number; before: number; seconds: number }>(
    "heap.mjs",
    [Path.join(base, "heap"), String(warmUp), String(cycles)],
    ["--expose-gc"]
  )
  console.log(`heap_growth_kb: ${fixed(result.growthKb)}` + verdict(result.growthKb <= 1024, "≤ 1024 KiB"))
  console.log(
    `#   over ${cycles} cycles with the default options, after ${warmUp} cycles of warm-up, with GC (${
      fixed(result.seconds)
    } s); from cycle 2000 to the end of the warm-up the heap grew ${fixed(result.warmUpGrowthKb)} KiB, to ${
      fixed(result.before / 1048576)
    } MiB (steps of Effect's per-fiber scheduler WeakMap: BENCHMARKS.md)`
  )
}

// -----------------------------------------------------------------------------
// 7. PgLock, on a PostgreSQL server of the bench's own
// -----------------------------------------------------------------------------

interface Database {
  readonly server: PostgresServer
  /** The bench's database on it, where PgLock makes its registry. */
  readonly url: string
  /** The driver's own session, to see from the server that a waiter waits. */
  readonly client: Client
}

// Started by the first figure that needs it, stopped at the end of the run.
let database: Promise<Database> | undefined
const postgres = () =>
  database ??= (async () => {
    const startedAt = now()
    const server = await startPostgres()
    const url = await createDatabase(server.url, "pidlock_bench")
    const client = new Client({ connectionString: url })
    await client.connect()
    const { rows: [version] } = await client.query<{ server_version: string }>("SHOW server_version")
    console.log(
      `# postgres ${version!.server_version} started in ${
        fixed((now() - startedAt) / 1000)
      } s on 127.0.0.1:${server.port} (TCP), ` +
        `fsync=off and synchronous_commit=off (test/support/postgresServer.ts): a commit does not wait for the disk`
    )
    return { server, url, client }
  })()

const stopPostgres = async () => {
  if (database === undefined) return
  const { client, server } = await database
  await client.end()
  await server.stop()
}

// PgLock's advisory locks: the class "pidl" and the name's key in its registry (src/internal/pgLock.ts).
const WAITERS = `SELECT count(*)::int AS waiting FROM pg_locks AS l JOIN effect_pidlock AS t ON l.objid = t.key::oid
WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objsubid = 2 AND l.classid = ${0x7069646c}::oid
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND t.name = $1`

/**
 * Resolves once a session waits in the server for the lock `name` of this
 * database: the waiter has sent its blocking lock. `reply` is the waiter's
 * answer to its acquire: a waiter that answers before it is seen waiting
 * (it failed, or took a lock that was free) is reported at once.
 */
const waiterBlocked = async ({ client }: Database, name: string, reply: Promise<Record<string, any>>) => {
  let answered: Record<string, any> | undefined
  void reply.then((message) => {
    answered = message
  })
  const deadline = now() + 30_000
  for (;;) {
    const { rows: [row] } = await client.query<{ waiting: number }>(WAITERS, [name])
    if (row!.waiting > 0) return
    if (answered !== undefined) {
      throw new Error(`the waiter answered before it was seen waiting for ${name}: ${JSON.stringify(answered)}`)
    }
    if (now() > deadline) throw new Error(`no session waits for ${name} after 30 s`)
    await sleep(1)
  }
}

const PG_IMPLS = ["effect-pidlock", "raw-pg", "effect-pidlock-watchdog", "raw-pg-pool", "effect-sql"] as const

const pgCycle = async () => {
  const { url } = await postgres()
  const [rounds, batch] = quick ? [3, 100] : [20, 150]
  const { cpu, phases, samples, statements, statementsPerCycle } = runJson<{
    samples: Record<(typeof PG_IMPLS)[number], Array<number>>
    phases: Record<(typeof PG_IMPLS)[number], Array<Array<number>>>
    cpu: Record<(typeof PG_IMPLS)[number], number>
    statementsPerCycle: Record<(typeof PG_IMPLS)[number], number>
    statements: Array<{ text: string; values: number }>
  }>("pgCycle.mjs", [url, String(rounds), String(batch), PG_IMPLS.join(",")])
  const m = Object.fromEntries(PG_IMPLS.map((impl) => [impl, median(samples[impl])])) as Record<
    (typeof PG_IMPLS)[number],
    number
  >
  const ratio = m["effect-pidlock"] / m["raw-pg"]
  console.log(
    `pg_cycle: effect-pidlock=${fixed(m["effect-pidlock"], 0)} raw_pg=${fixed(m["raw-pg"], 0)} ratio=${
      fixed(ratio, 2)
    }` +
      verdict(ratio <= 1.3, "ratio ≤ 1.3")
  )
  // The statements named by what they call: the lock's, with the owner record, and the unlock.
  const named = statements.map(({ text, values }) =>
    `${/pg_try_advisory_lock|pg_advisory_unlock/.exec(text)?.[0] ?? text.slice(0, 20)} (${values} values)`
  )
  console.log(
    `#   median µs over ${
      rounds * batch
    } cycles each; effect-pidlock with checkInterval: false (no watchdog), raw_pg the statements of its cycle (${
      named.join(", ")
    }), same texts and values, through one pg.Client connected once`
  )
  console.log(
    `#   effect-pidlock with the watchdog (checkInterval 5 s)=${fixed(m["effect-pidlock-watchdog"], 0)} (ratio=${
      fixed(m["effect-pidlock-watchdog"] / m["raw-pg"], 2)
    }); raw through a pg.Pool, a client taken and given back per cycle=${
      fixed(m["raw-pg-pool"], 0)
    }; through @effect/sql-pg, a connection reserved per cycle in a bare Effect.gen=${fixed(m["effect-sql"], 0)}`
  )
  // A cycle of two statements: sent, answered, sent, answered, ended.
  const split = (impl: (typeof PG_IMPLS)[number]) => {
    const cycles = phases[impl].filter((marks) => marks.length === 5)
    const gap = (from: number, to: number) =>
      fixed(median(cycles.map((marks) => marks[to]! - (from < 0 ? 0 : marks[from]!))), 0)
    return `${impl}=${gap(-1, 0)}/${gap(0, 1)}/${gap(1, 2)}/${gap(2, 3)}/${gap(3, 4)}`
  }
  console.log(
    `#   where a cycle's time goes, medians in µs of: before the lock statement/its round trip/between/the unlock's round trip/after: ${
      (["effect-pidlock", "effect-sql", "raw-pg-pool", "raw-pg"] as const).map(split).join(" ")
    }`
  )
  console.log(
    `#   statements sent per cycle: ${
      PG_IMPLS.map((impl) => `${impl}=${fixed(statementsPerCycle[impl], 2)}`).join(" ")
    }; CPU µs per cycle (all threads): ${PG_IMPLS.map((impl) => `${impl}=${fixed(cpu[impl], 0)}`).join(" ")}`
  )
}

// The clock: `now()` (performance.timeOrigin + performance.now(), µs
// resolution) in the driver and in the agents, which all read the same
// system clock. An agent's report reaches the driver over its stdout pipe;
// the delay from the agent's timestamp to the driver's receipt is printed
// as a check: it is never negative if the clocks agree.

/**
 * A holder is SIGKILLed while a waiter (another process, `wait: "60
 * seconds"`) waits in the server for its lock. Times from the kill: to the
 * holder's reaping, and to the waiter holding the lock.
 */
const pgTakeoverOnce = async (db: Database) => {
  const holder = start("agent.mjs", ["pglock", db.url, "takeover"])
  const waiter = start("agent.mjs", ["pglock", db.url, "takeover"])
  await Promise.all([holder.next(), waiter.next()])
  // Waiting: the previous run's holder may not have left the server yet.
  holder.send({ op: "acquire", wait: true })
  const held = await holder.next()
  if (!held.ok) throw new Error(`pg takeover: the holder did not get the lock: ${JSON.stringify(held)}`)
  waiter.send({ op: "acquire", wait: true })
  const reply = waiter.next()
  await waiterBlocked(db, "takeover", reply)
  const reaped = new Promise<number>((resolve) => holder.process.once("exit", () => resolve(now())))
  const killedAt = now()
  holder.process.kill("SIGKILL")
  const took = await reply
  const receivedAt = now()
  const reapedAt = await reaped
  await stop(waiter)
  if (!took.ok) throw new Error(`pg takeover: the waiter failed: ${JSON.stringify(took)}`)
  return { total: took.t - killedAt, reaped: reapedAt - killedAt, report: receivedAt - took.t }
}

const pgTakeover = async () => {
  const db = await postgres()
  const runs = quick ? 3 : 15
  const results: Array<{ total: number; reaped: number; report: number }> = []
  for (let i = 0; i < runs; i++) results.push(await pgTakeoverOnce(db))
  const m = median(results.map((run) => run.total))
  console.log(`pg_takeover_ms: effect-pidlock=${fixed(m)} n=${runs}` + verdict(m <= 100, "≤ 100 ms"))
  console.log(
    `#   from the SIGKILL of the holder to the waiter (another process, blocked in the server) holding the lock; median: kill to reaped ${
      fixed(median(results.map((run) => run.reaped)))
    } (the kernel tearing the process down, its socket closed on the way), max ${
      fixed(Math.max(...results.map((run) => run.total)))
    }`
  )
  console.log(
    `#   times from now() (timeOrigin + performance.now()) in the driver and the agents; the waiter's report reached the driver ${
      fixed(median(results.map((run) => run.report)), 2)
    } ms (median; min ${fixed(Math.min(...results.map((run) => run.report)), 2)}) after its timestamp`
  )
}

/**
 * A holder releases while a waiter (another process, `wait: "60 seconds"`)
 * waits in the server for its lock. Times from the start and from the end
 * of the holder's release to the waiter holding the lock.
 */
const pgHandoff = async () => {
  const db = await postgres()
  const count = quick ? 20 : 100
  const holder = start("agent.mjs", ["pglock", db.url, "handoff"])
  const waiter = start("agent.mjs", ["pglock", db.url, "handoff"])
  await Promise.all([holder.next(), waiter.next()])
  const fromStart: Array<number> = []
  const fromEnd: Array<number> = []
  const releases: Array<number> = []
  const reports: Array<number> = []
  for (let i = 0; i < count; i++) {
    holder.send({ op: "acquire" })
    const held = await holder.next()
    if (!held.ok) throw new Error(`pg hand-off: the holder did not get the lock: ${JSON.stringify(held)}`)
    waiter.send({ op: "acquire", wait: true })
    const reply = waiter.next()
    // Noted on arrival: the holder's answer, awaited first, may come later.
    const receivedAt = reply.then(() => now())
    await waiterBlocked(db, "handoff", reply)
    holder.send({ op: "release" })
    const released = await holder.next()
    const acquired = await reply
    reports.push((await receivedAt) - acquired.t)
    if (!acquired.ok) throw new Error(`pg hand-off: the waiter failed: ${JSON.stringify(acquired)}`)
    fromStart.push(acquired.t - released.t0)
    fromEnd.push(acquired.t - released.t1)
    releases.push(released.t1 - released.t0)
    waiter.send({ op: "release" })
    await waiter.next()
  }
  await Promise.all([stop(holder), stop(waiter)])
  const m = median(fromStart)
  console.log(
    `pg_handoff_ms: effect-pidlock=${fixed(m)} (p99 ${fixed(quantile(fromStart, 0.99))}) n=${count}` +
      verdict(m <= 10, "median ≤ 10 ms")
  )
  console.log(
    `#   from the start of the holder's release (its unlock frees the lock in the server before the reply comes back) to the waiter (another process, blocked in the server) holding it; from the end of the release: ${
      fixed(median(fromEnd))
    } (p99 ${fixed(quantile(fromEnd, 0.99))}); the release itself took ${fixed(median(releases))}`
  )
  console.log(
    `#   times from now() in the agents; the waiter's report reached the driver ${
      fixed(median(reports), 2)
    } ms (median; min ${fixed(Math.min(...reports), 2)}) after its timestamp`
  )
}

// -----------------------------------------------------------------------------

const fileSystemOf = (path: string): string => {
  try {
    return execFileSync("df", ["--output=fstype", path], { encoding: "utf8" }).trim().split("\n").at(-1)!
  } catch {
    return "unknown"
  }
}

// -----------------------------------------------------------------------------
// A message to a running holder
// -----------------------------------------------------------------------------

// PidLock.send to a holder in another process that answers at once: the
// judge of the holder, a connection, a frame each way.
const sendRoundTrip = () => {
  const { samples } = runJson<{ samples: Array<number> }>("send.mjs", [
    Fs.mkdtempSync(Path.join(base, "send-")),
    String(quick ? 100 : 500)
  ])
  const m = median(samples)
  console.log(
    `send_ms: median=${fixed(m, 2)} p95=${fixed(quantile(samples, 0.95), 2)} n=${samples.length}` +
      verdict(m <= 5, "median ≤ 5 ms")
  )
}

const main = async () => {
  const began = now()
  console.log(
    `# ${new Date().toISOString()} ${
      quick ? "quick" : "full"
    } run; nproc ${Os.availableParallelism()}; node ${process.version}; lock dir ${base} (${
      fileSystemOf(base)
    }); load average ${Os.loadavg().map((load) => fixed(load, 2)).join(" ")}`
  )
  const figures: Record<string, () => void | Promise<void>> = {
    cycle,
    takeover,
    handoff,
    contention,
    send: sendRoundTrip,
    import: importCost,
    cli: cliStartup,
    heap,
    pg_cycle: pgCycle,
    pg_takeover: pgTakeover,
    pg_handoff: pgHandoff
  }
  try {
    const took: Array<string> = []
    for (const [name, figure] of Object.entries(figures)) {
      if (only !== undefined && !only.includes(name)) continue
      const figureStart = now()
      await figure()
      took.push(`${name} ${fixed((now() - figureStart) / 1000)} s`)
    }
    console.log(`# took: ${took.join(", ")}`)
  } finally {
    Fs.rmSync(base, { recursive: true, force: true })
    await stopPostgres()
  }
  console.log(
    `# done in ${fixed((now() - began) / 1000)} s; load average ${Os.loadavg().map((load) => fixed(load, 2)).join(" ")}`
  )
}

await main()
