import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import type * as Scope from "effect/Scope"
import * as Path from "node:path"
import type * as PidLock from "../../src/PidLock.js"
import type * as Posix from "../../src/Posix.js"
import type * as ProcessInfo from "../../src/ProcessInfo.js"

/** The lock name the suites use. */
export const NAME = "app"

// Runs `body` with a fresh fixture of `environment`, its layer provided, and
// the log lines written during the test collected.
export const withFixture = <A, E>(
  environment: Environment,
  body: (
    fixture: Fixture & { readonly fs: FileSystem.FileSystem; readonly home: string; readonly logs: Array<string> }
  ) => Effect.Effect<A, E, Services | Scope.Scope>
) =>
  Effect.gen(function*() {
    const fixture = yield* environment.fixture
    const logs: Array<string> = []
    const logger = Logger.make(({ message }) =>
      void logs.push(String(Array.isArray(message) ? message.join(" ") : message))
    )
    return yield* Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      return yield* body({ ...fixture, fs, home: Path.join(fixture.dir, NAME), logs })
    }).pipe(
      Effect.provide(Layer.merge(fixture.layer, Logger.replace(Logger.defaultLogger, logger)))
    )
  })

/** What the lock needs. */
export type Services = FileSystem.FileSystem | ProcessInfo.ProcessInfo | Posix.Posix

/** What one test gets: a directory, this process, and other processes in known states. */
export interface Fixture {
  readonly dir: string
  /** The file system, this process's `ProcessInfo` and `Posix`. */
  readonly layer: Layer.Layer<Services>
  /** Another process, alive until the test's scope closes. */
  readonly live: Effect.Effect<ProcessInfo.Identity, never, Scope.Scope>
  /** A process that has exited and was reaped. */
  readonly exited: Effect.Effect<ProcessInfo.Identity, never, Scope.Scope>
  /** A process that has exited and was not reaped (state `Z`). */
  readonly zombie: Effect.Effect<ProcessInfo.Identity, never, Scope.Scope>
  /** End a process started by `live` at once, as SIGKILL does. */
  readonly kill: (pid: number) => Effect.Effect<void>
  /** Make a FIFO at `path`. */
  readonly makeFifo: (path: string) => Effect.Effect<void>
  /** Give `path` to another user (uid 65534). */
  readonly giveAway: (path: string) => Effect.Effect<void>
  /** Only where `/proc` can be made to misbehave on demand: the next read of `/proc/<pid>/stat` fails with `errno`. */
  readonly procFault?: ((pid: number, errno: "EPERM" | "ESRCH") => Effect.Effect<void>) | undefined
}

/** A file system with its processes, on which the shared suite runs. */
export interface Environment {
  readonly name: string
  /** What names a boot: Linux's random boot id (the default), or the boot time, as on macOS and the BSDs. */
  readonly bootsNamedBy?: "boot-id" | "boot-time"
  readonly fixture: Effect.Effect<Fixture, never, Scope.Scope>
}

/** Field 3 (state) and field 22 (start time) of `/proc/<pid>/stat`. */
export const readProcStat = (fs: FileSystem.FileSystem, pid: number) =>
  Effect.map(fs.readFileString(`/proc/${pid}/stat`), (text) => {
    const fields = text.slice(text.lastIndexOf(")") + 1).trim().split(" ")
    return { state: fields[0]!, startTime: fields[19]! }
  })

let tokens = 0

/** An owner record as the on-disk contract describes it. */
export const recordOf = (identity: ProcessInfo.Identity, token?: string): PidLock.OwnerRecord => ({
  v: 1,
  pid: identity.pid,
  startTime: identity.startTime,
  ...(identity.startClock === undefined ? {} : { startClock: identity.startClock }),
  bootId: identity.bootId,
  pidNamespace: identity.pidNamespace,
  hostname: identity.hostname,
  ...(identity.machineId === undefined ? {} : { machineId: identity.machineId }),
  cmdline: identity.cmdline,
  acquiredAt: "2026-01-01T00:00:00.000Z",
  token: token ?? (++tokens).toString(16).padStart(16, "0")
})

export const entryNameOf = (record: { readonly pid: number; readonly token: string }) => `${record.pid}.${record.token}`

/** Puts `record` into the lock directory, as its holder would have. Returns the entry's path. */
export const plantHolder = (
  fs: FileSystem.FileSystem,
  home: string,
  record: PidLock.OwnerRecord,
  text: string = JSON.stringify(record)
) =>
  Effect.gen(function*() {
    const lock = Path.join(home, "lock")
    yield* fs.makeDirectory(lock, { recursive: true })
    const entry = Path.join(lock, entryNameOf(record))
    yield* fs.symlink(text, entry)
    return entry
  })

/** Puts a staging directory with `record` into the home, as a contender killed before its rename would have. */
export const plantStaging = (fs: FileSystem.FileSystem, home: string, record: PidLock.OwnerRecord) =>
  Effect.gen(function*() {
    const staging = Path.join(home, entryNameOf(record))
    yield* fs.makeDirectory(staging, { recursive: true })
    yield* fs.symlink(JSON.stringify(record), Path.join(staging, entryNameOf(record)))
    return staging
  })

/**
 * The snapshot lines of the sockets of process `pid`: acquire makes its
 * process's socket in a lock home on its first try there (before its record
 * can name it), and it stays while the process lives, also after a refusal.
 */
export const isSocketOf = (pid: number) => (line: string): boolean =>
  new RegExp(`/${pid}\\.[0-9a-f]+\\.sock `).test(line)

/** Every path below `root`, sorted, with symlink targets: a picture of the tree to compare before and after. */
export const snapshot = (fs: FileSystem.FileSystem, root: string): Effect.Effect<ReadonlyArray<string>> =>
  Effect.gen(function*() {
    const out: Array<string> = []
    const walk = (path: string): Effect.Effect<void> =>
      Effect.gen(function*() {
        const target = yield* Effect.option(fs.readLink(path))
        if (target._tag === "Some") return void out.push(`${path} -> ${target.value}`)
        const info = yield* Effect.option(fs.stat(path))
        if (info._tag === "None") return
        out.push(`${path} ${info.value.type}`)
        if (info.value.type !== "Directory") return
        for (const name of (yield* Effect.orDie(fs.readDirectory(path))).sort()) yield* walk(Path.join(path, name))
      })
    yield* walk(root)
    return out
  })
