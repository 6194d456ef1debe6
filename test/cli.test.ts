// The built CLI (dist/cli/bin.cjs, the bundle) run as real processes on a real disk. `npm test`
// builds first; after changing src/, run `npm run build`.
import * as FileSystem from "@effect/platform/FileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type { Readable } from "node:stream"
import { fileURLToPath } from "node:url"
import * as ProcessInfo from "../src/ProcessInfo.js"
import { spawnNode, waitForLine } from "./support/children.js"
import { entryNameOf, plantHolder, recordOf } from "./support/environment.js"
import { nodeLayer, tempDir } from "./support/nodeEnvironment.js"

const BIN = fileURLToPath(new URL("../dist/cli/bin.cjs", import.meta.url))
const MESSENGER = fileURLToPath(new URL("./fixtures/messenger.mjs", import.meta.url))
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
  /** Resolves once the CLI's own process has exited. */
  readonly exited: Promise<void>
  /** Resolves once its output is closed as well: by then, its command has exited too. */
  readonly finished: Promise<Finished>
  readonly isRunning: () => boolean
}

// The tests' own settings of these would change what the CLI does.
const { NO_COLOR: _noColor, PIDLOCK_DATABASE_URL: _url, PIDLOCK_DIR: _dir, ...cliEnvironment } = process.env

/**
 * Starts `effect-pidlock ...args` (under `tracer`, if given) in a session of
 * its own, without a terminal, whatever terminal runs the tests; when the
 * scope closes, SIGKILLed if still running, its stdin closed (the commands of
 * these tests then end) and awaited.
 */
const startCli = (args: ReadonlyArray<string>, tracer: ReadonlyArray<string> = []) =>
  Effect.acquireRelease(
    Effect.sync((): Cli => {
      const [command, ...rest] = [...tracer, process.execPath, BIN, ...args]
      const child = ChildProcess.spawn(command!, rest, {
        stdio: ["pipe", "pipe", "pipe"],
        detached: true,
        env: cliEnvironment
      })
      let stdout = ""
      let stderr = ""
      let running = true
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => void (stdout += chunk))
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => void (stderr += chunk))
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
      const finished = new Promise<Finished>((resolve) =>
        child.once("close", (code, signal) => {
          running = false
          resolve({ code, signal, stdout, stderr })
        })
      )
      return { process: child, pid: child.pid!, stdout: () => stdout, exited, finished, isRunning: () => running }
    }),
    (cli) =>
      Effect.promise(() => {
        if (cli.isRunning()) cli.process.kill("SIGKILL")
        cli.process.stdin!.end()
        return cli.finished
      })
  )

const finished = (cli: Cli) => Effect.promise(() => cli.finished)

/** Runs `effect-pidlock ...args` to its end. */
const runCli = (...args: ReadonlyArray<string>) => Effect.scoped(Effect.flatMap(startCli(args), finished))

/**
 * Waits until `text()`, all that `stream` gave so far, matches `pattern`, and
 * gives the match; fails if the stream closes first.
 */
const waitForMatch = (stream: Readable, text: () => string, pattern: RegExp) =>
  Effect.promise(() =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const check = () => {
        const match = pattern.exec(text())
        if (match !== null) resolve(match)
        else if (stream.closed) reject(new Error(`closed before printing ${pattern}: ${JSON.stringify(text())}`))
      }
      stream.on("data", check).once("close", check)
      check()
    })
  )

/** Waits until the CLI (or its command) has printed a match of `pattern`; fails if its output closes first. */
const waitForOutput = (cli: Cli, pattern: RegExp) => waitForMatch(cli.process.stdout!, cli.stdout, pattern)

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
  Effect.tap(startCli(["run", "--name", NAME, "--dir", dir, "--", ...HOLD]), (cli) => waitForOutput(cli, /holding/))

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

/**
 * Plants the owner entry of a process that has exited, as a crashed holder
 * leaves it; `fields` replace the record's.
 */
const plantDeadHolder = (dir: string, fields: Partial<ReturnType<typeof recordOf>> = {}) =>
  Effect.gen(function*() {
    const sleeper = ChildProcess.spawn("sleep", ["60"], { stdio: "ignore" })
    const identity = yield* Effect.flatten(
      Effect.flatMap(ProcessInfo.ProcessInfo, (info) => info.identify(sleeper.pid!))
    )
    yield* Effect.promise(() =>
      new Promise((resolve) => {
        sleeper.once("exit", resolve)
        sleeper.kill("SIGKILL")
      })
    )
    const record = { ...recordOf(identity), ...fields }
    yield* plant(dir, record)
    return record
  }).pipe(Effect.provide(nodeLayer), Effect.orDie)

