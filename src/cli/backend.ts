/**
 * The lock a command line names: a file lock, or one over PostgreSQL, behind
 * the same three operations. The PostgreSQL side (`./postgres.ts`, with
 * `@effect/sql-pg` and `pg`) is imported only when it is used: a chunk of its
 * own in the bundle, never loaded by a file lock's start.
 *
 * @internal
 */
import type { PlatformError } from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import { lockLocation } from "../internal/location.js"
import { validateName } from "../internal/options.js"
import * as PidLock from "../PidLock.js"
import type * as Posix from "../Posix.js"
import type * as ProcessInfo from "../ProcessInfo.js"
import type { LockArgs } from "./args.js"

/** @internal */
export class ConflictingOptions extends Data.TaggedError("ConflictingOptions")<{ readonly message: string }> {}

/** A database url that cannot be used; its text is never shown, only where it came from. @internal */
export class InvalidDatabaseUrl extends Data.TaggedError("InvalidDatabaseUrl")<{
  readonly source: string
  readonly reason: string
}> {
  get message(): string {
    return `${this.source} ${this.reason}`
  }
}

/** PostgreSQL cannot be used: not installed, not reached, or failing. @internal */
export class PostgresUnavailable extends Data.TaggedError("PostgresUnavailable")<{ readonly message: string }> {}

/** The server refused the credentials or a privilege (SQLSTATE class 28, or 42501). @internal */
export class PostgresRefused extends Data.TaggedError("PostgresRefused")<{ readonly message: string }> {}

/** @internal */
export type BackendError =
  | PidLock.PidLockError
  | PlatformError
  | ConflictingOptions
  | InvalidDatabaseUrl
  | PostgresUnavailable
  | PostgresRefused

/** A lock as `run` holds it: a file lock's comes with the messages sent to its holder. @internal */
export type HeldLock = PidLock.PidLock<unknown> & { readonly messages?: Stream.Stream<PidLock.Message> }

/** The same operations on a file lock or over PostgreSQL. @internal */
export interface Backend {
  readonly _tag: "File" | "Postgres"
  readonly acquire: (options: {
    readonly name: string
    readonly wait: Duration.Duration | undefined
  }) => Effect.Effect<HeldLock, BackendError, Scope.Scope>
  readonly inspect: (name: string) => Effect.Effect<Option.Option<PidLock.Status>, BackendError>
  readonly breakLock: (status: PidLock.Status) => Effect.Effect<boolean, BackendError>
  /** Where the lock lives, held or not. */
  readonly location: (name: string) => Effect.Effect<string, BackendError>
}

/** @internal */
export type Services = FileSystem.FileSystem | ProcessInfo.ProcessInfo | Posix.Posix

const fileBackend = (dir: string | undefined) =>
  Effect.map(
    Effect.context<Services>(),
    (context): Backend => ({
      _tag: "File",
      acquire: ({ name, wait }) => Effect.provide(PidLock.acquire({ name, dir, wait }), context),
      inspect: (name) => Effect.provide(PidLock.inspect({ name, dir }), context),
      breakLock: (status) => Effect.provide(PidLock.breakLock(status), context),
      location: (name) => Effect.provide(lockLocation({ name, dir }), context)
    })
  )

/** @internal */
export interface DatabaseUrl {
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

/** `text` with every secret replaced by `***`. @internal */
export const redact = (text: string, secrets: ReadonlyArray<string>) =>
  secrets.reduce((redacted, secret) => redacted.split(secret).join("***"), text)

/**
 * What went wrong, in one line. Node's connect to a name with several
 * addresses fails with an AggregateError without a message: its first error
 * says it. A module not found adds its require stack on further lines.
 *
 * @internal
 */
export const describeCause = (cause: unknown): string => {
  if (cause instanceof AggregateError && cause.errors.length > 0) return describeCause(cause.errors[0])
  if (cause instanceof Error) {
    const code = (cause as { readonly code?: unknown }).code
    return cause.message !== "" ? cause.message.split("\n")[0]! : typeof code === "string" ? code : cause.name
  }
  return String(cause)
}

// Imported here, not at the top: `pg` and the SQL modules would slow down
// every start of the file lock. `pg` is the one part not in the bundle: it
// comes from beside effect-pidlock, as @effect/sql-pg brings it.
const loadPostgres = Effect.tryPromise({
  try: () => import("./postgres.js"),
  catch: (cause) =>
    new PostgresUnavailable({
      message: `cannot load PostgreSQL support (${describeCause(cause)}): ` +
        "install @effect/sql-pg (which brings pg) beside effect-pidlock"
    })
})

const DATABASE_URL_VARIABLE = "PIDLOCK_DATABASE_URL"

/**
 * The backend the options choose: --postgres; else a given --dir, the file
 * lock; else $PIDLOCK_DATABASE_URL when set; else the file lock in its
 * default directory. The name is checked first, so that a bad one is told
 * before any server is reached.
 *
 * @internal
 */
export const makeBackend = (options: LockArgs): Effect.Effect<Backend, BackendError, Services | Scope.Scope> =>
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
    const database = yield* parseDatabaseUrl(url.value.url, url.value.source)
    const { postgresBackend } = yield* loadPostgres
    return yield* postgresBackend(database)
  })
