// The README's PostgreSQL example: the layer quickstart with one layer swapped, so that one copy runs among all the
// hosts that reach the database. Run: `npm run build`, then
// `DATABASE_URL=postgresql://user:password@host:5432/db npx tsx examples/pgLayer.ts`.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as PgLock from "effect-pidlock/PgLock"
import * as PidLock from "effect-pidlock/PidLock"
import * as ProcessInfo from "effect-pidlock/ProcessInfo"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

const Server = Layer.scopedDiscard(Effect.gen(function*() {
  const lock = yield* PidLock.PidLock // the same tag, whichever backend holds the lock
  yield* Effect.log(`single instance, holding ${lock.location}, generation ${lock.generation}`)
}))

const Main = Server.pipe(
  Layer.provide(PgLock.layer({ name: "my-daemon" })), // was: PidLock.layer({ name: "my-daemon" })
  Layer.provide(PgClient.layerConfig({ url: Config.redacted("DATABASE_URL") })),
  Layer.provide(ProcessInfo.layer),
  Layer.provide(NodeFileSystem.layer)
)

NodeRuntime.runMain(Layer.launch(Main))