// A command that counts the SIGINTs it gets, printing "INT <count>" for each,
// and on SIGTERM prints "INTs <count>" and exits 0. It first prints "ready
// <pid of its parent, the CLI>". It idles in sleeps run as background jobs,
// which ignore SIGINT, and which keep neither its output nor fd 3.
const COUNT_INTS = [
  "sh",
  "-c",
  `n=0
trap 'n=$((n + 1)); echo "INT $n"' INT
trap 'echo "INTs $n"; exit 0' TERM
echo "ready $PPID"
while :; do sleep 1 >/dev/null 3>&- & wait $!; done`
]

const shellQuote = (arg: string) => `'${arg.replaceAll("'", "'\\''")}'`

interface Terminal {
  readonly process: ChildProcess.ChildProcess
  /** What the terminal showed so far. */
  readonly output: () => string
  /** Resolves with the exit code once the session has ended. */
  readonly finished: Promise<number | null>
}

/**
 * Runs `args` in a session of its own on a pseudo-terminal, in the
 * terminal's foreground process group (`script`), with `env` over the CLI's
 * environment; what is written to
 * `process.stdin` is typed on that terminal. Killed, if still running, when
 * the scope closes.
 */
const startInTerminal = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
  Effect.acquireRelease(
    Effect.sync((): Terminal => {
      const child = ChildProcess.spawn("script", ["-qefc", `exec ${args.map(shellQuote).join(" ")}`, "/dev/null"], {
        stdio: ["pipe", "pipe", "inherit"],
        env: { ...cliEnvironment, SHELL: "/bin/sh", ...env }
      })
      let output = ""
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => void (output += chunk))
      const finished = new Promise<number | null>((resolve) => child.once("close", resolve))
      return { process: child, output: () => output, finished }
    }),
    (terminal) =>
      Effect.promise(() => {
        if (terminal.process.exitCode === null && terminal.process.signalCode === null) {
          terminal.process.kill("SIGKILL")
        }
        return terminal.finished
      })
  )

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
      assert.strictEqual(result.stderr.split(`waiting for pid ${holder.pid} on `).length - 1, 1, result.stderr)
      assert.include(result.stderr, "read line", "the holder's command line")
    }))

  it.scopedLive("a --wait that runs out says how long it waited, and exits 75", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const holder = yield* startHolder(dir)
      const result = yield* runCli("run", "--name", NAME, "--dir", dir, "--wait", "300ms", "--", "echo", "ran")
      assert.strictEqual(result.code, 75, result.stderr)
      assert.strictEqual(result.stdout, "", "the command did not run")
      assert.include(result.stderr, `waiting for pid ${holder.pid} on `)
      assert.include(
        result.stderr,
        `still held after waiting 300ms: ${Path.join(dir, NAME, "lock")} is held by pid ${holder.pid}`
      )
    }))
})

