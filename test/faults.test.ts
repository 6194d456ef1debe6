// Memory-only: faults injected at every file-system call, and /proc states
// that a real machine cannot be made to show on demand.
import type { PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as Path from "node:path"
import * as PidLock from "../src/PidLock.js"
import * as Posix from "../src/Posix.js"
import * as ProcessInfo from "../src/ProcessInfo.js"
import * as Testing from "../src/testing/index.js"
import { entryNameOf, plantHolder, plantStaging, recordOf } from "./support/environment.js"

const DIR = "/tmp/locks"
const NAME = "app"
const HOME = Path.join(DIR, NAME)
const LOCK = Path.join(HOME, "lock")

// One memory file system with a process table, and a way to run contenders on it.
const makeWorld = Effect.gen(function*() {
  const processes = yield* Testing.makeProcessTable()
  const memory = yield* Testing.makeFileSystem({ processes })
  const fs = memory.fileSystem
  const contender = (cmdline: ReadonlyArray<string> = ["node", "main.js"]) =>
    Effect.gen(function*() {
      const process = yield* processes.spawn({ cmdline })
      const [info, posix] = yield* Effect.all([Testing.makeProcessInfo(process.pid), Testing.makePosix(process.pid)])
        .pipe(
          Effect.provideService(FileSystem.FileSystem, fs),
          Effect.orDie
        )
      const layer = Layer.mergeAll(
        Layer.succeed(FileSystem.FileSystem, fs),
        Layer.succeed(ProcessInfo.ProcessInfo, info),
        Layer.succeed(Posix.Posix, posix)
      )
      const run = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, layer)
      return { process, info, posix, run }
    })
  const dead = Effect.gen(function*() {
    const { info, process } = yield* contender(["node", "crashed.js"])
    yield* processes.exit(process.pid)
    return recordOf({ ...info.self })
  })
  return { processes, memory, fs, contender, dead }
})

type World = Effect.Effect.Success<typeof makeWorld>

const acquireAndRelease = PidLock.acquire({ name: NAME, dir: DIR }).pipe(
  Effect.flatMap((lock) => lock.release),
  Effect.scoped
)

const scenarios: ReadonlyArray<{
  readonly name: string
  readonly setup: (world: World) => Effect.Effect<void, PlatformError>
}> = [
  { name: "a free lock", setup: () => Effect.void },
  {
    name: "a dead holder's lock, with a dead contender's staging directory",
    setup: ({ dead, fs }) =>
      Effect.gen(function*() {
        yield* plantHolder(fs, HOME, yield* dead)
        yield* plantStaging(fs, HOME, yield* dead)
      })
  }
]

const ERRNOS: ReadonlyArray<Testing.Errno> = ["EIO", "ENOSPC", "EACCES", "EROFS", "EPERM"]

const COUNTER = Path.join(HOME, "generation")
// A holder's link to the next generation, `generation.<pid>.<token>`, before it is renamed over the counter.
const COUNTER_LINK = /\/generation\.\d+\.[0-9a-f]+$/

// From the first call that `matches` on, process `pid` is dead and every call
// fails without effect, as if the process had been killed right there.
const crashAt = (
  processes: Testing.ProcessTable,
  pid: number,
  matches: (call: Testing.FileSystemCall) => boolean
): Testing.Hook => {
  let crashed = false
  return (call) => {
    if (!crashed && !matches(call)) return Effect.void
    const exit = crashed ? Effect.void : processes.exit(pid)
    crashed = true
    return Effect.zipRight(exit, Effect.fail(Testing.systemError(call.method, call.path, "EIO")))
  }
}

