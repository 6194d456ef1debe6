// The built CLI (dist/bin.js) run as real processes on a real disk. `npm test`
// builds first; after changing src/, run `npm run build`.
import { assert, describe, it } from "@effect/vitest"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as ProcessInfo from "../src/ProcessInfo.js"
import { entryNameOf, plantHolder, recordOf } from "./support/environment.js"
import { nodeLayer, tempDir } from "./support/nodeEnvironment.js"

const BIN = fileURLToPath(new URL("../dist/bin.js", import.meta.url))
const NAME = "app"

interface Finished {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

interface Cli {
  readonly process: ChildProcess.ChildProcess
  readonly pid: number
  readonly stdout: () => string
  /** Resolves once the process has exited and its output is closed. */
  readonly finished: Promise<Finished>
  readonly isRunning: () => boolean
}

/** Starts `effect-pidlock ...args`; SIGKILLed, if still running, and awaited when the scope closes. */
const startCli = (args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.sync((): Cli => {
      const child = ChildProcess.spawn(process.execPath, [BIN, ...args], { stdio: ["pipe", "pipe", "pipe"] })
      let stdout = ""
      let stderr = ""
      let running = true
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => void (stdout += chunk))
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => void (stderr += chunk))
      const finished = new Promise<Finished>((resolve) =>
        child.once("close", (code, signal) => {
          running = false
          resolve({ code, signal, stdout, stderr })
        })
      )
      return { process: child, pid: child.pid!, stdout: () => stdout, finished, isRunning: () => running }
    }),
    (cli) =>
      Effect.promise(() => {
        if (cli.isRunning()) cli.process.kill("SIGKILL")
        return cli.finished
      })
  )

const finished = (cli: Cli) => Effect.promise(() => cli.finished)

/** Runs `effect-pidlock ...args` to its end. */
const runCli = (...args: ReadonlyArray<string>) => Effect.scoped(Effect.flatMap(startCli(args), finished))

/** Waits until the CLI's command has printed `text`; fails if the CLI ends first. */
const waitForOutput = (cli: Cli, text: string) =>
  Effect.promise(() =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (cli.stdout().includes(text)) resolve()
      }
      cli.process.stdout!.on("data", check)
      check()
      void cli.finished.then((result) => reject(new Error(`CLI ended before printing ${text}: ${JSON.stringify(result)}`)))
    })
  )

/**
 * Waits until process `pid` watches a file (an inotify descriptor among its
 * open files): a waiting contender watches the lock directory for the
 * holder's release, so it then has found the lock held and is waiting.
 */
const waitUntilWatching = (pid: number) =>
  Effect.promise(() =>
    new Promise<void>((resolve) => {
      const isInotify = (fd: string) => {
        try {
          return Fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === "anon_inode:inotify"
        } catch {
          return false // closed meanwhile
        }
      }
      const check = () => Fs.readdirSync(`/proc/${pid}/fd`).some(isInotify) ? resolve() : void setTimeout(check, 20)
      check()
    })
  )

// A command that prints "holding", then holds until a line arrives on its
// stdin, which the CLI shares with it.
const HOLD = ["sh", "-c", "echo holding; read line"]

/** Starts a `run` that holds lock `NAME` in `dir` until {@link release}. */
const startHolder = (dir: string) =>
  Effect.tap(startCli(["run", "--name", NAME, "--dir", dir, "--", ...HOLD]), (cli) => waitForOutput(cli, "holding"))

const release = (cli: Cli) => Effect.sync(() => cli.process.stdin!.end("\n"))

const lockEntries = (dir: string) => Fs.readdirSync(Path.join(dir, NAME, "lock"))

const assertNoStackTrace = (result: Finished) =>
  assert.notMatch(result.stderr, /^\s+at /m, `a stack trace on stderr: ${result.stderr}`)

/** Puts `record` into lock `NAME` in `dir`, as its holder would have. */
const plant = (dir: string, record: ReturnType<typeof recordOf>) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => plantHolder(fs, Path.join(dir, NAME), record)).pipe(
    Effect.provide(nodeLayer),
    Effect.orDie
  )

