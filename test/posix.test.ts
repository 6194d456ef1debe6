// Posix.layerNode on the real disk, with real sockets and real processes.
// The child processes run test/fixtures/listener.mjs, which loads the built
// module (dist/): after changing src/, run `npm run build`.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import type { PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Posix from "../src/Posix.js"
import * as Testing from "../src/testing/index.js"
import { socketsOf, waitForSocketsAbove } from "./support/children.js"

const LISTENER = fileURLToPath(new URL("./fixtures/listener.mjs", import.meta.url))
const DIST_POSIX = fileURLToPath(new URL("../dist/Posix.js", import.meta.url))

// -----------------------------------------------------------------------------
// helpers
// -----------------------------------------------------------------------------

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "posix-test-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

// A directory whose socket paths are longer than sun_path holds (107 bytes).
const longDir = Effect.map(tempDir, (dir) => {
  const long = Path.join(dir, "d".repeat(60), "e".repeat(60))
  Fs.mkdirSync(long, { recursive: true })
  return long
})

// The service from a layer of its own, in a scope the test closes when it likes.
const buildPosix = Effect.gen(function*() {
  const scope = yield* Scope.make()
  yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
  const context = yield* Layer.buildWithScope(Posix.layerNode, scope)
  return { posix: Context.get(context, Posix.Posix), close: Scope.close(scope, Exit.void) }
})

const posixNode = Effect.map(buildPosix, ({ posix }) => posix)

const expectSystemError = (error: PlatformError) => {
  assert.strictEqual(error._tag, "SystemError")
  return error as Extract<PlatformError, { readonly _tag: "SystemError" }>
}

const codeOf = (error: PlatformError) => (error.cause as NodeJS.ErrnoException | undefined)?.code

interface Ready {
  readonly pid: number
  readonly path: string
  readonly descriptor: number | null
  readonly sleepPid?: number
}

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const killQuietly = (pid: number) => {
  try {
    process.kill(pid, "SIGKILL")
  } catch {
    // already gone
  }
}

const awaitExit = (child: ChildProcess.ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
  })

// Runs listener.mjs; SIGKILLed (with its `sleep`, if any) and awaited when the scope closes.
const spawnListener = (directory: string, ...flags: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        ChildProcess.spawn(process.execPath, [LISTENER, directory, ...flags], { stdio: ["ignore", "pipe", "pipe"] })
      ),
      (child) => Effect.zipRight(Effect.sync(() => child.kill("SIGKILL")), awaitExit(child))
    )
    const ready = yield* Effect.async<Ready, Error>((resume) => {
      let out = ""
      let err = ""
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => void (err += chunk))
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
        out += chunk
        const line = out.split("\n").find((l) => l.startsWith("ready "))
        if (line !== undefined) resume(Effect.succeed(JSON.parse(line.slice("ready ".length)) as Ready))
      })
      child.once(
        "exit",
        (code, signal) => resume(Effect.fail(new Error(`listener exited (${code ?? signal}): ${err}`)))
      )
    }).pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("listener not ready") }))
    if (ready.sleepPid !== undefined) {
      const sleepPid = ready.sleepPid
      yield* Effect.addFinalizer(() => Effect.sync(() => killQuietly(sleepPid)))
    }
    return { child, ready }
  })

// A process killed with SIGKILL has closed its descriptors once it is reaped;
// one that is not our child (the `sleep`) only once it is gone or a zombie.
const untilNot = (posix: Posix.Posix, path: string, probe: Posix.Probe) => {
  const loop: Effect.Effect<Posix.Probe, PlatformError> = Effect.flatMap(
    posix.probe(path),
    (found) => found === probe ? Effect.zipRight(Effect.sleep("20 millis"), loop) : Effect.succeed(found)
  )
  return Effect.timeoutOption(loop, "5 seconds")
}

// A connection made by hand: the errno the kernel answered, or "connected".
const rawConnect = (path: string) =>
  Effect.async<string>((resume) => {
    const socket = Net.connect({ path })
    socket.on("connect", () => {
      socket.destroy()
      resume(Effect.succeed("connected"))
    })
    socket.on("error", (error: NodeJS.ErrnoException) => resume(Effect.succeed(error.code ?? "?")))
  })

// -----------------------------------------------------------------------------
// lstat
// -----------------------------------------------------------------------------