describe("faults", () => {
  for (const scenario of scenarios) {
    it.effect(`a fault at any call of acquire or release, from ${scenario.name}, leaves no staging directory and no second holder`, () =>
      Effect.gen(function*() {
        const callsOfCleanRun = yield* Effect.gen(function*() {
          const world = yield* makeWorld
          const me = yield* world.contender()
          yield* Effect.orDie(world.fs.makeDirectory(DIR, { recursive: true }))
          yield* Effect.orDie(scenario.setup(world))
          const before = yield* world.memory.calls
          yield* Effect.orDie(me.run(acquireAndRelease))
          return (yield* world.memory.calls) - before
        })
        assert.isAtLeast(callsOfCleanRun, 6)

        for (let call = 1; call <= callsOfCleanRun; call++) {
          for (const errno of ERRNOS) {
            const world = yield* makeWorld
            const me = yield* world.contender()
            yield* Effect.orDie(world.fs.makeDirectory(DIR, { recursive: true }))
            yield* Effect.orDie(scenario.setup(world))
            const plantedStaging = (yield* Effect.orDie(
              world.fs.readDirectory(HOME).pipe(
                Effect.catchAll(() => Effect.succeed([]))
              )
            )).filter((name) => name !== "lock")
            const index = (yield* world.memory.calls) + call
            let faulted: Testing.FileSystemCall | undefined
            yield* world.memory.setHook(Testing.combineHooks(
              (call) => Effect.sync(() => void (call.index === index && (faulted = call))),
              Testing.failCall(index, errno)
            ))
            const exit = yield* Effect.exit(me.run(acquireAndRelease))
            const label = `${errno} at call ${call}: ${Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "succeeded"}`

            // A typed failure or a success, never a defect.
            assert.isTrue(Exit.isSuccess(exit) || Option.isSome(Cause.failureOption(exit.cause)), label)
            if (Exit.isFailure(exit) && (errno === "EACCES" || errno === "EROFS" || errno === "EPERM")) {
              const error = Option.getOrThrow(Cause.failureOption(exit.cause))
              // An unreadable /proc/<pid>/stat is a holder that cannot be seen: held.
              const unseen = errno !== "EROFS" && faulted?.path.startsWith("/proc/")
              assert.strictEqual(error._tag, unseen ? "LockHeld" : "PermissionDenied", label)
            }
            yield* world.memory.setHook(Testing.noFaults)
            // None of our staging directories is left; the planted dead one may
            // be, and so may our socket and a tombstone whose removal failed
            // (the next acquire collects it).
            const home = yield* Effect.orDie(
              world.fs.readDirectory(HOME).pipe(Effect.catchAll(() => Effect.succeed([])))
            )
            const ours = `${me.process.pid}.`
            const isStaging = (name: string) => /^\d+\.[0-9a-f]+$/.test(name)
            assert.deepStrictEqual(home.filter((name) => name.startsWith(ours) && isStaging(name)), [], label)
            assert.deepStrictEqual(home.filter((name) => name.startsWith(`generation.${ours}`)), [], label)
            assert.deepStrictEqual(home.filter((name) => isStaging(name) && !plantedStaging.includes(name)), [], label)
            // At most one entry, and never ours: the scope has closed.
            const entries = yield* Effect.orDie(
              world.fs.readDirectory(LOCK).pipe(Effect.catchAll(() => Effect.succeed([])))
            )
            assert.isAtMost(entries.length, 1, label)
            assert.isFalse(entries.some((name) => name.startsWith(ours)), label)
            // No stuck lock: the next contender gets it at once.
            const next = yield* world.contender()
            const lock = yield* Effect.orDie(Effect.scoped(next.run(PidLock.acquire({ name: NAME, dir: DIR }))))
            assert.strictEqual(lock.owner.pid, next.process.pid, label)
          }
        }
      }))
  }

  // The three calls that advance the counter, each failing once, after an
  // earlier holder was handed generation 1: the lock is given back, and
  // nothing is left of ours but our socket. From a dead holder's lock, the
  // link it died before renaming stays (no takeover collected it).
  const counterCalls = [
    { call: "the read of the counter", method: "readLink", path: COUNTER },
    { call: "the link to the next generation", method: "symlink", path: COUNTER_LINK },
    { call: "the rename of that link over the counter", method: "rename", path: COUNTER_LINK }
  ] as const
  for (const { call, method, path } of counterCalls) {
    for (const deadHolder of [false, true]) {
      for (const errno of ["EIO", "EACCES"] as const) {
        const from = deadHolder ? "a dead holder's lock" : "a free lock"
        it.effect(`${errno} at ${call}, from ${from}: no entry held, nothing of ours left, and the next contender gets generation 2`, () =>
          Effect.gen(function*() {
            const world = yield* makeWorld
            const other = yield* world.contender()
            const me = yield* world.contender()
            const earlier = yield* Effect.orDie(other.run(Effect.scoped(PidLock.acquire({ name: NAME, dir: DIR }))))
            assert.strictEqual(earlier.generation, 1)
            const deadLink = deadHolder
              ? yield* Effect.orDie(Effect.gen(function*() {
                const dead = yield* world.dead
                yield* plantHolder(world.fs, HOME, dead)
                const link = `generation.${entryNameOf(dead)}`
                yield* world.fs.symlink("2", Path.join(HOME, link))
                return [link]
              }))
              : []
            yield* world.memory.setHook(Testing.failMatching({ method, path, errno, times: 1 }))
            const error = yield* Effect.flip(me.run(acquireAndRelease))
            assert.strictEqual(error._tag, errno === "EIO" ? "SystemError" : "PermissionDenied", error.message)
            yield* world.memory.setHook(Testing.noFaults)

            assert.deepStrictEqual(yield* Effect.orDie(world.fs.readDirectory(LOCK)), [])
            assert.strictEqual(yield* Effect.orDie(world.fs.readLink(COUNTER)), "1")
            const mySocket = new RegExp(`^${me.process.pid}\\.[0-9a-f]+\\.sock$`)
            const home = (yield* Effect.orDie(world.fs.readDirectory(HOME))).sort()
            assert.strictEqual(home.filter((name) => mySocket.test(name)).length, 1, home.join(", "))
            assert.deepStrictEqual(
              home.filter((name) => !mySocket.test(name)),
              ["generation", "lock", earlier.owner.socket!, ...deadLink].sort()
            )
            const next = yield* Effect.orDie(other.run(Effect.scoped(PidLock.acquire({ name: NAME, dir: DIR }))))
            assert.strictEqual(next.generation, 2)
          }))
      }
    }
  }

  it.effect("a holder killed between its link to the next generation and the rename leaves that link; the takeover collects it", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const other = yield* world.contender()
      const me = yield* world.contender()
      yield* Effect.orDie(other.run(Effect.scoped(PidLock.acquire({ name: NAME, dir: DIR }))))
      yield* world.memory.setHook(
        crashAt(world.processes, me.process.pid, (call) => call.method === "rename" && COUNTER_LINK.test(call.path))
      )
      yield* Effect.flip(me.run(acquireAndRelease))
      yield* world.memory.setHook(Testing.noFaults)
      // Killed holding the lock, its link to generation 2 made and never renamed.
      const [entry] = yield* Effect.orDie(world.fs.readDirectory(LOCK))
      assert.match(entry!, new RegExp(`^${me.process.pid}\\.`))
      const link = `generation.${entry}`
      assert.strictEqual(yield* Effect.orDie(world.fs.readLink(Path.join(HOME, link))), "2")
      assert.strictEqual(yield* Effect.orDie(world.fs.readLink(COUNTER)), "1")

      const next = yield* Effect.orDie(other.run(Effect.scoped(PidLock.acquire({ name: NAME, dir: DIR }))))
      assert.strictEqual(next.generation, 2)
      assert.strictEqual(next.owner.pid, other.process.pid)
      // Its entry, its link and its socket went with the takeover.
      assert.deepStrictEqual(
        (yield* Effect.orDie(world.fs.readDirectory(HOME))).sort(),
        ["generation", "lock", next.owner.socket!].sort()
      )
    }))

  it.effect("when the rename fails and so does the first removal of the staging directory, the removal is tried again", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const me = yield* world.contender()
      const staging = new RegExp(`^${HOME}/${me.process.pid}\\.[0-9a-f]+$`)
      yield* world.memory.setHook(Testing.combineHooks(
        Testing.failMatching({ method: "rename", path: staging, errno: "EIO", times: 1 }),
        Testing.failMatching({ method: "remove", path: staging, errno: "EIO", times: 1 })
      ))
      const error = yield* Effect.flip(Effect.scoped(me.run(PidLock.acquire({ name: NAME, dir: DIR }))))
      assert.strictEqual(error._tag, "SystemError")
      // Only our socket, kept for the next try.
      const home = yield* Effect.orDie(world.fs.readDirectory(HOME))
      assert.deepStrictEqual(home.filter((name) => !name.endsWith(".sock")), [])
    }))

  it.effect("when the counter cannot be advanced and so the lock is given back, a failed give-back is tried again", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const me = yield* world.contender()
      yield* world.memory.setHook(Testing.combineHooks(
        Testing.failMatching({ method: "readLink", path: COUNTER, errno: "EIO", times: 1 }),
        Testing.failMatching({ method: "unlink", path: /\/lock\/\d+\.[0-9a-f]+$/, errno: "EIO", times: 1 })
      ))
      const error = yield* Effect.flip(Effect.scoped(me.run(PidLock.acquire({ name: NAME, dir: DIR }))))
      assert.strictEqual(error._tag, "SystemError")
      assert.deepStrictEqual(yield* Effect.orDie(world.fs.readDirectory(LOCK)), [])
    }))

  it.effect("a failed release is tried again by the scope's finalizer", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const me = yield* world.contender()
      const error = yield* Effect.scoped(Effect.gen(function*() {
        const lock = yield* me.run(PidLock.acquire({ name: NAME, dir: DIR }))
        yield* world.memory.setHook(
          Testing.failMatching({ method: "unlink", path: lock.entry, errno: "EIO", times: 1 })
        )
        return yield* Effect.flip(lock.release)
      }))
      assert.strictEqual(error._tag, "SystemError")
      assert.deepStrictEqual(yield* Effect.orDie(world.fs.readDirectory(LOCK)), [])
    }))
})

