// The built CLI (dist/cli/bin.cjs, the bundle) over PostgreSQL, run as real processes against
// the run's server (test/support/postgres.ts), each test on a database of its
// own. `npm test` builds first; after changing src/, run `npm run build`.
import * as PgClient from "@effect/sql-pg/PgClient"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { tempDir } from "./support/nodeEnvironment.js"
import { freshDatabase, layerPgClient, postgresUrl } from "./support/postgres.js"

const BIN = fileURLToPath(new URL("../dist/cli/bin.cjs", import.meta.url))
const NAME = "app"
const VARIABLE = "PIDLOCK_DATABASE_URL"

interface Finished {
  readonly code: number | null
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

/**
 * Starts `effect-pidlock ...args` in a session of its own, with `env` over
 * this process's environment less PIDLOCK_DATABASE_URL; when the scope
 * closes, SIGKILLed if still running, its stdin closed (the commands of these
 * tests then end) and awaited.
 */
const startCli = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
  Effect.acquireRelease(
    Effect.sync((): Cli => {
      const { [VARIABLE]: _, ...inherited } = process.env
      const child = ChildProcess.spawn(process.execPath, [BIN, ...args], {
        stdio: ["pipe", "pipe", "pipe"],
        detached: true,
        env: { ...inherited, ...env }
      })
      let stdout = ""
      let stderr = ""
      let running = true
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => void (stdout += chunk))
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => void (stderr += chunk))
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
      const finished = new Promise<Finished>((resolve) =>
        child.once("close", (code) => {
          running = false
          resolve({ code, stdout, stderr })
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
const runCli = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
  Effect.scoped(Effect.flatMap(startCli(args, env), finished))

/** Waits until the CLI (or its command) has printed a match of `pattern`; fails if its output closes first. */
const waitForOutput = (cli: Cli, pattern: RegExp) =>
  Effect.promise(() =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const stream = cli.process.stdout!
      const check = () => {
        const match = pattern.exec(cli.stdout())
        if (match !== null) resolve(match)
        else if (stream.closed) reject(new Error(`closed before printing ${pattern}: ${JSON.stringify(cli.stdout())}`))
      }
      stream.on("data", check).once("close", check)
      check()
    })
  )

// A command that prints "holding <generation>", then holds until a line
// arrives on its stdin, which the CLI shares with it.
const HOLD = ["sh", "-c", "echo holding $PIDLOCK_GENERATION; read line"]

/** Starts a `run` over PostgreSQL at `url` that holds lock `NAME` until {@link release}. */
const startHolder = (url: string) =>
  Effect.tap(
    startCli(["run", "--postgres", url, "--name", NAME, "--", ...HOLD]),
    (cli) => waitForOutput(cli, /holding/)
  )

const release = (cli: Cli) => Effect.sync(() => cli.process.stdin!.end("\n"))

/** What the CLI shows for lock `NAME` at `url`: the server and database, no credentials. */
const locationAt = (url: string) => {
  const parsed = new URL(url)
  return `postgresql://${parsed.hostname}:${parsed.port}${parsed.pathname}#${NAME}`
}

const passwordOf = (url: string) => decodeURIComponent(new URL(url).password)

/** Neither the url nor its password, nor the server's, in anything the CLI printed. */
const assertNoSecret = (result: Finished, url: string) => {
  for (const secret of [url, passwordOf(url), passwordOf(postgresUrl())].filter((secret) => secret !== "")) {
    assert.notInclude(result.stdout, secret, "a secret on stdout")
    assert.notInclude(result.stderr, secret, "a secret on stderr")
  }
}

/** One line on stderr, "effect-pidlock: …", and nothing on stdout. */
const assertOneLineError = (result: Finished) => {
  assert.strictEqual(result.stdout, "")
  assert.match(result.stderr, /^effect-pidlock: [^\n]+\n$/, result.stderr)
}

/** A local port that nothing listens on: one the kernel handed out, then closed. */
const closedPort = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const server = Net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as Net.AddressInfo
      server.close(() => resolve(port))
    })
  })
)