/** Plants the owner entry of a process that has exited, as a crashed holder leaves it. */
const plantDeadHolder = (dir: string) =>
  Effect.gen(function*() {
    const sleeper = ChildProcess.spawn("sleep", ["60"], { stdio: "ignore" })
    const identity = yield* Effect.flatten(Effect.flatMap(ProcessInfo.ProcessInfo, (info) => info.identify(sleeper.pid!)))
    yield* Effect.promise(() =>
      new Promise((resolve) => {
        sleeper.once("exit", resolve)
        sleeper.kill("SIGKILL")
      })
    )
    const record = recordOf(identity)
    yield* plant(dir, record)
    return record
  }).pipe(Effect.provide(nodeLayer), Effect.orDie)

describe("effect-pidlock run", () => {
  it.scopedLive("holds the lock while the command runs, and releases it after", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const result = yield* runCli("run", "--name", NAME, "--dir", dir, "--", "ls", Path.join(dir, NAME, "lock"))
      assert.strictEqual(result.code, 0, result.stderr)
      const [entry] = result.stdout.trim().split("\n")
      assert.match(entry!, /^\d+\.[0-9a-f]+$/, "the owner entry, seen by the command")
      assert.deepStrictEqual(lockEntries(dir), [])
    }))

  it.scopedLive("exits with the command's exit code", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const result = yield* runCli("run", "--name", NAME, "--dir", dir, "--", "sh", "-c", "exit 7")
      assert.strictEqual(result.code, 7, result.stderr)
    }))

  it.scopedLive("a second run exits with 75 (or --conflict-exit-code) and says who holds the lock", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const holder = yield* startHolder(dir)
      const refused = yield* runCli("run", "--name", NAME, "--dir", dir, "--", "echo", "ran")
      assert.strictEqual(refused.code, 75)
      assert.strictEqual(refused.stdout, "", "the command did not run")
      assert.include(refused.stderr, `is held by pid ${holder.pid} on `)
      assert.include(refused.stderr, "read line", "the holder's command line")
      assertNoStackTrace(refused)
      const custom = yield* runCli("run", "--name", NAME, "--dir", dir, "--conflict-exit-code", "3", "--", "true")
      assert.strictEqual(custom.code, 3)
      yield* release(holder)
      assert.strictEqual((yield* finished(holder)).code, 0)
      assert.deepStrictEqual(lockEntries(dir), [])
    }))

  it.scopedLive("SIGTERM is forwarded to the command, and the lock is released", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const cli = yield* startCli([
        "run", "--name", NAME, "--dir", dir, "--",
        process.execPath, "-e", "console.log('holding'); setInterval(() => {}, 1000)"
      ])
      yield* waitForOutput(cli, "holding")
      cli.process.kill("SIGTERM")
      const result = yield* finished(cli)
      assert.strictEqual(result.code, 128 + 15, "128 + SIGTERM: the command was killed by the forwarded signal")
      assert.deepStrictEqual(lockEntries(dir), [])
    }))

  it.scopedLive("--wait waits for the holder to release, then runs the command", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const holder = yield* startHolder(dir)
      const waiter = yield* startCli(["run", "--name", NAME, "--dir", dir, "--wait", "30s", "--", "echo", "ran"])
      yield* waitUntilWatching(waiter.pid)
      assert.isTrue(waiter.isRunning(), "the waiter is still waiting")
      yield* release(holder)
      const result = yield* finished(waiter)
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(result.stdout, "ran\n")
    }))
  it.scopedLive("SIGTERM while waiting: exits 143, the holder's lock untouched", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const holder = yield* startHolder(dir)
      const entries = lockEntries(dir)
      const waiter = yield* startCli(["run", "--name", NAME, "--dir", dir, "--wait", "30s", "--", "echo", "ran"])
      yield* waitUntilWatching(waiter.pid)
      waiter.process.kill("SIGTERM")
      const result = yield* finished(waiter)
      assert.strictEqual(result.code, 128 + 15, result.stderr)
      assert.strictEqual(result.stdout, "", "the command did not run")
      assert.deepStrictEqual(lockEntries(dir), entries)
      assert.isTrue(holder.isRunning())
    }))
})