describe("effect-pidlock run: the command's life", () => {
  it.scopedLive("the command holds the lock's socket as fd 3", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const result = yield* runCli("run", "--name", NAME, "--dir", dir, "--", "sh", "-c", "readlink /proc/$$/fd/3")
      assert.strictEqual(result.code, 0, result.stderr)
      assert.match(result.stdout, /^socket:\[\d+\]\n$/)
    }))

  it.scopedLive("a SIGKILLed run's lock stays held while its command runs; a waiting run takes it once that has exited", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      // The command waits for a line on a FIFO: the CLI's stdin is closed when
      // the CLI dies. Written to once the command has started, and when the
      // test ends, whatever happened.
      const fifo = Path.join(dir, "fifo")
      ChildProcess.execFileSync("mkfifo", [fifo])
      const releaseCommand = Effect.sync(() => {
        try {
          const fd = Fs.openSync(fifo, Fs.constants.O_WRONLY | Fs.constants.O_NONBLOCK)
          Fs.writeSync(fd, "\n")
          Fs.closeSync(fd)
        } catch {
          // ENXIO: no reader, the command has ended already.
        }
      })
      const holder = yield* startCli([
        "run",
        "--name",
        NAME,
        "--dir",
        dir,
        "--",
        "sh",
        "-c",
        `echo holding; read line <${fifo}`
      ])
      yield* Effect.addFinalizer(() => releaseCommand)
      yield* waitForOutput(holder, /holding/)
      holder.process.kill("SIGKILL")
      yield* Effect.promise(() => holder.exited)
      const refused = yield* runCli("run", "--name", NAME, "--dir", dir, "--", "echo", "ran")
      assert.strictEqual(refused.code, 75, refused.stderr)
      assert.strictEqual(refused.stdout, "", "the command did not run")
      assert.include(refused.stderr, `is held by pid ${holder.pid} on `)
      // Nobody accepts on the socket the command inherited: the waiter's
      // connection waits in its queue until the command's exit ends it.
      const waiter = yield* startCli(["run", "--name", NAME, "--dir", dir, "--wait", "60s", "--", "echo", "ran"])
      yield* waitUntilWatching(waiter.pid)
      yield* Effect.sleep("1500 millis")
      assert.isTrue(waiter.isRunning(), "the waiter waits while the command runs")
      yield* releaseCommand
      // The command kept the CLI's output open: it closes when the command exits.
      yield* finished(holder)
      const taken = yield* finished(waiter)
      assert.strictEqual(taken.code, 0, taken.stderr)
      assert.strictEqual(taken.stdout, "ran\n")
      assert.deepStrictEqual(lockEntries(dir), [])
    }))

  for (const signal of ["SIGHUP", "SIGQUIT", "SIGTERM"] as const) {
    it.scopedLive(`${signal} is forwarded to the command, and its status is ours; the lock is released`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const cli = yield* startCli([
          "run",
          "--name",
          NAME,
          "--dir",
          dir,
          "--",
          process.execPath,
          "-e",
          `process.on("${signal}", () => { console.log("got ${signal}"); process.exit(3) })
console.log("holding")
process.stdin.resume()`
        ])
        yield* waitForOutput(cli, /holding/)
        cli.process.kill(signal)
        yield* Effect.promise(() => cli.exited)
        assert.strictEqual(cli.process.exitCode, 3, `ended by ${cli.process.signalCode}`)
        const result = yield* finished(cli)
        assert.include(result.stdout, `got ${signal}`)
        assert.deepStrictEqual(lockEntries(dir), [])
      }))

    it.scopedLive(`${signal} while waiting: exits 128 + its number, the holder's lock untouched`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const holder = yield* startHolder(dir)
        const entries = lockEntries(dir)
        const waiter = yield* startCli(["run", "--name", NAME, "--dir", dir, "--wait", "30s", "--", "echo", "ran"])
        yield* waitUntilWatching(waiter.pid)
        waiter.process.kill(signal)
        const result = yield* finished(waiter)
        assert.strictEqual(result.code, 128 + Os.constants.signals[signal], result.stderr)
        assert.strictEqual(result.stdout, "", "the command did not run")
        assert.deepStrictEqual(lockEntries(dir), entries)
        assert.isTrue(holder.isRunning())
      }))
  }

  it.scopedLive("Ctrl-C on a terminal reaches the command once", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const terminal = yield* startInTerminal([
        process.execPath,
        BIN,
        "run",
        "--name",
        NAME,
        "--dir",
        dir,
        "--",
        ...COUNT_INTS
      ])
      const read = (pattern: RegExp) => waitForMatch(terminal.process.stdout!, terminal.output, pattern)
      const cli = Number((yield* read(/ready (\d+)/))[1])
      terminal.process.stdin!.write("\x03")
      yield* read(/INT 1/)
      // Forwarded signals keep their order: a second SIGINT would come before this.
      process.kill(cli, "SIGTERM")
      assert.strictEqual((yield* read(/INTs (\d+)/))[1], "1", terminal.output())
      assert.strictEqual(yield* Effect.promise(() => terminal.finished), 0, terminal.output())
      assert.deepStrictEqual(lockEntries(dir), [])
    }))

  it.scopedLive("SIGINT sent to the CLI alone, with no terminal, reaches the command once", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const cli = yield* startCli(["run", "--name", NAME, "--dir", dir, "--", ...COUNT_INTS])
      yield* waitForOutput(cli, /ready/)
      cli.process.kill("SIGINT")
      yield* waitForOutput(cli, /INT 1/)
      cli.process.kill("SIGTERM")
      const result = yield* finished(cli)
      assert.strictEqual(result.code, 0, result.stderr)
      assert.match(result.stdout, /^INTs 1$/m)
      assert.deepStrictEqual(lockEntries(dir), [])
    }))
})