/** Waits until a session waits for an advisory lock in the database at `url`. */
const waitUntilWaitingInServer = (url: string) =>
  Effect.gen(function*() {
    const sql = yield* PgClient.PgClient
    yield* sql<{ waiting: boolean }>`
      SELECT EXISTS (
        SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      ) AS waiting`.pipe(
      Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: ([row]) => row?.waiting === true })
    )
  }).pipe(Effect.provide(layerPgClient(url)), Effect.orDie)

describe("effect-pidlock run --postgres", () => {
  it.scopedLive(
    "holds the lock while the command runs; a second run exits 75 and names the holder",
    () =>
      Effect.gen(function*() {
        const url = yield* freshDatabase
        const holder = yield* startHolder(url)
        const refused = yield* runCli(["run", "--postgres", url, "--name", NAME, "--", "echo", "ran"])
        assert.strictEqual(refused.code, 75, refused.stderr)
        assert.strictEqual(refused.stdout, "", "the command did not run")
        assert.include(refused.stderr, `${locationAt(url)} is held by pid ${holder.pid} on `)
        assert.include(refused.stderr, "read line", "the holder's command line")
        assertNoSecret(refused, url)
        yield* release(holder)
        const held = yield* finished(holder)
        assert.strictEqual(held.code, 0, held.stderr)
        assertNoSecret(held, url)
        const failing = yield* runCli(["run", "--postgres", url, "--name", NAME, "--", "sh", "-c", "exit 7"])
        assert.strictEqual(failing.code, 7, failing.stderr)
      }),
    60_000
  )

  it.scopedLive(
    "the command sees the lock's generation, growing with each acquisition, and no fd 3",
    () =>
      Effect.gen(function*() {
        const url = yield* freshDatabase
        const command = ["sh", "-c", "echo $PIDLOCK_GENERATION; test -e /proc/$$/fd/3 && echo fd3; true"]
        const first = yield* runCli(["run", "--postgres", url, "--name", NAME, "--", ...command])
        assert.strictEqual(first.code, 0, first.stderr)
        assert.strictEqual(first.stdout, "1\n")
        const second = yield* runCli(["run", "--postgres", url, "--name", NAME, "--", ...command])
        assert.strictEqual(second.code, 0, second.stderr)
        assert.strictEqual(second.stdout, "2\n")
      }),
    60_000
  )

  it.scopedLive(
    "--wait waits in the server for the holder to release, then runs the command",
    () =>
      Effect.gen(function*() {
        const url = yield* freshDatabase
        const holder = yield* startHolder(url)
        const waiter = yield* startCli(["run", "--postgres", url, "--name", NAME, "--wait", "30s", "--", "echo", "ran"])
        yield* waitUntilWaitingInServer(url)
        assert.isTrue(waiter.isRunning(), "the waiter is still waiting")
        yield* release(holder)
        const result = yield* finished(waiter)
        assert.strictEqual(result.code, 0, result.stderr)
        assert.strictEqual(result.stdout, "ran\n")
      }),
    60_000
  )

  it.scopedLive(
    "SIGTERM while waiting in the server: exits 143, the holder's lock untouched",
    () =>
      Effect.gen(function*() {
        const url = yield* freshDatabase
        const holder = yield* startHolder(url)
        const waiter = yield* startCli(["run", "--postgres", url, "--name", NAME, "--wait", "30s", "--", "echo", "ran"])
        yield* waitUntilWaitingInServer(url)
        waiter.process.kill("SIGTERM")
        const result = yield* finished(waiter)
        assert.strictEqual(result.code, 143, result.stderr)
        assert.strictEqual(result.stdout, "", "the command did not run")
        assert.isTrue(holder.isRunning())
        const status = yield* runCli(["status", "--postgres", url, "--name", NAME])
        assert.strictEqual(status.code, 1, status.stderr)
        assert.include(status.stdout, `is held by pid ${holder.pid} on `)
      }),
    60_000
  )

  // The limit the README states: the lock is the wrapper's session, which
  // ends with it; the command runs on, and the next holder's generation is
  // higher than the one it was given.
  it.scopedLive(
    "a SIGKILLed wrapper's lock is free at once while its command runs on, at a lower generation",
    () =>
      Effect.gen(function*() {
        const url = yield* freshDatabase
        const dir = yield* tempDir
        // The command waits for a line on a FIFO: the CLI's stdin is closed
        // when the CLI dies. Written to when the test ends, whatever happened.
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
          "--postgres",
          url,
          "--name",
          NAME,
          "--",
          "sh",
          "-c",
          `echo holding $PIDLOCK_GENERATION; read line <${fifo}`
        ])
        yield* Effect.addFinalizer(() => releaseCommand)
        yield* waitForOutput(holder, /holding 1/)
        holder.process.kill("SIGKILL")
        yield* Effect.promise(() => holder.exited)
        // --wait: the server frees the lock once it has seen the connection close.
        const next = yield* runCli([
          "run",
          "--postgres",
          url,
          "--name",
          NAME,
          "--wait",
          "10s",
          "--",
          "sh",
          "-c",
          "echo $PIDLOCK_GENERATION"
        ])
        assert.strictEqual(next.code, 0, next.stderr)
        assert.strictEqual(next.stdout, "2\n")
        assert.isTrue(holder.isRunning(), "the first command still runs, its output open")
        yield* releaseCommand
        yield* finished(holder)
      }),
    60_000
  )
})

