// The README's waiting and configuration snippets, kept here so that the type-check proves they compile.
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as PidLock from "effect-pidlock/PidLock"

declare const runMigrations: Effect.Effect<void>

export const migrate = Effect.scoped(Effect.gen(function*() {
  const lock = yield* PidLock.acquire({ name: "migrations", wait: "2 minutes" })
  yield* runMigrations.pipe(Effect.raceFirst(lock.lost)) // lost: fails with LockCompromised if someone removes the lock
}))

export const Lock = PidLock.layerConfig({ name: Config.string("APP_LOCK_NAME"), wait: Config.duration("APP_LOCK_WAIT") })