// Stops the first call that `matches` until `gate` is opened, then lets it go
// on, or fail with `errno`.
const gateFirst = (
  matches: (call: Testing.FileSystemCall) => boolean,
  reached: Deferred.Deferred<void>,
  gate: Deferred.Deferred<void>,
  errno?: Testing.Errno
): Testing.Hook => {
  let done = false
  return (call) => {
    if (done || !matches(call)) return Effect.void
    done = true
    return Deferred.succeed(reached, undefined).pipe(
      Effect.zipRight(Deferred.await(gate)),
      Effect.zipRight(
        errno === undefined ? Effect.void : Effect.fail(Testing.systemError(call.method, call.path, errno))
      )
    )
  }
}

describe("what a process does once, and what only a reader of lost starts", () => {
  it.effect("a lock home in a private directory is checked by a process's first acquisition only, until a surprise", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const me = yield* world.contender()
      const other = yield* world.contender()
      yield* Effect.orDie(world.fs.makeDirectory(DIR, { recursive: true, mode: 0o755 }))
      let checks = 0
      const countChecks: Testing.Hook = (call) =>
        Effect.sync(() => void (call.method === "lstat" && (call.path === HOME || call.path === DIR) && checks++))
      yield* world.memory.setHook(countChecks)
      const checksOf = <A, E>(effect: Effect.Effect<A, E>) =>
        Effect.suspend(() => {
          const before = checks
          return Effect.map(effect, () => checks - before)
        })
      assert.isAbove(yield* checksOf(me.run(acquireAndRelease)), 0)
      assert.strictEqual(yield* checksOf(me.run(acquireAndRelease)), 0)
      // Another process checks for itself.
      assert.isAbove(yield* checksOf(other.run(acquireAndRelease)), 0)
      // A failure other than a held lock forgets the check.
      yield* world.memory.setHook(Testing.combineHooks(
        countChecks,
        Testing.failMatching({ method: "readLink", path: Path.join(HOME, "generation"), errno: "EIO", times: 1 })
      ))
      assert.isTrue(Exit.isFailure(yield* Effect.exit(me.run(acquireAndRelease))))
      assert.isAbove(yield* checksOf(me.run(acquireAndRelease)), 0)
      // In a directory that others may write (sticky, as /tmp), every time: a
      // home gone from there may come back as anyone's symbolic link.
      yield* Effect.orDie(world.fs.chmod(DIR, 0o1777))
      const third = yield* world.contender()
      for (let i = 0; i < 3; i++) assert.isAbove(yield* checksOf(third.run(acquireAndRelease)), 0)
    }))

  it.effect("the watchdog runs only once lost is awaited, and then finds a loss", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const me = yield* world.contender()
      yield* Effect.scoped(Effect.gen(function*() {
        const lock = yield* me.run(PidLock.acquire({ name: NAME, dir: DIR, checkInterval: "1 second" }))
        let reads = 0
        yield* world.memory.setHook((call) =>
          Effect.sync(() => void (call.method === "readLink" && call.path === lock.entry && reads++))
        )
        yield* TestClock.adjust("10 seconds")
        assert.strictEqual(reads, 0)
        const lost = yield* Effect.fork(Effect.flip(lock.lost))
        yield* TestClock.adjust("1 second")
        assert.isAbove(reads, 0)
        yield* Effect.orDie(world.fs.remove(lock.entry))
        yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* Fiber.join(lost))._tag, "LockCompromised")
      }))
    }))

  it.effect("withLock starts the watchdog when its body first yields: none for a body that ends at once", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const me = yield* world.contender()
      const options = { name: NAME, dir: DIR, checkInterval: "1 second" } as const
      let reads = 0
      yield* world.memory.setHook((call) =>
        Effect.sync(() => void (call.method === "readLink" && call.path.startsWith(`${LOCK}/`) && reads++))
      )
      assert.strictEqual(yield* me.run(PidLock.withLock(Effect.succeed("done"), options)), "done")
      assert.strictEqual(reads, 0)
      // A body that waits is watched, and stopped by a loss.
      const work = yield* Effect.fork(me.run(PidLock.withLock(Effect.never, options)))
      yield* TestClock.adjust("1 second")
      assert.isAbove(reads, 0)
      const [entry] = yield* Effect.orDie(world.fs.readDirectory(LOCK))
      yield* Effect.orDie(world.fs.remove(Path.join(LOCK, entry!)))
      yield* TestClock.adjust("1 second")
      const error = yield* Effect.flip(Fiber.join(work))
      assert.isTrue(error._tag === "LockCompromised" && error.workStopped === true)
    }))
})

