// The real-process stress run, shared by `npm run stress` (main.ts) and the
// short run in test/processes.test.ts.
//
// `processes` children run racer.mjs: each takes one lock in a loop through
// the package's public API (the build in dist/), appends `enter`/`exit` lines
// to one O_APPEND log and announces every hold on stdout. The runner decides
// each hold: with probability `killProbability` it appends `kill <pid>` to the
// log, SIGKILLs the holder and starts a replacement; otherwise it tells the
// holder to release. Afterwards the log is replayed for overlapping holdings,
// killed holders whose lock nobody took, and generations that do not grow
// from one acquisition to the next, and a fresh acquire must take the lock at
// once, with a generation greater than every one before.
//
// A fifth of the children are replacements for killed ones, so their start-up
// sets the pace: the racer and all it imports are bundled into one script and
// built into a V8 start-up snapshot once per run, which cuts a child's start
// from about 0.7 to 0.17 CPU-seconds here.
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Esbuild from "esbuild"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Readline from "node:readline"
import { fileURLToPath } from "node:url"
import * as PidLock from "../../src/PidLock.js"
import { nodeLayerOf, type ProcessInfoKind } from "../support/nodeEnvironment.js"

const RACER = fileURLToPath(new URL("./racer.mjs", import.meta.url))
const REPO = fileURLToPath(new URL("../..", import.meta.url))
const NAME = "stress"
/** A lock that no child could take for this long is stuck: the run stops. */
const STALL = Duration.seconds(30)

export interface StressOptions {
  /** Where the run makes its temporary directory, which holds the lock home and the log. */
  readonly dir: string
  /** Children racing at any time: each killed one is replaced at once. */
  readonly processes: number
  /** The run stops at the first hold released once this many holds were made. */
  readonly acquisitions: number
  /** The chance that a hold ends with SIGKILL rather than a release. */
  readonly killProbability: number
  /** A racer pauses a random time within this range of milliseconds after each try, e.g. `[20, 80]`. */
  readonly pauseMs: readonly [number, number]
  /**
   * Every other child waits up to this many milliseconds for a held lock on
   * each try (woken by the watch, the holder's socket or the poll) rather
   * than failing fast. None waits when it is absent or 0.
   */
  readonly waitMs?: number | undefined
  /** The run also goes on until this many holders were killed. */
  readonly minKills?: number | undefined
  /**
   * Each child in a pid namespace of its own (`unshare --pid --mount-proc`),
   * as restarted containers sharing a lock directory are: no child can see
   * another in its `/proc`, every one is PID 1, and only the holder's socket
   * tells a live holder from a dead one.
   */
  readonly pidNamespaces?: boolean | undefined
  /** The `ProcessInfo` every contender judges holders by: `/proc` (the default) or the portable one (ps, kill). */
  readonly processInfo?: ProcessInfoKind | undefined
}

export interface StressReport {
  /** Type of the file system that holds the lock, from /proc/mounts. */
  readonly fileSystem: string
  readonly pidNamespaces: boolean
  readonly processInfo: ProcessInfoKind
  readonly processes: number
  readonly waitMs: number
  /** `enter` lines in the log. */
  readonly acquisitions: number
  /** Holders SIGKILLed while holding whose lock another process then took. */
  readonly kills: number
  /** Of those, the ones taken by a child that was waiting. */
  readonly killsTakenByWaiters: number
  /**
   * Milliseconds from a holder's SIGKILL to the next hold the runner is told
   * of, median and slowest, when a waiting child took the lock and when one
   * that tried again after its pause did: a waiter woken only by its poll
   * would take up to a second.
   */
  readonly takeoverMs: { readonly waiters: Spread; readonly others: Spread }
  /** Two holders at once, per the log or per the owner entry a holder found. */
  readonly overlaps: number
  /** 1 if nobody could take the lock during the run (or after the last kill), plus 1 if a fresh acquire at the end failed. */
  readonly stuck: number
  /** The first and the last generation handed out, the fresh acquire's at the end included. */
  readonly generations: readonly [number, number] | undefined
  /** Acquisitions handed a generation not greater than the one before them, in the order of the log. */
  readonly generationsNotIncreasing: number
  readonly seconds: number
  /** One line for each overlap, stuck lock, leftover, warning and failed child: empty when all went well. */
  readonly problems: ReadonlyArray<string>
}