describe("Posix.layerNode lstat", () => {
  it.scopedLive("a file: the same File.Info as the Node FileSystem's stat", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = Path.join(dir, "file")
      Fs.writeFileSync(file, "hello", { mode: 0o640 })
      const posix = yield* posixNode
      const info = yield* posix.lstat(file)
      const fs = yield* Effect.provide(FileSystem.FileSystem, NodeFileSystem.layer)
      assert.deepStrictEqual(info, yield* fs.stat(file))
      assert.strictEqual(info.type, "File")
      assert.strictEqual(Number(info.size), 5)
      assert.strictEqual(info.mode & 0o777, 0o640)
      assert.deepStrictEqual(info.uid, Option.some(process.getuid!()))
      assert.deepStrictEqual(info.ino, Option.some(Fs.lstatSync(file).ino))
    }))

  it.scopedLive("a directory", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const info = yield* (yield* posixNode).lstat(dir)
      assert.strictEqual(info.type, "Directory")
      assert.deepStrictEqual(info.ino, Option.some(Fs.statSync(dir).ino))
    }))

  it.scopedLive("a symbolic link is not followed; a dangling one is still a link", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const posix = yield* posixNode
      const link = Path.join(dir, "link")
      const dangling = Path.join(dir, "dangling")
      Fs.symlinkSync(dir, link)
      Fs.symlinkSync(Path.join(dir, "nowhere"), dangling)
      const info = yield* posix.lstat(link)
      assert.strictEqual(info.type, "SymbolicLink")
      assert.deepStrictEqual(info.ino, Option.some(Fs.lstatSync(link).ino))
      assert.notStrictEqual(Option.getOrThrow(info.ino), Fs.statSync(dir).ino)
      assert.strictEqual((yield* posix.lstat(dangling)).type, "SymbolicLink")
    }))

  it.scopedLive("a missing path: NotFound, as the Node FileSystem reports it, with method lstat", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const missing = Path.join(dir, "missing")
      const error = expectSystemError(yield* Effect.flip((yield* posixNode).lstat(missing)))
      assert.strictEqual(error.reason, "NotFound")
      assert.strictEqual(error.module, "FileSystem")
      assert.strictEqual(error.method, "lstat")
      assert.strictEqual(error.syscall, "lstat")
      assert.strictEqual(error.pathOrDescriptor, missing)
      assert.strictEqual(codeOf(error), "ENOENT")
      assert.include(error.description, "ENOENT")
      const fs = yield* Effect.provide(FileSystem.FileSystem, NodeFileSystem.layer)
      const platform = expectSystemError(yield* Effect.flip(fs.stat(missing)))
      assert.strictEqual(platform.reason, error.reason)
      assert.strictEqual(codeOf(platform), codeOf(error))
    }))

  it.scopedLive("a path through a file: ENOTDIR is a BadResource", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      Fs.writeFileSync(Path.join(dir, "file"), "")
      const path = Path.join(dir, "file", "below")
      const error = expectSystemError(yield* Effect.flip((yield* posixNode).lstat(path)))
      assert.strictEqual(error.reason, "BadResource")
      assert.strictEqual(error.method, "lstat")
      assert.strictEqual(error.pathOrDescriptor, path)
      assert.strictEqual(codeOf(error), "ENOTDIR")
    }))

  it.scopedLive("a NUL byte in the path is a BadArgument, as in the Node FileSystem", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip((yield* posixNode).lstat("/tmp/a\0b"))
      assert.strictEqual(error._tag, "BadArgument")
      assert.strictEqual(error.method, "lstat")
    }))
})

// -----------------------------------------------------------------------------
// listen and probe, in this process
// -----------------------------------------------------------------------------

