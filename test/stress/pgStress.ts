// The real-process stress run over PostgreSQL, shared by
// `npm run stress -- --backend postgres` (pgMain.ts) and the short run in
// test/pgProcesses.test.ts.
//
// `processes` children run pgRacer.mjs: each takes one lock of one database
// in a loop (half of them waiting in the server, half failing fast), appends
// `enter`/`exit` lines with its generation to one O_APPEND log and announces
// every hold on stdout. The runner decides each hold: it SIGKILLs the holder
// (and starts a replacement), ends the holder's session with
// `pg_terminate_backend` (the holder goes on, and must notice the loss), or
// tells it to release; kills and terminations are logged before they are
// done. Afterwards the log is replayed for overlapping holdings, generations
// that do not grow, and killed holders whose lock nobody took; a fresh acquire
// must take the lock at once.
//
// A holder whose session was ended may still be inside until its `lost`
// fires: a newer holder that entered meanwhile with a greater generation is
// what generations fence, counted as `fenced`, not as an overlap.
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Esbuild from "esbuild"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Readline from "node:readline"
import { fileURLToPath } from "node:url"
import * as PgLock from "../../src/PgLock.js"
import { nodeLayer } from "../support/nodeEnvironment.js"

const RACER = fileURLToPath(new URL("./pgRacer.mjs", import.meta.url))
const REPO = fileURLToPath(new URL("../..", import.meta.url))
const NAME = "stress"
/** A lock that no child could take for this long is stuck: the run stops. */
const STALL = Duration.seconds(30)
/**
 * How often a holder checks its session: a terminated holder is fenced for
 * at most about this long. Each check may take as long (the lock's own
 * rule), and no longer: with 250 ms, a run on a busy 2-core machine saw a few
 * healthy sessions given up as lost (safe, but a hold the runner then killed
 * or ended was no longer the one it announced).
 */
const CHECK_INTERVAL_MS = 2_000
/** How long a waiting racer waits in the server on each try. */
const WAIT_MS = 2_000

export interface PgStressOptions {
  /** The database: the lock's registry is made in it on first use. */
  readonly url: string
  /** Children racing at any time: each killed one is replaced at once. */
  readonly processes: number
  /** The run stops at the first hold released once this many holds were made. */
  readonly acquisitions: number
  /** The chance that a hold ends with SIGKILL. */
  readonly killProbability: number
  /** The chance that a hold ends with the end of its session (`pg_terminate_backend`). */
  readonly terminateProbability: number
  /** A racer pauses a random time within this range of milliseconds after each try, e.g. `[20, 80]`. */
  readonly pauseMs: readonly [number, number]
  /** The run also goes on until this many holders were killed, and this many sessions ended. */
  readonly minKills?: number | undefined
  readonly minTerminations?: number | undefined
}

export interface PgStressReport {
  readonly processes: number
  /** `enter` lines in the log. */
  readonly acquisitions: number
  /** Holders SIGKILLed while holding whose lock another process then took. */
  readonly kills: number
  /** Holders whose session the runner ended while they held. */
  readonly terminations: number
  /** Two holders at once that no generation fences, per the log or the registry. */
  readonly overlaps: number
  /**
   * Holders whose session was ended and that were still inside when a newer
   * holder, with a greater generation, entered: what generations fence.
   */
  readonly fenced: number
  /** 1 if nobody could take the lock during the run (or after the last kill), plus 1 if a fresh acquire at the end failed. */
  readonly stuck: number
  readonly seconds: number
  /** One line for each overlap, stuck lock, generation out of order, warning and failed child: empty when all went well. */
  readonly problems: ReadonlyArray<string>
}

export const formatPgReport = (report: PgStressReport) =>
  `stress: processes=${report.processes} acquisitions=${report.acquisitions} kills=${report.kills} ` +
  `terminations=${report.terminations} overlaps=${report.overlaps} fenced=${report.fenced} stuck=${report.stuck} ` +
  `seconds=${report.seconds.toFixed(1)} backend=postgres`

// -----------------------------------------------------------------------------
// The log
// -----------------------------------------------------------------------------

interface LogAnalysis {
  readonly enters: number
  readonly lastGeneration: number
  readonly holderKills: number
  readonly terminations: number
  readonly overlaps: ReadonlyArray<string>
  readonly fenced: number
  /** Generations that did not grow from one `enter` to the next. */
  readonly disorder: ReadonlyArray<string>
  /** Kills and terminations of a process that did not hold the lock at that point of the log. */
  readonly strays: ReadonlyArray<string>
  /** The last killed holder, when no later enter took its lock. */
  readonly untakenKill: string | undefined
}