describe("effect-pidlock: choosing PostgreSQL", () => {
  it.scopedLive(
    "$PIDLOCK_DATABASE_URL without the flag; --postgres wins over it; --dir means the file lock",
    () =>
      Effect.gen(function*() {
        const url = yield* freshDatabase
        const holder = yield* Effect.tap(
          startCli(["run", "--name", NAME, "--", ...HOLD], { [VARIABLE]: url }),
          (cli) => waitForOutput(cli, /holding/)
        )
        const seen = yield* runCli(["status", "--postgres", url, "--name", NAME], { [VARIABLE]: url })
        assert.strictEqual(seen.code, 1, seen.stderr)
        assert.include(seen.stdout, `${locationAt(url)} is held by pid ${holder.pid} on `)

        const port = yield* closedPort
        const unreachable = `postgresql://nobody:hunter2-variable@127.0.0.1:${port}/none`
        const flagWins = yield* runCli(["status", "--postgres", url, "--name", NAME], { [VARIABLE]: unreachable })
        assert.strictEqual(flagWins.code, 1, flagWins.stderr)
        assert.include(flagWins.stdout, `${locationAt(url)} is held by pid ${holder.pid} on `)

        const dir = yield* tempDir
        const file = yield* runCli(
          ["run", "--dir", dir, "--name", NAME, "--", "sh", "-c", `ls ${Path.join(dir, NAME, "lock")}`],
          { [VARIABLE]: url }
        )
        assert.strictEqual(file.code, 0, file.stderr)
        assert.match(file.stdout, /^\d+\.[0-9a-f]+\n$/, "the file lock's owner entry")

        const both = yield* runCli(["status", "--dir", dir, "--postgres", url, "--name", NAME])
        assert.strictEqual(both.code, 64)
        assert.include(both.stderr, "--dir and --postgres cannot be used together")
        assertOneLineError(both)
        for (const result of [seen, flagWins, file, both]) assertNoSecret(result, url)
        yield* release(holder)
        assert.strictEqual((yield* finished(holder)).code, 0)
      }),
    60_000
  )
})