describe("Posix.layerNode listen and probe", () => {
  it.scopedLive("listen makes a socket at socketPath; a probe finds it Listening", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const posix = yield* posixNode
      const listener = yield* posix.listen(dir)
      assert.strictEqual(listener.path, posix.socketPath(dir))
      assert.match(Path.basename(listener.path), new RegExp(`^${process.pid}\\.[0-9a-f]{16}\\.sock$`))
      assert.strictEqual(Path.dirname(listener.path), dir)
      assert.strictEqual((yield* posix.lstat(listener.path)).type, "Socket")
      assert.isTrue(Option.isSome(listener.descriptor))
      assert.isTrue(Fs.fstatSync(Option.getOrThrow(listener.descriptor)).isSocket())
      assert.strictEqual(yield* posix.probe(listener.path), "Listening")
      // connections are hung up, not kept: many probes in a row all get through
      for (let i = 0; i < 50; i++) assert.strictEqual(yield* posix.probe(listener.path), "Listening")
    }))

  it.scopedLive("once per directory: later and concurrent calls return the same listener", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const other = yield* tempDir
      const posix = yield* posixNode
      const [a, b] = yield* Effect.all([posix.listen(dir), posix.listen(dir)], { concurrency: 2 })
      assert.strictEqual(a, b)
      assert.strictEqual(yield* posix.listen(dir), a)
      assert.strictEqual(yield* posix.listen(`${dir}/`), a)
      assert.deepStrictEqual(Fs.readdirSync(dir), [Path.basename(a.path)])
      const elsewhere = yield* posix.listen(other)
      assert.notStrictEqual(elsewhere, a)
      assert.strictEqual(Path.basename(elsewhere.path), Path.basename(a.path))
    }))

  it.scopedLive("a directory longer than sun_path holds: listen and probe work, the socket is in that directory", () =>
    Effect.gen(function*() {
      const dir = yield* longDir
      const posix = yield* posixNode
      const listener = yield* posix.listen(dir)
      assert.isAbove(Buffer.byteLength(listener.path), 107)
      assert.strictEqual(Path.dirname(listener.path), dir)
      assert.deepStrictEqual(Fs.readdirSync(dir), [Path.basename(listener.path)])
      assert.isTrue(Fs.lstatSync(listener.path).isSocket())
      assert.strictEqual(yield* posix.probe(listener.path), "Listening")
      // from another service (another process's view): the same
      const prober = yield* posixNode
      assert.strictEqual(yield* prober.probe(listener.path), "Listening")
      assert.strictEqual(yield* prober.probe(Path.join(dir, "missing.sock")), "Missing")
      assert.strictEqual(yield* prober.probe(Path.join(dir, "no-such-dir", "x.sock")), "Missing")
    }))

  it.scopedLive("a name too long even through the directory's alias is an error, never another socket", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const path = Path.join(dir, "n".repeat(120))
      const error = expectSystemError(yield* Effect.flip((yield* posixNode).probe(path)))
      assert.strictEqual(error.method, "probe")
      assert.strictEqual(codeOf(error), "ENAMETOOLONG")
    }))

  it.scopedLive("probe: a missing path is Missing, a regular file or a directory Refused", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const posix = yield* posixNode
      const file = Path.join(dir, "file")
      Fs.writeFileSync(file, "")
      assert.strictEqual(yield* posix.probe(Path.join(dir, "missing.sock")), "Missing")
      assert.strictEqual(yield* posix.probe(file), "Refused")
      assert.strictEqual(yield* posix.probe(dir), "Refused")
    }))

  it.scopedLive("probe: any other failure is a SystemError with method probe", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      Fs.writeFileSync(Path.join(dir, "file"), "")
      const path = Path.join(dir, "file", "x.sock")
      const error = expectSystemError(yield* Effect.flip((yield* posixNode).probe(path)))
      assert.strictEqual(error.reason, "BadResource")
      assert.strictEqual(error.module, "FileSystem")
      assert.strictEqual(error.method, "probe")
      assert.strictEqual(error.pathOrDescriptor, path)
      assert.strictEqual(error.syscall, "connect")
      assert.strictEqual(codeOf(error), "ENOTDIR")
    }))

  it.scopedLive("listen: a missing directory is NotFound with method listen, and a later call tries again", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const posix = yield* posixNode
      const home = Path.join(dir, "home")
      const error = expectSystemError(yield* Effect.flip(posix.listen(home)))
      assert.strictEqual(error.reason, "NotFound")
      assert.strictEqual(error.method, "listen")
      assert.strictEqual(error.pathOrDescriptor, posix.socketPath(home))
      assert.strictEqual(codeOf(error), "ENOENT")
      assert.strictEqual(error.syscall, "stat")
      Fs.mkdirSync(home)
      const listener = yield* posix.listen(home)
      assert.strictEqual(yield* posix.probe(listener.path), "Listening")
      // a long one, reached through its alias: the directory's open says so
      const long = Path.join(yield* longDir, "home")
      const viaAlias = expectSystemError(yield* Effect.flip(posix.listen(long)))
      assert.strictEqual(viaAlias.reason, "NotFound")
      assert.strictEqual(viaAlias.method, "listen")
      assert.strictEqual(viaAlias.syscall, "open")
      assert.strictEqual(viaAlias.pathOrDescriptor, posix.socketPath(long))
    }))

  it.scopedLive("listen: a name already taken is an error (EADDRINUSE), and nothing of the other's is removed", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const posix = yield* posixNode
      Fs.writeFileSync(posix.socketPath(dir), "")
      const error = expectSystemError(yield* Effect.flip(posix.listen(dir)))
      assert.strictEqual(error.method, "listen")
      assert.strictEqual(codeOf(error), "EADDRINUSE")
      assert.isTrue(Fs.lstatSync(posix.socketPath(dir)).isFile())
    }))

  it.scopedLive("closing the layer's scope closes the sockets and removes their files, and only those", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const long = yield* longDir
      const { close, posix } = yield* buildPosix
      const other = yield* posixNode
      const mine = [yield* posix.listen(dir), yield* posix.listen(long)]
      const theirs = yield* other.listen(dir)
      Fs.writeFileSync(Path.join(dir, "unrelated"), "")
      yield* close
      for (const listener of mine) {
        assert.isFalse(Fs.existsSync(listener.path))
        assert.strictEqual(yield* other.probe(listener.path), "Missing")
      }
      assert.deepStrictEqual(Fs.readdirSync(dir).sort(), [Path.basename(theirs.path), "unrelated"].sort())
      assert.strictEqual(yield* other.probe(theirs.path), "Listening")
    }))

  it.live("a process that listens and probes, its layer never closed, exits by itself and prints nothing", () =>
    Effect.gen(function*() {
      const script = `
        import * as Effect from "effect/Effect"
        import * as Exit from "effect/Exit"
        import * as Layer from "effect/Layer"
        import * as Scope from "effect/Scope"
        import * as Context from "effect/Context"
        import * as Posix from ${JSON.stringify(DIST_POSIX)}
        const dir = process.argv[1]
        Effect.runFork(Effect.gen(function*() {
          const scope = yield* Scope.make()
          const posix = Context.get(yield* Layer.buildWithScope(Posix.layerNode, scope), Posix.Posix)
          const listener = yield* posix.listen(dir)
          const found = yield* posix.probe(listener.path)
          if (found !== "Listening") process.exitCode = 3
        }).pipe(Effect.catchAllCause(() => Effect.sync(() => { process.exitCode = 4 }))))
      `
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "posix-test-"))
      try {
        const started = Date.now()
        const result = ChildProcess.spawnSync(process.execPath, ["--input-type=module", "-e", script, dir], {
          cwd: fileURLToPath(new URL("..", import.meta.url)),
          encoding: "utf8",
          timeout: 20_000
        })
        assert.strictEqual(result.signal, null, "killed by the timeout: something kept it alive")
        assert.strictEqual(result.status, 0, result.stderr)
        assert.strictEqual(result.stdout, "")
        assert.strictEqual(result.stderr, "")
        assert.isBelow(Date.now() - started, 10_000)
      } finally {
        Fs.rmSync(dir, { recursive: true, force: true })
      }
    }))
})

