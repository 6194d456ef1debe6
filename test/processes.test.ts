// Real processes on a real disk: every child runs test/fixtures/holder.mjs,
// which loads the built package (dist/) by its own name, as an application
// would. `npm test` builds first; after changing src/, run `npm run build`.
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import type * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as PidLock from "../src/PidLock.js"
import * as Posix from "../src/Posix.js"
import { formatReport, runStress } from "./stress/stress.js"
import {
  describeChild,
  socketsOf,
  spawnNode,
  waitForExit,
  waitForLine,
  waitForSocketsAbove
} from "./support/children.js"
import { nodeLayer, tempDir } from "./support/nodeEnvironment.js"

const HOLDER = fileURLToPath(new URL("./fixtures/holder.mjs", import.meta.url))
const NAME = "app"
const NOBODY = 65534
const isRoot = process.getuid?.() === 0

// -----------------------------------------------------------------------------
// Helpers
// -----------------------------------------------------------------------------

/** Runs `holder.mjs` with `args`. */
const spawnHolder = (args: ReadonlyArray<string>, options: ChildProcess.SpawnOptions = {}) =>
  spawnNode(HOLDER, args, options)

const list = (path: string) => Fs.readdirSync(path).sort()

// -----------------------------------------------------------------------------
// Tests
// -----------------------------------------------------------------------------

