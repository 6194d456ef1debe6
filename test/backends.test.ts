// What the lock promises whichever backend holds it: the file lock and the
// PostgreSQL lock run the same cases through the same face (./support/backends.ts).
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as PidLock from "../src/PidLock.js"
import * as ProcessInfo from "../src/ProcessInfo.js"
import { type Backend, backends } from "./support/backends.js"

const NAME = "app"

// A service that needs the single instance, written once for both backends.
class Scheduler extends Context.Tag("test/Scheduler")<Scheduler, { readonly runningAs: string }>() {
  static layer = Layer.effect(Scheduler, Effect.map(PidLock.PidLock, (lock) => ({ runningAs: lock.owner.token })))
}

const suite = (backend: Backend) =>
  describe(`the lock on the ${backend.name} backend`, () => {
    it.scopedLive("a free lock is taken with generation 1; a second acquire here is LockHeld naming us; free again after the scope", () =>
      Effect.gen(function*() {
        const locks = yield* backend.locks
        const generation = yield* Effect.scoped(Effect.gen(function*() {
          const lock = yield* locks.acquire({ name: NAME })
          assert.strictEqual(lock.name, NAME)
          const error = yield* Effect.flip(Effect.scoped(locks.acquire({ name: NAME })))
          assert.strictEqual(error._tag, "LockHeld")
          if (error._tag === "LockHeld") {
            assert.deepStrictEqual(error.holder, lock.owner)
            assert.isTrue(error.heldByThisProcess)
            assert.strictEqual(error.location, lock.location)
            assert.include(error.message, `pid ${process.pid}`)
          }
          return lock.generation
        }))
        assert.strictEqual(generation, 1)
        assert.isTrue(Option.isNone(yield* locks.inspect(NAME)))
      }))

    it.scopedLive("the generation grows by one with every acquisition, and names do not share a lock", () =>
      Effect.gen(function*() {
        const locks = yield* backend.locks
        const generations: Array<number> = []
        for (let round = 0; round < 4; round++) {
          generations.push(yield* Effect.scoped(Effect.map(locks.acquire({ name: NAME }), (lock) => lock.generation)))
        }
        assert.deepStrictEqual(generations, [1, 2, 3, 4])
        const both = yield* Effect.scoped(
          Effect.all([locks.acquire({ name: NAME }), locks.acquire({ name: "other" })])
        )
        assert.deepStrictEqual(both.map((lock) => lock.generation), [5, 1])
      }))

    it.scopedLive("a waiter takes the lock when the holder releases, with the next generation", () =>
      Effect.gen(function*() {
        const locks = yield* backend.locks
        const holder = yield* locks.acquire({ name: NAME })
        const waiter = yield* Effect.fork(
          Effect.scoped(Effect.map(locks.acquire({ name: NAME, wait: "20 seconds" }), (lock) => lock.generation))
        )
        yield* Effect.sleep("100 millis")
        assert.isNull(waiter.unsafePoll(), "the waiter waits while the lock is held")
        yield* holder.release
        assert.strictEqual(yield* Fiber.join(waiter), holder.generation + 1)
      }))

    it.scopedLive("a wait that runs out is LockHeld; a Schedule retries and then gives up with LockHeld", () =>
      Effect.gen(function*() {
        const locks = yield* backend.locks
        const holder = yield* locks.acquire({ name: NAME })
        const timedOut = yield* Effect.flip(Effect.scoped(locks.acquire({ name: NAME, wait: "150 millis" })))
        assert.strictEqual(timedOut._tag, "LockHeld")
        const scheduled = yield* Effect.flip(
          Effect.scoped(
            locks.acquire({ name: NAME, wait: Schedule.recurs(3).pipe(Schedule.addDelay(() => "10 millis")) })
          )
        )
        assert.strictEqual(scheduled._tag, "LockHeld")
        if (scheduled._tag === "LockHeld") assert.deepStrictEqual(scheduled.holder, holder.owner)
      }))

    it.scopedLive("withLock holds the lock only while the effect runs", () =>
      Effect.gen(function*() {
        const locks = yield* backend.locks
        const inside = yield* locks.withLock(locks.inspect(NAME), { name: NAME })
        assert.isTrue(Option.isSome(inside) && inside.value.heldByThisProcess)
        assert.isTrue(Option.isNone(yield* locks.inspect(NAME)))
        const failed = yield* Effect.exit(locks.withLock(Effect.fail("boom"), { name: NAME }))
        assert.deepStrictEqual(failed, Exit.fail("boom"))
        assert.isTrue(Option.isNone(yield* locks.inspect(NAME)))
      }))

    it.scopedLive("a lock taken away is lost: lost and verify fail with LockCompromised, withLock is interrupted", () =>
      Effect.gen(function*() {
        const locks = yield* backend.locks
        const lock = yield* locks.acquire({ name: NAME, checkInterval: "100 millis" })
        yield* locks.takeAway(NAME)
        const lost = yield* Effect.flip(lock.lost)
        assert.strictEqual(lost._tag, "LockCompromised")
        assert.strictEqual(lost.location, lock.location)
        assert.strictEqual((yield* Effect.flip(lock.verify))._tag, "LockCompromised")
        assert.strictEqual((yield* Effect.flip(lock.release))._tag, "LockCompromised")
        yield* lock.release

        const started = yield* Deferred.make<void>()
        let ticks = 0
        const work = Effect.zipRight(
          Deferred.succeed(started, undefined),
          Effect.forever(Effect.zipRight(Effect.sync(() => ticks++), Effect.sleep("10 millis")))
        )
        const guarded = yield* Effect.fork(locks.withLock(work, { name: "guarded", checkInterval: "100 millis" }))
        yield* Deferred.await(started)
        yield* locks.takeAway("guarded")
        const failure = yield* Effect.flip(Fiber.join(guarded))
        assert.strictEqual(failure._tag, "LockCompromised")
        const stopped = ticks
        yield* Effect.sleep("50 millis")
        assert.strictEqual(ticks, stopped, "no work after the loss")
      }))

    it.scopedLive("layer provides the PidLock tag, and a service that needs it runs unchanged", () =>
      Effect.gen(function*() {
        const locks = yield* backend.locks
        const context = yield* Layer.build(Scheduler.layer.pipe(Layer.provide(locks.layer({ name: NAME }))))
        const scheduler = Context.get(context, Scheduler)
        const status = yield* locks.inspect(NAME)
        assert.isTrue(Option.isSome(status))
        assert.strictEqual(Option.getOrThrow(status).holder.token, scheduler.runningAs)
      }))

    it.scopedLive("inspect: None when free; the holder, Alive, when held", () =>
      Effect.gen(function*() {
        const locks = yield* backend.locks
        assert.isTrue(Option.isNone(yield* locks.inspect(NAME)))
        const lock = yield* locks.acquire({ name: NAME })
        assert.deepStrictEqual(
          yield* locks.inspect(NAME),
          Option.some({
            location: lock.location,
            holder: lock.owner,
            verdict: ProcessInfo.Verdict.Alive(),
            heldByThisProcess: true
          })
        )
      }))

    it.scopedLive("release is shared and final; verify after release succeeds", () =>
      Effect.gen(function*() {
        const locks = yield* backend.locks
        const lock = yield* locks.acquire({ name: NAME })
        yield* Effect.all([lock.release, lock.release, lock.release], { concurrency: "unbounded" })
        yield* lock.verify
        yield* lock.release
        assert.isTrue(Option.isNone(yield* locks.inspect(NAME)))
      }))

    it.scopedLive("invalid options are InvalidOptions, and nothing is written", () =>
      Effect.gen(function*() {
        const locks = yield* backend.locks
        const cases: ReadonlyArray<readonly [string, unknown]> = [
          ["name", { name: "../escape" }],
          ["name", { name: "" }],
          ["wait", { name: NAME, wait: "soon" }],
          ["checkInterval", { name: NAME, checkInterval: 0 }],
          ["options", null]
        ]
        for (const [option, options] of cases) {
          const error = yield* Effect.flip(Effect.scoped(locks.acquire(options as never)))
          assert.deepStrictEqual([error._tag, error._tag === "InvalidOptions" ? error.option : ""], [
            "InvalidOptions",
            option
          ])
        }
        assert.isTrue(yield* locks.untouched)
      }))
  })

for (const backend of backends) suite(backend)
