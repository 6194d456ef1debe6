// A lock client driven by JSON lines on stdin, for the process-level figures
// (takeover, hand-off). Usage: node agent.mjs <effect-pidlock|effect-pidlock-portable|proper-lockfile> <dir> <name>
//                          or: node agent.mjs pglock <database url> <name>
// Commands: {"op":"acquire","wait":true|false,"stale":ms,"name":…} → {"ok":true|false,"t":…,"tag":…,"detail":…}
//           (`name`, when given, instead of the one on the command line: one
//           process taking several locks in turn)
//           {"op":"release"} → {"released":true,"t0":…,"t1":…} (just before and after the release)
// Before it says it is ready, it takes and releases another lock once, so that
// the lock's code has run once, as in a process that has been up for a while.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as PidLock from "effect-pidlock/PidLock"
import * as ProcessInfo from "effect-pidlock/ProcessInfo"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Scope from "effect/Scope"
import * as Path from "node:path"
import properLockfile from "proper-lockfile"
import { now, onLines, send } from "./common.mjs"

// A directory for the file locks, a database url for pglock.
const [impl, dir, name] = process.argv.slice(2)

// proper-lockfile waits with the same pace as effect-pidlock's poll: 10 ms,
// doubling up to 1 s.
const PROPER_RETRIES = { retries: 100_000, minTimeout: 10, maxTimeout: 1000, factor: 2 }

// `lockAcquire(options)`: PidLock.acquire or PgLock.acquire, run on `layer`.
const effectClient = (layer, lockAcquire) => {
  const runtime = ManagedRuntime.make(layer)
  let scope
  return {
    acquire: async (name, { wait }) => {
      const next = await runtime.runPromise(Scope.make())
      const exit = await runtime.runPromiseExit(
        Scope.extend(lockAcquire({ name, ...(wait ? { wait: "60 seconds" } : {}) }), next)
      )
      if (Exit.isSuccess(exit)) {
        scope = next
        return { ok: true }
      }
      await runtime.runPromise(Scope.close(next, Exit.void))
      const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
      // The message too, for the driver's error: a tag alone does not say which SqlError.
      return {
        ok: false,
        tag: failure?._tag ?? String(exit.cause),
        detail: failure === undefined ? undefined : describe(failure)
      }
    },
    release: () => runtime.runPromise(Scope.close(scope, Exit.void))
  }
}

// An error's message and its cause's (a SqlError wraps the driver's).
const describe = (error) => {
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : ""
  return `${error.message}${cause}`
}

const properClient = () => {
  let release
  return {
    acquire: async (name, { stale, wait }) => {
      try {
        release = await properLockfile.lock(Path.join(dir, name), {
          realpath: false,
          ...(stale ? { stale } : {}),
          ...(wait ? { retries: PROPER_RETRIES } : {})
        })
        return { ok: true }
      } catch (error) {
        return { ok: false, tag: error.code }
      }
    },
    release: () => release()
  }
}

// effect-pidlock-portable: the holder judged with ps and kill(pid, 0), as on macOS and FreeBSD.
const fileLockClient = (processInfo) =>
  effectClient(
    processInfo.pipe(Layer.provideMerge(NodeFileSystem.layer)),
    (options) => PidLock.acquire({ ...options, dir })
  )

// Loaded for pglock only: the file-lock agents load what they did before.
const pgLockClient = async () => {
  const [PgClient, Redacted, PgLock] = await Promise.all([
    import("@effect/sql-pg/PgClient"),
    import("effect/Redacted"),
    import("effect-pidlock/PgLock")
  ])
  return effectClient(
    Layer.mergeAll(
      ProcessInfo.layer.pipe(Layer.provide(NodeFileSystem.layer)),
      PgClient.layer({ url: Redacted.make(dir) })
    ),
    PgLock.acquire
  )
}

const client = impl === "effect-pidlock"
  ? fileLockClient(ProcessInfo.layer)
  : impl === "effect-pidlock-portable"
  ? fileLockClient(ProcessInfo.layerPortableNode)
  : impl === "pglock"
  ? await pgLockClient()
  : properClient()
const warmUp = await client.acquire(`${name}-warm-up-${process.pid}`, {})
if (!warmUp.ok) throw new Error(`warm-up: ${warmUp.tag}`)
await client.release()
if (impl === "pglock") {
  // Its waiting acquisition sends other statements (the lock_timeout, the
  // blocking lock): they run once too, on a free lock.
  const waitingWarmUp = await client.acquire(`${name}-warm-up-${process.pid}`, { wait: true })
  if (!waitingWarmUp.ok) throw new Error(`warm-up: ${waitingWarmUp.tag}`)
  await client.release()
}
onLines(async (line) => {
  const command = JSON.parse(line)
  if (command.op === "acquire") {
    const result = await client.acquire(command.name ?? name, command)
    send({ ...result, t: now() })
  } else if (command.op === "release") {
    const t0 = now()
    await client.release()
    send({ released: true, t0, t1: now() })
  }
})
send({ ready: true })
