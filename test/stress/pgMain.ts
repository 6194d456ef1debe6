// `npm run stress -- --backend postgres`: the stress run of pgStress.ts on a
// PostgreSQL server of its own, printing one line, e.g.
//   stress: processes=8 acquisitions=2004 kills=407 terminations=202 overlaps=0 fenced=202 stuck=0 seconds=159.0 backend=postgres
// preceded by a line for each problem found. Exit code 1 if it found one.
//
//   vite-node test/stress/main.ts --backend postgres [--processes 8] [--acquisitions 2000]
//     [--kill-probability 0.2] [--terminate-probability 0.1] [--pause-ms 20-80]
//
// The file run's --dir and --pid-namespaces (which `npm run stress` passes)
// are accepted and mean nothing here. The children load the package from
// dist/: run `npm run build` after changing src/.
import * as Effect from "effect/Effect"
import { parseArgs } from "node:util"
import { startPostgres } from "../support/postgresServer.js"
import { formatPgReport, runPgStress } from "./pgStress.js"

const MAX_PROBLEMS_SHOWN = 20

// Validated as the file run's options are (main.ts): a message and exit code 2.
const outOfRange = (name: string, text: string): never => {
  process.stderr.write(`stress: --${name} ${JSON.stringify(text)} is out of range\n`)
  return process.exit(2)
}

const numberOption = (name: string, text: string, valid: (value: number) => boolean) => {
  const value = Number(text)
  return valid(value) ? value : outOfRange(name, text)
}

const parse = () => {
  const { values } = parseArgs({
    options: {
      backend: { type: "string" },
      processes: { type: "string", default: "8" },
      acquisitions: { type: "string", default: "2000" },
      "kill-probability": { type: "string", default: "0.2" },
      "terminate-probability": { type: "string", default: "0.1" },
      "pause-ms": { type: "string", default: "20-80" },
      dir: { type: "string", multiple: true },
      "pid-namespaces": { type: "string", multiple: true }
    }
  })
  const probability = (p: number) => p >= 0 && p < 1
  const killProbability = numberOption("kill-probability", values["kill-probability"], probability)
  const [pauseMin, pauseMax] = values["pause-ms"].split("-").map(Number)
  const validPause = (n: number | undefined): n is number => Number.isInteger(n) && n! >= 0
  return {
    processes: numberOption("processes", values.processes, (n) => Number.isInteger(n) && n >= 2),
    acquisitions: numberOption("acquisitions", values.acquisitions, (n) => Number.isInteger(n) && n >= 1),
    killProbability,
    terminateProbability: numberOption(
      "terminate-probability",
      values["terminate-probability"],
      (p) => probability(p) && killProbability + p < 1
    ),
    pauseMs: validPause(pauseMin) && validPause(pauseMax) && pauseMin <= pauseMax
      ? [pauseMin, pauseMax] as const
      : outOfRange("pause-ms", values["pause-ms"])
  }
}

const server = Effect.acquireRelease(
  Effect.promise(() => startPostgres()),
  (server) => Effect.promise(() => server.stop())
)

export const postgresStress = Effect.scoped(Effect.gen(function*() {
  const options = parse()
  const { url } = yield* server
  const report = yield* runPgStress({ ...options, url })
  for (const problem of report.problems.slice(0, MAX_PROBLEMS_SHOWN)) console.error(`stress: ${problem}`)
  if (report.problems.length > MAX_PROBLEMS_SHOWN) {
    console.error(`stress: … and ${report.problems.length - MAX_PROBLEMS_SHOWN} more problems`)
  }
  console.log(formatPgReport(report))
  if (report.problems.length > 0) process.exitCode = 1
}))
