// Durations as the CLI writes them ("30s", "500ms", "2m", "1.5h", "30 seconds")
// in the Effect API's options: what `wait` and `checkInterval` then mean on the
// test clock, and that a string that is no duration is InvalidOptions saying
// what is allowed, from both backends' validation.
import * as PgClient from "@effect/sql-pg/PgClient"
import { assert, describe, it } from "@effect/vitest"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as PgLock from "../src/PgLock.js"
import * as PidLock from "../src/PidLock.js"
import * as Testing from "../src/testing/index.js"

const NAME = "app"
const DIR = "/tmp"

const world = Testing.layer()

// The tag of the LockHeld or LockCompromised failure that `exit` carries.
const failureTag = <A, E>(exit: Exit.Exit<A, E>): string | undefined =>
  Exit.isFailure(exit) ? String(exit.cause).match(/\b(LockHeld|LockCompromised)\b/)?.[1] : undefined

describe("durations written as the CLI takes them", () => {
  const waits: ReadonlyArray<readonly [PidLock.DurationInput, number]> = [
    ["500ms", 500],
    ["30s", 30_000],
    ["2m", 120_000],
    ["30 seconds", 30_000]
  ]
  for (const [wait, millis] of waits) {
    it.scoped(`wait: "${wait}" waits ${millis} ms for a held lock, then fails with LockHeld`, () =>
      Effect.gen(function*() {
        yield* PidLock.acquire({ name: NAME, dir: DIR })
        const waiter = yield* Effect.fork(Effect.scoped(PidLock.acquire({ name: NAME, dir: DIR, wait })))
        yield* TestClock.adjust(millis - 1)
        assert.isNull(waiter.unsafePoll(), "gave up before its time")
        yield* TestClock.adjust(1)
        assert.strictEqual(failureTag(yield* Fiber.await(waiter)), "LockHeld")
      }).pipe(Effect.provide(world)))
  }

  const intervals: ReadonlyArray<readonly [PidLock.DurationInput, number]> = [
    ["250ms", 250],
    ["2s", 2_000],
    ["1.5h", 5_400_000],
    ["2 seconds", 2_000]
  ]
  for (const [checkInterval, millis] of intervals) {
    it.scoped(`checkInterval: "${checkInterval}" checks the lock every ${millis} ms`, () =>
      Effect.gen(function*() {
        const memory = yield* Testing.MemoryFileSystem
        // No watch can be armed: only the interval paces the watchdog.
        const noWatches = Testing.failMatching({ method: "watch", path: /.*/, errno: "ENOSPC" })
        const firstCheck = yield* Deferred.make<void>()
        yield* memory.setHook(Testing.combineHooks(noWatches, (call) =>
          call.method === "readLink" && call.path.startsWith(`${DIR}/${NAME}/lock/`)
            ? Deferred.succeed(firstCheck, undefined)
            : Effect.void))
        const lock = yield* PidLock.acquire({ name: NAME, dir: DIR, checkInterval })
        const lost = yield* Effect.fork(lock.lost)
        yield* Deferred.await(firstCheck)
        yield* Effect.repeatN(Effect.yieldNow(), 20)
        yield* Effect.orDie(memory.fileSystem.remove(lock.entry))
        yield* TestClock.adjust(millis - 1)
        assert.isNull(lost.unsafePoll(), "checked before its time")
        yield* TestClock.adjust(1)
        assert.strictEqual(failureTag(yield* Fiber.await(lost)), "LockCompromised")
      }).pipe(Effect.provide(world)))
  }

  // Refused before anything is touched, by both backends: PgLock is given a
  // client that fails the test if it is so much as looked at.
  const untouchedClient = new Proxy({}, {
    get: (_, property) => assert.fail(`the database client was used (${String(property)})`)
  }) as PgClient.PgClient
  const refusals = {
    PidLock: (options: PidLock.Options) => Effect.flip(PidLock.acquire(options)),
    PgLock: (options: PidLock.Options) =>
      Effect.flip(Effect.provideService(PgLock.acquire(options), PgClient.PgClient, untouchedClient))
  }
  for (const [backend, refusal] of Object.entries(refusals)) {
    for (const option of ["wait", "checkInterval"] as const) {
      for (const value of ["30 parsecs", "", "-1s", "abc"]) {
        it.scoped(`${backend}: ${option}=${JSON.stringify(value)} is InvalidOptions naming the option and the forms allowed`, () =>
          Effect.gen(function*() {
            const memory = yield* Testing.MemoryFileSystem
            const options = { name: NAME, dir: DIR, [option]: value } as unknown as PidLock.Options
            const error = yield* refusal(options)
            assert.strictEqual(error._tag, "InvalidOptions")
            if (error._tag !== "InvalidOptions") return
            assert.strictEqual(error.option, option)
            assert.strictEqual(error.value, value)
            for (const form of ["30s", "500ms", "2m", "30 seconds"]) assert.include(error.reason, form)
            assert.include(error.message, option)
            assert.isFalse(yield* memory.fileSystem.exists(`${DIR}/${NAME}`))
          }).pipe(Effect.provide(world)))
      }
    }
  }
})

describe("durations in configuration: PidLock.durationConfig", () => {
  const withEnvironment = (entries: ReadonlyArray<readonly [string, string]>) =>
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(entries)))

  it.effect("reads the short forms and the long one", () =>
    Effect.gen(function*() {
      for (const [text, millis] of [["30s", 30_000], ["1.5h", 5_400_000], ["30 seconds", 30_000]] as const) {
        const duration = yield* PidLock.durationConfig("WAIT").pipe(withEnvironment([["WAIT", text]]))
        assert.strictEqual(Duration.toMillis(duration), millis, text)
      }
    }))

  it.effect("a value that is no duration is a ConfigError naming the variable and what is allowed", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(PidLock.durationConfig("WAIT").pipe(withEnvironment([["WAIT", "soon"]])))
      const message = String(error)
      assert.include(message, "WAIT")
      assert.include(message, "\"soon\"")
      assert.include(message, "30s, 500ms, 2m, 1.5h")
    }))

  it.scoped("gives layerConfig a short-form wait: the lock waits that long, then fails with LockHeld", () =>
    Effect.gen(function*() {
      yield* PidLock.acquire({ name: NAME, dir: DIR })
      const waiter = yield* Effect.fork(
        Layer.launch(PidLock.layerConfig({
          name: Config.succeed(NAME),
          dir: Config.succeed(DIR),
          wait: Config.option(PidLock.durationConfig("WAIT")).pipe(Config.map(Option.getOrUndefined))
        })).pipe(withEnvironment([["WAIT", "2s"]]))
      )
      yield* TestClock.adjust(1_999)
      assert.isNull(waiter.unsafePoll(), "gave up before its time")
      yield* TestClock.adjust(1)
      assert.strictEqual(failureTag(yield* Fiber.await(waiter)), "LockHeld")
    }).pipe(Effect.provide(world)))
})
