// Migrations that one process at a time runs, the others waiting their turn: the lock "migrations" from
// `PidLock.layerConfig`, with an optional wait read from APP_LOCK_WAIT (e.g. "2m"; without it, a second copy
// fails at once with LockHeld), and the work raced against `lock.lost`. Run: `npm run build`, then
// `APP_LOCK_WAIT=2m npx tsx examples/waiting.ts` in two terminals.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as PidLock from "effect-pidlock/PidLock"
import * as ProcessInfo from "effect-pidlock/ProcessInfo"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

const Lock = PidLock.layerConfig({
  name: Config.succeed("migrations"),
  wait: Config.option(PidLock.durationConfig("APP_LOCK_WAIT")).pipe(Config.map(Option.getOrUndefined))
})

// Stands for the real work: three seconds of it.
const runMigrations = Effect.log("migrating").pipe(
  Effect.zipRight(Effect.sleep("3 seconds")),
  Effect.zipRight(Effect.log("migrated"))
)

const program = Effect.gen(function*() {
  const lock = yield* PidLock.PidLock
  yield* Effect.log(`holding ${lock.location}, generation ${lock.generation}`)
  yield* runMigrations.pipe(Effect.raceFirst(lock.lost)) // lost: fails with LockCompromised if someone removes the lock
})

program.pipe(
  Effect.provide(Lock),
  Effect.provide(ProcessInfo.layer),
  Effect.provide(NodeFileSystem.layer),
  NodeRuntime.runMain
)