describe("effect-pidlock status and break --postgres", () => {
  it.scopedLive(
    "status 0 free, 1 held, --json; break --force ends the holder's session, which stops its command",
    () =>
      Effect.gen(function*() {
        const url = yield* freshDatabase
        const free = yield* runCli(["status", "--postgres", url, "--name", NAME, "--json"])
        assert.strictEqual(free.code, 0, free.stderr)
        assert.deepStrictEqual(JSON.parse(free.stdout), {
          name: NAME,
          state: "free",
          location: locationAt(url),
          holder: null,
          verdict: null
        })

        // Stops on SIGTERM, saying so.
        const holder = yield* Effect.tap(
          startCli([
            "run",
            "--postgres",
            url,
            "--name",
            NAME,
            "--",
            "sh",
            "-c",
            `trap 'echo stopped; exit 0' TERM
echo holding
while :; do sleep 1 >/dev/null & wait $!; done`
          ]),
          (cli) => waitForOutput(cli, /holding/)
        )
        const held = yield* runCli(["status", "--postgres", url, "--name", NAME])
        assert.strictEqual(held.code, 1, held.stderr)
        assert.include(held.stdout, `${locationAt(url)} is held by pid ${holder.pid} on `)
        assert.include(held.stdout, "--postgres *** --name", "the holder's command line, its url left out")
        const json = yield* runCli(["status", "--postgres", url, "--name", NAME, "--json"])
        assert.strictEqual(json.code, 1, json.stderr)
        const status = JSON.parse(json.stdout)
        assert.strictEqual(status.state, "held")
        assert.strictEqual(status.location, locationAt(url))
        assert.strictEqual(status.holder.pid, holder.pid)
        assert.deepStrictEqual(status.verdict, { _tag: "Alive" })

        const refused = yield* runCli(["break", "--postgres", url, "--name", NAME])
        assert.strictEqual(refused.code, 1, refused.stderr)
        assert.include(refused.stderr, "--force")
        assert.isTrue(holder.isRunning())
        const broken = yield* runCli(["break", "--postgres", url, "--name", NAME, "--force"])
        assert.strictEqual(broken.code, 0, broken.stderr)
        assert.include(broken.stdout, `broke ${locationAt(url)}`)

        // The holder's watchdog finds its session gone within its check interval.
        const lost = yield* finished(holder)
        assert.strictEqual(lost.code, 74, lost.stderr)
        assert.include(lost.stderr, `${locationAt(url)} was lost`)
        assert.include(lost.stdout, "stopped")
        const after = yield* runCli(["status", "--postgres", url, "--name", NAME])
        assert.strictEqual(after.code, 0, after.stderr)
        for (const result of [free, held, json, refused, broken, lost, after]) assertNoSecret(result, url)
      }),
    90_000
  )
})

describe("effect-pidlock: a bad database url", () => {
  it.scopedLive(
    "not a postgresql:// url: 78; a server not reached: 69; a wrong password: 77; never the url",
    () =>
      Effect.gen(function*() {
        const port = yield* closedPort
        const server = new URL(postgresUrl())
        const wrongPassword = `postgresql://postgres:hunter2-wrong@${server.host}/postgres`
        const cases = [
          { args: ["--postgres", "not a url, hunter2-garbage"], env: {}, code: 78, says: "--postgres is not a url" },
          {
            args: [],
            env: { [VARIABLE]: "https://user:hunter2-scheme@example.com/db" },
            code: 78,
            says: "$PIDLOCK_DATABASE_URL is not a postgresql:// url"
          },
          { args: [], env: { [VARIABLE]: "" }, code: 78, says: "$PIDLOCK_DATABASE_URL is empty" },
          {
            args: ["--postgres", `postgresql://user:hunter2-unreachable@127.0.0.1:${port}/db`],
            env: {},
            code: 69,
            says: `PostgreSQL at postgresql://127.0.0.1:${port}/db: `
          },
          {
            args: ["--postgres", wrongPassword],
            env: {},
            code: 77,
            says: "password authentication failed"
          }
        ]
        for (const { args, code, env, says } of cases) {
          const result = yield* runCli(["status", "--name", NAME, ...args], env)
          assert.strictEqual(result.code, code, `${says}: ${result.stderr}`)
          assert.include(result.stderr, says)
          assertOneLineError(result)
          assert.notInclude(result.stderr, "hunter2", "the password")
          assertNoSecret(result, postgresUrl())
          // The same failure in JSON, on stdout: its message, as safe.
          const json = yield* runCli(["status", "--name", NAME, "--json", ...args], env)
          assert.strictEqual(json.code, code, `${says} --json: ${json.stderr}`)
          const report = JSON.parse(json.stdout)
          assert.strictEqual(report.state, "error")
          assert.include(report.error.message, says)
          assert.notInclude(json.stdout, "hunter2", "the password")
          assertNoSecret(json, postgresUrl())
        }
      }),
    90_000
  )
})
