// Waiting for a held lock, and finding out that a held lock was lost.
import * as FileSystem from "@effect/platform/FileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as TestClock from "effect/TestClock"
import * as Path from "node:path"
import * as PidLock from "../src/PidLock.js"
import * as Testing from "../src/testing/index.js"
import { type Environment, NAME, plantHolder, recordOf, withFixture } from "./support/environment.js"
import { memoryEnvironment } from "./support/memoryEnvironment.js"
import { nodeEnvironment } from "./support/nodeEnvironment.js"

// The holder's socket stays in the home while its process lives. Sorted: a
// real directory lists its names in no set order.
const withoutSockets = <E, R>(names: Effect.Effect<Array<string>, E, R>) =>
  Effect.map(names, (all) => all.filter((name) => !name.endsWith(".sock")).sort())

const waitingSuite = (environment: Environment) =>
  describe(`waiting and lost locks on the ${environment.name} file system`, () => {
    const test = (name: string, body: Parameters<typeof withFixture<void, unknown>>[1]) =>
      it.scopedLive(name, () => withFixture(environment, body))

    test("a waiter gets the lock once its holder releases it, with the next generation", ({ dir }) =>
      Effect.gen(function*() {
        const holder = yield* PidLock.acquire({ name: NAME, dir })
        const waiter = yield* Effect.fork(Effect.scoped(PidLock.acquire({ name: NAME, dir, wait: "20 seconds" })))
        yield* Effect.sleep("50 millis")
        assert.isNull(waiter.unsafePoll())
        yield* holder.release
        const lock = yield* Fiber.join(waiter)
        assert.notStrictEqual(lock.entry, holder.entry)
        assert.strictEqual(lock.generation, holder.generation + 1)
      }))

    test("a waiter takes over when the holder dies while it waits", ({ dir, fs, home, kill, live }) =>
      Effect.gen(function*() {
        const holder = recordOf(yield* live)
        yield* plantHolder(fs, home, holder)
        const waiter = yield* Effect.fork(Effect.scoped(PidLock.acquire({ name: NAME, dir, wait: "20 seconds" })))
        yield* Effect.sleep("50 millis")
        assert.isNull(waiter.unsafePoll())
        yield* kill(holder.pid)
        const lock = yield* Fiber.join(waiter)
        assert.notStrictEqual(lock.owner.pid, holder.pid)
      }))

    test("after the wait, LockHeld", ({ dir }) =>
      Effect.gen(function*() {
        const holder = yield* PidLock.acquire({ name: NAME, dir })
        const error = yield* Effect.flip(Effect.scoped(PidLock.acquire({ name: NAME, dir, wait: "100 millis" })))
        assert.strictEqual(error._tag, "LockHeld")
        if (error._tag === "LockHeld") assert.deepStrictEqual(error.holder, holder.owner)
      }))

    test("an interrupted wait stops at once and leaves nothing behind", ({ dir, fs, home }) =>
      Effect.gen(function*() {
        const holder = yield* PidLock.acquire({ name: NAME, dir })
        const waiter = yield* Effect.fork(Effect.scoped(PidLock.acquire({ name: NAME, dir, wait: "1 hour" })))
        yield* Effect.sleep("50 millis")
        yield* Fiber.interrupt(waiter)
        assert.deepStrictEqual(yield* withoutSockets(fs.readDirectory(home)), ["generation", "lock"])
        assert.deepStrictEqual(yield* fs.readDirectory(Path.join(home, "lock")), [Path.basename(holder.entry)])
      }))

    test("a lock whose entry is removed is lost: lost fails, verify fails, withLock is interrupted", ({ dir, fs, home }) =>
      Effect.gen(function*() {
        const lock = yield* PidLock.acquire({ name: NAME, dir })
        yield* lock.verify
        yield* fs.remove(lock.entry)
        assert.strictEqual((yield* Effect.flip(lock.lost))._tag, "LockCompromised")
        assert.strictEqual((yield* Effect.flip(lock.verify))._tag, "LockCompromised")

        const guarded = yield* Effect.fork(Effect.never.pipe(PidLock.withLock({ name: "other", dir })))
        // Once the guarded effect runs, its lock holds its entry.
        const [entry] = yield* fs.readDirectory(Path.join(dir, "other", "lock")).pipe(
          Effect.filterOrFail((entries) => entries.length === 1),
          Effect.retry(Schedule.spaced("10 millis"))
        )
        yield* fs.remove(Path.join(dir, "other", "lock", entry!))
        const exit = yield* Fiber.await(guarded)
        assert.isTrue(Exit.isFailure(exit))
        if (Exit.isFailure(exit)) assert.include(String(exit.cause), "LockCompromised")
        assert.deepStrictEqual(yield* withoutSockets(fs.readDirectory(home)), ["generation", "lock"])
      }))

    test("a released lock is not lost", ({ dir }) =>
      Effect.gen(function*() {
        const lock = yield* PidLock.acquire({ name: NAME, dir })
        yield* lock.release
        yield* lock.verify
        assert.isNull((yield* Effect.fork(lock.lost)).unsafePoll())
      }))
  })