interface Holding {
  readonly pid: number
  readonly token: string
  readonly generation: number
  readonly line: number
  killedAt?: number
  terminatedAt?: number
  /** A newer holder entered while this one, terminated, was still inside. */
  fenced?: boolean
}

/**
 * Replays the log. A holding runs from its `enter` to its `exit`, or to the
 * runner's `kill` of its process. Children log `enter` after acquiring and
 * `exit` before releasing, and the runner logs `kill` and `terminate` before
 * it acts, so every logged holding lies inside the real one; a terminated
 * holder's runs on to its `exit`, logged once its `lost` interrupted it.
 */
const analyzeLog = (lines: ReadonlyArray<string>): LogAnalysis => {
  const inside = new Map<string, Holding>()
  let enters = 0
  let lastGeneration = 0
  let holderKills = 0
  let terminations = 0
  let fenced = 0
  const overlaps: Array<string> = []
  const disorder: Array<string> = []
  const strays: Array<string> = []
  const describe = (holding: Holding) =>
    `${holding.pid} ${holding.token} (generation ${holding.generation}, since line ${holding.line})`
  const holders = () => [...inside.values()].map(describe).join(", ") || "nobody"
  lines.forEach((text, index) => {
    const line = index + 1
    const [word, pidText, token = "", generationText] = text.split(" ")
    const pid = Number(pidText)
    const generation = Number(generationText)
    const holding = inside.get(token)
    if (word === "enter") {
      enters++
      if (!(generation > lastGeneration)) disorder.push(`log line ${line}: ${text} after generation ${lastGeneration}`)
      lastGeneration = Math.max(lastGeneration, generation)
      for (const other of inside.values()) {
        if (other.killedAt !== undefined) {
          holderKills++
          inside.delete(other.token)
        } else if (other.terminatedAt !== undefined && generation > other.generation) {
          if (other.fenced !== true) fenced++
          other.fenced = true
        } else {
          overlaps.push(`log line ${line}: ${text} while ${describe(other)} holds`)
        }
      }
      inside.set(token, { pid, token, generation, line })
    } else if (word === "exit" && holding !== undefined && holding.killedAt === undefined) {
      inside.delete(token)
    } else if (
      (word === "kill" || word === "terminate") && holding?.killedAt === undefined &&
      holding?.terminatedAt === undefined && holding !== undefined
    ) {
      if (word === "kill") holding.killedAt = line
      else {
        holding.terminatedAt = line
        terminations++
      }
    } else if (word === "kill" || word === "terminate") {
      strays.push(`log line ${line}: ${text}, but the holders are ${holders()}`)
    } else {
      overlaps.push(`log line ${line}: ${text}, but the holders are ${holders()}`)
    }
  })
  const lastKilled = [...inside.values()].find((holding) => holding.killedAt !== undefined)
  return {
    enters,
    lastGeneration,
    holderKills,
    terminations,
    overlaps,
    fenced,
    disorder,
    strays,
    untakenKill: lastKilled === undefined
      ? undefined
      : `log line ${lastKilled.killedAt}: kill ${describe(lastKilled)}, and no later enter`
  }
}

// -----------------------------------------------------------------------------
// The children
// -----------------------------------------------------------------------------

interface Racer {
  readonly process: ChildProcess.ChildProcess
  readonly pid: number
  /** Everything it printed but its holds and losses: logs, errors, stderr. */
  readonly output: Array<string>
  readonly closed: Promise<void>
}

interface Hold {
  readonly pid: number
  readonly token: string
  readonly generation: number
  readonly backendPid: number
}

type RaceEvent =
  | { readonly _tag: "Hold"; readonly racer: Racer; readonly hold: Hold }
  | { readonly _tag: "Lost"; readonly racer: Racer; readonly token: string }
  | { readonly _tag: "Exit"; readonly racer: Racer; readonly code: number | null; readonly signal: string | null }

const describeRacer = (racer: Racer) => `child ${racer.pid} (output ${JSON.stringify(racer.output.slice(-10))})`

// Levels of the log lines that mean something went wrong in a child.
const TROUBLE = new Set(["WARN", "ERROR", "FATAL"])

