#!/usr/bin/env node
/**
 * The `effect-pidlock` command: guard a shell command with a lock, as
 * `flock -n` does (`run`), see who holds a lock (`status`), and remove a dead
 * holder's lock by hand (`break`); on a file lock, or over PostgreSQL.
 *
 * Only deep module paths are imported: a package's root module loads all of
 * it, which costs hundreds of milliseconds at every start. The PostgreSQL
 * modules (and `pg`) are imported only when PostgreSQL is used.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as FileSystem from "@effect/platform/FileSystem"
import type { PlatformError } from "@effect/platform/Error"
import type { Teardown } from "@effect/platform/Runtime"
import type { SqlError } from "@effect/sql/SqlError"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeTerminal from "@effect/platform-node/NodeTerminal"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Os from "node:os"
import * as Path from "node:path"
import { validateName } from "./internal/options.js"
import { escapeText } from "./internal/text.js"
import * as PidLock from "./PidLock.js"
import * as Posix from "./Posix.js"
import * as ProcessInfo from "./ProcessInfo.js"

// Exit codes from sysexits.h, so that scripts can tell a busy lock from a
// mistake in the call and from a broken lock.
const EX_USAGE = 64
const EX_DATAERR = 65
const EX_UNAVAILABLE = 69
const EX_SOFTWARE = 70
const EX_IOERR = 74
const EX_TEMPFAIL = 75
const EX_NOPERM = 77
const EX_CONFIG = 78

const ERROR_EXIT_CODES = `Exit codes on failure: ${EX_USAGE} bad arguments (e.g. a name with "/", --dir with ` +
  `--postgres), ${EX_DATAERR} a corrupt lock (left untouched), ${EX_NOPERM} permission denied (by the file system, ` +
  `or PostgreSQL refusing the credentials or a privilege), ${EX_IOERR} any other I/O error, ${EX_UNAVAILABLE} ` +
  `PostgreSQL cannot be reached or fails (or @effect/sql-pg is not installed), ${EX_CONFIG} the database url is ` +
  `not a postgresql:// url.`

// Each command ends by setting `process.exitCode`; the teardown below hands it
// to `process.exit`.
const exitWith = (code: number) => Effect.sync(() => void (process.exitCode = code))

const exitWithMessage = (message: string, code: number) =>
  Effect.zipRight(Console.error(`effect-pidlock: ${message}`), exitWith(code))

// -----------------------------------------------------------------------------
// Options
// -----------------------------------------------------------------------------

const nameOption = Options.text("name").pipe(
  Options.withDescription("The lock name: 1 to 100 characters of A-Z a-z 0-9 . _ -, not starting with \".\".")
)

const DATABASE_URL_VARIABLE = "PIDLOCK_DATABASE_URL"

const dirOption = Options.text("dir").pipe(
  Options.withDescription(
    "Where the file lock lives (<dir>/<name>/lock). Default: $PIDLOCK_DIR, else /run/lock/effect-pidlock-<euid> " +
      `(or /tmp/effect-pidlock-<euid>). Given, it means the file lock even when $${DATABASE_URL_VARIABLE} is set; ` +
      "it cannot be combined with --postgres."
  ),
  Options.optional
)

const postgresOption = Options.redacted("postgres").pipe(
  Options.withPseudoName("url"),
  Options.withDescription(
    "Take the lock over PostgreSQL at this url (postgresql://user:password@host:port/database), one lock for " +
      `every host that reaches the server, instead of a file lock. Default: $${DATABASE_URL_VARIABLE}, unless ` +
      "--dir is given. The url is never printed; a command line is visible to other users (ps), so prefer the " +
      "variable, or a url without the password and PGPASSWORD."
  ),
  Options.optional
)

const millisPerUnit: Readonly<Record<string, number>> = {
  ms: 1,
  millis: 1,
  millisecond: 1,
  milliseconds: 1,
  s: 1_000,
  second: 1_000,
  seconds: 1_000,
  m: 60_000,
  minute: 60_000,
  minutes: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
  hours: 3_600_000
}

// A duration as people write it: `30s`, `500ms`, `2m`, `1.5h` or `30 seconds`.
// Effect's own string form (`30 seconds`) alone would refuse `30s`.
const parseDuration = (text: string): Option.Option<Duration.Duration> => {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]+)$/.exec(text.trim())
  const millis = match === null ? undefined : millisPerUnit[match[2]!]
  return millis === undefined ? Option.none() : Option.some(Duration.millis(Number(match![1]) * millis))
}

const waitOption = Options.text("wait").pipe(
  Options.withDescription(
    "Wait at most this long for the holder to release (e.g. 30s, 500ms, 2m, \"30 seconds\"), instead of failing at once."
  ),
  Options.mapEffect((text) =>
    Option.match(parseDuration(text), {
      onNone: () =>
        Effect.fail(ValidationError.invalidValue(HelpDoc.p(
          `--wait ${JSON.stringify(text)} is not a duration: write e.g. 30s, 500ms, 2m or "30 seconds"`
        ))),
      onSome: Effect.succeed
    })
  ),
  Options.optional
)

const conflictExitCodeOption = Options.integer("conflict-exit-code").pipe(
  Options.withDescription(`The exit code when the lock is held by someone else (default ${EX_TEMPFAIL}, EX_TEMPFAIL).`),
  Options.withDefault(EX_TEMPFAIL),
  Options.mapEffect((code) =>
    code >= 0 && code <= 255
      ? Effect.succeed(code)
      : Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--conflict-exit-code ${code} is not an exit code (0 to 255)`)))
  )
)

// -----------------------------------------------------------------------------
// Backends
// -----------------------------------------------------------------------------

class ConflictingOptions extends Data.TaggedError("ConflictingOptions")<{ readonly message: string }> {}

/** A database url that cannot be used; its text is never shown, only where it came from. */
class InvalidDatabaseUrl extends Data.TaggedError("InvalidDatabaseUrl")<{
  readonly source: string
  readonly reason: string
}> {
  get message(): string {
    return `${this.source} ${this.reason}`
  }
}