describe("effect-pidlock status", () => {
  it.scopedLive("exits 0 when free, 1 when held, 2 when the holder is gone; --json", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const free = yield* runCli("status", "--name", NAME, "--dir", dir, "--json")
      assert.strictEqual(free.code, 0, free.stderr)
      assert.deepStrictEqual(JSON.parse(free.stdout), { name: NAME, state: "free", path: null, holder: null, verdict: null })

      const holder = yield* startHolder(dir)
      const held = yield* runCli("status", "--name", NAME, "--dir", dir)
      assert.strictEqual(held.code, 1, held.stderr)
      assert.include(held.stdout, `is held by pid ${holder.pid}`)
      const heldJson = JSON.parse((yield* runCli("status", "--name", NAME, "--dir", dir, "--json")).stdout)
      assert.strictEqual(heldJson.state, "held")
      assert.strictEqual(heldJson.path, Path.join(dir, NAME, "lock"))
      assert.strictEqual(heldJson.holder.pid, holder.pid)
      assert.deepStrictEqual(heldJson.verdict, { _tag: "Alive" })
      yield* release(holder)
      yield* finished(holder)

      const record = yield* plantDeadHolder(dir)
      const stale = yield* runCli("status", "--name", NAME, "--dir", dir, "--json")
      assert.strictEqual(stale.code, 2, stale.stderr)
      const staleJson = JSON.parse(stale.stdout)
      assert.strictEqual(staleJson.state, "stale")
      assert.deepStrictEqual(staleJson.holder, record)
      assert.deepStrictEqual(staleJson.verdict, { _tag: "Stale", reason: "Exited" })
    }))
})

describe("effect-pidlock break", () => {
  it.scopedLive("refuses a live holder's lock", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const holder = yield* startHolder(dir)
      const entries = lockEntries(dir)
      const result = yield* runCli("break", "--name", NAME, "--dir", dir, "--force")
      assert.strictEqual(result.code, 1)
      assert.include(result.stderr, "refusing")
      assert.deepStrictEqual(lockEntries(dir), entries, "the lock is untouched")
      assert.isTrue(holder.isRunning())
    }))

  it.scopedLive("removes a dead holder's entry; the lock is then free", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const record = yield* plantDeadHolder(dir)
      const result = yield* runCli("break", "--name", NAME, "--dir", dir)
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stdout, entryNameOf(record))
      assert.deepStrictEqual(lockEntries(dir), [])
      assert.strictEqual((yield* runCli("status", "--name", NAME, "--dir", dir)).code, 0)
    }))

  it.scopedLive("a holder in another pid namespace only with --force", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const self = yield* Effect.map(ProcessInfo.ProcessInfo, (info) => info.self).pipe(Effect.provide(nodeLayer))
      const record = recordOf({ ...self, pidNamespace: "pid:[1]" })
      yield* plant(dir, record)
      const refused = yield* runCli("break", "--name", NAME, "--dir", dir)
      assert.strictEqual(refused.code, 1)
      assert.include(refused.stderr, "--force")
      assert.deepStrictEqual(lockEntries(dir), [entryNameOf(record)])
      const forced = yield* runCli("break", "--name", NAME, "--dir", dir, "--force")
      assert.strictEqual(forced.code, 0, forced.stderr)
      assert.deepStrictEqual(lockEntries(dir), [])
    }))
})

describe("bad input", () => {
  it.scopedLive("a name with / and a --wait that is no duration: a clear message, exit 64, no stack trace", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const badName = yield* runCli("run", "--name", "a/b", "--dir", dir, "--", "true")
      assert.strictEqual(badName.code, 64)
      assert.include(badName.stderr, "invalid option name=\"a/b\"")
      assertNoStackTrace(badName)
      const badWait = yield* runCli("run", "--name", NAME, "--dir", dir, "--wait", "soon", "--", "true")
      assert.strictEqual(badWait.code, 64)
      assert.include(badWait.stderr, "--wait \"soon\" is not a duration")
      assertNoStackTrace(badWait)
      assert.deepStrictEqual(Fs.readdirSync(dir), [], "nothing was made")
    }))
})