/** The median and the largest of some figures; NaN for none. */
export interface Spread {
  readonly median: number
  readonly max: number
}

const spreadOf = (values: ReadonlyArray<number>): Spread => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0
    ? { median: NaN, max: NaN }
    : { median: sorted[Math.floor((sorted.length - 1) / 2)]!, max: sorted[sorted.length - 1]! }
}

const formatSpread = ({ max, median }: Spread) => `${median.toFixed(1)}(max ${max.toFixed(1)})`

export const formatReport = (report: StressReport) =>
  `stress: processes=${report.processes} acquisitions=${report.acquisitions} kills=${report.kills} ` +
  (report.waitMs > 0
    ? `waiters=half wait-ms=${report.waitMs} kills-taken-by-waiters=${report.killsTakenByWaiters} ` +
      `takeover-ms-by-waiters=${formatSpread(report.takeoverMs.waiters)} ` +
      `takeover-ms-by-others=${formatSpread(report.takeoverMs.others)} `
    : "") +
  `overlaps=${report.overlaps} stuck=${report.stuck} generations=${report.generations?.join("..") ?? "none"} ` +
  `not-increasing=${report.generationsNotIncreasing} seconds=${report.seconds.toFixed(1)} fs=${report.fileSystem}` +
  (report.pidNamespaces ? " pid-namespaces=separate" : "") +
  (report.processInfo === "proc" ? "" : ` process-info=${report.processInfo}`)

// -----------------------------------------------------------------------------
// The log
// -----------------------------------------------------------------------------

interface LogAnalysis {
  readonly enters: number
  readonly holderKills: number
  readonly overlaps: ReadonlyArray<string>
  /** Kills of a process that did not hold the lock at that point of the log. */
  readonly strayKills: ReadonlyArray<string>
  /** The last killed holder, when no later enter took its lock. */
  readonly untakenKill: string | undefined
  /** The generation of each enter, in the order of the log. */
  readonly generations: ReadonlyArray<number>
}

/**
 * Replays the log. A holding runs from its `enter` to its `exit`, or to the
 * runner's `kill` of its process (named by the PID and token it announced:
 * in separate pid namespaces every child is PID 1). Children log `enter` after acquiring and
 * `exit` before releasing, and the runner logs `kill` before sending SIGKILL,
 * so every logged holding lies inside the real one: two logged holdings that
 * overlap prove two real holders at once. For the same reason the enters are
 * in the order of the acquisitions, and so must their generations be.
 */
const analyzeLog = (lines: ReadonlyArray<string>): LogAnalysis => {
  let current: { pid: number; token: string; line: number; killedAt?: number } | undefined
  let enters = 0
  let holderKills = 0
  const overlaps: Array<string> = []
  const strayKills: Array<string> = []
  const generations: Array<number> = []
  lines.forEach((text, index) => {
    const line = index + 1
    const [word, pidText, token, generation] = text.split(" ")
    const pid = Number(pidText)
    if (word === "enter") {
      enters++
      generations.push(Number(generation))
      if (current?.killedAt !== undefined) holderKills++
      else if (current !== undefined) {
        overlaps.push(
          `log line ${line}: ${text} while ${current.pid} ${current.token} holds (since line ${current.line})`
        )
      }
      current = { pid, token: token!, line }
    } else if (word === "exit" && current?.pid === pid && current.token === token && current.killedAt === undefined) {
      current = undefined
    } else if (word === "kill" && current?.pid === pid && current.token === token && current.killedAt === undefined) {
      current.killedAt = line
    } else if (word === "kill") {
      strayKills.push(
        `log line ${line}: ${text}, but the holder is ${current ? `${current.pid} ${current.token}` : "nobody"}`
      )
    } else {
      overlaps.push(
        `log line ${line}: ${text}, but the holder is ${current ? `${current.pid} ${current.token}` : "nobody"}`
      )
    }
  })
  return {
    enters,
    holderKills,
    overlaps,
    strayKills,
    untakenKill: current?.killedAt !== undefined
      ? `log line ${current.killedAt}: kill ${current.pid} (holder since line ${current.line}), and no later enter`
      : undefined,
    generations
  }
}

