// `npm run explore`: the interleaving explorer at full bounds, one child
// process per core, with each ProcessInfo. Prints a line per search, any
// failure with its schedule, the sums by ProcessInfo, K and starting state,
// and one final line per ProcessInfo and K:
//
//   explore: K=3 schedules=100000 violations=0 stuck=0
//   explore: K=3 process-info=portable schedules=7500 violations=0 stuck=0
//
// `--schedules N` sets the random schedules for K=3 with the /proc
// ProcessInfo, shared out over the three scenarios (100,000 by default),
// `--portable-schedules N` those with the portable one (7,500 by default);
// `--process-info proc` or `--process-info portable` runs that configuration
// alone; `--scenarios held,free` (for a quicker check) only the starting states
// named, the random schedules shared out over them.
import { fork } from "node:child_process"
import { createRequire } from "node:module"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { type Report, search, type SearchOptions } from "./explorer.js"
import { type ProcessInfoKind, type Scenario, SCENARIOS } from "./world.js"

type Task = Omit<SearchOptions, "onProgress" | "onSchedule" | "processInfo" | "posix" | "fileSystem"> & {
  /** `bound`: counted in the final lines; `reference`: only seen by a reduced search, to check it with. */
  readonly purpose: "bound" | "reference"
}

interface Done {
  readonly task: Task
  readonly report: Omit<Report, "endStates"> & { readonly endStates: ReadonlyArray<string> }
  readonly seconds: number
}

const PROCESS_INFO_KINDS: ReadonlyArray<ProcessInfoKind> = ["proc", "portable"]
const DEFAULT_RANDOM_SCHEDULES: Readonly<Record<ProcessInfoKind, number>> = { proc: 100_000, portable: 7_500 }

const RANDOM_SHARDS_PER_SCENARIO = 4
const REFERENCE_RANDOM_SCHEDULES = 3_000

// The reduced search of two contenders, by starting state: how many of them
// may crash. From a stale lock, a holder and a contender have crashed
// already. From a held lock, both may: the holder's second acquisition skips
// the checks of the home, and the other finds the lock held, so its
// schedules are few.
const REDUCED_CRASHES: Readonly<Record<Scenario, number>> = { free: 1, stale: 0, held: 2 }

// The reduced searches by how long they take: many more schedules from a stale lock than from the others.
const LONGEST_FIRST: ReadonlyArray<Scenario> = ["stale", "free", "held"]

const kindOf = (task: Task): ProcessInfoKind => task.processInfoKind ?? "proc"

// `total` shared out as evenly as can be into `parts` whole numbers, the larger ones first.
const shares = (total: number, parts: number): ReadonlyArray<number> =>
  Array.from({ length: parts }, (_, part) => Math.floor(total / parts) + (part < total % parts ? 1 : 0))

// The /proc tasks name no kind: their options are the very ones they had before the portable ProcessInfo.
const tasks = (
  kind: ProcessInfoKind,
  randomSchedules: number,
  scenarios: ReadonlyArray<Scenario>
): ReadonlyArray<Task> => {
  const byScenario = shares(randomSchedules, scenarios.length)
  const ofKind = kind === "proc" ? {} : { processInfoKind: kind }
  return [
    // Every schedule of two contenders up to the order of independent steps. (They run first, so that the
    // others fill the other cores meanwhile.)
    ...scenarios.map((scenario): Task => ({
      ...ofKind,
      purpose: "bound",
      contenders: 2,
      scenario,
      maxCrashes: REDUCED_CRASHES[scenario],
      strategy: { _tag: "reduced" },
      collectEndStates: true
    })),
    // Three contenders: too many classes of schedules to visit them all, so seeded random ones, in shards
    // that keep every core busy: seeds 1..n from each starting state, n its share of the schedules.
    ...scenarios.flatMap((scenario, index) => {
      const counts = shares(byScenario[index]!, RANDOM_SHARDS_PER_SCENARIO).filter((count) => count > 0)
      return counts.map((count, shard): Task => ({
        ...ofKind,
        purpose: "bound",
        contenders: 3,
        scenario,
        strategy: {
          _tag: "random",
          count,
          seed: 1 + counts.slice(0, shard).reduce((sum, earlier) => sum + earlier, 0)
        }
      }))
    }),
    // References for the reduction: random schedules under the same bounds, each of whose end states the
    // reduced search must have seen. (With every file-system call of the socket, the counter and the
    // checks a step, the plain search is out of reach.)
    ...scenarios.map((scenario): Task => ({
      ...ofKind,
      purpose: "reference",
      contenders: 2,
      scenario,
      maxCrashes: REDUCED_CRASHES[scenario],
      strategy: { _tag: "random", count: REFERENCE_RANDOM_SCHEDULES, seed: 1 },
      collectEndStates: true
    }))
  ]
}

