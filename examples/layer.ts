// The README's layer quickstart, kept here so that the type-check proves it compiles.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as PidLock from "effect-pidlock/PidLock"
import * as ProcessInfo from "effect-pidlock/ProcessInfo"

const Server = Layer.scopedDiscard(Effect.gen(function*() {
  const lock = yield* PidLock.PidLock
  yield* Effect.log(`single instance, holding ${lock.location}`)
}))

const Main = Server.pipe(
  Layer.provide(PidLock.layer({ name: "my-daemon" })),
  Layer.provide(ProcessInfo.layer),
  Layer.provide(NodeFileSystem.layer)
)

NodeRuntime.runMain(Layer.launch(Main))