describe("effect-pidlock run: the lock's generation, and its loss", () => {
  it.scopedLive("the command sees the lock's generation as PIDLOCK_GENERATION, growing with each acquisition", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const command = ["sh", "-c", "echo $PIDLOCK_GENERATION"]
      const first = yield* runCli("run", "--name", NAME, "--dir", dir, "--", ...command)
      assert.strictEqual(first.code, 0, first.stderr)
      assert.strictEqual(first.stdout, "1\n")
      const second = yield* runCli("run", "--name", NAME, "--dir", dir, "--", ...command)
      assert.strictEqual(second.code, 0, second.stderr)
      assert.strictEqual(second.stdout, "2\n")
    }))

  it.scopedLive("a lock lost while the command runs stops it (SIGTERM) and exits 74", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const cli = yield* startCli([
        "run",
        "--name",
        NAME,
        "--dir",
        dir,
        "--",
        "sh",
        "-c",
        `trap 'echo stopped; exit 0' TERM
echo holding
while :; do sleep 1 >/dev/null 3>&- & wait $!; done`
      ])
      yield* waitForOutput(cli, /holding/)
      // What a temporary-file cleaner or a wrong break would do.
      const [entry] = lockEntries(dir)
      Fs.unlinkSync(Path.join(dir, NAME, "lock", entry!))
      const result = yield* finished(cli)
      assert.strictEqual(result.code, 74, result.stderr)
      assert.include(result.stderr, `${Path.join(dir, NAME, "lock")} was lost`)
      assert.include(result.stderr, "stopping the command")
      assert.include(result.stdout, "stopped")
      assertNoStackTrace(result)
    }))
})

describe("effect-pidlock send, and run --forward", () => {
  /** A program that holds lock `NAME` itself and answers each message with `{ echo: data, pid, from }`. */
  const startMessenger = (dir: string, ...flags: ReadonlyArray<string>) =>
    Effect.tap(
      spawnNode(MESSENGER, ["hold", "--dir", dir, "--name", NAME, ...flags]),
      (holder) => waitForLine(holder, "ready")
    )

  it.scopedLive("send prints the holder's reply to {argv} as JSON on stdout; run --forward hands its command line", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const holder = yield* startMessenger(dir)
      const sent = yield* runCli("send", "--name", NAME, "--dir", dir, "--", "open", "notes.txt", "--line=3")
      assert.strictEqual(sent.code, 0, sent.stderr)
      assert.strictEqual(sent.stderr, "")
      const reply = JSON.parse(sent.stdout)
      assert.deepStrictEqual(reply.echo, { argv: ["open", "notes.txt", "--line=3"] })
      assert.strictEqual(reply.pid, holder.pid)

      const bare = yield* runCli("send", "--name", NAME, "--dir", dir)
      assert.strictEqual(bare.code, 0, bare.stderr)
      assert.deepStrictEqual(JSON.parse(bare.stdout).echo, { argv: [] })

      const forwarded = yield* runCli("run", "--forward", "--name", NAME, "--dir", dir, "--", "editor", "a b.txt")
      assert.strictEqual(forwarded.code, 0, forwarded.stderr)
      assert.deepStrictEqual(JSON.parse(forwarded.stdout).echo, { argv: ["editor", "a b.txt"] })
    }))

  it.scopedLive("run --forward runs the command when the lock is free, and holds it meanwhile", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const result = yield* runCli("run", "--forward", "--name", NAME, "--dir", dir, "--", "sh", "-c", "echo ran")
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(result.stdout, "ran\n")
    }))

  it.scopedLive("exit codes: 69 nobody holds the lock, 75 no reply in time, 76 refused", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const free = yield* runCli("send", "--name", NAME, "--dir", dir, "--", "x")
      assert.strictEqual(free.code, 69, free.stderr)
      assert.strictEqual(free.stdout, "")
      assert.include(free.stderr, "is free: nobody holds it")
      assertNoStackTrace(free)

      const silent = yield* startMessenger(dir, "--silent")
      const late = yield* runCli("send", "--name", NAME, "--dir", dir, "--timeout", "300ms", "--", "x")
      assert.strictEqual(late.code, 75, late.stderr)
      assert.include(late.stderr, "did not reply within")
      const lateForward = yield* runCli(
        "run",
        "--forward",
        "--timeout",
        "300ms",
        "--name",
        NAME,
        "--dir",
        dir,
        "--",
        "x"
      )
      assert.strictEqual(lateForward.code, 75, lateForward.stderr)
      silent.process.kill("SIGKILL")
      yield* Effect.promise(() => silent.closed)

      const gone = yield* runCli("send", "--name", NAME, "--dir", dir, "--", "x")
      assert.strictEqual(gone.code, 69, gone.stderr)
      assert.include(gone.stderr, "is gone")
    }))

  it.scopedLive("a lock held by run refuses messages at once (76): the wrapper hands none to its command", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const holder = yield* startHolder(dir)
      const sent = yield* runCli("send", "--name", NAME, "--dir", dir, "--", "x")
      // 76, refused, not 75: told by the wrapper, not left to its 5 s timeout.
      assert.strictEqual(sent.code, 76, sent.stderr)
      assert.strictEqual(sent.stdout, "")
      assert.include(
        sent.stderr,
        `it is effect-pidlock run (pid ${holder.pid}), which hands no messages to its command`
      )
      assert.include(sent.stderr, "(NotServed)")
      const forwarded = yield* runCli("run", "--forward", "--name", NAME, "--dir", dir, "--", "x")
      assert.strictEqual(forwarded.code, 76, forwarded.stderr)
      assert.isTrue(holder.isRunning(), "the holder runs on")
      yield* release(holder)
      assert.strictEqual((yield* finished(holder)).code, 0)
    }))

  it.scopedLive("usage: --forward with --wait, --timeout without --forward, a timeout of zero: exit 64", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      for (
        const [args, says] of [
          [["run", "--forward", "--wait", "1s", "--name", NAME, "--dir", dir, "--", "x"], "--forward and --wait"],
          [["run", "--timeout", "1s", "--name", NAME, "--dir", dir, "--", "x"], "--timeout is --forward's"],
          [["send", "--timeout", "0s", "--name", NAME, "--dir", dir], "--timeout \"0s\" is not a positive duration"],
          [["send", "--name", NAME, "--dir", dir, "open"], "unexpected argument \"open\": put it after --"],
          [["send", "--name", NAME, "--postgres", "postgresql://h/d"], "send does not take --postgres"]
        ] as const
      ) {
        const result = yield* runCli(...args)
        assert.strictEqual(result.code, 64, `${args.join(" ")}: ${result.stderr}`)
        assert.include(result.stderr, `effect-pidlock: ${says}`, args.join(" "))
        assert.include(result.stderr, "usage: effect-pidlock", args.join(" "))
      }
      const help = yield* runCli("send", "--help")
      assert.strictEqual(help.code, 0, help.stderr)
      assert.include(help.stdout, "69 nobody holds the lock; 75 no reply in time")
      assert.deepStrictEqual(Fs.readdirSync(dir), [], "nothing was made")
    }))
})

