/**
 * The lock over PostgreSQL, for the CLI: loaded only when a command line asks
 * for PostgreSQL (see `./backend.ts`).
 *
 * @internal
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { escapeText } from "../internal/text.js"
import * as PgLock from "../PgLock.js"
import * as ProcessInfo from "../ProcessInfo.js"
import {
  type Backend,
  type DatabaseUrl,
  describeCause,
  PostgresRefused,
  PostgresUnavailable,
  redact
} from "./backend.js"

const isSqlError = (error: unknown): error is SqlError =>
  typeof error === "object" && error !== null && (error as { readonly _tag?: unknown })._tag === "SqlError"

const sqlStateOf = (cause: unknown): string | undefined => {
  const code = typeof cause === "object" && cause !== null ? (cause as { readonly code?: unknown }).code : undefined
  return typeof code === "string" ? code : undefined
}

// A SqlError, in words that name the server and never the url.
const postgresFailure = (database: DatabaseUrl) => (error: { readonly message: string; readonly cause?: unknown }) => {
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

/**
 * A client of its own for the life of the scope: its pool ends after the
 * lock's release, which is registered later in the same scope.
 *
 * @internal
 */
export const postgresBackend = (database: DatabaseUrl) =>
  Effect.gen(function*() {
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
      breakLock: (status) => withClient(PgLock.breakLock(status)),
      // As PgLock names its locks: the server and database, then the name.
      location: (name) => Effect.succeed(`${database.server}#${name}`)
    }
    return backend
  })
