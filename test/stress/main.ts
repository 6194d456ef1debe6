// `npm run stress`: the stress run of stress.ts, once for each `--dir`
// (default: the OS temporary directory), printing one line for each, e.g.
//   stress: processes=16 acquisitions=5000 kills=1000 waiters=half wait-ms=2000 kills-taken-by-waiters=480
//     takeover-ms-by-waiters=45.8(max 118.3) takeover-ms-by-others=40.0(max 139.8) overlaps=0 stuck=0 generations=1..5001 not-increasing=0 seconds=42.0 fs=ext4
// preceded by a line for each problem found. Exit code 1 if any run found one.
//
//   vite-node test/stress/main.ts [--dir D]... [--processes 16] [--acquisitions 5000] [--kill-probability 0.2]
//     [--pause-ms 100-300] [--wait-ms 2000] [--pid-namespaces D]... [--process-info proc|portable]
//
// Every other child waits up to `--wait-ms` for a held lock on each try (0:
// none waits), so that holders are killed under waiters too.
//
// `--process-info portable` makes every contender judge holders with the
// portable ProcessInfo (ps, sysctl, kill(pid, 0)), as on macOS and FreeBSD.
//
// Each `--pid-namespaces D` adds a run in D with every child in a pid
// namespace of its own (needs root and util-linux's unshare).
//
// The children load the package from dist/: run `npm run build` after changing src/.
//
// `--backend postgres` runs the stress run over PostgreSQL instead, with
// options of its own: see pgMain.ts.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Os from "node:os"
import { parseArgs } from "node:util"
import { postgresStress } from "./pgMain.js"
import { formatReport, runStress } from "./stress.js"

const { backend = "file" } = parseArgs({ options: { backend: { type: "string" } }, strict: false }).values
if (backend !== "file" && backend !== "postgres") {
  process.stderr.write(`stress: --backend ${JSON.stringify(backend)} is neither file nor postgres\n`)
  process.exit(2)
}

const { values } = parseArgs({
  // The postgres run parses its own.
  args: backend === "file" ? process.argv.slice(2) : [],
  options: {
    dir: { type: "string", multiple: true },
    processes: { type: "string", default: "16" },
    acquisitions: { type: "string", default: "5000" },
    "kill-probability": { type: "string", default: "0.2" },
    "pause-ms": { type: "string", default: "100-300" },
    "wait-ms": { type: "string", default: "2000" },
    "pid-namespaces": { type: "string", multiple: true },
    "process-info": { type: "string", default: "proc" },
    backend: { type: "string" }
  }
})

const outOfRange = (name: string, text: string): never => {
  process.stderr.write(`stress: --${name} ${JSON.stringify(text)} is out of range\n`)
  return process.exit(2)
}

const numberOption = (name: string, text: string, valid: (value: number) => boolean) => {
  const value = Number(text)
  return valid(value) ? value : outOfRange(name, text)
}

// `MIN-MAX` milliseconds.
const rangeOption = (name: string, text: string): readonly [number, number] => {
  const [min, max] = text.split("-").map(Number)
  const valid = (n: number | undefined): n is number => Number.isInteger(n) && n! >= 0
  return valid(min) && valid(max) && min <= max ? [min, max] : outOfRange(name, text)
}

const processInfo = values["process-info"]
if (processInfo !== "proc" && processInfo !== "portable") {
  process.stderr.write(`stress: --process-info ${JSON.stringify(processInfo)} is neither proc nor portable\n`)
  process.exit(2)
}

const options = {
  processInfo: processInfo as "proc" | "portable",
  processes: numberOption("processes", values.processes, (n) => Number.isInteger(n) && n >= 2),
  acquisitions: numberOption("acquisitions", values.acquisitions, (n) => Number.isInteger(n) && n >= 1),
  killProbability: numberOption("kill-probability", values["kill-probability"], (p) => p >= 0 && p < 1),
  pauseMs: rangeOption("pause-ms", values["pause-ms"]),
  waitMs: numberOption("wait-ms", values["wait-ms"], (n) => Number.isInteger(n) && n >= 0)
}

const MAX_PROBLEMS_SHOWN = 20

const runs = [
  ...(values.dir ?? (values["pid-namespaces"] === undefined ? [Os.tmpdir()] : [])).map((dir) => ({
    dir,
    pidNamespaces: false
  })),
  ...(values["pid-namespaces"] ?? []).map((dir) => ({ dir, pidNamespaces: true }))
]

const program = Effect.forEach(runs, (run) =>
  Effect.map(runStress({ ...options, ...run }), (report) => {
    for (const problem of report.problems.slice(0, MAX_PROBLEMS_SHOWN)) console.error(`stress: ${problem}`)
    if (report.problems.length > MAX_PROBLEMS_SHOWN) {
      console.error(`stress: … and ${report.problems.length - MAX_PROBLEMS_SHOWN} more problems`)
    }
    console.log(formatReport(report))
    if (report.problems.length > 0) process.exitCode = 1
  }))

NodeRuntime.runMain(backend === "postgres" ? postgresStress : program)