describe("effect-pidlock status", () => {
  it.scopedLive("exits 0 when free, 1 when held, 2 when the holder is gone; --json", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const free = yield* runCli("status", "--name", NAME, "--dir", dir, "--json")
      assert.strictEqual(free.code, 0, free.stderr)
      const location = Path.join(dir, NAME, "lock")
      assert.deepStrictEqual(JSON.parse(free.stdout), {
        name: NAME,
        state: "free",
        location,
        holder: null,
        verdict: null
      })

      const holder = yield* startHolder(dir)
      const held = yield* runCli("status", "--name", NAME, "--dir", dir)
      assert.strictEqual(held.code, 1, held.stderr)
      assert.include(held.stdout, `is held by pid ${holder.pid}`)
      const heldJson = JSON.parse((yield* runCli("status", "--name", NAME, "--dir", dir, "--json")).stdout)
      assert.strictEqual(heldJson.state, "held")
      assert.strictEqual(heldJson.location, Path.join(dir, NAME, "lock"))
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

  // strace makes each unlink of the owner entry fail with ENOENT, as when
  // another breaker removed it first. The removal is that one unlink of the
  // exact name, the compare-and-swap: its ENOENT is the answer, so break says
  // someone else removed it and claims nothing. (fs.rm, an lstat and then the
  // unlink, would have counted it as its own removal.) The entry stays: only
  // the injection said it was gone.
  it.scopedLive.skipIf(ChildProcess.spawnSync("strace", ["-V"]).status !== 0)(
    "says it broke the lock only when its unlink removed the entry, and not when the unlink found it gone",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const record = yield* plantDeadHolder(dir)
        const entry = Path.join(dir, NAME, "lock", entryNameOf(record))
        const strace = [
          "strace",
          "-f",
          "-qq",
          "-o",
          "/dev/null",
          "-P",
          entry,
          "-e",
          "inject=unlink,unlinkat:error=ENOENT"
        ]
        const result = yield* Effect.flatMap(startCli(["break", "--name", NAME, "--dir", dir], strace), finished)
        assert.strictEqual(result.code, 0, result.stderr)
        assert.include(result.stdout, "was already removed by someone else", result.stderr)
        assert.notInclude(result.stdout, "broke")
        assert.deepStrictEqual(lockEntries(dir), [entryNameOf(record)], `it said: ${result.stdout}`)
      })
  )

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

describe("record text on the terminal", () => {
  // What a planted record may hold: ESC and a screen clear, a C1 CSI, BEL,
  // and a bidi override that shows the text after it reversed.
  const hostile = {
    hostname: "host\x1b[2J",
    acquiredAt: "2026-01-01\x9b31m",
    cmdline: ["sh", "-c", "echo \x07 \u202eevil"]
  }
  const CONTROLS = /[\x1b\x9b\x07\u202e]/

  const assertPrintable = (result: Finished, what: string) => {
    assert.notMatch(result.stdout, CONTROLS, `${what}: stdout ${JSON.stringify(result.stdout)}`)
    assert.notMatch(result.stderr, CONTROLS, `${what}: stderr ${JSON.stringify(result.stderr)}`)
  }

  it.scopedLive("a live holder's: status, status --json, a refused run and break print no control character", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      // This very process is the holder: alive while the CLI looks.
      const self = yield* Effect.map(ProcessInfo.ProcessInfo, (info) => info.self).pipe(Effect.provide(nodeLayer))
      const record = { ...recordOf(self), ...hostile }
      yield* plant(dir, record)

      const status = yield* runCli("status", "--name", NAME, "--dir", dir)
      assert.strictEqual(status.code, 1, status.stderr)
      assert.include(status.stdout, `is held by pid ${process.pid} on `)
      assertPrintable(status, "status")
      const json = yield* runCli("status", "--name", NAME, "--dir", dir, "--json")
      assert.strictEqual(json.code, 1, json.stderr)
      assertPrintable(json, "status --json")
      assert.deepStrictEqual(JSON.parse(json.stdout).holder, record, "the record's very strings")
      const run = yield* runCli("run", "--name", NAME, "--dir", dir, "--", "echo", "ran")
      assert.strictEqual(run.code, 75, run.stderr)
      assertPrintable(run, "run")
      const broken = yield* runCli("break", "--name", NAME, "--dir", dir)
      assert.strictEqual(broken.code, 1, broken.stderr)
      assertPrintable(broken, "break")
      assert.deepStrictEqual(lockEntries(dir), [entryNameOf(record)])
    }))

  it.scopedLive("a dead holder's: status, status --json and break print no control character", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const record = yield* plantDeadHolder(dir, hostile)
      const status = yield* runCli("status", "--name", NAME, "--dir", dir)
      assert.strictEqual(status.code, 2, status.stderr)
      assertPrintable(status, "status")
      const json = yield* runCli("status", "--name", NAME, "--dir", dir, "--json")
      assert.strictEqual(json.code, 2, json.stderr)
      assertPrintable(json, "status --json")
      assert.deepStrictEqual(JSON.parse(json.stdout).holder, record, "the record's very strings")
      const broken = yield* runCli("break", "--name", NAME, "--dir", dir)
      assert.strictEqual(broken.code, 0, broken.stderr)
      assert.include(broken.stdout, entryNameOf(record))
      assertPrintable(broken, "break")
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

describe("diagnostics on stderr", () => {
  it.scopedLive("a takeover is told on stderr; stdout is the command's alone", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dead = yield* plantDeadHolder(dir)
      const result = yield* runCli("run", "--name", NAME, "--dir", dir, "--", "echo", "ran")
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(result.stdout, "ran\n")
      assert.match(result.stderr, new RegExp(`^effect-pidlock: PidLock: taking over [^\\n]* from pid ${dead.pid} `))
      assertNoStackTrace(result)
    }))

  it.scopedLive("--quiet and --log-level before or after the command; after -- they are the command's", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const takeOver = (...args: ReadonlyArray<string>) =>
        Effect.zipRight(plantDeadHolder(dir), runCli(...args, "--", "echo", "ran", "--quiet", "--log-level", "debug"))
      for (
        const args of [
          ["--quiet", "run", "--name", NAME, "--dir", dir],
          ["run", "--name", NAME, "-q", "--dir", dir],
          ["--log-level", "warning", "run", "--name", NAME, "--dir", dir],
          ["run", "--name", NAME, "--dir", dir, "--log-level=error"]
        ]
      ) {
        const result = yield* takeOver(...args)
        assert.strictEqual(result.code, 0, result.stderr)
        assert.strictEqual(result.stdout, "ran --quiet --log-level debug\n", args.join(" "))
        assert.strictEqual(result.stderr, "", args.join(" "))
      }
      const told = yield* takeOver("run", "--name", NAME, "--dir", dir, "--log-level", "info")
      assert.include(told.stderr, "taking over")
    }))

  it.scopedLive("--quiet: a held lock is told by the exit code alone; errors are still said", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* startHolder(dir)
      const refused = yield* runCli("--quiet", "run", "--name", NAME, "--dir", dir, "--", "true")
      assert.strictEqual(refused.code, 75)
      assert.strictEqual(refused.stderr, "")
      const badName = yield* runCli("--quiet", "run", "--name", "a/b", "--dir", dir, "--", "true")
      assert.strictEqual(badName.code, 64)
      assert.include(badName.stderr, "invalid option name=\"a/b\"")
    }))

  // A takeover's line is the one diagnostic of a run that succeeds.
  const ANSI = /\x1b\[[0-9;]*m/

  it.scopedLive("colours on a terminal; none with NO_COLOR, nor in a stderr that is no terminal", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const inTerminal = (env: Readonly<Record<string, string>>, redirect: string = "") =>
        Effect.gen(function*() {
          yield* plantDeadHolder(dir)
          const terminal = yield* startInTerminal([
            "sh",
            "-c",
            `exec "$@"${redirect}`,
            "sh",
            process.execPath,
            BIN,
            "run",
            "--name",
            NAME,
            "--dir",
            dir,
            "--",
            "echo",
            "ran"
          ], env)
          assert.strictEqual(yield* Effect.promise(() => terminal.finished), 0, terminal.output())
          return terminal.output()
        })
      const colored = yield* inTerminal({})
      assert.include(colored, "taking over")
      assert.match(colored, ANSI, "the terminal's output")
      const noColor = yield* inTerminal({ NO_COLOR: "1" })
      assert.include(noColor, "taking over")
      assert.notMatch(noColor, ANSI, "the terminal's output with NO_COLOR")
      const file = Path.join(dir, "stderr")
      const onTerminal = yield* inTerminal({}, ` 2>${file}`)
      assert.include(onTerminal, "ran")
      const redirected = Fs.readFileSync(file, "utf8")
      assert.include(redirected, "taking over")
      assert.notMatch(redirected, ANSI, "stderr in a file, stdout on a terminal")
    }))
})

