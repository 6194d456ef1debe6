// For test files: the run's PostgreSQL server (started by ./postgresSetup.ts),
// and a database of one's own on it.
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Crypto from "node:crypto"
import { inject } from "vitest"
import { createDatabase } from "./postgresServer.js"

/** The url of the run's server (its `postgres` database, as the superuser). */
export const postgresUrl = (): string => inject("postgresUrl")

/**
 * A new empty database, so that test files (which run in parallel) do not see
 * each other's tables; its url. Named after this process and a random part:
 * test files in threads share the pid.
 */
export const freshDatabase: Effect.Effect<string> = Effect.suspend(() => {
  const name = `test_${process.pid}_${Crypto.randomBytes(6).toString("hex")}`
  return Effect.promise(() => createDatabase(postgresUrl(), name))
})

/** `PgClient` (and `SqlClient`) connected to the database at `url`. */
export const layerPgClient = (url: string) => PgClient.layer({ url: Redacted.make(url) })