/** PostgreSQL cannot be used: not installed, not reached, or failing. */
class PostgresUnavailable extends Data.TaggedError("PostgresUnavailable")<{ readonly message: string }> {}

/** The server refused the credentials or a privilege (SQLSTATE class 28, or 42501). */
class PostgresRefused extends Data.TaggedError("PostgresRefused")<{ readonly message: string }> {}

type BackendError =
  | PidLock.PidLockError
  | PlatformError
  | ConflictingOptions
  | InvalidDatabaseUrl
  | PostgresUnavailable
  | PostgresRefused

/** The same three operations on a file lock or over PostgreSQL. */
interface Backend {
  readonly _tag: "File" | "Postgres"
  readonly acquire: (options: {
    readonly name: string
    readonly wait: Duration.Duration | undefined
  }) => Effect.Effect<PidLock.PidLock<unknown>, BackendError, Scope.Scope>
  readonly inspect: (name: string) => Effect.Effect<Option.Option<PidLock.Status>, BackendError>
  readonly breakLock: (status: PidLock.Status) => Effect.Effect<boolean, BackendError>
}

const fileBackend = (dir: string | undefined) =>
  Effect.map(
    Effect.context<FileSystem.FileSystem | ProcessInfo.ProcessInfo | Posix.Posix>(),
    (context): Backend => ({
      _tag: "File",
      acquire: ({ name, wait }) => Effect.provide(PidLock.acquire({ name, dir, wait }), context),
      inspect: (name) => Effect.provide(PidLock.inspect({ name, dir }), context),
      breakLock: (status) => Effect.provide(PidLock.breakLock(status), context)
    })
  )

interface DatabaseUrl {
  readonly url: Redacted.Redacted<string>
  /** The server and database without credentials, as the lock's location names them: what messages show. */
  readonly server: string
  /** What must never reach the output: the url and its password, as written and decoded. */
  readonly secrets: ReadonlyArray<string>
}

const parseDatabaseUrl = (
  url: Redacted.Redacted<string>,
  source: string
): Effect.Effect<DatabaseUrl, InvalidDatabaseUrl> =>
  Effect.suspend(() => {
    const invalid = (reason: string) => Effect.fail(new InvalidDatabaseUrl({ source, reason }))
    const text = Redacted.value(url)
    if (text.trim() === "") return invalid("is empty")
    let parsed: URL
    try {
      parsed = new URL(text)
    } catch {
      return invalid("is not a url: write postgresql://user:password@host:port/database")
    }
    if (parsed.protocol !== "postgresql:" && parsed.protocol !== "postgres:") {
      return invalid("is not a postgresql:// url: write postgresql://user:password@host:port/database")
    }
    let decodedPassword = parsed.password
    try {
      decodedPassword = decodeURIComponent(parsed.password)
    } catch {
      // A malformed escape: the password is used as written.
    }
    return Effect.succeed({
      url,
      server: `postgresql://${parsed.hostname}:${parsed.port || 5432}${parsed.pathname}`,
      secrets: [text, parsed.password, decodedPassword].filter((secret) => secret !== "")
    })
  })

