// The README's layer quickstart: a daemon that holds the lock "my-daemon" for as long as it runs, and releases it on
// Ctrl-C or SIGTERM; a second copy exits with LockHeld. Run: `npm run build`, then `npx tsx examples/layer.ts`.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as PidLock from "effect-pidlock/PidLock"
import * as ProcessInfo from "effect-pidlock/ProcessInfo"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

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
