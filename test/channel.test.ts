// PidLock's messages: `send` to a holder that reads `lock.messages` or
// answers with `onMessage`. The same cases on the memory file system (with
// Testing's Posix) and on the real one; then real processes, which run
// test/fixtures/messenger.mjs on the build (dist/): after changing src/, run
// `npm run build`.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"

import * as Stream from "effect/Stream"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as PidLock from "../src/PidLock.js"
import * as Posix from "../src/Posix.js"
import * as ProcessInfo from "../src/ProcessInfo.js"
import * as Testing from "../src/testing/index.js"
import { spawnNode, waitForExit, waitForLine } from "./support/children.js"

const MESSENGER = fileURLToPath(new URL("./fixtures/messenger.mjs", import.meta.url))
const NAME = "channel"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "channel-test-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

const backends = [
  ["memory", Effect.succeed("/tmp/locks"), Testing.layer()],
  ["node", tempDir, ProcessInfo.layer.pipe(Layer.provideMerge(NodeFileSystem.layer))]
] as const

const tagOf = <A, E extends { readonly _tag: string }, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.either(effect), Either.match({ onLeft: (error) => error._tag, onRight: () => "Right" }))

for (const [backend, makeDir, environment] of backends) {
  describe(`PidLock.send (${backend})`, () => {
    it.scopedLive("onMessage answers: send gets its reply, with who sent it", () =>
      Effect.gen(function*() {
        const dir = yield* makeDir
        yield* PidLock.acquire({
          name: NAME,
          dir,
          onMessage: (message) => Effect.succeed({ got: message.data, pid: message.pid, cwd: message.cwd })
        })
        const reply = yield* PidLock.send({ name: NAME, dir, data: { open: "a.txt" } })
        assert.deepStrictEqual(reply, {
          got: { open: "a.txt" },
          pid: (yield* ProcessInfo.ProcessInfo).self.pid,
          cwd: process.cwd()
        })
      }).pipe(Effect.provide(environment)))

    it.scopedLive("lock.messages: the program reads a message and replies", () =>
      Effect.gen(function*() {
        const dir = yield* makeDir
        const lock = yield* PidLock.acquire({ name: NAME, dir })
        yield* Effect.forkScoped(
          Stream.runForEach(lock.messages, (message) => message.reply(`hello ${String(message.data)}`))
        )
        assert.strictEqual(yield* PidLock.send({ name: NAME, dir, data: "you" }), "hello you")
      }).pipe(Effect.provide(environment)))

    it.scopedLive("taken again by the same process: the new lock's onMessage answers, and the old one's never", () =>
      Effect.gen(function*() {
        const dir = yield* makeDir
        const first = yield* PidLock.acquire({ name: NAME, dir, onMessage: () => Effect.succeed("first") })
        assert.strictEqual(yield* PidLock.send({ name: NAME, dir, data: 1 }), "first")
        yield* first.release
        const second = yield* PidLock.acquire({ name: NAME, dir, onMessage: () => Effect.succeed("second") })
        assert.strictEqual(second.owner.socket, first.owner.socket)
        assert.strictEqual(yield* PidLock.send({ name: NAME, dir, data: 2 }), "second")
        yield* second.release
        const third = yield* PidLock.acquire({ name: NAME, dir })
        yield* Effect.forkScoped(Stream.runForEach(third.messages, (message) => message.reply("third")))
        assert.strictEqual(yield* PidLock.send({ name: NAME, dir, data: 3 }), "third")
      }).pipe(Effect.provide(environment)))

    it.scopedLive("a free lock: NoHolder (Free); a released one too", () =>
      Effect.gen(function*() {
        const dir = yield* makeDir
        const free = yield* Effect.flip(PidLock.send({ name: NAME, dir, data: 1 }))
        assert.strictEqual(free._tag, "NoHolder")
        const lock = yield* PidLock.acquire({ name: NAME, dir })
        yield* lock.release
        const released = yield* Effect.flip(PidLock.send({ name: NAME, dir, data: 1 }))
        assert.deepStrictEqual([released._tag, (released as PidLock.NoHolder).reason], ["NoHolder", "Free"])
      }).pipe(Effect.provide(environment)))

    it.scopedLive("a holder that never reads: Timeout for the 16 its queue keeps, Refused (Busy) for the next", () =>
      Effect.gen(function*() {
        const dir = yield* makeDir
        yield* PidLock.acquire({ name: NAME, dir })
        const outcomes = yield* Effect.all(
          Array.from({ length: 17 }, () => tagOf(PidLock.send({ name: NAME, dir, data: 1, timeout: "1s" }))),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(
          [...outcomes].sort(),
          ["Refused", ...Array.from({ length: 16 }, () => "Timeout")]
        )
      }).pipe(Effect.provide(environment)))

    it.scopedLive("onMessage answers 16 at once; the 17th sender is told at once that the holder is busy", () =>
      Effect.gen(function*() {
        const dir = yield* makeDir
        const started = yield* Deferred.make<void>()
        const answering = yield* Ref.make(0)
        const release = yield* Deferred.make<void>()
        yield* PidLock.acquire({
          name: NAME,
          dir,
          onMessage: () =>
            Ref.updateAndGet(answering, (n) => n + 1).pipe(
              Effect.tap((n) => n === 16 ? Deferred.succeed(started, undefined) : Effect.void),
              Effect.zipRight(Deferred.await(release)),
              Effect.as("done")
            )
        })
        const first = yield* Effect.fork(Effect.all(
          Array.from({ length: 16 }, () => PidLock.send({ name: NAME, dir, data: 1, timeout: "30s" })),
          { concurrency: "unbounded" }
        ))
        yield* Deferred.await(started)
        const late = yield* Effect.flip(PidLock.send({ name: NAME, dir, data: 1, timeout: "30s" }))
        assert.deepStrictEqual([late._tag, (late as PidLock.Refused).reason], ["Refused", "Busy"])
        yield* Deferred.succeed(release, undefined)
        assert.deepStrictEqual(yield* Fiber.join(first), Array.from({ length: 16 }, () => "done"))
        assert.strictEqual(yield* PidLock.send({ name: NAME, dir, data: 1 }), "done")
      }).pipe(Effect.provide(environment)))

    it.scopedLive("a sender that gives up hangs up: the holder's answer to it is interrupted, and its place freed", () =>
      Effect.gen(function*() {
        const dir = yield* makeDir
        const interrupted = yield* Deferred.make<void>()
        yield* PidLock.acquire({
          name: NAME,
          dir,
          onMessage: (message) =>
            message.data === "slow"
              ? Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined)))
              : Effect.succeed("quick")
        })
        assert.strictEqual(
          yield* tagOf(PidLock.send({ name: NAME, dir, data: "slow", timeout: "200 millis" })),
          "Timeout"
        )
        yield* Deferred.await(interrupted)
        assert.strictEqual(yield* PidLock.send({ name: NAME, dir, data: "next" }), "quick")
      }).pipe(Effect.provide(environment)))

    it.scopedLive("a release interrupts the answers being made, and their senders are told the holder is gone", () =>
      Effect.gen(function*() {
        const dir = yield* makeDir
        const started = yield* Deferred.make<void>()
        const interrupted = yield* Deferred.make<void>()
        const lock = yield* PidLock.acquire({
          name: NAME,
          dir,
          onMessage: () =>
            Deferred.succeed(started, undefined).pipe(
              Effect.zipRight(Effect.never),
              Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
            )
        })
        const sender = yield* Effect.fork(tagOf(PidLock.send({ name: NAME, dir, data: 1, timeout: "30s" })))
        yield* Deferred.await(started)
        yield* lock.release
        yield* Deferred.await(interrupted)
        assert.strictEqual(yield* Fiber.join(sender), "NoHolder")
      }).pipe(Effect.provide(environment)))

    it.scopedLive("onMessage runs in the lock's runtime: it sees the fiber refs of the fiber that acquired", () =>
      Effect.gen(function*() {
        const dir = yield* makeDir
        const owner = FiberRef.unsafeMake("nobody")
        yield* PidLock.acquire({
          name: NAME,
          dir,
          onMessage: () => FiberRef.get(owner)
        }).pipe(Effect.locally(owner, "the holder"))
        assert.strictEqual(
          yield* PidLock.send({ name: NAME, dir, data: 1 }).pipe(Effect.locally(owner, "the sender")),
          "the holder"
        )
      }).pipe(Effect.provide(environment)))

    it.scopedLive("a handler that fails or declines: Refused (Declined), with its reason", () =>
      Effect.gen(function*() {
        const dir = yield* makeDir
        yield* PidLock.acquire({
          name: NAME,
          dir,
          onMessage: (message) =>
            message.data === "fail" ? Effect.fail(new Error("cannot open that")) : Effect.succeed(BigInt(1))
        })
        const failed = yield* Effect.flip(PidLock.send({ name: NAME, dir, data: "fail" }))
        assert.strictEqual(failed._tag, "Refused")
        assert.deepStrictEqual([(failed as PidLock.Refused).reason, (failed as PidLock.Refused).detail], [
          "Declined",
          "cannot open that"
        ])
        const notJson = yield* Effect.flip(PidLock.send({ name: NAME, dir, data: "bigint" }))
        assert.strictEqual((notJson as PidLock.Refused).reason, "Declined")
      }).pipe(Effect.provide(environment)))

    it.scopedLive("data too large: MessageTooLarge, nothing sent; data JSON cannot hold: InvalidOptions", () =>
      Effect.gen(function*() {
        const dir = yield* makeDir
        yield* PidLock.acquire({ name: NAME, dir, onMessage: () => Effect.succeed("ok") })
        const large = yield* Effect.flip(PidLock.send({ name: NAME, dir, data: "x".repeat(Posix.MAX_FRAME_BYTES) }))
        assert.strictEqual(large._tag, "MessageTooLarge")
        const cyclic: Record<string, unknown> = {}
        cyclic.self = cyclic
        assert.strictEqual(yield* tagOf(PidLock.send({ name: NAME, dir, data: cyclic })), "InvalidOptions")
        assert.strictEqual(yield* PidLock.send({ name: NAME, dir, data: "still answers" }), "ok")
      }).pipe(Effect.provide(environment)))
  })
}