const redact = (text: string, secrets: ReadonlyArray<string>) =>
  secrets.reduce((redacted, secret) => redacted.split(secret).join("***"), text)

// What went wrong, in one line. Node's connect to a name with several
// addresses fails with an AggregateError without a message: its first error
// says it.
const describeCause = (cause: unknown): string => {
  if (cause instanceof AggregateError && cause.errors.length > 0) return describeCause(cause.errors[0])
  if (cause instanceof Error) {
    const code = (cause as { readonly code?: unknown }).code
    return cause.message !== "" ? cause.message : typeof code === "string" ? code : cause.name
  }
  return String(cause)
}

const isSqlError = (error: unknown): error is SqlError =>
  typeof error === "object" && error !== null && (error as { readonly _tag?: unknown })._tag === "SqlError"

const sqlStateOf = (cause: unknown): string | undefined => {
  const code = typeof cause === "object" && cause !== null ? (cause as { readonly code?: unknown }).code : undefined
  return typeof code === "string" ? code : undefined
}

// A SqlError, in words that name the server and never the url.
const postgresFailure = (database: DatabaseUrl) =>
(error: { readonly message: string; readonly cause?: unknown }) => {
  const message = escapeText(redact(
    `PostgreSQL at ${database.server}: ${error.message}${
      error.cause === undefined ? "" : `: ${describeCause(error.cause)}`
    }`.replace(/\s*\n\s*/g, " "),
    database.secrets
  ))
  const state = sqlStateOf(error.cause)
  return state !== undefined && (state.startsWith("28") || state === "42501")
    ? new PostgresRefused({ message })
    : new PostgresUnavailable({ message })
}

// Imported here, not at the top: `pg` and the SQL modules would slow down
// every start of the file lock.
const loadPostgres = Effect.tryPromise({
  try: () => Promise.all([import("./PgLock.js"), import("@effect/sql-pg/PgClient")]),
  catch: (cause) =>
    new PostgresUnavailable({
      message: `cannot load PostgreSQL support (${describeCause(cause)}): ` +
        "install @effect/sql and @effect/sql-pg beside effect-pidlock"
    })
})

// A client of its own for the life of the scope: its pool ends after the
// lock's release, which is registered later in the same scope.
const postgresBackend = (database: DatabaseUrl) =>
  Effect.gen(function*() {
    const [PgLock, PgClient] = yield* loadPostgres
    const failure = postgresFailure(database)
    const client = yield* Layer.build(PgClient.layer({ url: database.url, applicationName: "effect-pidlock" })).pipe(
      Effect.mapError(failure)
    )
    // The owner record shows this process's command line to whoever reads
    // the lock: the url given with --postgres, or its password anywhere in
    // it, is left out.
    const info = yield* ProcessInfo.ProcessInfo
    const self = { ...info.self, cmdline: info.self.cmdline.map((arg) => redact(arg, database.secrets)) }
    const context = Context.add(client, ProcessInfo.ProcessInfo, { ...info, self })
    const withClient = <A, E, R>(effect: Effect.Effect<A, E | SqlError, R>) =>
      effect.pipe(Effect.provide(context), Effect.catchIf(isSqlError, (error) => Effect.fail(failure(error))))
    const backend: Backend = {
      _tag: "Postgres",
      acquire: ({ name, wait }) => withClient(PgLock.acquire({ name, wait })),
      inspect: (name) => withClient(PgLock.inspect({ name })),
      breakLock: (status) => withClient(PgLock.breakLock(status))
    }
    return backend
  })

/**
 * The backend the options choose: --postgres; else a given --dir, the file
 * lock; else $PIDLOCK_DATABASE_URL when set; else the file lock in its
 * default directory. The name is checked first, so that a bad one is told
 * before any server is reached.
 */