const kindLabel = (task: Task): string => kindOf(task) === "proc" ? "" : ` process-info=${kindOf(task)}`

const describe = (task: Task): string => {
  const maxCrashes = task.maxCrashes ?? task.contenders
  const crashes = maxCrashes === 0 ? "no crash" : `up to ${maxCrashes} crash${maxCrashes === 1 ? "" : "es"}`
  const strategy = task.strategy._tag === "random"
    ? `random, seeds ${task.strategy.seed}..${task.strategy.seed + task.strategy.count - 1}`
    : task.strategy._tag === "reduced"
    ? "every schedule up to the order of independent steps"
    : "every schedule"
  return `K=${task.contenders} ${task.scenario}${kindLabel(task)} (${strategy}; ${crashes})`
}

// -- child: run one task and send the report back

const runTask = (task: Task): void => {
  const started = performance.now()
  const report = search({ ...task, onProgress: (report) => process.send!({ progress: report.schedules }) })
  const done: Done = {
    task,
    report: { ...report, endStates: [...report.endStates] },
    seconds: (performance.now() - started) / 1000
  }
  process.send!({ done }, () => process.exit(0))
}

// -- parent: run the tasks on every core, then print

const viteNode = Path.join(
  Path.dirname(createRequire(import.meta.url).resolve("vite-node/package.json")),
  "vite-node.mjs"
)

const PROGRESS_SECONDS = 30
let progressShown = performance.now()

// Long runs say now and then how far they are, on stderr.
const showProgress = (task: Task, schedules: number): void => {
  if (performance.now() - progressShown < PROGRESS_SECONDS * 1000) return
  progressShown = performance.now()
  console.error(
    `  … K=${task.contenders} ${task.scenario}${kindLabel(task)} ${task.strategy._tag}: ${schedules} schedules so far`
  )
}

const runChild = (task: Task): Promise<Done> =>
  new Promise((resolve, reject) => {
    const child = fork(viteNode, [fileURLToPath(import.meta.url), "--task", JSON.stringify(task)], {
      stdio: "inherit",
      // Every step allocates fibers, errors and paths that die young: a larger young generation saves about a
      // tenth of the time in garbage collection.
      execArgv: ["--max-semi-space-size=32"]
    })
    let done: Done | undefined
    child.on("message", (message: { readonly progress?: number; readonly done?: Done }) => {
      if (message.done !== undefined) done = message.done
      if (message.progress !== undefined) showProgress(task, message.progress)
    })
    child.on("exit", (code) =>
      done !== undefined
        ? resolve(done)
        : reject(new Error(`explorer child for ${JSON.stringify(task)} exited with ${code}`)))
  })