// -----------------------------------------------------------------------------
// other processes
// -----------------------------------------------------------------------------

describe("Posix.layerNode serve", () => {
  it.scopedLive("a client that shuts down its writing side after its frame ends the exchange: the answer is interrupted", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const posix = yield* posixNode
      const interrupted = yield* Deferred.make<void>()
      yield* posix.serve(
        dir,
        () => Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined)))
      )
      const payload = bytes("hello")
      const frame = Buffer.alloc(4 + payload.length)
      frame.writeUInt32BE(payload.length, 0)
      frame.set(payload, 4)
      const socket = Net.connect({ path: posix.socketPath(dir) })
      yield* Effect.addFinalizer(() => Effect.sync(() => socket.destroy()))
      socket.on("error", () => {})
      socket.on("connect", () => socket.end(frame))
      assert.strictEqual(
        yield* Effect.timeoutTo(Deferred.await(interrupted), {
          duration: "5 seconds",
          onSuccess: () => "interrupted",
          onTimeout: () => "still running"
        }),
        "interrupted"
      )
    }))
})

describe("Posix.layerNode probe of another process", () => {
  it.scopedLive("a child that listens: Listening while it lives, Refused once SIGKILLed", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const posix = yield* posixNode
      const { child, ready } = yield* spawnListener(dir)
      assert.strictEqual(Path.dirname(ready.path), dir)
      assert.match(Path.basename(ready.path), new RegExp(`^${ready.pid}\\.[0-9a-f]{16}\\.sock$`))
      assert.isNumber(ready.descriptor)
      assert.strictEqual(yield* posix.probe(ready.path), "Listening")
      child.kill("SIGKILL")
      yield* awaitExit(child)
      // the file stays (nothing ran to remove it), nobody has it open
      assert.isTrue(Fs.lstatSync(ready.path).isSocket())
      assert.strictEqual(yield* posix.probe(ready.path), "Refused")
    }))

  it.scopedLive("a child in a long directory: Listening, then Refused", () =>
    Effect.gen(function*() {
      const dir = yield* longDir
      const posix = yield* posixNode
      const { child, ready } = yield* spawnListener(dir)
      assert.isAbove(Buffer.byteLength(ready.path), 107)
      assert.deepStrictEqual(Fs.readdirSync(dir), [Path.basename(ready.path)])
      assert.strictEqual(yield* posix.probe(ready.path), "Listening")
      child.kill("SIGKILL")
      yield* awaitExit(child)
      assert.strictEqual(yield* posix.probe(ready.path), "Refused")
    }))

  it.scopedLive("an inherited descriptor: Listening after the listener's SIGKILL, a full queue too; then Refused", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const posix = yield* posixNode
      const { child, ready } = yield* spawnListener(dir, "--inherit")
      const sleepPid = ready.sleepPid!
      assert.isTrue(isAlive(sleepPid))
      assert.strictEqual(yield* posix.probe(ready.path), "Listening")
      child.kill("SIGKILL")
      yield* awaitExit(child)
      assert.isTrue(isAlive(sleepPid))
      // nobody accepts now: the queue fills, and a full queue still reads as Listening
      for (let i = 0; i < 20; i++) assert.strictEqual(yield* posix.probe(ready.path), "Listening")
      assert.strictEqual(yield* rawConnect(ready.path), "EAGAIN")
      assert.strictEqual(yield* posix.probe(ready.path), "Listening")
      process.kill(sleepPid, "SIGKILL")
      assert.deepStrictEqual(yield* untilNot(posix, ready.path, "Listening"), Option.some<Posix.Probe>("Refused"))
    }))
})