const makeBackend = (options: {
  readonly name: string
  readonly dir: Option.Option<string>
  readonly postgres: Option.Option<Redacted.Redacted<string>>
}) =>
  Effect.gen(function*() {
    if (Option.isSome(options.dir) && Option.isSome(options.postgres)) {
      return yield* new ConflictingOptions({
        message: "--dir and --postgres cannot be used together: --dir is the file lock's directory, --postgres " +
          "the PostgreSQL server's url"
      })
    }
    const fromVariable = Option.isNone(options.dir)
      ? Option.map(Option.fromNullable(process.env[DATABASE_URL_VARIABLE]), Redacted.make)
      : Option.none()
    const url = Option.orElse(
      Option.map(options.postgres, (url) => ({ url, source: "--postgres" })),
      () => Option.map(fromVariable, (url) => ({ url, source: `$${DATABASE_URL_VARIABLE}` }))
    )
    if (Option.isNone(url)) return yield* fileBackend(Option.getOrUndefined(options.dir))
    yield* validateName(options.name)
    return yield* postgresBackend(yield* parseDatabaseUrl(url.value.url, url.value.source))
  })

// -----------------------------------------------------------------------------
// run
// -----------------------------------------------------------------------------

// A status as a shell reports it: the exit code, or 128 + the number of the
// signal that ended the process.
const signalStatus = (signal: NodeJS.Signals): number => 128 + Os.constants.signals[signal]

const statusOf = (code: number | null, signal: NodeJS.Signals | null): number =>
  code ?? (signal === null ? 0 : signalStatus(signal))

// The signals that end `run`. `runMain` turns SIGINT and SIGTERM into an
// interruption, but leaves SIGHUP and SIGQUIT to their default action, which
// ends this process at once: no finalizer runs, the lock stays behind and the
// command runs on.
const RUN_SIGNALS = ["SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM"] as const

// Every one of RUN_SIGNALS that arrives while the scope is open, in order of
// arrival. One listener for the whole of `run` (wait, command, release)
// keeps them from their default action throughout.
const trapSignals = Effect.gen(function*() {
  const signals = yield* Queue.unbounded<NodeJS.Signals>()
  const onSignal = (signal: NodeJS.Signals) => void signals.unsafeOffer(signal)
  yield* Effect.acquireRelease(
    Effect.sync(() => RUN_SIGNALS.forEach((signal) => process.on(signal, onSignal))),
    () => Effect.sync(() => RUN_SIGNALS.forEach((signal) => process.off(signal, onSignal)))
  )
  return signals
})

// A signal before the command runs ends `run` as it would end a shell: with
// 128 + its number, interrupted, so that a wait for the lock stops and leaves
// nothing behind.
const endBy = (signal: NodeJS.Signals) => Effect.zipRight(exitWith(signalStatus(signal)), Effect.interrupt)

// Whether this process is in its terminal's foreground process group. A
// SIGINT or SIGQUIT typed there (Ctrl-C, Ctrl-\) went to the whole group, the
// command included. Fields 5 (pgrp) and 8 (tpgid, -1 without a terminal) of
// /proc/self/stat, counted after the last ")": the command name may hold
// spaces and ")".
const inForeground = (fs: FileSystem.FileSystem) =>
  Effect.map(fs.readFileString("/proc/self/stat"), (text) => {
    const fields = text.slice(text.lastIndexOf(")") + 1).trim().split(" ")
    return fields[2] !== undefined && fields[2] === fields[5]
  })

// SIGINT and SIGQUIT from the terminal have reached the command already: a
// second one would cut an Effect program's finalizers short. Where the group
// cannot be read, the signal is forwarded: a command that never hears of it
// would keep the wrapper waiting.
const forward = (fs: FileSystem.FileSystem, child: ChildProcess.ChildProcess) => (signal: NodeJS.Signals) =>
  (signal === "SIGINT" || signal === "SIGQUIT"
    ? Effect.orElseSucceed(inForeground(fs), () => false)
    : Effect.succeed(false)).pipe(
      Effect.map((fromTerminal) => {
        if (!fromTerminal) child.kill(signal)
      })
    )

// How long a command told to stop because the lock was lost has before it is
// killed: past that, it would run on unguarded.
const LOST_GRACE = Duration.seconds(10)

// The lock was lost while the command ran (its owner entry removed, its
// database session ended): the command is told to stop, since another holder
// may be running already, and killed if it has not within LOST_GRACE.
const stopOnLoss = (child: ChildProcess.ChildProcess, loss: Ref.Ref<boolean>) => (error: PidLock.LockCompromised) =>
  Effect.gen(function*() {
    yield* Ref.set(loss, true)
    yield* Console.error(`effect-pidlock: ${error.message}; stopping the command (SIGTERM)`)
    yield* Effect.sync(() => child.kill("SIGTERM"))
    yield* Effect.sleep(LOST_GRACE)
    yield* Console.error(`effect-pidlock: the command still runs ${Duration.format(LOST_GRACE)} later: SIGKILL`)
    yield* Effect.sync(() => child.kill("SIGKILL"))
  })

