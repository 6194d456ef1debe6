// One contender of the stress run (stress.ts): it takes the lock through the
// package's public API in a loop until its stdin ends.
//
//   node racer.mjs --dir D --name N --log F [--pause-ms MIN-MAX] [--wait-ms W] [--process-info proc|portable]
//
// With --wait-ms, each try waits up to W milliseconds for a held lock.
// After each acquisition it appends `enter <pid> <token> <generation>` to F,
// prints `hold {pid, token}` and holds until a line arrives on stdin (or stdin
// ends), then appends `exit <pid> <token>` and releases. After each try, held
// or LockHeld, it pauses a random MIN to MAX milliseconds (20-80 by default).
// Any other error ends it with exit code 1.
//
// The runner loads it from a V8 start-up snapshot, so that the modules are
// evaluated once per run instead of once per process: `main` runs when the
// snapshot is loaded, not while it is built. argv[1] names the program either
// way (the runner passes a placeholder after the snapshot).
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as PidLock from "effect-pidlock/PidLock"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Readline from "node:readline"
import { parseArgs } from "node:util"
import * as V8 from "node:v8"
import { environmentOf, print } from "../fixtures/child.mjs"

const randomMillis = (min, max) => min + Math.floor(Math.random() * (max - min + 1))

const race = (args) => {
  const waitMs = Number(args["wait-ms"])
  const options = { name: args.name, dir: args.dir, ...(waitMs > 0 ? { wait: waitMs } : {}) }
  const [pauseMin, pauseMax] = args["pause-ms"].split("-").map(Number)
  const log = Fs.openSync(args.log, "a")
  // One write of a whole line to a file opened with O_APPEND: atomic with
  // respect to the other processes' appends.
  const append = (line) => Fs.writeSync(log, `${line}\n`)
  // The parent answers each `hold` with a line (release) or with SIGKILL, so
  // a hold lasts until the parent has decided, and every kill hits a holder.
  let answered = false
  let stopped = false
  let wake = () => {}
  Readline.createInterface({ input: process.stdin })
    .on("line", () => {
      answered = true
      wake()
    })
    .on("close", () => {
      stopped = true
      wake()
    })
  // An answer may arrive before the hold starts waiting for it: it is kept.
  const awaitAnswer = Effect.async((resume) => {
    wake = () => {
      if (!answered && !stopped) return
      answered = false
      wake = () => {}
      resume(Effect.void)
    }
    wake()
  })
  const once = Effect.scoped(Effect.gen(function*() {
    const lock = yield* PidLock.acquire(options)
    append(`enter ${process.pid} ${lock.owner.token} ${lock.generation}`)
    print("hold", { pid: process.pid, token: lock.owner.token })
    yield* awaitAnswer
    append(`exit ${process.pid} ${lock.owner.token}`)
  })).pipe(Effect.catchTag("LockHeld", () => Effect.void))
  return Effect.gen(function*() {
    while (!stopped) {
      yield* once
      // Also after a release, so that the other contenders get their turn.
      yield* Effect.sleep(randomMillis(pauseMin, pauseMax))
    }
  })
}

const main = () => {
  const { values: args } = parseArgs({
    args: process.argv.slice(2),
    options: {
      dir: { type: "string" },
      name: { type: "string" },
      log: { type: "string" },
      "pause-ms": { type: "string", default: "20-80" },
      "wait-ms": { type: "string", default: "0" },
      "process-info": { type: "string", default: "proc" }
    }
  })
  // Without the pretty logger that runMain adds, every log line goes through ours.
  NodeRuntime.runMain(race(args).pipe(Effect.provide(environmentOf(args["process-info"]))), {
    disablePrettyLogger: true
  })
}

if (V8.startupSnapshot.isBuildingSnapshot()) V8.startupSnapshot.setDeserializeMainFunction(main)
else main()