describe("help and usage", () => {
  it.scopedLive("--help, of the CLI and of each command: what it does, its options and exit codes, on stdout", () =>
    Effect.gen(function*() {
      for (
        const [args, says] of [
          [["--help"], "run     run a command while holding the lock"],
          [["-h"], "status  say who holds the lock"],
          [["run", "--help"], "--conflict-exit-code"],
          [["status", "--name", NAME, "--help"], "0 free, 1 held, 2 the holder is gone"],
          [["--help", "break"], "--force"]
        ] as const
      ) {
        const result = yield* runCli(...args)
        assert.strictEqual(result.code, 0, result.stderr)
        assert.strictEqual(result.stderr, "")
        assert.include(result.stdout, says, args.join(" "))
        assert.include(result.stdout, "64  bad arguments", args.join(" "))
        assert.notMatch(result.stdout, /wizard|completions/, args.join(" "))
      }
    }))

  it.scopedLive("no arguments, an unknown command or option, a missing value: exit 64, the usage on stderr", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      for (
        const [args, says] of [
          [[], "a command is needed"],
          [["--name", NAME, "--quiet"], "a command is needed"],
          [["start", "--name", NAME], "unknown command \"start\""],
          [["status", "--name", NAME, "--verbose"], "unknown option \"--verbose\""],
          [["status", "--name"], "--name needs a value"],
          [["status", "--dir", dir], "status needs --name <name>"],
          [["status", "--name", NAME, "--wait", "1s"], "status does not take --wait"],
          [
            ["run", "--name", NAME, "--dir", dir, "echo", "ran"],
            "unexpected argument \"echo\": put the command to run after --"
          ],
          [["run", "--name", NAME, "--dir", dir, "--"], "run needs a command to run"],
          [["--log-level", "loud", "status", "--name", NAME], "--log-level \"loud\" is not a level"],
          [
            ["run", "--name", NAME, "--conflict-exit-code", "256", "--", "true"],
            "--conflict-exit-code \"256\" is not an exit code (0 to 255)"
          ]
        ] as const
      ) {
        const result = yield* runCli(...args)
        assert.strictEqual(result.code, 64, `${args.join(" ")}: ${result.stderr}`)
        assert.strictEqual(result.stdout, "", args.join(" "))
        assert.include(result.stderr, `effect-pidlock: ${says}`, args.join(" "))
        assert.include(result.stderr, "usage:", args.join(" "))
      }
      assert.deepStrictEqual(Fs.readdirSync(dir), [], "nothing was made")
    }))
})