describe("release, shared and retried", () => {
  it.scoped("two releases at once: one removal, whose outcome both get; a failed one can be tried again", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const me = yield* world.contender()
      const lock = yield* me.run(PidLock.acquire({ name: NAME, dir: DIR, checkInterval: false }))
      const [reached, gate] = yield* Effect.all([Deferred.make<void>(), Deferred.make<void>()])
      let unlinks = 0
      yield* world.memory.setHook(Testing.combineHooks(
        (call) => Effect.sync(() => void (call.method === "unlink" && call.path === lock.entry && unlinks++)),
        gateFirst((call) => call.method === "unlink" && call.path === lock.entry, reached, gate, "EIO")
      ))
      const first = yield* Effect.fork(Effect.either(lock.release))
      yield* Deferred.await(reached)
      const second = yield* Effect.fork(Effect.either(lock.release))
      yield* Deferred.succeed(gate, undefined)
      const [a, b] = [yield* Fiber.join(first), yield* Fiber.join(second)]
      assert.strictEqual(unlinks, 1)
      assert.isTrue(a._tag === "Left" && a.left._tag === "SystemError")
      assert.deepStrictEqual(b, a)
      assert.deepStrictEqual(yield* Effect.orDie(world.fs.readDirectory(LOCK)), [Path.basename(lock.entry)])
      yield* lock.release
      assert.deepStrictEqual(yield* Effect.orDie(world.fs.readDirectory(LOCK)), [])
    }))

  it.effect("withLock succeeds when its release fails once and the retry releases", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const me = yield* world.contender()
      yield* world.memory.setHook(
        Testing.failMatching({ method: "unlink", path: /\/lock\/\d+\.[0-9a-f]+$/, errno: "EIO", times: 1 })
      )
      const result = yield* me.run(
        Effect.succeed("done").pipe(PidLock.withLock({ name: NAME, dir: DIR, checkInterval: false }))
      )
      assert.strictEqual(result, "done")
      assert.deepStrictEqual(yield* Effect.orDie(world.fs.readDirectory(LOCK)), [])
    }))

  it.scoped("a release while the watchdog checks the entry: lost never fires", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const me = yield* world.contender()
      const [reached, gate] = yield* Effect.all([Deferred.make<void>(), Deferred.make<void>()])
      yield* world.memory.setHook(
        gateFirst((call) => call.method === "readLink" && /\/lock\/\d+\./.test(call.path), reached, gate)
      )
      const lock = yield* me.run(PidLock.acquire({ name: NAME, dir: DIR }))
      // Awaiting `lost` starts the watchdog.
      const lost = yield* Effect.fork(lock.lost)
      yield* Deferred.await(reached)
      yield* lock.release
      yield* Deferred.succeed(gate, undefined)
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
      assert.isNull(lost.unsafePoll())
      yield* lock.verify
    }))
})