for (const environment of [memoryEnvironment, nodeEnvironment]) waitingSuite(environment)

// On the test clock, time stands still: whatever happens without adjusting it
// was woken by a watch, not by a poll.
describe("waiting on the test clock", () => {
  const world = Testing.layer()

  // A lock held by another process of the table, its socket served.
  const heldElsewhere = Effect.gen(function*() {
    const processes = yield* Testing.ProcessTable
    const other = yield* processes.spawn()
    const otherProcess = yield* Layer.build(Testing.layerProcessInfo(other.pid))
    const lock = yield* PidLock.acquire({ name: NAME, dir: "/tmp" }).pipe(Effect.provide(otherProcess))
    return { lock, die: processes.exit(other.pid) }
  })

  // Another process of the table, planted as the holder in the lock
  // directory; with a socket that listens, not serving, when `listening`.
  const plantedElsewhere = (listening: boolean) =>
    Effect.gen(function*() {
      const processes = yield* Testing.ProcessTable
      const fs = yield* FileSystem.FileSystem
      const other = yield* processes.spawn()
      const info = yield* Testing.makeProcessInfo(other.pid)
      const posix = yield* Testing.makePosix(other.pid)
      yield* fs.makeDirectory("/tmp/app", { recursive: true })
      const record = recordOf(info.self)
      const socket = listening ? { socket: Path.basename((yield* posix.listen("/tmp/app")).path) } : {}
      yield* plantHolder(fs, "/tmp/app", { ...record, ...socket })
      return { pid: other.pid, posix, die: processes.exit(other.pid) }
    })

  // How many connections to a holder's socket were made so far.
  const countConnections = Effect.gen(function*() {
    const memory = yield* Testing.MemoryFileSystem
    let connections = 0
    yield* memory.setHook((call) =>
      Effect.sync(() => {
        if (call.method === "awaitHangUp") connections++
      })
    )
    return () => connections
  })

  const waitForLock = Effect.fork(Effect.scoped(PidLock.acquire({ name: NAME, dir: "/tmp", wait: "1 hour" })))

  it.scoped("a release wakes the waiter through the watch, with no poll", () =>
    Effect.gen(function*() {
      const memory = yield* Testing.MemoryFileSystem
      const holder = yield* PidLock.acquire({ name: NAME, dir: "/tmp" })
      // The waiter's first attempt has failed once it removes its staging directory.
      const attemptFailed = yield* Deferred.make<void>()
      yield* memory.setHook((call) =>
        call.method === "remove" && /^\/tmp\/app\/\d+\.[0-9a-f]+$/.test(call.path)
          ? Deferred.succeed(attemptFailed, undefined)
          : Effect.void
      )
      const waiter = yield* waitForLock
      yield* Deferred.await(attemptFailed)
      yield* Effect.repeatN(Effect.yieldNow(), 20)
      assert.isNull(waiter.unsafePoll())
      yield* holder.release
      const lock = yield* Fiber.join(waiter)
      assert.notStrictEqual(lock.entry, holder.entry)
    }).pipe(Effect.provide(world)))

  it.scoped("a holder without a socket dies without a sign on disk: the poll finds it within a second", () =>
    Effect.gen(function*() {
      const holder = yield* plantedElsewhere(false)
      const waiter = yield* waitForLock
      for (let second = 0; second < 10; second++) yield* TestClock.adjust("1 second")
      assert.isNull(waiter.unsafePoll())
      yield* holder.die
      yield* TestClock.adjust("1 second")
      const lock = yield* Fiber.join(waiter)
      assert.notStrictEqual(lock.owner.pid, holder.pid)
    }).pipe(Effect.provide(world)))

  it.scoped("a holder's death hangs up its socket: a waiter takes over at once, with no poll", () =>
    Effect.gen(function*() {
      const holder = yield* heldElsewhere
      const memory = yield* Testing.MemoryFileSystem
      // The waiter keeps a connection to the holder's socket once its first attempts have failed.
      const connected = yield* Deferred.make<void>()
      yield* memory.setHook((call) =>
        call.method === "awaitHangUp" ? Deferred.succeed(connected, undefined) : Effect.void
      )
      const waiter = yield* waitForLock
      yield* Deferred.await(connected)
      yield* Effect.repeatN(Effect.yieldNow(), 20)
      assert.isNull(waiter.unsafePoll())
      yield* holder.die
      const lock = yield* Fiber.join(waiter)
      assert.notStrictEqual(lock.owner.pid, holder.lock.owner.pid)
      assert.strictEqual(lock.generation, holder.lock.generation + 1)
    }).pipe(Effect.provide(world)))

  it.scoped("a waiter keeps one connection to its holder for every round of its wait", () =>
    Effect.gen(function*() {
      const holder = yield* heldElsewhere
      const connections = yield* countConnections
      const waiter = yield* waitForLock
      // Rounds at 10, 20, 40, … ms, then every second.
      for (let second = 0; second < 10; second++) yield* TestClock.adjust("1 second")
      assert.isNull(waiter.unsafePoll())
      assert.strictEqual(connections(), 1)
      yield* holder.die
      yield* Fiber.join(waiter)
    }).pipe(Effect.provide(world)))

  it.scoped("a connection that could not be made is tried again next round: the holder's death still wakes the waiter", () =>
    Effect.gen(function*() {
      const holder = yield* heldElsewhere
      const memory = yield* Testing.MemoryFileSystem
      let connections = 0
      // The first connect fails, as one to a full queue or with no descriptor left would.
      const failFirst = Testing.failMatching({ method: "awaitHangUp", path: /\.sock$/, errno: "EAGAIN", times: 1 })
      yield* memory.setHook((call) =>
        Effect.zipRight(
          Effect.sync(() => {
            if (call.method === "awaitHangUp") connections++
          }),
          failFirst(call)
        )
      )
      const waiter = yield* waitForLock
      for (let second = 0; second < 3; second++) yield* TestClock.adjust("1 second")
      assert.isNull(waiter.unsafePoll())
      assert.strictEqual(connections, 2, "one failed, one kept")
      yield* holder.die
      const lock = yield* Fiber.join(waiter)
      assert.strictEqual(lock.generation, holder.lock.generation + 1)
    }).pipe(Effect.provide(world)))

  it.scoped("a holder that dies before the waiter connects refuses the connection: the waiter takes over at once", () =>
    Effect.gen(function*() {
      const holder = yield* heldElsewhere
      const memory = yield* Testing.MemoryFileSystem
      // The holder dies between the waiter's attempt and its connect.
      yield* memory.setHook((call) => call.method === "awaitHangUp" ? holder.die : Effect.void)
      const lock = yield* PidLock.acquire({ name: NAME, dir: "/tmp", wait: "1 hour" })
      assert.strictEqual(lock.generation, holder.lock.generation + 1)
    }).pipe(Effect.provide(world)))

  it.scoped("a holder that listens before it serves is not spun on, and its death once it serves wakes the waiter", () =>
    Effect.gen(function*() {
      // Its socket hangs up every connection at once until it serves.
      const holder = yield* plantedElsewhere(true)
      const connections = yield* countConnections
      const waiter = yield* waitForLock
      // Rounds at 10, 20, 40, … ms, then every second: a connection every other one.
      for (let second = 0; second < 3; second++) yield* TestClock.adjust("1 second")
      assert.isNull(waiter.unsafePoll())
      assert.isAtLeast(connections(), 2)
      assert.isAtMost(connections(), 10, "a connection every other round, not a spin")
      yield* holder.posix.serve("/tmp/app", () => Effect.succeedNone)
      yield* TestClock.adjust("2 seconds")
      yield* Effect.repeatN(Effect.yieldNow(), 20)
      yield* holder.die
      const lock = yield* Fiber.join(waiter)
      assert.notStrictEqual(lock.owner.pid, holder.pid)
    }).pipe(Effect.provide(world)))

  it.scoped("the deadline gives LockHeld", () =>
    Effect.gen(function*() {
      yield* PidLock.acquire({ name: NAME, dir: "/tmp" })
      const waiter = yield* Effect.fork(Effect.scoped(PidLock.acquire({ name: NAME, dir: "/tmp", wait: "30 seconds" })))
      yield* TestClock.adjust("29 seconds")
      assert.isNull(waiter.unsafePoll())
      yield* TestClock.adjust("1 second")
      const exit = yield* Fiber.await(waiter)
      assert.isTrue(Exit.isFailure(exit) && String(exit.cause).includes("LockHeld"))
    }).pipe(Effect.provide(world)))

  it.scoped("a Schedule sets the retries", () =>
    Effect.gen(function*() {
      const holder = yield* PidLock.acquire({ name: NAME, dir: "/tmp" })
      const wait = Schedule.spaced("1 second").pipe(Schedule.compose(Schedule.recurs(3)))
      // Not scoped apart: the waiter keeps the lock for the test's scope.
      const waiter = yield* Effect.fork(PidLock.acquire({ name: NAME, dir: "/tmp", wait }))
      yield* TestClock.adjust("2 seconds")
      yield* holder.release
      yield* TestClock.adjust("1 second")
      const lock = yield* Fiber.join(waiter)
      assert.notStrictEqual(lock.entry, holder.entry)
      const exhausted = yield* Effect.fork(Effect.scoped(PidLock.acquire({ name: NAME, dir: "/tmp", wait })))
      yield* TestClock.adjust("10 seconds")
      const exit = yield* Fiber.await(exhausted)
      assert.isTrue(Exit.isFailure(exit) && String(exit.cause).includes("LockHeld"))
    }).pipe(Effect.provide(world)))

  it.scoped("the watchdog checks every checkInterval even when no watch fires", () =>
    Effect.gen(function*() {
      const memory = yield* Testing.MemoryFileSystem
      // No watch can be armed: only the interval paces the watchdog.
      const noWatches = Testing.failMatching({ method: "watch", path: /.*/, errno: "ENOSPC" })
      const firstCheck = yield* Deferred.make<void>()
      yield* memory.setHook(Testing.combineHooks(noWatches, (call) =>
        call.method === "readLink" && call.path.startsWith("/tmp/app/lock/")
          ? Deferred.succeed(firstCheck, undefined)
          : Effect.void))
      const lock = yield* PidLock.acquire({ name: NAME, dir: "/tmp", checkInterval: "2 seconds" })
      const lost = yield* Effect.fork(lock.lost)
      yield* Deferred.await(firstCheck)
      yield* Effect.repeatN(Effect.yieldNow(), 20)
      yield* Effect.orDie(memory.fileSystem.remove(lock.entry))
      yield* TestClock.adjust("1 second")
      assert.isNull(lost.unsafePoll())
      yield* TestClock.adjust("1 second")
      const exit = yield* Fiber.await(lost)
      assert.isTrue(Exit.isFailure(exit) && String(exit.cause).includes("LockCompromised"))
    }).pipe(Effect.provide(world)))

  it.scoped("checkInterval: false starts no watchdog", () =>
    Effect.gen(function*() {
      const memory = yield* Testing.MemoryFileSystem
      const lock = yield* PidLock.acquire({ name: NAME, dir: "/tmp", checkInterval: false })
      const lost = yield* Effect.fork(lock.lost)
      yield* Effect.orDie(memory.fileSystem.remove(lock.entry))
      yield* TestClock.adjust("1 hour")
      assert.isNull(lost.unsafePoll())
      assert.strictEqual((yield* Effect.flip(lock.verify))._tag, "LockCompromised")
    }).pipe(Effect.provide(world)))

  const invalid: ReadonlyArray<[string, Partial<PidLock.Options>]> = [
    ["wait", { wait: "soon" as unknown as number }],
    ["checkInterval", { checkInterval: 0 }],
    ["checkInterval", { checkInterval: "often" as unknown as number }]
  ]
  for (const [option, options] of invalid) {
    it.scoped(`InvalidOptions for ${option}=${JSON.stringify(Object.values(options)[0])}`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(PidLock.acquire({ name: NAME, dir: "/tmp", ...options }))
        assert.strictEqual(error._tag, "InvalidOptions")
        if (error._tag === "InvalidOptions") assert.strictEqual(error.option, option)
      }).pipe(Effect.provide(world)))
  }

  it.scoped("layerConfig reads its options from configuration, and $PIDLOCK_DIR is the default dir", () =>
    Effect.gen(function*() {
      const provider = ConfigProvider.fromMap(new Map([["APP_LOCK", "nightly"], ["PIDLOCK_DIR", "/tmp/locks"]]))
      const lock = yield* Layer.build(PidLock.layerConfig({ name: Config.string("APP_LOCK") })).pipe(
        Effect.flatMap((context) => Effect.provide(PidLock.PidLock, context)),
        Effect.withConfigProvider(provider)
      )
      assert.strictEqual(lock.location, "/tmp/locks/nightly/lock")
      const missing = yield* Effect.flip(
        Layer.build(PidLock.layerConfig({ name: Config.string("APP_LOCK") })).pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map()))
        )
      )
      assert.include(String(missing), "APP_LOCK")
    }).pipe(Effect.provide(world)))
})