// What a holder whose session was ended logs when its scope gives the lock
// back: the release finds the session gone. Expected of those holders only.
const isReleaseAfterTermination = (message: string) =>
  /^PidLock: release of \S+ failed: .* \(its session had ended: /.test(message)

/** The racer and all it imports in one CommonJS script in `runDir`; its path. */
const bundleRacer = (runDir: string) =>
  Effect.promise(async () => {
    const script = Path.join(runDir, "pgRacer.cjs")
    await Esbuild.build({
      entryPoints: [RACER],
      absWorkingDir: REPO,
      bundle: true,
      platform: "node",
      format: "cjs",
      outfile: script,
      // pg's optional native binding, never loaded unless asked for.
      external: ["pg-native"],
      logLevel: "error"
    })
    return script
  })

const spawnRacer = (
  events: Queue.Queue<RaceEvent>,
  onTrouble: (racer: Racer, message: string) => void,
  script: string,
  args: ReadonlyArray<string>
): Racer => {
  const child = ChildProcess.spawn(process.execPath, [script, ...args], {
    cwd: REPO,
    stdio: ["pipe", "pipe", "pipe"]
  })
  const output: Array<string> = []
  const closed = new Promise<void>((resolve) =>
    child.once("close", (code, signal) => {
      Queue.unsafeOffer(events, { _tag: "Exit", racer, code, signal })
      resolve()
    })
  )
  const racer: Racer = { process: child, pid: child.pid ?? -1, output, closed }
  Readline.createInterface({ input: child.stdout! }).on("line", (line) => {
    if (line.startsWith("hold ")) {
      Queue.unsafeOffer(events, { _tag: "Hold", racer, hold: JSON.parse(line.slice(5)) })
      return
    }
    if (line.startsWith("lost ")) {
      Queue.unsafeOffer(events, { _tag: "Lost", racer, token: JSON.parse(line.slice(5)).token })
      return
    }
    output.push(line)
    if (line.startsWith("log ")) {
      const { level, message } = JSON.parse(line.slice(4))
      if (TROUBLE.has(level)) onTrouble(racer, message)
    }
  })
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => output.push(chunk))
  child.once("error", (error) => output.push(String(error)))
  // A child that died has closed its stdin: its exit tells more than the write error.
  child.stdin!.on("error", () => {})
  return racer
}

// -----------------------------------------------------------------------------
// The run
// -----------------------------------------------------------------------------