describe("the holder's socket, which only the fake process table can end on demand", () => {
  it.effect("a holder in another pid namespace is alive while its socket answers, and taken over once it refuses", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const holder = yield* world.contender()
      const me = yield* world.contender()
      yield* Effect.orDie(world.fs.makeDirectory(HOME, { recursive: true, mode: 0o700 }))
      const listener = yield* Effect.orDie(holder.posix.listen(HOME))
      const record = {
        ...recordOf({ ...holder.info.self, pidNamespace: "pid:[4026532999]" }),
        socket: Path.basename(listener.path)
      }
      yield* Effect.orDie(plantHolder(world.fs, HOME, record))
      const held = yield* Effect.flip(Effect.scoped(me.run(PidLock.acquire({ name: NAME, dir: DIR }))))
      assert.deepStrictEqual(held._tag === "LockHeld" ? held.verdict : held, ProcessInfo.Verdict.Alive())
      yield* world.processes.exit(holder.process.pid)
      const lock = yield* Effect.orDie(Effect.scoped(me.run(PidLock.acquire({ name: NAME, dir: DIR }))))
      assert.strictEqual(lock.owner.pid, me.process.pid)
      // The dead holder's socket went with its lock.
      assert.isFalse((yield* Effect.orDie(world.fs.readDirectory(HOME))).includes(Path.basename(listener.path)))
    }))

  it.effect("a holder whose process is gone while its socket still answers (run's command) is alive", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const wrapper = yield* world.contender()
      const me = yield* world.contender()
      yield* Effect.orDie(world.fs.makeDirectory(HOME, { recursive: true, mode: 0o700 }))
      // The socket answers for as long as a process that has it open lives.
      const command = yield* world.contender()
      const listener = yield* Effect.orDie(command.posix.listen(HOME))
      yield* Effect.orDie(
        plantHolder(world.fs, HOME, { ...recordOf(wrapper.info.self), socket: Path.basename(listener.path) })
      )
      yield* world.processes.exit(wrapper.process.pid)
      const held = yield* Effect.flip(Effect.scoped(me.run(PidLock.acquire({ name: NAME, dir: DIR }))))
      assert.deepStrictEqual(held._tag === "LockHeld" ? held.verdict : held, ProcessInfo.Verdict.Alive())
      yield* world.processes.exit(command.process.pid)
      const lock = yield* Effect.orDie(Effect.scoped(me.run(PidLock.acquire({ name: NAME, dir: DIR }))))
      assert.strictEqual(lock.owner.pid, me.process.pid)
    }))
})