describe("Posix.layerNode awaitHangUp of another process", () => {
  it.scopedLive("a child that serves keeps the connection open while it lives, past a frame's timeout; its SIGKILL hangs it up", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const posix = yield* posixNode
      const { child, ready } = yield* spawnListener(dir, "--serve")
      const waiting = yield* Effect.fork(posix.awaitHangUp(ready.path))
      // It serves: a request made after the kept connection is answered.
      assert.deepStrictEqual(yield* posix.request(ready.path, bytes("ping"), "5 seconds"), bytes("ping"))
      // Longer than a frame begun may take (5 seconds): a connection that sends nothing is no frame.
      yield* Effect.sleep("5500 millis")
      assert.isNull(waiting.unsafePoll())
      child.kill("SIGKILL")
      assert.strictEqual(yield* Fiber.join(waiting), "HungUp")
    }))

  it.scopedLive("a child that listens without serving hangs up at once", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const posix = yield* posixNode
      const { ready } = yield* spawnListener(dir)
      assert.strictEqual(yield* posix.awaitHangUp(ready.path), "HungUp")
    }))

  it.scopedLive("a listener's connections kept open end when its layer's scope closes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const holder = yield* buildPosix
      const scope = yield* Scope.make()
      yield* Effect.provideService(
        holder.posix.serve(dir, (payload) => Effect.succeed(Option.some(payload))),
        Scope.Scope,
        scope
      )
      const posix = yield* posixNode
      const socket = holder.posix.socketPath(dir)
      const before = socketsOf(process.pid)
      const waiting = yield* Effect.fork(posix.awaitHangUp(socket))
      // Both ends are this process's: the connection is kept once it has two more sockets.
      yield* waitForSocketsAbove(process.pid, before + 1)
      assert.deepStrictEqual(yield* posix.request(socket, bytes("ping"), "5 seconds"), bytes("ping"))
      assert.isNull(waiting.unsafePoll())
      yield* holder.close
      assert.strictEqual(yield* Fiber.join(waiting), "HungUp")
    }))
})

// -----------------------------------------------------------------------------
// the Node layer and the memory one (Testing.makePosix) answer alike
// -----------------------------------------------------------------------------

interface Setup {
  readonly posix: Posix.Posix
  readonly fs: FileSystem.FileSystem
  readonly dir: string
}