// Where a generation is not greater than the one handed out before it.
const notIncreasing = (generations: ReadonlyArray<number>): ReadonlyArray<string> =>
  generations.flatMap((generation, index) =>
    index > 0 && !(generation > generations[index - 1]!)
      ? [`acquisition ${index + 1} was handed generation ${generation}, after ${generations[index - 1]}`]
      : []
  )

// -----------------------------------------------------------------------------
// The children
// -----------------------------------------------------------------------------

interface Racer {
  readonly process: ChildProcess.ChildProcess
  readonly pid: number
  /** Everything it printed but its holds: logs, errors, stderr. */
  readonly output: Array<string>
  readonly closed: Promise<void>
  /** It waits for a held lock on each try. */
  readonly waits: boolean
}

type RaceEvent =
  | { readonly _tag: "Hold"; readonly racer: Racer; readonly pid: number; readonly token: string }
  | { readonly _tag: "Exit"; readonly racer: Racer; readonly code: number | null; readonly signal: string | null }

const describeRacer = (racer: Racer) => `child ${racer.pid} (output ${JSON.stringify(racer.output.slice(-10))})`

// Levels of the log lines that mean something went wrong in a child, e.g. a
// release that found its owner entry gone. Takeovers are logged at INFO.
const TROUBLE = new Set(["WARN", "ERROR", "FATAL"])

/** The arguments of `node` that start a racer: its start-up snapshot, built in `runDir`. */
const buildRacer = (runDir: string) =>
  Effect.promise(async () => {
    const script = Path.join(runDir, "racer.cjs")
    const snapshot = Path.join(runDir, "racer.blob")
    // A snapshot is built from one CommonJS script that requires nothing but Node's own modules.
    await Esbuild.build({
      entryPoints: [RACER],
      absWorkingDir: REPO,
      bundle: true,
      platform: "node",
      format: "cjs",
      outfile: script,
      logLevel: "error"
    })
    const built = ChildProcess.spawnSync(process.execPath, ["--snapshot-blob", snapshot, "--build-snapshot", script], {
      cwd: runDir,
      encoding: "utf8"
    })
    if (built.status !== 0) throw new Error(`building the racer's snapshot failed: ${built.stderr}`)
    // After the snapshot, argv[1] is the first argument: a placeholder keeps the racer's arguments where they were.
    return ["--snapshot-blob", snapshot, "racer"]
  })

