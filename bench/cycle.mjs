// Uncontended acquire + release cycles, in one process, the implementations
// interleaved batch by batch so that they share the machine's noise.
// Usage: node cycle.mjs <dir> <rounds> <batch> <impl,impl,…>
// Prints one JSON line: per implementation, the per-cycle times in µs, and
// the CPU time per cycle in µs.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as FileSystem from "@effect/platform/FileSystem"
import * as PidLock from "effect-pidlock/PidLock"
import * as ProcessInfo from "effect-pidlock/ProcessInfo"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import lockfile from "lockfile"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Fsp from "node:fs/promises"
import * as Path from "node:path"
import pidlock from "pidlock"
import properLockfile from "proper-lockfile"
import { freshDir, send } from "./common.mjs"

const [dir, rounds, batch, implList] = [
  process.argv[2],
  Number(process.argv[3]),
  Number(process.argv[4]),
  process.argv[5]
]
const impls = implList.split(",")
freshDir(dir)

const runtime = ManagedRuntime.make(ProcessInfo.layer.pipe(Layer.provideMerge(NodeFileSystem.layer)))
const self = (await runtime.runPromise(ProcessInfo.ProcessInfo)).self

// effect-pidlock: `Effect.scoped(PidLock.acquire(…))`, the scope's close releases.
const effectBatch = (options) => (samples) =>
  runtime.runPromise(Effect.gen(function*() {
    const cycle = Effect.scoped(PidLock.acquire(options))
    for (let i = 0; i < batch; i++) {
      const start = performance.now()
      yield* cycle
      samples.push((performance.now() - start) * 1000)
    }
  }))

// The floor: raw `node:fs/promises` doing the system calls of one
// effect-pidlock cycle, in the same order (see BENCHMARKS.md), with no Effect
// around them. With `watchdog`, also the calls of a watchdog that gets to run
// before the release (in a tight cycle it does not: it is interrupted first).
const floorCycle = async (home, lock, watchdog) => {
  try {
    await Fsp.readlink(home) // the lock home must not be a symlink: EINVAL
    throw new Error("home is a symlink")
  } catch (error) {
    if (error.code !== "EINVAL") throw error
  }
  await Fsp.stat(home) // …and a directory owned by this user
  const token = Crypto.randomBytes(8).toString("hex")
  const name = `${self.pid}.${token}`
  const text = JSON.stringify({ v: 1, ...self, acquiredAt: new Date().toISOString(), token })
  const staging = Path.join(home, name)
  await Fsp.mkdir(staging)
  await Fsp.symlink(text, Path.join(staging, name))
  await Fsp.rename(staging, lock)
  const entry = Path.join(lock, name)
  let watcher
  if (watchdog) {
    await Fsp.stat(lock) // FileSystem.watch stats first
    watcher = Fs.watch(lock)
    if ((await Fsp.readlink(entry)) !== text) throw new Error("compromised")
  }
  if (watcher) watcher.close()
  await Fsp.rm(entry) // FileSystem.remove is fs.rm: lstat + unlink
}
const floorBatch = (watchdog) => {
  const home = Path.join(dir, watchdog ? "floor-watch" : "floor")
  Fs.mkdirSync(home, { recursive: true })
  return async (samples) => {
    for (let i = 0; i < batch; i++) {
      const start = performance.now()
      await floorCycle(home, Path.join(home, "lock"), watchdog)
      samples.push((performance.now() - start) * 1000)
    }
  }
}

// The same system calls through the platform's `FileSystem` service, in a
// plain `Effect.gen`: what Effect and the Node layer add to the floor, before
// any of the lock's own logic.
const effectFloorBatch = () => {
  const home = Path.join(dir, "floor-effect")
  Fs.mkdirSync(home, { recursive: true })
  const lock = Path.join(home, "lock")
  const cycle = Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    yield* Effect.flip(fs.readLink(home))
    yield* fs.stat(home)
    const token = Crypto.randomBytes(8).toString("hex")
    const name = `${self.pid}.${token}`
    const text = JSON.stringify({ v: 1, ...self, acquiredAt: new Date().toISOString(), token })
    const staging = Path.join(home, name)
    yield* fs.makeDirectory(staging)
    yield* fs.symlink(text, Path.join(staging, name))
    yield* fs.rename(staging, lock)
    yield* fs.remove(Path.join(lock, name))
  })
  return (samples) =>
    runtime.runPromise(Effect.gen(function*() {
      for (let i = 0; i < batch; i++) {
        const start = performance.now()
        yield* cycle
        samples.push((performance.now() - start) * 1000)
      }
    }))
}

const properBatch = () => {
  const file = Path.join(dir, "proper-lockfile")
  return async (samples) => {
    for (let i = 0; i < batch; i++) {
      const start = performance.now()
      const release = await properLockfile.lock(file, { realpath: false })
      await release()
      samples.push((performance.now() - start) * 1000)
    }
  }
}

const lockfileBatch = () => {
  const file = Path.join(dir, "lockfile.lock")
  const lock = (path) =>
    new Promise((resolve, reject) => lockfile.lock(path, (error) => error ? reject(error) : resolve()))
  const unlock = (path) =>
    new Promise((resolve, reject) => lockfile.unlock(path, (error) => error ? reject(error) : resolve()))
  return async (samples) => {
    for (let i = 0; i < batch; i++) {
      const start = performance.now()
      await lock(file)
      await unlock(file)
      samples.push((performance.now() - start) * 1000)
    }
  }
}

// The original pidlock is synchronous; each guard adds a process `exit`
// listener that is never removed: the warning about it is silenced, and they
// are removed after each batch.
const pidlockBatch = () => {
  process.setMaxListeners(0)
  return async (samples) => {
    const before = new Set(process.listeners("exit"))
    for (let i = 0; i < batch; i++) {
      const start = performance.now()
      await new Promise((resolve, reject) =>
        pidlock.guard(dir, "pidlock", (error, _data, cleanup) => {
          if (error) return reject(new Error("pidlock refused"))
          cleanup()
          resolve()
        })
      )
      samples.push((performance.now() - start) * 1000)
    }
    for (const listener of process.listeners("exit")) {
      if (!before.has(listener)) process.removeListener("exit", listener)
    }
  }
}

const makers = {
  "effect-pidlock": () => effectBatch({ name: "effect-pidlock", dir }),
  "effect-pidlock-nowatchdog": () => effectBatch({ name: "effect-pidlock-nowatchdog", dir, checkInterval: false }),
  floor: () => floorBatch(false),
  "floor-watch": () => floorBatch(true),
  "floor-effect": effectFloorBatch,
  "proper-lockfile": properBatch,
  lockfile: lockfileBatch,
  pidlock: pidlockBatch
}
const runners = impls.map((impl) => [impl, makers[impl]()])
const samples = Object.fromEntries(impls.map((impl) => [impl, []]))
const cpu = Object.fromEntries(impls.map((impl) => [impl, 0]))

// One warm-up round, not recorded.
for (const [, run] of runners) await run([])
for (let round = 0; round < rounds; round++) {
  // Rotate the order, so that no implementation always follows the same one.
  for (let k = 0; k < runners.length; k++) {
    const [impl, run] = runners[(k + round) % runners.length]
    const before = process.cpuUsage()
    await run(samples[impl])
    const used = process.cpuUsage(before)
    cpu[impl] += used.user + used.system
  }
}
await runtime.dispose()
// CPU µs per cycle, this process's threads included (the libuv pool).
send({ samples, cpu: Object.fromEntries(impls.map((impl) => [impl, cpu[impl] / (rounds * batch)])) })
