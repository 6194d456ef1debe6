import type * as FileSystem from "@effect/platform/FileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Path from "node:path"
import * as PidLock from "../src/PidLock.js"
import * as Posix from "../src/Posix.js"
import * as ProcessInfo from "../src/ProcessInfo.js"
import {
  entryNameOf,
  type Environment,
  type Fixture,
  isSocketOf,
  NAME,
  plantHolder,
  plantStaging,
  recordOf,
  snapshot,
  withFixture
} from "./support/environment.js"

// A snapshot without our own socket, which a refused acquire leaves in the home.
const snapshotOfOthers = (fs: FileSystem.FileSystem, dir: string) =>
  Effect.flatMap(
    ProcessInfo.ProcessInfo,
    ({ self }) => Effect.map(snapshot(fs, dir), (lines) => lines.filter((line) => !isSocketOf(self.pid)(line)))
  )
import { memoryEnvironment, memoryPortableEnvironment } from "./support/memoryEnvironment.js"
import { nodeEnvironment, portableNodeEnvironment } from "./support/nodeEnvironment.js"

// `exists` follows links, and an owner entry's target is its record, not a path.
const isLink = (fs: FileSystem.FileSystem, path: string) => Effect.isSuccess(fs.readLink(path))

const entriesOf = (fs: FileSystem.FileSystem, path: string) =>
  fs.readDirectory(path).pipe(Effect.map((names) => names.sort()))