const spawnRacer = (
  events: Queue.Queue<RaceEvent>,
  onTrouble: (problem: string) => void,
  command: ReadonlyArray<string>,
  runDir: string,
  logPath: string,
  pauseMs: readonly [number, number],
  waitMs: number,
  pidNamespace: boolean,
  processInfo: ProcessInfoKind
): Racer => {
  const args = [
    "--dir",
    runDir,
    "--name",
    NAME,
    "--log",
    logPath,
    "--pause-ms",
    pauseMs.join("-"),
    "--wait-ms",
    String(waitMs),
    "--process-info",
    processInfo
  ]
  const node = [process.execPath, ...command, ...args]
  // With --kill-child, the SIGKILL of unshare reaches the child too.
  const [file, ...argv] = pidNamespace ? ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", ...node] : node
  const child = ChildProcess.spawn(file!, argv, {
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
  const racer: Racer = { process: child, pid: child.pid ?? -1, output, closed, waits: waitMs > 0 }
  Readline.createInterface({ input: child.stdout! }).on("line", (line) => {
    if (line.startsWith("hold ")) {
      const { pid, token } = JSON.parse(line.slice(5))
      Queue.unsafeOffer(events, { _tag: "Hold", racer, pid, token })
      return
    }
    output.push(line)
    if (line.startsWith("log ") && TROUBLE.has(JSON.parse(line.slice(4)).level)) {
      onTrouble(`child ${racer.pid}: ${line}`)
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

/** The type of the file system holding `path`: the longest mount point in /proc/mounts that contains it. */
const fileSystemOf = (path: string) => {
  const real = Fs.realpathSync(path)
  let found = { mountPoint: "", type: "unknown" }
  for (const line of Fs.readFileSync("/proc/mounts", "utf8").split("\n")) {
    const [, escaped, type] = line.split(" ")
    if (escaped === undefined || type === undefined) continue
    const mountPoint = escaped.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)))
    const contains = mountPoint === "/" || real === mountPoint || real.startsWith(`${mountPoint}/`)
    // Later lines mount over earlier ones at the same point.
    if (contains && mountPoint.length >= found.mountPoint.length) found = { mountPoint, type }
  }
  return found.type
}

const list = (path: string) => Fs.existsSync(path) ? Fs.readdirSync(path).sort() : []

export const runStress = (options: StressOptions): Effect.Effect<StressReport> =>
  Effect.scoped(Effect.gen(function*() {
    const minKills = options.minKills ?? 0
    const runDir = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.mkdtempSync(Path.join(options.dir, "pidlock-stress-"))),
      (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
    )
    const home = Path.join(runDir, NAME)
    const lockDir = Path.join(home, "lock")
    const logPath = Path.join(runDir, "race.log")
    const racerCommand = yield* buildRacer(runDir)
    const log = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.openSync(logPath, "a")),
      (fd) => Effect.sync(() => Fs.closeSync(fd))
    )
    const events = yield* Queue.unbounded<RaceEvent>()
    const running = new Map<number, Racer>()
    const killed = new Set<number>()
    let problems: Array<string> = []
    let ownerMismatches = 0
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
      const racer = spawnRacer(
        events,
        (problem) => problems.push(problem),
        racerCommand,
        runDir,
        logPath,
        options.pauseMs,
        started++ % 2 === 0 ? options.waitMs ?? 0 : 0,
        options.pidNamespaces ?? false,
        options.processInfo ?? "proc"
      )
      running.set(racer.pid, racer)
    }
    // `None` once no event came for the stall time.
    const nextEvent = Effect.timeoutTo(Queue.take(events), {
      duration: STALL,
      onSuccess: Option.some,
      onTimeout: Option.none
    })

    const startedAt = Date.now()
    for (let index = 0; index < options.processes; index++) start()
    let holds = 0
    let killedAt: number | undefined
    const takeovers = { waiters: new Array<number>(), others: new Array<number>() }
    for (;;) {
      const event = yield* nextEvent
      if (Option.isNone(event)) {
        stalled = true
        problems.push(`stuck: no child took the lock for ${Duration.format(STALL)}; lock: ${list(lockDir).join(", ")}`)
        break
      }
      const { racer } = event.value
      if (event.value._tag === "Exit") {
        running.delete(racer.pid)
        if (killed.has(racer.pid)) continue
        problems.push(`${describeRacer(racer)} exited with code ${event.value.code}, signal ${event.value.signal}`)
        break
      }
      holds++
      if (killedAt !== undefined) {
        takeovers[racer.waits ? "waiters" : "others"].push(performance.now() - killedAt)
        killedAt = undefined
      }
      // The holder waits for our answer: the lock must hold its entry and nothing else.
      const entries = list(lockDir)
      const own = `${event.value.pid}.${event.value.token}`
      if (entries.length !== 1 || entries[0] !== own) {
        ownerMismatches++
        problems.push(`child ${racer.pid} holds as ${own}, but the lock holds [${entries.join(", ")}]`)
      }
      if (holds >= options.acquisitions && killed.size >= minKills) break
      if (Math.random() < options.killProbability) {
        Fs.writeSync(log, `kill ${event.value.pid} ${event.value.token}\n`)
        racer.process.kill("SIGKILL")
        killedAt = performance.now()
        killed.add(racer.pid)
        start()
      } else {
        racer.process.stdin!.write("release\n")
      }
    }

    // The end of stdin stops each child after its current try; a holder releases first.
    for (const racer of running.values()) racer.process.stdin!.end()
    while (running.size > 0) {
      const event = yield* nextEvent
      if (Option.isNone(event)) {
        problems.push(`children ${[...running.keys()].join(", ")} did not stop within ${Duration.format(STALL)}`)
        break
      }
      if (event.value._tag !== "Exit") continue
      const { code, racer, signal } = event.value
      running.delete(racer.pid)
      if (code !== 0 && !killed.has(racer.pid)) {
        problems.push(`${describeRacer(racer)} exited with code ${code}, signal ${signal} when told to stop`)
      }
    }
    const seconds = (Date.now() - startedAt) / 1000

    const analysis = analyzeLog(Fs.readFileSync(logPath, "utf8").split("\n").filter((line) => line !== ""))
    problems = problems.concat(analysis.overlaps, analysis.strayKills)
    if (analysis.untakenKill !== undefined) problems.push(`stuck: ${analysis.untakenKill}`)
    // Every child has stopped, and the only ones killed were holding (their
    // staging directory was already the lock): nothing else may be left.
    const leftInLock = list(lockDir)
    if (leftInLock.length > 0) problems.push(`the lock still holds ${leftInLock.join(", ")} after every child stopped`)
    // No stuck lock: a fresh contender takes it at once (acquire never waits).
    const fresh = yield* Effect.exit(
      Effect.scoped(PidLock.acquire({ name: NAME, dir: runDir })).pipe(
        Effect.provide(nodeLayerOf(options.processInfo ?? "proc"))
      )
    )
    if (Exit.isFailure(fresh)) problems.push(`stuck: a fresh acquire failed: ${String(fresh.cause)}`)
    const generations = Exit.isSuccess(fresh) ? [...analysis.generations, fresh.value.generation] : analysis.generations
    const generationProblems = notIncreasing(generations)
    problems = problems.concat(generationProblems)
    // Stopped children removed their sockets; a killed holder's went with the
    // takeover of its lock (the fresh acquire's, for the last one). The
    // generation counter stays.
    const litter = list(home).filter((name) => name !== "lock" && name !== "generation")
    if (litter.length > 0) {
      problems.push(`staging directories, sockets or counter links left in the lock home: ${litter.join(", ")}`)
    }

    return {
      fileSystem: fileSystemOf(runDir),
      pidNamespaces: options.pidNamespaces ?? false,
      processInfo: options.processInfo ?? "proc",
      processes: options.processes,
      waitMs: options.waitMs ?? 0,
      acquisitions: analysis.enters,
      kills: analysis.holderKills,
      killsTakenByWaiters: takeovers.waiters.length,
      takeoverMs: { waiters: spreadOf(takeovers.waiters), others: spreadOf(takeovers.others) },
      overlaps: analysis.overlaps.length + ownerMismatches,
      stuck: (stalled || analysis.untakenKill !== undefined ? 1 : 0) + (Exit.isFailure(fresh) ? 1 : 0),
      generations: generations.length === 0 ? undefined : [generations[0]!, generations[generations.length - 1]!],
      generationsNotIncreasing: generationProblems.length,
      seconds,
      problems
    }
  }))