// Runs the command with `options`, forwards it the signals that arrive
// meanwhile, in order, stops it if the lock is lost, and sets its status as
// our exit code (EX_IOERR after a loss, whatever its status).
// Uninterruptible: `runMain` interrupts the program on SIGINT and SIGTERM,
// and the lock must stay held until the command has exited.
const runChild = (
  command: readonly [string, ...Array<string>],
  options: ChildProcess.SpawnOptions,
  signals: Queue.Dequeue<NodeJS.Signals>,
  lock: PidLock.PidLock<unknown>
) =>
  Effect.uninterruptible(Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const exited = yield* Deferred.make<number>()
    const loss = yield* Ref.make(false)
    // The listeners are added in the same step as the spawn: its events must
    // not be missed. A command that cannot be started at all: 127 and 126, as
    // a shell says.
    const child = yield* Effect.sync(() => {
      const child = ChildProcess.spawn(command[0], command.slice(1), options)
      child.once("error", (error: NodeJS.ErrnoException) =>
        Deferred.unsafeDone(
          exited,
          Effect.as(
            Console.error(`effect-pidlock: cannot run ${command[0]}: ${error.message}`),
            error.code === "ENOENT" ? 127 : 126
          )
        ))
      child.once("exit", (code, signal) => Deferred.unsafeDone(exited, Effect.succeed(statusOf(code, signal))))
      return child
    })
    // In the scope, not children of this fiber: `runMain`'s interruption on
    // SIGINT or SIGTERM reaches a fiber's children at once, and the very
    // signal must still be forwarded, and a loss still acted upon.
    yield* Effect.forkScoped(
      Effect.interruptible(Effect.forever(Effect.flatMap(Queue.take(signals), forward(fs, child))))
    )
    yield* Effect.forkScoped(Effect.interruptible(Effect.catchAll(lock.lost, stopOnLoss(child, loss))))
    const status = yield* Deferred.await(exited)
    if (yield* Ref.get(loss)) {
      // Given back at once, so that the scope's release does not warn of
      // the loss a second time.
      yield* Effect.ignore(lock.release)
      return yield* exitWith(EX_IOERR)
    }
    yield* exitWith(status)
  }))

const runCommand = Command.make("run", {
  name: nameOption,
  dir: dirOption,
  postgres: postgresOption,
  wait: waitOption,
  conflictExitCode: conflictExitCodeOption,
  command: Args.text({ name: "command" }).pipe(
    Args.withDescription("The command and its arguments, after --."),
    Args.atLeast(1)
  )
}, ({ command, conflictExitCode, dir, name, postgres, wait }) =>
  Effect.scoped(Effect.gen(function*() {
    const signals = yield* trapSignals
    const { backend, lock } = yield* Effect.gen(function*() {
      const backend = yield* makeBackend({ name, dir, postgres })
      return { backend, lock: yield* backend.acquire({ name, wait: Option.getOrUndefined(wait) }) }
    }).pipe(Effect.raceFirst(Effect.flatMap(Queue.take(signals), endBy)))
    // The file lock's holder socket, named in the owner record, is the
    // command's fd 3, as flock's command inherits its lock: a contender that
    // finds this process dead still finds the lock held while the command
    // lives. A lock over PostgreSQL is this process's database session, which
    // no child can inherit.
    const posix = yield* Posix.Posix
    const socket = backend._tag === "File" && lock.owner.socket !== undefined
      ? (yield* posix.listen(Path.dirname(lock.location))).descriptor
      : Option.none<number>()
    const stdio: ChildProcess.StdioOptions = Option.match(socket, {
      onNone: () => "inherit",
      onSome: (fd) => ["inherit", "inherit", "inherit", fd]
    })
    // The generation, for the command to stamp its writes with: a store that
    // has seen a higher one refuses them (a fencing token).
    const env = { ...process.env, PIDLOCK_GENERATION: String(lock.generation) }
    yield* runChild(command, { stdio, env }, signals, lock)
  })).pipe(
    Effect.catchTag("LockHeld", (error) => exitWithMessage(error.message, conflictExitCode))
  )).pipe(
    Command.withDescription(
      `Run a command while holding the lock, like flock -n; exit with its exit code (128 + the signal number if a ` +
        `signal killed it). The command gets the lock's generation, which grows with every acquisition, as ` +
        `$PIDLOCK_GENERATION. On a file lock, it gets the lock's socket as file descriptor 3: should this wrapper ` +
        `be killed, the lock stays held as long as the command (or whatever inherited that descriptor from it) ` +
        `runs. Over PostgreSQL, the lock is this wrapper's database session: should the wrapper be killed, the lock ` +
        `is free at once while the command may run on (the next holder's higher generation fences it). ` +
        `SIGHUP, SIGINT, SIGQUIT and SIGTERM are forwarded to it, except a SIGINT or SIGQUIT from the terminal, ` +
        `which reached it already; while waiting for the lock, they end the wait with 128 + the signal number. ` +
        `If the lock is lost while the command runs (its owner entry removed, its database session ended), the ` +
        `command gets SIGTERM (SIGKILL ${Duration.format(LOST_GRACE)} later) and run exits ${EX_IOERR}. ` +
        `When the lock is held, say who holds it and exit with the conflict exit code (${EX_TEMPFAIL}). ` +
        `${ERROR_EXIT_CODES} A command that cannot be started: 127 or 126.`
    )
  )