describe("status --json", () => {
  it.scopedLive("answers in JSON even when it fails: state error, the error's tag and message, its exit code", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const badName = yield* runCli("status", "--name", "a/b", "--dir", dir, "--json")
      assert.strictEqual(badName.code, 64, badName.stderr)
      const report = JSON.parse(badName.stdout)
      assert.strictEqual(report.name, "a/b")
      assert.strictEqual(report.state, "error")
      assert.strictEqual(report.error._tag, "InvalidOptions")
      assert.include(report.error.message, "invalid option name=\"a/b\"")
      assert.include(badName.stderr, "invalid option name=\"a/b\"", "and said on stderr")

      const noName = yield* runCli("status", "--json", "--dir", dir)
      assert.strictEqual(noName.code, 64, noName.stderr)
      assert.deepStrictEqual(JSON.parse(noName.stdout), {
        name: null,
        state: "error",
        location: null,
        holder: null,
        verdict: null,
        error: { _tag: "UsageError", message: "status needs --name <name>" }
      })

      // A file where the lock home would be: no directory to look in.
      Fs.writeFileSync(Path.join(dir, NAME), "")
      const corrupt = yield* runCli("status", "--name", NAME, "--dir", dir, "--json")
      assert.strictEqual(corrupt.code, 65, corrupt.stderr)
      assert.strictEqual(JSON.parse(corrupt.stdout).error._tag, "CorruptLock")
    }))

  it.scopedLive("a free lock's location: where the lock would live, $PIDLOCK_DIR's when set", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const result = ChildProcess.spawnSync(process.execPath, [BIN, "status", "--name", NAME, "--json"], {
        env: { ...cliEnvironment, PIDLOCK_DIR: dir },
        encoding: "utf8"
      })
      assert.strictEqual(result.status, 0, result.stderr)
      assert.strictEqual(JSON.parse(result.stdout).location, Path.join(dir, NAME, "lock"))
    }))
})

