// One of many processes started at once: loads its modules, says so, and on
// "go" tries the lock once (fail fast). The winner holds it until stdin ends.
// Usage: node contend.mjs <dir> <name>
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as PidLock from "effect-pidlock/PidLock"
import * as ProcessInfo from "effect-pidlock/ProcessInfo"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { now, onLines, send } from "./common.mjs"

const [dir, name] = process.argv.slice(2)
const runtime = ManagedRuntime.make(ProcessInfo.layer.pipe(Layer.provideMerge(NodeFileSystem.layer)))
await runtime.runPromise(Effect.void)
const started = now()
onLines((line) => {
  if (line !== "go") return
  const t0 = now()
  runtime.runFork(Effect.scoped(Effect.gen(function*() {
    const outcome = yield* Effect.either(PidLock.acquire({ name, dir }))
    send(outcome._tag === "Right" ? { won: true, t0, t: now() } : { won: false, tag: outcome.left._tag, t0, t: now() })
    if (outcome._tag === "Right") yield* Effect.never
  })))
})
process.stdin.on("end", () => process.exit(0))
send({ ready: true, started })