// -----------------------------------------------------------------------------
// status
// -----------------------------------------------------------------------------

const STATUS_FREE = 0
const STATUS_HELD = 1
const STATUS_STALE = 2

// The message of the error that acquiring would give: says who holds the lock
// in the words the library uses everywhere.
const describeStatus = (status: PidLock.Status): string =>
  status.verdict._tag === "Stale"
    ? new PidLock.StaleLock({ path: status.location, holder: status.holder, reason: status.verdict.reason }).message
    : new PidLock.LockHeld(status).message

const statusCommand = Command.make("status", {
  name: nameOption,
  dir: dirOption,
  postgres: postgresOption,
  json: Options.boolean("json").pipe(
    Options.withDescription("Print a JSON object: name, state, location, holder, verdict.")
  )
}, ({ dir, json, name, postgres }) =>
  Effect.scoped(Effect.gen(function*() {
    const backend = yield* makeBackend({ name, dir, postgres })
    const found = yield* backend.inspect(name)
    const state = Option.match(found, {
      onNone: () => "free" as const,
      onSome: (status) => status.verdict._tag === "Stale" ? "stale" as const : "held" as const
    })
    if (json) {
      const status = Option.getOrNull(found)
      // JSON.stringify escapes C0 controls but not C1 or bidi ones, which
      // a planted record may hold: those become \u escapes as well, and
      // JSON.parse still gives the record's very strings.
      yield* Console.log(escapeText(JSON.stringify({
        name,
        state,
        location: status?.location ?? null,
        holder: status?.holder ?? null,
        verdict: status?.verdict ?? null
      })))
    } else {
      yield* Console.log(Option.match(found, { onNone: () => `${name} is free`, onSome: describeStatus }))
    }
    yield* exitWith({ free: STATUS_FREE, held: STATUS_HELD, stale: STATUS_STALE }[state])
  }))).pipe(
    Command.withDescription(
      `Say who holds the lock and whether they are alive, without touching it. Exit ${STATUS_FREE} when free, ` +
        `${STATUS_HELD} when held, ${STATUS_STALE} when the holder is gone (never over PostgreSQL: the server frees ` +
        `a lock when its session ends). ${ERROR_EXIT_CODES}`
    )
  )

// -----------------------------------------------------------------------------
// break
// -----------------------------------------------------------------------------

const BREAK_REFUSED = 1

