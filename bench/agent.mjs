// A lock client driven by JSON lines on stdin, for the process-level figures
// (takeover, hand-off). Usage: node agent.mjs <effect-pidlock|proper-lockfile> <dir> <name>
// Commands: {"op":"acquire","wait":true|false,"stale":ms} → {"ok":true|false,"t":…,"tag":…}
//           {"op":"release"} → {"released":true,"t0":…,"t1":…} (just before and after the release)
// Before it says it is ready, it takes and releases another lock once, so that
// the lock's code has run once, as in a process that has been up for a while.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Scope from "effect/Scope"
import * as PidLock from "effect-pidlock/PidLock"
import * as ProcessInfo from "effect-pidlock/ProcessInfo"
import properLockfile from "proper-lockfile"
import * as Path from "node:path"
import { now, onLines, send } from "./common.mjs"

const [impl, dir, name] = process.argv.slice(2)

// proper-lockfile waits with the same pace as effect-pidlock's poll: 10 ms,
// doubling up to 1 s.
const PROPER_RETRIES = { retries: 100_000, minTimeout: 10, maxTimeout: 1000, factor: 2 }

const effectClient = () => {
  const runtime = ManagedRuntime.make(ProcessInfo.layer.pipe(Layer.provideMerge(NodeFileSystem.layer)))
  let scope
  return {
    acquire: async (name, { wait }) => {
      const next = await runtime.runPromise(Scope.make())
      const exit = await runtime.runPromiseExit(
        Scope.extend(PidLock.acquire({ name, dir, ...(wait ? { wait: "60 seconds" } : {}) }), next)
      )
      if (Exit.isSuccess(exit)) {
        scope = next
        return { ok: true }
      }
      await runtime.runPromise(Scope.close(next, Exit.void))
      const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
      return { ok: false, tag: failure?._tag ?? String(exit.cause) }
    },
    release: () => runtime.runPromise(Scope.close(scope, Exit.void))
  }
}

const properClient = () => {
  let release
  return {
    acquire: async (name, { wait, stale }) => {
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

const client = impl === "effect-pidlock" ? effectClient() : properClient()
const warmUp = await client.acquire(`${name}-warm-up-${process.pid}`, {})
if (!warmUp.ok) throw new Error(`warm-up: ${warmUp.tag}`)
await client.release()
onLines(async (line) => {
  const command = JSON.parse(line)
  if (command.op === "acquire") {
    const result = await client.acquire(name, command)
    send({ ...result, t: now() })
  } else if (command.op === "release") {
    const t0 = now()
    await client.release()
    send({ released: true, t0, t1: now() })
  }
})
send({ ready: true })