export const runPgStress = (options: PgStressOptions): Effect.Effect<PgStressReport> =>
  Effect.scoped(Effect.gen(function*() {
    const minKills = options.minKills ?? 0
    const minTerminations = options.minTerminations ?? 0
    const sql = yield* PgClient.PgClient
    const runDir = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "pidlock-pgstress-"))),
      (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
    )
    const logPath = Path.join(runDir, "race.log")
    const script = yield* bundleRacer(runDir)
    const log = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.openSync(logPath, "a")),
      (fd) => Effect.sync(() => Fs.closeSync(fd))
    )
    const events = yield* Queue.unbounded<RaceEvent>()
    const running = new Map<number, Racer>()
    const killed = new Set<number>()
    /** Tokens of holders whose session was ended, until their `lost` arrives. */
    const awaitingLoss = new Set<string>()
    const terminatedRacers = new Set<number>()
    const troubles: Array<{ readonly racer: Racer; readonly message: string }> = []
    let problems: Array<string> = []
    let stalled = false
    // Whatever ends the run, no child outlives it.
    yield* Effect.addFinalizer(() =>
      Effect.promise(() =>
        Promise.all([...running.values()].map((racer) => {
          racer.process.kill("SIGKILL")
          return racer.closed
        }))
      )
    )
    let started = 0
    const start = () => {
      // Every other racer waits in the server rather than failing fast.
      const wait = started++ % 2 === 0 ? ["--wait-ms", String(WAIT_MS)] : []
      const racer = spawnRacer(events, (racer, message) => troubles.push({ racer, message }), script, [
        "--url",
        options.url,
        "--name",
        NAME,
        "--log",
        logPath,
        "--pause-ms",
        options.pauseMs.join("-"),
        "--check-interval",
        String(CHECK_INTERVAL_MS),
        ...wait
      ])
      running.set(racer.pid, racer)
    }
    // `None` once no event came for the stall time.
    const nextEvent = Effect.timeoutTo(Queue.take(events), {
      duration: STALL,
      onSuccess: Option.some,
      onTimeout: Option.none
    })
    const onLost = (racer: Racer, token: string) => {
      if (!awaitingLoss.delete(token)) {
        problems.push(`${describeRacer(racer)} lost the lock as ${token}, whose session was not ended`)
      }
    }

    const startedAt = Date.now()
    for (let index = 0; index < options.processes; index++) start()
    let holds = 0
    let terminations = 0
    for (;;) {
      const event = yield* nextEvent
      if (Option.isNone(event)) {
        stalled = true
        problems.push(`stuck: no child took the lock for ${Duration.format(STALL)}`)
        break
      }
      const { racer } = event.value
      if (event.value._tag === "Exit") {
        running.delete(racer.pid)
        if (killed.has(racer.pid)) continue
        problems.push(`${describeRacer(racer)} exited with code ${event.value.code}, signal ${event.value.signal}`)
        break
      }
      if (event.value._tag === "Lost") {
        onLost(racer, event.value.token)
        continue
      }
      holds++
      const { backendPid, generation, pid, token } = event.value.hold
      if (holds >= options.acquisitions && killed.size >= minKills && terminations >= minTerminations) break
      const dice = Math.random()
      if (dice < options.killProbability) {
        Fs.writeSync(log, `kill ${pid} ${token} ${generation}\n`)
        racer.process.kill("SIGKILL")
        killed.add(racer.pid)
        start()
      } else if (dice < options.killProbability + options.terminateProbability) {
        Fs.writeSync(log, `terminate ${pid} ${token} ${generation}\n`)
        awaitingLoss.add(token)
        terminatedRacers.add(racer.pid)
        terminations++
        // Waits until the backend has exited: the lock is free from then on.
        const [row] = yield* sql.unsafe<{ readonly ended: boolean }>("SELECT pg_terminate_backend($1, 5000) AS ended", [
          backendPid
        ]).pipe(Effect.orDie)
        if (row?.ended !== true) {
          problems.push(`the session ${backendPid} of ${describeRacer(racer)} could not be ended`)
        }
      } else {
        racer.process.stdin!.write("release\n")
      }
    }

    // Every terminated holder must notice its loss before the end of stdin
    // would let it out anyway.
    while (!stalled && awaitingLoss.size > 0) {
      const event = yield* nextEvent
      if (Option.isNone(event)) {
        problems.push(`holders ${[...awaitingLoss].join(", ")} never noticed that their session was ended`)
        break
      }
      if (event.value._tag === "Lost") onLost(event.value.racer, event.value.token)
      else if (event.value._tag === "Exit") {
        running.delete(event.value.racer.pid)
        if (!killed.has(event.value.racer.pid)) problems.push(`${describeRacer(event.value.racer)} exited early`)
      } else event.value.racer.process.stdin!.write("release\n")
    }
    // The end of stdin stops each child after its current try; a holder releases first.
    for (const racer of running.values()) racer.process.stdin!.end()
    while (running.size > 0) {
      const event = yield* nextEvent
      if (Option.isNone(event)) {
        problems.push(`children ${[...running.keys()].join(", ")} did not stop within ${Duration.format(STALL)}`)
        break
      }
      if (event.value._tag === "Lost") onLost(event.value.racer, event.value.token)
      if (event.value._tag !== "Exit") continue
      const { code, racer, signal } = event.value
      running.delete(racer.pid)
      if (code !== 0 && !killed.has(racer.pid)) {
        problems.push(`${describeRacer(racer)} exited with code ${code}, signal ${signal} when told to stop`)
      }
    }
    const seconds = (Date.now() - startedAt) / 1000

    for (const { message, racer } of troubles) {
      if (!(terminatedRacers.has(racer.pid) && isReleaseAfterTermination(message))) {
        problems.push(`child ${racer.pid}: ${message}`)
      }
    }
    const analysis = analyzeLog(Fs.readFileSync(logPath, "utf8").split("\n").filter((line) => line !== ""))
    problems = problems.concat(analysis.overlaps, analysis.disorder, analysis.strays)
    if (analysis.untakenKill !== undefined) problems.push(`stuck: ${analysis.untakenKill}`)
    // No stuck lock: a fresh contender takes it at once (acquire never waits),
    // with a generation above every one logged.
    const fresh = yield* Effect.exit(
      Effect.scoped(Effect.map(PgLock.acquire({ name: NAME }), (lock) => lock.generation))
    )
    if (Exit.isFailure(fresh)) problems.push(`stuck: a fresh acquire failed: ${String(fresh.cause)}`)
    else if (fresh.value <= analysis.lastGeneration) {
      problems.push(
        `a fresh acquire got generation ${fresh.value}, not above the last logged ${analysis.lastGeneration}`
      )
    }

    return {
      processes: options.processes,
      acquisitions: analysis.enters,
      kills: analysis.holderKills,
      terminations: analysis.terminations,
      overlaps: analysis.overlaps.length,
      fenced: analysis.fenced,
      stuck: (stalled || analysis.untakenKill !== undefined ? 1 : 0) + (Exit.isFailure(fresh) ? 1 : 0),
      seconds,
      problems
    }
  })).pipe(
    Effect.provide(Layer.merge(nodeLayer, PgClient.layer({ url: Redacted.make(options.url) }))),
    Effect.orDie
  )
