// The README's first quickstart, kept here so that the type-check proves it compiles.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as PidLock from "effect-pidlock/PidLock"
import * as ProcessInfo from "effect-pidlock/ProcessInfo"

const program = Effect.scoped(Effect.gen(function*() {
  yield* PidLock.acquire({ name: "nightly-report" })
  yield* Effect.log("the only copy running")
})).pipe(Effect.catchTag("LockHeld", (e) => Effect.logWarning(e.message)))

NodeRuntime.runMain(program.pipe(Effect.provide(ProcessInfo.layer.pipe(Layer.provideMerge(NodeFileSystem.layer)))))
