// The README's first quickstart: takes the lock "nightly-report", logs, and releases it as it ends; a second copy
// started meanwhile logs who holds it instead. Run: `npm run build`, then `npx tsx examples/quickstart.ts`.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as PidLock from "effect-pidlock/PidLock"
import * as ProcessInfo from "effect-pidlock/ProcessInfo"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

const program = Effect.scoped(Effect.gen(function*() {
  yield* PidLock.acquire({ name: "nightly-report" })
  yield* Effect.log("the only copy running")
})).pipe(Effect.catchTag("LockHeld", (e) => Effect.logWarning(e.message)))

NodeRuntime.runMain(program.pipe(Effect.provide(ProcessInfo.layer.pipe(Layer.provideMerge(NodeFileSystem.layer)))))