// -----------------------------------------------------------------------------
// real processes
// -----------------------------------------------------------------------------

const spawnMessenger = (args: ReadonlyArray<string>) => spawnNode(MESSENGER, args)

const holdIn = (dir: string, ...flags: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const holder = yield* spawnMessenger(["hold", "--dir", dir, "--name", NAME, ...flags])
    yield* waitForLine(holder, "ready")
    return holder
  })

const sendFrom = (dir: string, data: unknown, ...flags: ReadonlyArray<string>) =>
  spawnMessenger(["send", "--dir", dir, "--name", NAME, "--data", JSON.stringify(data), ...flags])

// Generous: twenty Node processes starting at once on a small machine.
const outcomeOf = (child: Parameters<typeof waitForLine>[0]) =>
  Effect.gen(function*() {
    yield* waitForExit(child, 90)
    const line = child.lines.find((text) => text.startsWith("reply ") || text.startsWith("error "))
    assert.isDefined(line, child.stderr())
    return JSON.parse(line!.slice(line!.indexOf(" ") + 1)) as {
      readonly data?: any
      readonly _tag?: string
      readonly reason?: string
    }
  })

describe("PidLock.send between real processes", () => {
  it.scopedLive("20 senders at once: each gets the reply to its own message", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const holder = yield* holdIn(dir)
      const senders = yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) => sendFrom(dir, { n: i }))
      const outcomes = yield* Effect.forEach(senders, outcomeOf, { concurrency: "unbounded" })
      // (each sender's own timeout is the default, 5 s: a start-up slower than that shows here as Timeout)
      outcomes.forEach((outcome, i) => {
        assert.deepStrictEqual(outcome.data?.echo, { n: i })
        assert.strictEqual(outcome.data?.pid, holder.pid)
        assert.strictEqual(outcome.data?.from, senders[i]!.pid)
      })
    }), 120_000)

  // The socket lies in the lock home, 0700: another user reaches neither it
  // nor the holder, even where it can list the directory the home is in.
  it.scopedLive.skipIf(process.getuid?.() !== 0)(
    "another user cannot send: a typed error (NameClash), and connect(2) to the socket is refused with EACCES",
    () =>
      Effect.gen(function*() {
        const NOBODY = 65534
        const dir = yield* tempDir
        Fs.chmodSync(dir, 0o755)
        const holder = yield* holdIn(dir)
        const asNobody = { uid: NOBODY, gid: NOBODY }
        const sender = yield* spawnNode(MESSENGER, ["send", "--dir", dir, "--name", NAME, "--data", "1"], asNobody)
        const outcome = yield* outcomeOf(sender)
        assert.strictEqual(outcome._tag, "NameClash")
        const socket = Fs.readdirSync(Path.join(dir, NAME)).find((name) => name.endsWith(".sock"))!
        const script = `require("node:net").connect(${JSON.stringify(Path.join(dir, NAME, socket))})
          .on("connect", () => console.log("connected {}")).on("error", (e) => console.log("error " + JSON.stringify({ code: e.code })))`
        const raw = yield* spawnNode("-e", [script], asNobody)
        assert.strictEqual((yield* waitForLine(raw, "error")).code, "EACCES")
        // The holder still answers its own user.
        assert.deepStrictEqual(yield* PidLock.send({ name: NAME, dir, data: "mine" }), {
          echo: "mine",
          pid: holder.pid,
          from: process.pid
        })
      }).pipe(Effect.provide(ProcessInfo.layer.pipe(Layer.provideMerge(NodeFileSystem.layer))))
  )

  it.scopedLive("a sender killed mid-frame harms nothing: the holder answers the next", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* holdIn(dir)
      const socket = Fs.readdirSync(Path.join(dir, NAME)).find((name) => name.endsWith(".sock"))!
      const script = `
        const socket = require("node:net").connect(${JSON.stringify(Path.join(dir, NAME, socket))})
        socket.on("connect", () => { socket.write(Buffer.from([0, 0, 1, 0, 123, 34])); console.log("ready {}") })
        setInterval(() => {}, 1000)
      `
      const cut = yield* spawnNode("-e", [script])
      yield* waitForLine(cut, "ready")
      cut.process.kill("SIGKILL")
      yield* waitForExit(cut)
      // A frame that announces more than a frame holds, and garbage, from this process.
      yield* Effect.promise(() =>
        new Promise<void>((resolve) => {
          const raw = Net.connect(Path.join(dir, NAME, socket))
          raw.on("connect", () => raw.write(Buffer.from([255, 255, 255, 255, 1, 2, 3])))
          raw.on("close", () => resolve())
          raw.on("error", () => {})
        })
      )
      const outcome = yield* outcomeOf(yield* sendFrom(dir, "after"))
      assert.deepStrictEqual(outcome.data?.echo, "after")
    }), 60_000)

  it.scopedLive(
    "a busy holder answers late, within the timeout; past it the sender gets Timeout",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        yield* holdIn(dir, "--delay", "1500")
        const patient = yield* sendFrom(dir, "patient", "--timeout", "20s")
        const hasty = yield* sendFrom(dir, "hasty", "--timeout", "200ms")
        assert.deepStrictEqual((yield* outcomeOf(hasty))._tag, "Timeout")
        assert.deepStrictEqual((yield* outcomeOf(patient)).data?.echo, "patient")
      }),
    60_000
  )

  it.scopedLive(
    "a holder killed while a sender waits: NoHolder (Gone), long before the timeout",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const holder = yield* holdIn(dir, "--silent")
        const sender = yield* sendFrom(dir, "anyone?", "--timeout", "60s")
        // Its connection reaches the holder's socket before the holder dies, or after: either way, no hang.
        yield* Effect.sleep("300 millis")
        holder.process.kill("SIGKILL")
        const outcome = yield* outcomeOf(sender)
        assert.deepStrictEqual([outcome._tag, outcome.reason], ["NoHolder", "Gone"])
      }),
    60_000
  )
})