describe("real processes", () => {
  // The stress run of `npm run stress`, short, half of the processes waiting
  // for the lock; in separate pid namespaces only the holders' sockets tell
  // the living from the dead.
  const stressRuns = [
    { title: "a race of 8 processes", pidNamespaces: false, run: true, processInfo: "proc" },
    {
      title: "a race of 8 processes judging holders with the portable ProcessInfo (ps, kill)",
      pidNamespaces: false,
      run: true,
      processInfo: "portable"
    },
    {
      title: "a race of 8 processes, each in a pid namespace of its own",
      pidNamespaces: true,
      run: isRoot,
      processInfo: "proc"
    }
  ] as const
  for (const { pidNamespaces, processInfo, run, title } of stressRuns) {
    it.live.skipIf(!run)(
      `${title} with SIGKILLed holders: never two holders, every dead holder's lock taken over`,
      () =>
        Effect.gen(function*() {
          const report = yield* runStress({
            dir: Os.tmpdir(),
            processes: 8,
            acquisitions: 100,
            killProbability: 0.05,
            pauseMs: [20, 80],
            waitMs: 1000,
            minKills: 3,
            pidNamespaces,
            processInfo
          })
          console.log(formatReport(report))
          assert.deepStrictEqual(
            report.problems,
            [],
            "overlaps, stuck locks, leftovers, generations or failed children"
          )
          assert.strictEqual(report.overlaps, 0)
          assert.strictEqual(report.stuck, 0)
          assert.strictEqual(report.generationsNotIncreasing, 0)
          assert.strictEqual(report.generations?.[0], 1)
          assert.isAtLeast(report.kills, 3, "holders SIGKILLed while holding, and taken over")
          assert.isAtLeast(report.acquisitions, 100)
        }),
      60_000
    )
  }

  it.scopedLive(
    "processes taking the lock in turn are handed generations 1, 2, 3, …: a takeover of a killed holder's lock included",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const generations: Array<unknown> = []
        const tryOnce = Effect.gen(function*() {
          const child = yield* spawnHolder(["try", "--dir", dir, "--name", NAME])
          generations.push((yield* waitForLine(child, "acquired")).generation)
          yield* waitForExit(child)
        })
        yield* tryOnce
        yield* tryOnce
        const killed = yield* spawnHolder(["hold", "--dir", dir, "--name", NAME])
        generations.push((yield* waitForLine(killed, "ready")).generation)
        killed.process.kill("SIGKILL")
        yield* waitForExit(killed)
        yield* tryOnce
        const repeating = yield* spawnHolder(["repeat", "--dir", dir, "--name", NAME, "--count", "3"])
        yield* waitForLine(repeating, "done")
        const attempts = repeating.lines.filter((line) => line.startsWith("attempt ")).map((line) =>
          JSON.parse(line.slice(8))
        )
        for (const attempt of attempts) generations.push(attempt.generation)
        assert.deepStrictEqual(generations, [1, 2, 3, 4, 5, 6, 7], describeChild(repeating))
        assert.strictEqual(Fs.readlinkSync(Path.join(dir, NAME, "generation")), "7")
      }),
    60_000
  )

  it.scopedLive(
    "a waiter keeps one connection to its holder's socket across its polls, and takes over when SIGKILL hangs it up",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const holder = yield* spawnHolder(["hold", "--dir", dir, "--name", NAME])
        const ready = yield* waitForLine(holder, "ready")
        const before = socketsOf(holder.process.pid!)
        // This process's Posix, counting the waiter's connections and telling how they end.
        let connections = 0
        const outcomes: Array<Posix.HangUp> = []
        const watched = Layer.effect(
          Posix.Posix,
          Effect.map(Posix.Posix, (posix) => ({
            ...posix,
            awaitHangUp: (path: string) =>
              Effect.suspend(() => {
                connections++
                return Effect.tap(posix.awaitHangUp(path), (outcome) => Effect.sync(() => outcomes.push(outcome)))
              })
          }))
        ).pipe(Layer.provideMerge(nodeLayer))
        const waiter = yield* Effect.fork(
          Effect.scoped(PidLock.acquire({ name: NAME, dir, wait: "60 seconds" })).pipe(Effect.provide(watched))
        )
        // The holder has accepted the waiter's connection: a hang-up before it is no hang-up.
        yield* waitForSocketsAbove(holder.process.pid!, before)
        // Its polls at 10, 20, 40, … ms: the first seven pass.
        yield* Effect.sleep("1300 millis")
        assert.isNull(waiter.unsafePoll())
        assert.deepStrictEqual(outcomes, [], "the holder keeps the waiter's connection open while it lives")
        assert.strictEqual(connections, 1, "one connection for all the rounds of the wait")
        holder.process.kill("SIGKILL")
        const lock = yield* Fiber.join(waiter)
        assert.strictEqual(lock.owner.pid, process.pid)
        assert.strictEqual(lock.generation, (ready.generation as number) + 1)
        assert.deepStrictEqual(outcomes, ["HungUp"])
      })
  )

  it.scopedLive("a holder that set process.title is still alive: the next contender gets LockHeld (fault 3)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const title = "renamed (holder) x"
      const holder = yield* spawnHolder(["hold", "--dir", dir, "--name", NAME, "--title", title])
      yield* waitForLine(holder, "ready")
      // The premise: /proc shows another command line and command name than
      // the ones recorded in the owner entry.
      const [entry] = list(Path.join(dir, NAME, "lock"))
      const record = JSON.parse(Fs.readlinkSync(Path.join(dir, NAME, "lock", entry!)))
      const cmdline = Fs.readFileSync(`/proc/${holder.pid}/cmdline`, "utf8").replace(/\0+$/, "").split("\0")
      assert.deepStrictEqual(cmdline, [title])
      assert.notDeepEqual(record.cmdline, cmdline)
      assert.strictEqual(Fs.readFileSync(`/proc/${holder.pid}/comm`, "utf8").trim(), title.slice(0, 15))

      const contender = yield* spawnHolder(["try", "--dir", dir, "--name", NAME])
      const error = yield* waitForLine(contender, "error")
      assert.deepStrictEqual(
        { _tag: error._tag, holderPid: error.holderPid, verdict: error.verdict },
        { _tag: "LockHeld", holderPid: holder.pid, verdict: "Alive" },
        describeChild(contender)
      )
      assert.deepStrictEqual(list(Path.join(dir, NAME, "lock")), [entry])
      assert.isUndefined(holder.status(), "the holder still runs")
    }))

  it.scopedLive.each(["SIGTERM", "SIGINT"] as const)(
    "NodeRuntime.runMain releases the lock on %s",
    (signal) =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const home = Path.join(dir, NAME)
        const holder = yield* spawnHolder(["hold", "--dir", dir, "--name", NAME])
        const ready = yield* waitForLine(holder, "ready")
        const entries = list(Path.join(home, "lock"))
        assert.strictEqual(entries.length, 1, `lock entries: ${entries.join(", ")}`)
        assert.isTrue(entries[0]!.startsWith(`${holder.pid}.`), `${entries[0]} is not ${holder.pid}'s`)
        assert.strictEqual(ready.entry, Path.join(home, "lock", entries[0]!))

        holder.process.kill(signal)
        const status = yield* waitForExit(holder)
        assert.deepStrictEqual(status, { code: 0, signal: null }, describeChild(holder))
        assert.deepStrictEqual(list(Path.join(home, "lock")), [])
        assert.deepStrictEqual(list(home), ["generation", "lock"])
      })
  )

  describe("permissions", () => {
    if (!isRoot) {
      console.warn(
        "processes.test.ts: permission tests skipped: they need root, to run a child as uid 65534 and to chown a lock home"
      )
    }

    it.scopedLive.skipIf(!isRoot)(
      "a contender that cannot create the lock home gets PermissionDenied (EACCES)",
      () =>
        Effect.gen(function*() {
          const dir = yield* tempDir
          Fs.chmodSync(dir, 0o755) // mkdtemp makes it 0700: let uid 65534 in
          const parent = Path.join(dir, "root-only")
          Fs.mkdirSync(parent, { mode: 0o755 })
          assert.strictEqual(Fs.statSync(parent).uid, 0)

          const contender = yield* spawnHolder(["try", "--dir", parent, "--name", NAME, "--as-user", String(NOBODY)])
          const error = yield* waitForLine(contender, "error")
          assert.deepStrictEqual(
            { _tag: error._tag, operation: error.operation, code: error.code, path: error.path },
            { _tag: "PermissionDenied", operation: "makeDirectory", code: "EACCES", path: Path.join(parent, NAME) },
            describeChild(contender)
          )
          assert.deepStrictEqual(list(parent), [])
        })
    )

    it.scopedLive.skipIf(!isRoot)(
      "a lock home owned by another uid is NameClash, left untouched",
      () =>
        Effect.gen(function*() {
          const dir = yield* tempDir
          const home = Path.join(dir, NAME)
          Fs.mkdirSync(Path.join(home, "lock"), { recursive: true })
          Fs.chownSync(Path.join(home, "lock"), NOBODY, NOBODY)
          Fs.chownSync(home, NOBODY, NOBODY)
          const picture = () =>
            [home, Path.join(home, "lock")].map((path) => {
              const { ctimeMs, gid, ino, mode, mtimeMs, uid } = Fs.statSync(path)
              return { path, uid, gid, mode, ino, mtimeMs, ctimeMs, entries: list(path) }
            })
          const before = picture()

          const result = yield* Effect.scoped(PidLock.acquire({ name: NAME, dir })).pipe(
            Effect.provide(nodeLayer),
            Effect.flip
          )
          assert.strictEqual(result._tag, "NameClash")
          assert.deepStrictEqual(
            { path: (result as PidLock.NameClash).path, ownerUid: (result as PidLock.NameClash).ownerUid },
            { path: home, ownerUid: NOBODY }
          )
          assert.deepStrictEqual(picture(), before)
        })
    )
  })
})