const implementations: ReadonlyArray<readonly [string, Effect.Effect<Setup, PlatformError, Scope.Scope>]> = [
  [
    "node",
    Effect.gen(function*() {
      const fs = yield* Effect.provide(FileSystem.FileSystem, NodeFileSystem.layer)
      return { posix: yield* posixNode, fs, dir: yield* tempDir }
    })
  ],
  [
    "memory",
    Effect.gen(function*() {
      const processes = yield* Testing.makeProcessTable()
      const memory = yield* Testing.makeFileSystem({ processes })
      const { pid } = yield* processes.spawn()
      const posix = yield* Effect.provide(Testing.makePosix(pid), memory.layer)
      yield* memory.fileSystem.makeDirectory("/tmp/posix", { recursive: true })
      return { posix, fs: memory.fileSystem, dir: "/tmp/posix" }
    })
  ]
]

// What a call gave, reduced to what both must agree on.
const observe = <A>(effect: Effect.Effect<A, PlatformError>) =>
  effect.pipe(
    Effect.map((value) => ({ ok: value })),
    Effect.catchAll((error) =>
      Effect.succeed({
        error: error._tag === "SystemError"
          ? { reason: error.reason, method: error.method, syscall: error.syscall, code: codeOf(error) }
          : { tag: error._tag }
      })
    )
  )

const typeOf = (posix: Posix.Posix, path: string) => Effect.map(posix.lstat(path), (info) => info.type)

type SharedCase = readonly [
  title: string,
  run: (setup: Setup) => Effect.Effect<unknown, PlatformError>,
  expected: unknown
]

const sharedCases: ReadonlyArray<SharedCase> = [
  [
    "lstat of a file",
    ({ dir, fs, posix }) =>
      Effect.zipRight(fs.writeFileString(`${dir}/file`, "x"), observe(typeOf(posix, `${dir}/file`))),
    { ok: "File" }
  ],
  ["lstat of a directory", ({ dir, posix }) => observe(typeOf(posix, dir)), { ok: "Directory" }],
  [
    "lstat of a symbolic link",
    ({ dir, fs, posix }) => Effect.zipRight(fs.symlink(dir, `${dir}/link`), observe(typeOf(posix, `${dir}/link`))),
    { ok: "SymbolicLink" }
  ],
  [
    "lstat of a dangling symbolic link",
    ({ dir, fs, posix }) =>
      Effect.zipRight(fs.symlink(`${dir}/nowhere`, `${dir}/link`), observe(typeOf(posix, `${dir}/link`))),
    {
      ok: "SymbolicLink"
    }
  ],
  ["lstat of a missing path", ({ dir, posix }) => observe(posix.lstat(`${dir}/missing`)), {
    error: { reason: "NotFound", method: "lstat", syscall: "lstat", code: "ENOENT" }
  }],
  [
    "lstat through a file",
    ({ dir, fs, posix }) =>
      Effect.zipRight(fs.writeFileString(`${dir}/file`, ""), observe(posix.lstat(`${dir}/file/below`))),
    {
      error: { reason: "BadResource", method: "lstat", syscall: "lstat", code: "ENOTDIR" }
    }
  ],
  ["probe of a missing path", ({ dir, posix }) => observe(posix.probe(`${dir}/missing.sock`)), { ok: "Missing" }],
  [
    "awaitHangUp of a missing path, a regular file, a socket that listens without serving",
    ({ dir, fs, posix }) =>
      Effect.all([
        observe(posix.awaitHangUp(`${dir}/missing.sock`)),
        Effect.zipRight(fs.writeFileString(`${dir}/file`, ""), observe(posix.awaitHangUp(`${dir}/file`))),
        Effect.zipRight(posix.listen(dir), observe(posix.awaitHangUp(posix.socketPath(dir))))
      ]),
    [{ ok: "Missing" }, { ok: "Refused" }, { ok: "HungUp" }]
  ],
  [
    "awaitHangUp through a file",
    ({ dir, fs, posix }) =>
      Effect.zipRight(fs.writeFileString(`${dir}/file`, ""), observe(posix.awaitHangUp(`${dir}/file/below.sock`))),
    { error: { reason: "BadResource", method: "awaitHangUp", syscall: "connect", code: "ENOTDIR" } }
  ],
  [
    "probe of a regular file",
    ({ dir, fs, posix }) => Effect.zipRight(fs.writeFileString(`${dir}/file`, ""), observe(posix.probe(`${dir}/file`))),
    { ok: "Refused" }
  ],
  [
    "probe through a file",
    ({ dir, fs, posix }) =>
      Effect.zipRight(fs.writeFileString(`${dir}/file`, ""), observe(posix.probe(`${dir}/file/x.sock`))),
    {
      error: { reason: "BadResource", method: "probe", syscall: "connect", code: "ENOTDIR" }
    }
  ],
  [
    "listen, then lstat and probe its socket",
    ({ dir, posix }) =>
      Effect.flatMap(posix.listen(dir), ({ path }) => observe(Effect.all([typeOf(posix, path), posix.probe(path)]))),
    {
      ok: ["Socket", "Listening"]
    }
  ],
  [
    "listen where the name is taken",
    ({ dir, fs, posix }) => Effect.zipRight(fs.writeFileString(posix.socketPath(dir), ""), observe(posix.listen(dir))),
    {
      error: { reason: "Unknown", method: "listen", syscall: "listen", code: "EADDRINUSE" }
    }
  ]
]

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)
const bytes = (value: string) => new TextEncoder().encode(value)