const lockSuite = (environment: Environment) =>
  describe(`PidLock on the ${environment.name} file system`, () => {
    const test = (
      name: string,
      body: Parameters<typeof withFixture<void, unknown>>[1]
    ) => it.scopedLive(name, () => withFixture(environment, body))

    test("a free lock is taken, holds one owner entry with our record, and is empty after the scope closes", ({ dir, fs, home }) =>
      Effect.gen(function*() {
        const info = yield* ProcessInfo.ProcessInfo
        const lock = yield* Effect.scoped(Effect.gen(function*() {
          const lock = yield* PidLock.acquire({ name: NAME, dir })
          assert.strictEqual(lock.location, Path.join(home, "lock"))
          assert.deepStrictEqual(yield* entriesOf(fs, lock.location), [entryNameOf(lock.owner)])
          const record = JSON.parse(yield* fs.readLink(lock.entry))
          assert.deepStrictEqual(Object.keys(record), [
            "v",
            "pid",
            "startTime",
            ...(info.self.startClock === undefined ? [] : ["startClock"]),
            "bootId",
            "pidNamespace",
            "hostname",
            "cmdline",
            ...(info.self.machineId === undefined ? [] : ["machineId"]),
            "acquiredAt",
            "token",
            "socket"
          ])
          assert.strictEqual(record.pid, info.self.pid)
          assert.strictEqual(record.startTime, info.self.startTime)
          assert.strictEqual(record.machineId, info.self.machineId)
          assert.match(record.token, /^[0-9a-f]{16}$/)
          assert.strictEqual(record.socket, `${info.self.pid}.${record.socket.split(".")[1]}.sock`)
          // The home holds the lock, its generation counter and, once held, our socket: nothing else.
          assert.deepStrictEqual(yield* entriesOf(fs, home), ["generation", "lock", record.socket].sort())
          return lock
        }))
        assert.deepStrictEqual(yield* entriesOf(fs, lock.location), [])
        // The socket stays for the next acquisition: it is made once per process and home.
        assert.deepStrictEqual(yield* entriesOf(fs, home), ["generation", "lock", lock.owner.socket!].sort())
      }))

    test("a home removed after this process checked it is checked and made again by the next acquisition", ({ dir, fs, home }) =>
      Effect.gen(function*() {
        const posix = yield* Posix.Posix
        const first = yield* PidLock.acquire({ name: NAME, dir })
        yield* first.release
        yield* fs.remove(home, { recursive: true })
        const second = yield* PidLock.acquire({ name: NAME, dir })
        assert.deepStrictEqual(yield* entriesOf(fs, second.location), [entryNameOf(second.owner)])
        assert.strictEqual((yield* posix.lstat(home)).mode & 0o7777, 0o700)
        // A new home starts a new count: the old counter went with it.
        assert.strictEqual(second.generation, 1)
      }))

    test("a home replaced by a file after this process checked it: CorruptLock, and the file is kept", ({ dir, fs, home }) =>
      Effect.gen(function*() {
        yield* Effect.scoped(PidLock.acquire({ name: NAME, dir }))
        yield* fs.remove(home, { recursive: true })
        yield* fs.writeFileString(home, "not a lock home")
        const error = yield* Effect.flip(PidLock.acquire({ name: NAME, dir }))
        assert.strictEqual(error._tag, "CorruptLock")
        assert.strictEqual(error._tag === "CorruptLock" ? error.reason : undefined, "NotADirectory")
        assert.strictEqual(yield* fs.readFileString(home), "not a lock home")
      }))

    test("the first acquisition of a name is generation 1, and every later one is one more; the counter says the last", ({ dir, fs, home }) =>
      Effect.gen(function*() {
        const first = yield* PidLock.acquire({ name: NAME, dir })
        assert.strictEqual(first.generation, 1)
        yield* first.release
        const second = yield* Effect.scoped(PidLock.acquire({ name: NAME, dir }))
        const third = yield* Effect.scoped(
          Effect.flatMap(Layer.build(PidLock.layer({ name: NAME, dir })), (context) =>
            Effect.provide(PidLock.PidLock, context))
        )
        assert.deepStrictEqual([second.generation, third.generation], [2, 3])
        assert.strictEqual(yield* fs.readLink(Path.join(home, "generation")), "3")
        // Each name counts its own.
        assert.strictEqual((yield* PidLock.acquire({ name: "other", dir })).generation, 1)
      }))

    test("a takeover is handed the generation after the last one, and collects the link its dead holder did not rename", ({ dir, exited, fs, home }) =>
      Effect.gen(function*() {
        const dead = recordOf(yield* exited)
        yield* plantHolder(fs, home, dead)
        // 41 was the last generation handed out; the dead holder died between
        // making its link to 42 and renaming it over the counter.
        yield* fs.symlink("41", Path.join(home, "generation"))
        yield* fs.symlink("42", Path.join(home, `generation.${entryNameOf(dead)}`))
        const lock = yield* PidLock.acquire({ name: NAME, dir })
        assert.strictEqual(lock.generation, 42)
        assert.strictEqual(yield* fs.readLink(Path.join(home, "generation")), "42")
        assert.deepStrictEqual(yield* entriesOf(fs, home), ["generation", "lock", lock.owner.socket!].sort())
      }))

    test("the home and the lock directory are 0700, and no tombstone outlives a release", ({ dir, fs, home }) =>
      Effect.gen(function*() {
        const posix = yield* Posix.Posix
        const lock = yield* PidLock.acquire({ name: NAME, dir })
        assert.strictEqual((yield* posix.lstat(home)).mode & 0o7777, 0o700)
        assert.strictEqual((yield* posix.lstat(lock.location)).mode & 0o7777, 0o700)
        yield* lock.release
        assert.deepStrictEqual(
          (yield* entriesOf(fs, home)).filter((name) =>
            name.endsWith(".gone")
          ),
          []
        )
      }))

    test("staging directories of dead contenders and tombstones are collected on every acquire", ({ dir, exited, fs, home, live }) =>
      Effect.gen(function*() {
        const dead = yield* plantStaging(fs, home, recordOf(yield* exited))
        const alive = yield* plantStaging(fs, home, recordOf(yield* live))
        const tombstone = Path.join(home, "12.ab.gone")
        yield* fs.symlink("{}", tombstone)
        yield* PidLock.acquire({ name: NAME, dir })
        assert.isFalse(yield* fs.exists(dead))
        assert.isFalse(yield* isLink(fs, tombstone))
        assert.isTrue(yield* fs.exists(alive))
      }))

    test("text of a planted record reaches messages escaped, never as terminal control sequences", ({ dir, fs, home, live }) =>
      Effect.gen(function*() {
        const hostile = "\u001b]0;pwned\u0007\u001b[2J\u009b31m\u202eevil"
        const holder = { ...recordOf(yield* live), acquiredAt: hostile, cmdline: ["node", hostile] }
        yield* plantHolder(fs, home, holder)
        const error = yield* Effect.flip(PidLock.acquire({ name: NAME, dir }))
        assert.strictEqual(error._tag, "LockHeld")
        assert.notMatch(error.message, /[\u0000-\u001f\u007f-\u009f\u202e]/)
        assert.include(error.message, "\\u001b[2J")
        assert.include(error.message, "\\u202eevil")
      }))

    test("a holder in another pid namespace whose socket answers is alive; one whose socket is missing cannot be seen", ({ dir, exited, fs, home }) =>
      Effect.gen(function*() {
        const posix = yield* Posix.Posix
        yield* fs.makeDirectory(home, { mode: 0o700 })
        const listener = yield* posix.listen(home)
        const elsewhere = { ...(yield* exited), pidNamespace: "pid:[1]" }
        const answering = { ...recordOf(elsewhere), socket: Path.basename(listener.path) }
        const entry = yield* plantHolder(fs, home, answering)
        const error = yield* Effect.flip(PidLock.acquire({ name: NAME, dir }))
        assert.deepStrictEqual(error._tag === "LockHeld" ? error.verdict : error, ProcessInfo.Verdict.Alive())
        yield* fs.remove(entry)
        yield* plantHolder(fs, home, { ...recordOf(elsewhere), socket: "1.ab.sock" })
        const unseen = yield* Effect.flip(PidLock.acquire({ name: NAME, dir }))
        assert.deepStrictEqual(
          unseen._tag === "LockHeld" ? unseen.verdict : unseen,
          ProcessInfo.Verdict.Foreign({ scope: "namespace" })
        )
      }))

    test("release and verify after the lock home was replaced by a file: LockCompromised", ({ dir, fs, home }) =>
      Effect.gen(function*() {
        const lock = yield* PidLock.acquire({ name: NAME, dir, checkInterval: false })
        yield* fs.rename(home, `${home}.moved`)
        yield* fs.writeFileString(home, "not a directory")
        assert.strictEqual((yield* Effect.flip(lock.verify))._tag, "LockCompromised")
        assert.strictEqual((yield* Effect.flip(lock.release))._tag, "LockCompromised")
        assert.strictEqual(yield* fs.readFileString(home), "not a directory")
      }))

    // The watchdog re-arms its watch while the directory vanishes: Node's
    // watch then throws, and the watchdog must live through it, every time.
    test("the lock home removed right after acquire: lost fails with LockCompromised, 10 times of 10", ({ dir, fs, home }) =>
      Effect.gen(function*() {
        for (let round = 0; round < 10; round++) {
          const lock = yield* PidLock.acquire({ name: NAME, dir, checkInterval: "20 millis" })
          yield* fs.remove(home, { recursive: true })
          const error = yield* Effect.flip(lock.lost)
          assert.strictEqual(error._tag, "LockCompromised", `round ${round}`)
        }
      }))

    test("breakLock is a compare-and-swap: of two breaks of one entry, exactly one removes it", ({ dir, exited, fs, home }) =>
      Effect.gen(function*() {
        for (let round = 0; round < 50; round++) {
          const holder = recordOf(yield* exited)
          yield* plantHolder(fs, home, holder)
          const status = Option.getOrThrow(yield* PidLock.inspect({ name: NAME, dir }))
          const removed = yield* Effect.all([PidLock.breakLock(status), PidLock.breakLock(status)], { concurrency: 2 })
          assert.deepStrictEqual(removed.filter(Boolean).length, 1, `round ${round}: ${removed}`)
          assert.deepStrictEqual(yield* entriesOf(fs, Path.join(home, "lock")), [])
        }
      }))

    test("an empty lock directory is a free lock", ({ dir, fs, home }) =>
      Effect.gen(function*() {
        yield* fs.makeDirectory(Path.join(home, "lock"), { recursive: true })
        const lock = yield* PidLock.acquire({ name: NAME, dir })
        assert.deepStrictEqual(yield* entriesOf(fs, lock.location), [entryNameOf(lock.owner)])
      }))

    test("a live holder gives LockHeld naming it, and nothing is changed", ({ dir, fs, home, live }) =>
      Effect.gen(function*() {
        const holder = recordOf(yield* live)
        yield* plantHolder(fs, home, holder)
        const before = yield* snapshot(fs, dir)
        const error = yield* Effect.flip(PidLock.acquire({ name: NAME, dir }))
        assert.strictEqual(error._tag, "LockHeld")
        if (error._tag !== "LockHeld") return
        assert.deepStrictEqual(error.holder, holder)
        assert.strictEqual(error.verdict._tag, "Alive")
        assert.isFalse(error.heldByThisProcess)
        assert.include(error.message, `pid ${holder.pid}`)
        assert.deepStrictEqual(yield* snapshotOfOthers(fs, dir), before)
      }))

    test("a second acquire in this process (another fiber) is LockHeld by this very process", ({ dir }) =>
      Effect.gen(function*() {
        const lock = yield* PidLock.acquire({ name: NAME, dir })
        const error = yield* Effect.flip(
          Effect.scoped(PidLock.acquire({ name: NAME, dir })).pipe(
            Effect.fork,
            Effect.flatMap((fiber) => fiber.await),
            Effect.flatten
          )
        )
        assert.strictEqual(error._tag, "LockHeld")
        if (error._tag !== "LockHeld") return
        assert.isTrue(error.heldByThisProcess)
        assert.deepStrictEqual(error.holder, lock.owner)
        assert.include(error.message, "this very process")
      }))

    const takeoverCases: ReadonlyArray<{
      readonly name: string
      readonly reason: ProcessInfo.StaleReason
      /** Proved stale by the boot id alone, which a boot time cannot do. */
      readonly byBootId?: boolean
      readonly holder: (
        fixture: Fixture
      ) => Effect.Effect<PidLock.OwnerRecord, never, ProcessInfo.ProcessInfo | Scope.Scope>
    }> = [
      { name: "exited", reason: "Exited", holder: ({ exited }) => Effect.map(exited, (id) => recordOf(id)) },
      { name: "a zombie", reason: "Zombie", holder: ({ zombie }) => Effect.map(zombie, (id) => recordOf(id)) },
      {
        name: "a process whose PID was reused",
        reason: "PidReused",
        holder: ({ live }) => Effect.map(live, (id) => recordOf({ ...id, startTime: String(Number(id.startTime) - 1) }))
      },
      {
        // The container case: PID 1 on every start, so the leftover names our own PID.
        name: "an earlier life of our own PID",
        reason: "PidReused",
        holder: () =>
          Effect.map(
            ProcessInfo.ProcessInfo,
            ({ self }) => recordOf({ ...self, startTime: String(Number(self.startTime) - 1) })
          )
      },
      {
        // Same boot id, so this very kernel: the hostname was changed since.
        name: "an exited process that ran under an earlier hostname",
        reason: "Exited",
        byBootId: true,
        holder: ({ exited }) => Effect.map(exited, (id) => recordOf({ ...id, hostname: "earlier-name" }))
      },
      {
        name: "a process of an earlier boot",
        reason: "Rebooted",
        byBootId: true,
        holder: () => Effect.map(ProcessInfo.ProcessInfo, ({ self }) => recordOf({ ...self, bootId: "another-boot" }))
      }
    ]

    // Where a boot is named by its boot time (macOS, the BSDs), another boot
    // or hostname proves nothing (the boot time moves when the clock is set,
    // and repeats across machines): the process itself is looked at.
    const provedByBootId = (takeover: (typeof takeoverCases)[number]) =>
      takeover.byBootId === true && environment.bootsNamedBy === "boot-time"

    for (const { holder, name } of takeoverCases.filter(provedByBootId)) {
      test(`where boots are named by their boot time, the lock of ${name} is not taken over: held`, (fixture) =>
        Effect.gen(function*() {
          const { dir, fs, home } = fixture
          yield* plantHolder(fs, home, yield* holder(fixture))
          const status = yield* PidLock.inspect({ name: NAME, dir })
          assert.notStrictEqual(Option.map(status, (s) => s.verdict._tag), Option.some("Stale"))
          const error = yield* Effect.flip(PidLock.acquire({ name: NAME, dir }))
          assert.strictEqual(error._tag, "LockHeld")
        }))
    }

    for (const { holder, name, reason } of takeoverCases.filter((takeover) => !provedByBootId(takeover))) {
      test(`the lock of ${name} is taken over at once, and the takeover is logged`, (fixture) =>
        Effect.gen(function*() {
          const { dir, fs, home, logs } = fixture
          const stale = yield* holder(fixture)
          const staleEntry = yield* plantHolder(fs, home, stale)
          const status = yield* PidLock.inspect({ name: NAME, dir })
          assert.deepStrictEqual(
            Option.map(status, (s) => s.verdict),
            Option.some(ProcessInfo.Verdict.Stale({ reason }))
          )
          const lock = yield* PidLock.acquire({ name: NAME, dir })
          assert.deepStrictEqual(yield* entriesOf(fs, lock.location), [entryNameOf(lock.owner)])
          assert.isFalse(yield* isLink(fs, staleEntry))
          assert.strictEqual(
            logs.filter((line) =>
              line.includes(`taking over`) && line.includes(`pid ${stale.pid}`) && line.includes(reason)
            ).length,
            1
          )
        }))
    }

    test(`onStale: "fail" gives StaleLock and leaves the stale lock as it was`, ({ dir, exited, fs, home }) =>
      Effect.gen(function*() {
        const stale = recordOf(yield* exited)
        yield* plantHolder(fs, home, stale)
        const before = yield* snapshot(fs, dir)
        const error = yield* Effect.flip(PidLock.acquire({ name: NAME, dir, onStale: "fail" }))
        assert.strictEqual(error._tag, "StaleLock")
        if (error._tag !== "StaleLock") return
        assert.strictEqual(error.reason, "Exited")
        assert.deepStrictEqual(error.holder, stale)
        assert.deepStrictEqual(yield* snapshotOfOthers(fs, dir), before)
      }))

    const foreignCases = [
      { scope: "host", where: "on another host", change: { hostname: "another-host", bootId: "another-boot" } },
      { scope: "namespace", where: "in another pid namespace", change: { pidNamespace: "pid:[1]" } }
    ] as const
    for (const { change, scope, where } of foreignCases) {
      test(`a holder ${where}, which cannot be seen, counts as alive`, ({ dir, exited, fs, home }) =>
        Effect.gen(function*() {
          // Its PID names no process here; that proves nothing about the other side.
          const holder = recordOf({ ...(yield* exited), ...change })
          yield* plantHolder(fs, home, holder)
          const error = yield* Effect.flip(PidLock.acquire({ name: NAME, dir }))
          assert.strictEqual(error._tag, "LockHeld")
          if (error._tag !== "LockHeld") return
          assert.deepStrictEqual(error.verdict, ProcessInfo.Verdict.Foreign({ scope }))
          assert.include(error.message, where)
        }))
    }

    test("staging directories of dead contenders are removed after a takeover; a live contender's is kept", ({ dir, exited, fs, home, live }) =>
      Effect.gen(function*() {
        yield* plantHolder(fs, home, recordOf(yield* exited))
        const dead = yield* plantStaging(fs, home, recordOf(yield* exited))
        const alive = yield* plantStaging(fs, home, recordOf(yield* live))
        yield* PidLock.acquire({ name: NAME, dir })
        assert.isFalse(yield* fs.exists(dead))
        assert.isTrue(yield* fs.exists(alive))
      }))

    test("release is a compare-and-swap: a lock taken from us is LockCompromised, and the new holder's entry is untouched", ({ dir, fs, home, live }) =>
      Effect.gen(function*() {
        const lock = yield* PidLock.acquire({ name: NAME, dir })
        yield* fs.remove(lock.entry)
        const thief = recordOf(yield* live)
        const thiefEntry = yield* plantHolder(fs, home, thief)
        const error = yield* Effect.flip(lock.release)
        assert.strictEqual(error._tag, "LockCompromised")
        assert.deepStrictEqual(yield* entriesOf(fs, Path.join(home, "lock")), [entryNameOf(thief)])
        assert.strictEqual(yield* fs.readLink(thiefEntry), JSON.stringify(thief))
        // A second release does nothing.
        yield* lock.release
      }))

    test("withLock holds the lock only while the effect runs", ({ dir, fs, home }) =>
      Effect.gen(function*() {
        const seen = yield* Effect.gen(function*() {
          return yield* entriesOf(fs, Path.join(home, "lock"))
        }).pipe(PidLock.withLock({ name: NAME, dir }))
        assert.strictEqual(seen.length, 1)
        assert.deepStrictEqual(yield* entriesOf(fs, Path.join(home, "lock")), [])
        const exit = yield* Effect.exit(Effect.fail("boom").pipe(PidLock.withLock({ name: NAME, dir })))
        assert.deepStrictEqual(exit, Exit.fail("boom"))
        assert.deepStrictEqual(yield* entriesOf(fs, Path.join(home, "lock")), [])
      }))

    test("withLock fails with LockCompromised when the lock was removed under it", ({ dir, fs, home }) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(
          Effect.gen(function*() {
            const [entry] = yield* fs.readDirectory(Path.join(home, "lock"))
            yield* fs.remove(Path.join(home, "lock", entry!))
          }).pipe(PidLock.withLock({ name: NAME, dir }))
        )
        assert.strictEqual(error._tag, "LockCompromised")
      }))

    test("layer holds the lock for the layer's lifetime and provides it", ({ dir, fs, home }) =>
      Effect.gen(function*() {
        const lock = yield* Effect.scoped(Effect.gen(function*() {
          const context = yield* Layer.build(PidLock.layer({ name: NAME, dir }))
          const lock = yield* Effect.provide(PidLock.PidLock, context)
          assert.deepStrictEqual(yield* entriesOf(fs, Path.join(home, "lock")), [entryNameOf(lock.owner)])
          return lock
        }))
        assert.isFalse(yield* isLink(fs, Path.join(lock.location, entryNameOf(lock.owner))))
      }))

    test("inspect: None when free, the holder and verdict when held, and it changes nothing", ({ dir, fs, home, live }) =>
      Effect.gen(function*() {
        assert.isTrue(Option.isNone(yield* PidLock.inspect({ name: NAME, dir })))
        const holder = recordOf(yield* live)
        yield* plantHolder(fs, home, holder)
        const before = yield* snapshot(fs, dir)
        const status = yield* PidLock.inspect({ name: NAME, dir })
        assert.deepStrictEqual(
          status,
          Option.some({
            location: Path.join(home, "lock"),
            holder,
            verdict: ProcessInfo.Verdict.Alive(),
            heldByThisProcess: false
          })
        )
        assert.deepStrictEqual(yield* snapshotOfOthers(fs, dir), before)
      }))
  })

for (const environment of [memoryEnvironment, memoryPortableEnvironment, nodeEnvironment, portableNodeEnvironment]) {
  lockSuite(environment)
}
