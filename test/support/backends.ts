// The two backends behind one face, for the suite that must hold on both:
// the file lock on the real disk, and the PostgreSQL lock on the run's server.
import type { PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as PgClient from "@effect/sql-pg/PgClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Path from "node:path"
import * as PgLock from "../../src/PgLock.js"
import * as PidLock from "../../src/PidLock.js"
import { entryNameOf } from "./environment.js"
import { nodeLayer, tempDir } from "./nodeEnvironment.js"
import { freshDatabase, layerPgClient } from "./postgres.js"

/** The options both backends take. */
export interface CommonOptions {
  readonly name: string
  readonly wait?: Duration.DurationInput | Schedule.Schedule<unknown, PidLock.LockHeld> | undefined
  readonly checkInterval?: Duration.DurationInput | false | undefined
}

export type BackendError = PidLock.PidLockError | PlatformError | SqlError

/** A fresh place for locks (a directory, a database) and the backend's entry points on it. */
export interface Locks {
  readonly acquire: (options: CommonOptions) => Effect.Effect<PidLock.PidLock, BackendError, Scope.Scope>
  readonly withLock: <A, E>(self: Effect.Effect<A, E>, options: CommonOptions) => Effect.Effect<A, E | BackendError>
  readonly layer: (options: CommonOptions) => Layer.Layer<PidLock.PidLock, BackendError>
  readonly inspect: (name: string) => Effect.Effect<Option.Option<PidLock.Status>, BackendError>
  /** Takes the lock `name` from its holder as a fault from outside would: its owner entry removed, its session ended. */
  readonly takeAway: (name: string) => Effect.Effect<void>
  /** Nothing at all was written where the locks live. */
  readonly untouched: Effect.Effect<boolean>
}

export interface Backend {
  readonly name: string
  readonly locks: Effect.Effect<Locks, never, Scope.Scope>
}

export const fileBackend: Backend = {
  name: "file",
  locks: Effect.gen(function*() {
    const dir = yield* tempDir
    const context = yield* Layer.build(nodeLayer).pipe(Effect.orDie)
    const fs = Context.get(context, FileSystem.FileSystem)
    // Bad options stay as bad as they were: only an options object gets the directory.
    const inDir = (options: CommonOptions): PidLock.Options =>
      typeof options === "object" && options !== null ? { ...options, dir } : options
    return {
      acquire: (options) => Effect.provide(PidLock.acquire(inDir(options)), context),
      withLock: (self, options) => Effect.provide(PidLock.withLock(self, inDir(options)), context),
      layer: (options) => Layer.provide(PidLock.layer(inDir(options)), Layer.succeedContext(context)),
      inspect: (name) => Effect.provide(PidLock.inspect({ name, dir }), context),
      takeAway: (name) =>
        PidLock.inspect({ name, dir }).pipe(
          Effect.flatMap(Effect.flatMap((status) => fs.remove(Path.join(status.location, entryNameOf(status.holder))))),
          Effect.provide(context),
          Effect.orDie
        ),
      untouched: Effect.map(Effect.orDie(fs.readDirectory(dir)), (names) => names.length === 0)
    }
  })
}

export const postgresBackend: Backend = {
  name: "postgres",
  locks: Effect.gen(function*() {
    const url = yield* freshDatabase
    const context = yield* Layer.build(Layer.merge(layerPgClient(url), nodeLayer)).pipe(Effect.orDie)
    const sql = Context.get(context, PgClient.PgClient)
    return {
      acquire: (options) => Effect.provide(PgLock.acquire(options), context),
      withLock: (self, options) => Effect.provide(PgLock.withLock(self, options), context),
      layer: (options) => Layer.provide(PgLock.layer(options), Layer.succeedContext(context)),
      inspect: (name) => Effect.provide(PgLock.inspect({ name }), context),
      takeAway: (name) =>
        Effect.orDie(sql`SELECT pg_terminate_backend(backend_pid, 1000) FROM effect_pidlock WHERE name = ${name}`),
      untouched: Effect.map(
        Effect.orDie(sql<{ readonly missing: boolean }>`SELECT to_regclass('effect_pidlock') IS NULL AS missing`),
        ([row]) => row?.missing === true
      )
    }
  })
}

export const backends: ReadonlyArray<Backend> = [fileBackend, postgresBackend]