describe("a lock home of another user's", () => {
  const NOBODY = 65534
  it.scopedLive.skipIf(process.geteuid?.() !== 0)(
    "is a name clash: exit 73, nothing touched",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const home = Path.join(dir, NAME)
        Fs.mkdirSync(home, { mode: 0o700 })
        Fs.chownSync(home, NOBODY, NOBODY)
        for (const args of [["status"], ["run", "--", "echo", "ran"], ["break"]]) {
          const [command, ...rest] = args
          const result = yield* runCli(command!, "--name", NAME, "--dir", dir, ...rest)
          assert.strictEqual(result.code, 73, `${command}: ${result.stderr}`)
          assert.strictEqual(result.stdout, "", command)
          assert.include(result.stderr, `belongs to uid ${NOBODY}`, command)
        }
        assert.deepStrictEqual(Fs.readdirSync(home), [])
      })
  )
})

describe("the bundle", () => {
  // Copied where no node_modules is found above it: what it needs, it ships.
  const copyOfBundle = Effect.gen(function*() {
    const copy = Path.join(yield* tempDir, "cli")
    Fs.cpSync(Path.dirname(BIN), copy, { recursive: true })
    return copy
  })
  const runBin = (bin: string, ...args: ReadonlyArray<string>) =>
    ChildProcess.spawnSync(process.execPath, [bin, ...args], { encoding: "utf8", env: cliEnvironment })

  it.scopedLive("runs with no package beside it, and asks for pg, in one line, only when PostgreSQL is used", () =>
    Effect.gen(function*() {
      const copy = yield* copyOfBundle
      const dir = yield* tempDir
      const bin = Path.join(copy, "bin.cjs")
      const free = runBin(bin, "status", "--name", NAME, "--dir", dir)
      assert.strictEqual(free.status, 0, free.stderr)
      assert.strictEqual(free.stdout, `${Path.join(dir, NAME, "lock")} is free\n`)
      const postgres = runBin(bin, "status", "--name", NAME, "--postgres", "postgresql://app@127.0.0.1:1/app")
      assert.strictEqual(postgres.status, 69, postgres.stderr)
      assert.match(
        postgres.stderr,
        /^effect-pidlock: cannot load PostgreSQL support \(Cannot find module 'pg'\): install @effect\/sql-pg/
      )
      assert.strictEqual(postgres.stderr.trimEnd().split("\n").length, 1, postgres.stderr)
    }))

  it.scopedLive("starts without its code cache, and with one V8 refuses", () =>
    Effect.gen(function*() {
      const copy = yield* copyOfBundle
      const dir = yield* tempDir
      const bin = Path.join(copy, "bin.cjs")
      const cache = Path.join(copy, "main.cjs.cache")
      assert.isTrue(Fs.statSync(cache).size > 0, "the build made a code cache")
      Fs.writeFileSync(cache, "not a code cache")
      const refused = runBin(bin, "status", "--name", NAME, "--dir", dir)
      assert.strictEqual(refused.status, 0, refused.stderr)
      Fs.rmSync(cache)
      const none = runBin(bin, "status", "--name", NAME, "--dir", dir)
      assert.strictEqual(none.status, 0, none.stderr)
      assert.strictEqual(none.stdout, refused.stdout)
    }))
})