const main = async (
  kinds: ReadonlyArray<ProcessInfoKind>,
  randomSchedules: Readonly<Record<ProcessInfoKind, number>>,
  scenarios: ReadonlyArray<Scenario>
): Promise<number> => {
  const started = performance.now()
  // The reduced searches of every kind first, the longest of them (from a stale lock) first of all.
  const all = kinds.map((kind) => tasks(kind, randomSchedules[kind], scenarios))
  const queue = [
    ...all.flatMap((ofKind) => ofKind.filter((task) => task.strategy._tag === "reduced"))
      .sort((a, b) => LONGEST_FIRST.indexOf(a.scenario) - LONGEST_FIRST.indexOf(b.scenario)),
    ...all.flatMap((ofKind) => ofKind.filter((task) => task.strategy._tag !== "reduced"))
  ]
  const results: Array<Done> = []
  const worker = async () => {
    for (let task = queue.shift(); task !== undefined; task = queue.shift()) {
      const done = await runChild(task)
      results.push(done)
      const { report } = done
      console.log(
        `  ${describe(done.task)}: ${report.schedules} schedules` +
          (report.sleepBlocked > 0 ? ` (and ${report.sleepBlocked} cut short by sleep sets)` : "") +
          `, ${report.violations} violations, ${report.stuck} stuck, ${done.seconds.toFixed(1)} s`
      )
      for (const failure of report.failures) {
        console.log(`explore: FAILURE ${describe(done.task)}: ${failure.messages.join("; ")}`)
        const { contenders, processInfoKind, scenario } = done.task
        console.log(
          `  replay(${JSON.stringify({ contenders, scenario, processInfoKind })}, ${JSON.stringify(failure.schedule)})`
        )
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(Os.availableParallelism(), queue.length) }, worker))

  // The reduction must see every end state (with its sequence of holder changes) that a reference sees: the
  // very same ones as the plain search.
  let failed = results.some((done) => done.report.violations > 0 || done.report.stuck > 0)
  for (
    const reference of results.filter((done) =>
      done.task.purpose === "reference" && done.task.strategy._tag !== "reduced"
    )
  ) {
    const { contenders, maxCrashes, scenario } = reference.task
    const reduced = results.find((done) =>
      done.task.strategy._tag === "reduced" && done.task.contenders === contenders && done.task.scenario === scenario &&
      done.task.maxCrashes === maxCrashes && kindOf(done.task) === kindOf(reference.task)
    )!
    const seen = new Set(reduced.report.endStates)
    const missed = reference.report.endStates.filter((state) => !seen.has(state))
    const exhaustive = reference.task.strategy._tag === "exhaustive"
    const passed = missed.length === 0 && (!exhaustive || seen.size === reference.report.endStates.length)
    failed ||= !passed
    console.log(
      `  reduction check, ${describe(reference.task)}: ${passed ? "passed" : "FAILED"}, ` +
        `${reference.report.endStates.length} end states there, ${seen.size} in the reduced search, ${missed.length} missed`
    )
    for (const state of missed.slice(0, 3)) console.log(`    missed: ${state}`)
  }

  // Per starting state, then in all, for each ProcessInfo and K.
  const totals = (of: ReadonlyArray<Done>) => {
    const sum = (count: (report: Done["report"]) => number) => of.reduce((total, done) => total + count(done.report), 0)
    return `schedules=${sum((r) => r.schedules)} violations=${sum((r) => r.violations)} stuck=${sum((r) => r.stuck)}`
  }
  const groups = kinds.flatMap((kind) => {
    const ofKind = results.filter((done) => kindOf(done.task) === kind && done.task.purpose === "bound")
    const label = kind === "proc" ? "" : ` process-info=${kind}`
    return [...new Set(ofKind.map((done) => done.task.contenders))].sort((a, b) => a - b).map((contenders) => ({
      label: `K=${contenders}${label}`,
      ofK: ofKind.filter((done) => done.task.contenders === contenders)
    }))
  })
  for (const { label, ofK } of groups) {
    for (const scenario of scenarios) {
      const of = ofK.filter((done) => done.task.scenario === scenario)
      if (of.length > 0) console.log(`  ${label} ${scenario}: ${totals(of)}`)
    }
  }
  for (const { label, ofK } of groups) console.log(`explore: ${label} ${totals(ofK)}`)
  console.log(`  ${((performance.now() - started) / 1000).toFixed(0)} s on ${Os.availableParallelism()} cores`)
  return failed ? 1 : 0
}

const argument = (name: string): string | undefined => {
  const index = process.argv.indexOf(name)
  return index < 0 ? undefined : process.argv[index + 1]
}

const kindArgument = (): ReadonlyArray<ProcessInfoKind> => {
  const kind = argument("--process-info")
  if (kind === undefined) return PROCESS_INFO_KINDS
  if (!PROCESS_INFO_KINDS.includes(kind as ProcessInfoKind)) {
    throw new Error(`--process-info ${kind}: expected one of ${PROCESS_INFO_KINDS.join(", ")}`)
  }
  return [kind as ProcessInfoKind]
}

const scenarioArgument = (): ReadonlyArray<Scenario> => {
  const names = argument("--scenarios")?.split(",")
  if (names === undefined) return SCENARIOS
  const unknown = names.filter((name) => !SCENARIOS.includes(name as Scenario))
  if (unknown.length > 0 || names.length === 0) {
    throw new Error(`--scenarios ${names.join(",")}: expected some of ${SCENARIOS.join(", ")}`)
  }
  return SCENARIOS.filter((scenario) => names.includes(scenario))
}

const task = argument("--task")
if (task !== undefined) runTask(JSON.parse(task))
else {
  process.exitCode = await main(kindArgument(), {
    proc: Number(argument("--schedules") ?? DEFAULT_RANDOM_SCHEDULES.proc),
    portable: Number(argument("--portable-schedules") ?? DEFAULT_RANDOM_SCHEDULES.portable)
  }, scenarioArgument())
}