// Answers a frame with its text in capitals.
const shout: Posix.Handler = (payload) => Effect.succeed(Option.some(bytes(text(payload).toUpperCase())))

const requestOwn = ({ dir, posix }: Setup, payload: Uint8Array, timeout: Duration.DurationInput = "2 seconds") =>
  observe(Effect.map(posix.request(posix.socketPath(dir), payload, timeout), text))

// A case of the channel: what it serves lasts as long as its scope.
type ChannelCase = readonly [
  title: string,
  run: (setup: Setup) => Effect.Effect<unknown, PlatformError, Scope.Scope>,
  expected: unknown
]

const channelCases: ReadonlyArray<ChannelCase> = [
  [
    "a request to a socket that serves: its answer",
    (setup) => Effect.zipRight(setup.posix.serve(setup.dir, shout), requestOwn(setup, bytes("open a.txt"))),
    { ok: "OPEN A.TXT" }
  ],
  [
    "an empty frame each way",
    (setup) =>
      Effect.zipRight(
        setup.posix.serve(setup.dir, () => Effect.succeed(Option.some(new Uint8Array(0)))),
        requestOwn(setup, new Uint8Array(0))
      ),
    { ok: "" }
  ],
  [
    "a frame of MAX_FRAME_BYTES is carried whole",
    (setup) =>
      Effect.zipRight(
        setup.posix.serve(setup.dir, (payload) => Effect.succeed(Option.some(bytes(String(payload.length))))),
        requestOwn(setup, new Uint8Array(Posix.MAX_FRAME_BYTES))
      ),
    { ok: String(64 * 1024) }
  ],
  [
    "a payload longer than MAX_FRAME_BYTES: EMSGSIZE, nothing sent",
    (setup) => Effect.zipRight(setup.posix.serve(setup.dir, shout), requestOwn(setup, new Uint8Array(64 * 1024 + 1))),
    { error: { reason: "Unknown", method: "request", syscall: "write", code: "EMSGSIZE" } }
  ],
  [
    "a request to a socket that listens without serving: hung up (ECONNRESET)",
    (setup) => Effect.zipRight(setup.posix.listen(setup.dir), requestOwn(setup, bytes("hello"))),
    { error: { reason: "Unknown", method: "request", syscall: "read", code: "ECONNRESET" } }
  ],
  [
    "a handler that answers None: hung up",
    (setup) =>
      Effect.zipRight(setup.posix.serve(setup.dir, () => Effect.succeedNone), requestOwn(setup, bytes("hello"))),
    { error: { reason: "Unknown", method: "request", syscall: "read", code: "ECONNRESET" } }
  ],
  [
    "a handler that dies: hung up, and the socket serves the next request",
    (setup) => {
      let first = true
      const flaky: Posix.Handler = (payload) =>
        first ? Effect.sync(() => (first = false)).pipe(Effect.zipRight(Effect.die("boom"))) : shout(payload)
      return Effect.zipRight(
        setup.posix.serve(setup.dir, flaky),
        Effect.all([requestOwn(setup, bytes("one")), requestOwn(setup, bytes("two"))])
      )
    },
    [{ error: { reason: "Unknown", method: "request", syscall: "read", code: "ECONNRESET" } }, { ok: "TWO" }]
  ],
  [
    "an answer longer than MAX_FRAME_BYTES is not sent: hung up",
    (setup) =>
      Effect.zipRight(
        setup.posix.serve(setup.dir, () => Effect.succeed(Option.some(new Uint8Array(64 * 1024 + 1)))),
        requestOwn(setup, bytes("hello"))
      ),
    { error: { reason: "Unknown", method: "request", syscall: "read", code: "ECONNRESET" } }
  ],
  [
    "a handler slower than the request's timeout: TimedOut",
    (setup) =>
      Effect.zipRight(
        setup.posix.serve(setup.dir, () => Effect.never),
        requestOwn(setup, bytes("hello"), "100 millis")
      ),
    { error: { reason: "TimedOut", method: "request", syscall: "connect", code: "ETIMEDOUT" } }
  ],
  [
    "a request that gives up hangs up: the handler's answer to it is interrupted",
    (setup) =>
      Effect.gen(function*() {
        const interrupted = yield* Deferred.make<void>()
        yield* setup.posix.serve(
          setup.dir,
          () => Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined)))
        )
        const request = yield* requestOwn(setup, bytes("hello"), "100 millis")
        return [
          request,
          yield* Effect.timeoutTo(Deferred.await(interrupted), {
            duration: "5 seconds",
            onSuccess: () => "interrupted",
            onTimeout: () => "still running"
          })
        ]
      }),
    [{ error: { reason: "TimedOut", method: "request", syscall: "connect", code: "ETIMEDOUT" } }, "interrupted"]
  ],
  [
    "a release of serve's scope interrupts the answers being made: hung up",
    (setup) =>
      Effect.gen(function*() {
        const started = yield* Deferred.make<void>()
        const scope = yield* Scope.make()
        yield* Scope.extend(
          setup.posix.serve(setup.dir, () => Effect.zipRight(Deferred.succeed(started, undefined), Effect.never)),
          scope
        )
        const request = yield* Effect.fork(requestOwn(setup, bytes("hello"), "5 seconds"))
        yield* Deferred.await(started)
        yield* Scope.close(scope, Exit.void)
        return yield* Fiber.join(request)
      }),
    { error: { reason: "Unknown", method: "request", syscall: "read", code: "ECONNRESET" } }
  ],
  [
    "once serve's scope closes, requests are hung up; a probe still finds it Listening",
    (setup) =>
      Effect.gen(function*() {
        yield* Effect.scoped(setup.posix.serve(setup.dir, shout))
        return [yield* requestOwn(setup, bytes("hello")), yield* setup.posix.probe(setup.posix.socketPath(setup.dir))]
      }),
    [{ error: { reason: "Unknown", method: "request", syscall: "read", code: "ECONNRESET" } }, "Listening"]
  ],
  [
    "a probe of a socket that serves: Listening",
    (setup) =>
      Effect.zipRight(
        setup.posix.serve(setup.dir, shout),
        observe(setup.posix.probe(setup.posix.socketPath(setup.dir)))
      ),
    { ok: "Listening" }
  ],
  [
    "a request to a missing path: NotFound",
    ({ dir, posix }) => observe(posix.request(`${dir}/missing.sock`, bytes("x"), "1 second")),
    { error: { reason: "NotFound", method: "request", syscall: "connect", code: "ENOENT" } }
  ],
  [
    "a request to a regular file: ECONNREFUSED",
    ({ dir, fs, posix }) =>
      Effect.zipRight(
        fs.writeFileString(`${dir}/file`, ""),
        observe(posix.request(`${dir}/file`, bytes("x"), "1 second"))
      ),
    { error: { reason: "Unknown", method: "request", syscall: "connect", code: "ECONNREFUSED" } }
  ]
]

describe("Posix: the Node layer and Testing.makePosix agree on the channel", () => {
  for (const [title, run, expected] of channelCases) {
    it.scopedLive(title, () =>
      Effect.gen(function*() {
        for (const [name, setup] of implementations) {
          assert.deepStrictEqual(yield* Effect.scoped(Effect.flatMap(setup, run)), expected, name)
        }
      }))
  }
})

describe("Posix: the Node layer and Testing.makePosix agree", () => {
  for (const [title, run, expected] of sharedCases) {
    it.scopedLive(title, () =>
      Effect.gen(function*() {
        for (const [name, setup] of implementations) {
          assert.deepStrictEqual(yield* Effect.flatMap(setup, run), expected, name)
        }
      }))
  }
})
