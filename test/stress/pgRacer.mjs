// One contender of the stress run over PostgreSQL (pgStress.ts): it takes the
// lock through the package's public API in a loop until its stdin ends.
//
//   node pgRacer.mjs --url U --name N --log F [--pause-ms MIN-MAX] [--wait-ms W] [--check-interval MS]
//
// After each acquisition it appends `enter <pid> <token> <generation>` to F,
// prints `hold {pid, token, generation, backendPid}` and holds until a line
// arrives on stdin (or stdin ends), or the lock is lost; then it appends
// `exit <pid> <token> <generation>` and releases. A lost lock is reported as
// `lost {token, generation}`. After each try, held or LockHeld, it pauses a
// random MIN to MAX milliseconds (20-80 by default). With --wait-ms it waits
// in the server for up to W ms on each try instead of failing fast. Any other
// error ends it with exit code 1.
//
// The runner bundles it into one script first: loading one file instead of
// hundreds of modules cuts a child's start to a third.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as PgLock from "effect-pidlock/PgLock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Fs from "node:fs"
import * as Readline from "node:readline"
import { parseArgs } from "node:util"
import { Environment, print } from "../fixtures/child.mjs"

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    name: { type: "string" },
    log: { type: "string" },
    "pause-ms": { type: "string", default: "20-80" },
    "wait-ms": { type: "string" },
    "check-interval": { type: "string", default: "2000" }
  }
})

const randomMillis = (min, max) => min + Math.floor(Math.random() * (max - min + 1))
const [pauseMin, pauseMax] = args["pause-ms"].split("-").map(Number)

const options = {
  name: args.name,
  checkInterval: Number(args["check-interval"]),
  ...(args["wait-ms"] === undefined ? {} : { wait: Number(args["wait-ms"]) })
}

const log = Fs.openSync(args.log, "a")
// One write of a whole line to a file opened with O_APPEND: atomic with
// respect to the other processes' appends.
const append = (line) => Fs.writeSync(log, `${line}\n`)

// The parent answers each `hold` with a line (release), with SIGKILL, or by
// ending the holder's session; a hold lasts until then.
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
  return Effect.sync(() => {
    wake = () => {}
  })
})

// The session that holds the lock, as the registry names it beside our token.
const backendPidOf = (token) =>
  Effect.flatMap(
    PgClient.PgClient,
    (sql) =>
      sql.unsafe("SELECT backend_pid FROM effect_pidlock WHERE name = $1 AND owner->>'token' = $2", [args.name, token])
  ).pipe(Effect.map(([row]) => row?.backend_pid))

const once = Effect.scoped(Effect.gen(function*() {
  const lock = yield* PgLock.acquire(options)
  const { generation } = lock
  const { token } = lock.owner
  append(`enter ${process.pid} ${token} ${generation}`)
  const backendPid = yield* backendPidOf(token)
  print("hold", { pid: process.pid, token, generation, backendPid })
  // The exit is logged when the hold ends, however it ends: a lost lock
  // interrupts the wait.
  yield* awaitAnswer.pipe(
    Effect.ensuring(Effect.sync(() => append(`exit ${process.pid} ${token} ${generation}`))),
    Effect.raceFirst(lock.lost),
    Effect.tapErrorTag("LockCompromised", () => Effect.sync(() => print("lost", { token, generation })))
  )
})).pipe(Effect.catchTags({ LockHeld: () => Effect.void, LockCompromised: () => Effect.void }))

const race = Effect.gen(function*() {
  while (!stopped) {
    yield* once
    // Also after a release, so that the other contenders get their turn.
    yield* Effect.sleep(randomMillis(pauseMin, pauseMax))
  }
})

const PgClientLive = PgClient.layer({ url: Redacted.make(args.url) })

// Without the pretty logger that runMain adds, every log line goes through ours.
NodeRuntime.runMain(race.pipe(Effect.provide(Layer.merge(Environment, PgClientLive))), { disablePrettyLogger: true })