describe("holders that only a fake /proc can show", () => {
  it.effect("a holder whose /proc/<pid>/stat vanishes while it is read (ESRCH) has exited: taken over", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const holder = yield* world.contender()
      const me = yield* world.contender()
      yield* Effect.orDie(plantHolder(world.fs, HOME, recordOf(holder.info.self)))
      yield* world.processes.vanishOnNextRead(holder.process.pid)
      const lock = yield* Effect.orDie(Effect.scoped(me.run(PidLock.acquire({ name: NAME, dir: DIR }))))
      assert.strictEqual(lock.owner.pid, me.process.pid)
    }))

  it.effect("a holder whose /proc/<pid>/stat cannot be read (EPERM, as under hidepid=1) counts as alive", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const holder = yield* world.contender()
      const me = yield* world.contender()
      yield* Effect.orDie(plantHolder(world.fs, HOME, recordOf(holder.info.self)))
      yield* world.processes.denyRead(holder.process.pid)
      const error = yield* Effect.flip(Effect.scoped(me.run(PidLock.acquire({ name: NAME, dir: DIR }))))
      assert.strictEqual(error._tag, "LockHeld")
    }))

  it.effect("a holder that set its process title is still alive (fault 3 of the original)", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const holder = yield* world.contender(["node", "daemon.js", "--port", "80"])
      const me = yield* world.contender(["node", "daemon.js", "--port", "81"])
      yield* Effect.orDie(plantHolder(world.fs, HOME, recordOf(holder.info.self)))
      yield* world.processes.setTitle(holder.process.pid, "daemon (worker) busy")
      const error = yield* Effect.flip(Effect.scoped(me.run(PidLock.acquire({ name: NAME, dir: DIR }))))
      assert.strictEqual(error._tag, "LockHeld")
      if (error._tag === "LockHeld") assert.deepStrictEqual(error.holder.cmdline, ["node", "daemon.js", "--port", "80"])
    }))

  it.effect("after a reboot, a PID and start time that repeat are still told apart by the boot id", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const before = yield* world.contender()
      const record = recordOf(before.info.self)
      yield* world.processes.reboot
      const me = yield* world.contender()
      assert.strictEqual(me.process.pid, before.process.pid)
      assert.strictEqual(me.info.self.startTime, before.info.self.startTime)
      yield* Effect.orDie(plantHolder(world.fs, HOME, record))
      const lock = yield* Effect.orDie(Effect.scoped(me.run(PidLock.acquire({ name: NAME, dir: DIR }))))
      assert.strictEqual(lock.owner.bootId, me.info.self.bootId)
      assert.notStrictEqual(lock.owner.bootId, record.bootId)
    }))

  it.effect("a command line too long for a symlink is cut to the arguments that fit", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld
      const args = Array.from({ length: 5000 }, (_, i) => `--argument-${i}`)
      const me = yield* world.contender(["node", "main.js", ...args])
      const text = yield* Effect.orDie(Effect.scoped(Effect.flatMap(
        me.run(PidLock.acquire({ name: NAME, dir: DIR })),
        (lock) => world.fs.readLink(lock.entry)
      )))
      assert.isAtMost(Buffer.byteLength(text), 4095)
      const record = JSON.parse(text)
      assert.isAbove(record.cmdline.length, 2)
      assert.isBelow(record.cmdline.length, args.length)
      assert.deepStrictEqual(record.cmdline, ["node", "main.js", ...args].slice(0, record.cmdline.length))
    }))
})