const breakCommand = Command.make("break", {
  name: nameOption,
  dir: dirOption,
  postgres: postgresOption,
  force: Options.boolean("force").pipe(
    Options.withDescription(
      "Also break the lock of a holder on another host or in another pid namespace, or over PostgreSQL."
    )
  )
}, ({ dir, force, name, postgres }) =>
  Effect.scoped(Effect.gen(function*() {
    const backend = yield* makeBackend({ name, dir, postgres })
    const found = yield* backend.inspect(name)
    if (Option.isNone(found)) return yield* Console.log(`${name} is free: nothing to break`)
    const status = found.value
    const { verdict } = status
    if (backend._tag === "Postgres") {
      // The server holds no lock of a session that ended: its holder's
      // session is there, whether or not that holder still works (a host
      // that vanished leaves it open until TCP gives up on it).
      if (!force) {
        return yield* exitWithMessage(
          `refusing to break: ${describeStatus(status)}; its database session is alive: pass --force to end it`,
          BREAK_REFUSED
        )
      }
      // Only the session of the holder judged above is ended: one that
      // moved in since has another token, left alone.
      const ended = yield* backend.breakLock(status)
      return yield* Console.log(
        ended
          ? `broke ${status.location}: ended its holder's database session (${describeStatus(status)})`
          : `${status.location}: its holder's session had already ended`
      )
    }
    if (verdict._tag === "Alive") {
      return yield* exitWithMessage(`refusing to break a live holder's lock: ${describeStatus(status)}`, BREAK_REFUSED)
    }
    if (verdict._tag === "Foreign" && !force) {
      return yield* exitWithMessage(
        `refusing to break: ${describeStatus(status)}; pass --force if you know that holder is gone`,
        BREAK_REFUSED
      )
    }
    // The same compare-and-swap as a takeover: only the entry of the holder
    // judged above is removed. If it is gone, someone broke the lock first,
    // and a holder who moved in since has another entry name, left alone.
    const entry = Path.join(status.location, `${status.holder.pid}.${status.holder.token}`)
    const removed = yield* backend.breakLock(status)
    yield* Console.log(
      removed
        ? `broke ${status.location}: removed ${entry} (${describeStatus(status)})`
        : `${status.location}: ${entry} was already removed by someone else`
    )
  }))).pipe(
    Command.withDescription(
      `Remove the lock of a holder that is gone. Refuses (exit ${BREAK_REFUSED}) a live holder on this machine, and ` +
        `a holder on another host or in another pid namespace unless --force. Over PostgreSQL, where every holder's ` +
        `session is alive, --force ends that session (pg_terminate_backend), which frees the lock; its wrapper then ` +
        `stops its command. ${ERROR_EXIT_CODES}`
    )
  )

// -----------------------------------------------------------------------------
// main
// -----------------------------------------------------------------------------

const cli = Command.run(
  Command.make("effect-pidlock").pipe(
    Command.withDescription("A single-instance lock for shell commands and scripts."),
    Command.withSubcommands([runCommand, statusCommand, breakCommand])
  ),
  { name: "effect-pidlock", version: "0.1.0" }
)

const exitCodeOf = (error: { readonly _tag: string }): number => {
  switch (error._tag) {
    case "InvalidOptions":
    case "ConflictingOptions":
      return EX_USAGE
    case "InvalidDatabaseUrl":
      return EX_CONFIG
    case "PostgresUnavailable":
      return EX_UNAVAILABLE
    case "CorruptLock":
      return EX_DATAERR
    case "PermissionDenied":
    case "PostgresRefused":
      return EX_NOPERM
    default:
      return EX_IOERR
  }
}

// Every typed error becomes a message on stderr and an exit code, never a
// stack trace; @effect/cli has already printed its own validation errors.
// Logs (a takeover's, a defect's) go to stderr, as flock's messages do: the
// command's stdout is its own.
const program = cli(process.argv).pipe(
  Effect.provide(Layer.mergeAll(
    NodePath.layer,
    NodeTerminal.layer,
    ProcessInfo.layer.pipe(Layer.provideMerge(NodeFileSystem.layer))
  )),
  Effect.catchAll((error) =>
    ValidationError.isValidationError(error) ? exitWith(EX_USAGE) : exitWithMessage(error.message, exitCodeOf(error))
  ),
  Effect.tapErrorCause((cause) => Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError(cause)),
  Effect.provide(Logger.replace(Logger.defaultLogger, Logger.prettyLogger({ stderr: true })))
)

// `runMain` interrupts the program on SIGINT and SIGTERM. Ended by one before
// a command has a status of its own (e.g. while waiting for the lock), the
// program exits as a shell reports a signal; a child's status overrides it.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => void (process.exitCode ??= signalStatus(signal)))
}

// The default teardown exits 0 on interruption: here the status set above or
// by a command wins, and a defect exits with EX_SOFTWARE.
const teardown: Teardown = (exit, onExit) =>
  onExit(Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause) ? EX_SOFTWARE : Number(process.exitCode ?? 0))

NodeRuntime.runMain(program, { teardown, disableErrorReporting: true, disablePrettyLogger: true })
