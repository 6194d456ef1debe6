// Uncontended acquire + release cycles, in one process, the implementations
// interleaved batch by batch so that they share the machine's noise.
// Usage: node cycle.mjs <dir> <rounds> <batch> <impl,impl,…>
// Prints one JSON line: per implementation, the per-cycle times in µs, and
// the CPU time per cycle in µs.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as PidLock from "effect-pidlock/PidLock"
import * as ProcessInfo from "effect-pidlock/ProcessInfo"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import lockfile from "lockfile"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
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

// effect-pidlock: `Effect.scoped(PidLock.acquire(…))`, the scope's close
// releases. The cycle never awaits `lock.lost`, so no watchdog runs.
const effectBatch = (options) => (samples) =>
  runtime.runPromise(Effect.gen(function*() {
    const cycle = Effect.scoped(PidLock.acquire(options))
    for (let i = 0; i < batch; i++) {
      const start = performance.now()
      yield* cycle
      samples.push((performance.now() - start) * 1000)
    }
  }))

// `PidLock.withLock(body, …)`: withLock races the body against `lock.lost`
// from the body's first yield, so its watchdog starts on every cycle whose
// body yields, and on none whose body ends at once (`Effect.void`).
const withLockBatch = (body, options) => (samples) =>
  runtime.runPromise(Effect.gen(function*() {
    const cycle = PidLock.withLock(body, options)
    for (let i = 0; i < batch; i++) {
      const start = performance.now()
      yield* cycle
      samples.push((performance.now() - start) * 1000)
    }
  }))

// A floor's lock home: made here, before any cycle, as the lock checks its
// home once per process and not per cycle.
const floorHome = (label) => {
  const home = Path.join(dir, label)
  Fs.mkdirSync(home, { recursive: true, mode: 0o700 })
  return { home, lock: Path.join(home, "lock"), counter: Path.join(home, "generation") }
}

// What one uncontended effect-pidlock cycle writes: a staging directory named
// by a fresh token, holding the owner record as a symlink's text.
const newAttempt = (home) => {
  const token = Crypto.randomBytes(8).toString("hex")
  const name = `${self.pid}.${token}`
  const text = JSON.stringify({ v: 1, ...self, acquiredAt: new Date().toISOString(), token })
  return { name, text, staging: Path.join(home, name) }
}

// A missing generation counter is generation 0: the lock was never taken.
const lastGeneration = (counter) => {
  try {
    return Number(Fs.readlinkSync(counter))
  } catch (error) {
    if (error.code === "ENOENT") return 0
    throw error
  }
}

// The floor: the 7 system calls of one effect-pidlock cycle, in its order,
// made synchronously as the Node layer makes them (fs.*Sync), with no Effect
// around them: take (mkdir, symlink, rename onto the empty `lock`), count the
// generation (readlink, symlink, rename over the counter), release (unlink).
const floorBatch = () => {
  const { counter, home, lock } = floorHome("floor")
  return async (samples) => {
    for (let i = 0; i < batch; i++) {
      const start = performance.now()
      const { name, staging, text } = newAttempt(home)
      Fs.mkdirSync(staging, 0o700)
      Fs.symlinkSync(text, Path.join(staging, name))
      Fs.renameSync(staging, lock)
      const next = Path.join(home, `generation.${name}`)
      Fs.symlinkSync(String(lastGeneration(counter) + 1), next)
      Fs.renameSync(next, counter)
      Fs.unlinkSync(Path.join(lock, name))
      samples.push((performance.now() - start) * 1000)
    }
  }
}

// The same 7 synchronous calls, each in an `Effect.try`, in a plain
// `Effect.gen`: what Effect itself adds to the floor, before any of the lock's
// own logic.
const effectFloorBatch = () => {
  const { counter, home, lock } = floorHome("floor-effect")
  const call = (f) => Effect.try({ try: f, catch: (error) => error })
  const cycle = Effect.gen(function*() {
    const { name, staging, text } = newAttempt(home)
    yield* call(() => Fs.mkdirSync(staging, 0o700))
    yield* call(() => Fs.symlinkSync(text, Path.join(staging, name)))
    yield* call(() => Fs.renameSync(staging, lock))
    const last = yield* call(() => Number(Fs.readlinkSync(counter))).pipe(
      Effect.catchIf((error) => error.code === "ENOENT", () => Effect.succeed(0))
    )
    const next = Path.join(home, `generation.${name}`)
    yield* call(() => Fs.symlinkSync(String(last + 1), next))
    yield* call(() => Fs.renameSync(next, counter))
    yield* call(() => Fs.unlinkSync(Path.join(lock, name)))
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
  "effect-pidlock-withlock": () => withLockBatch(Effect.void, { name: "effect-pidlock-withlock", dir }),
  "effect-pidlock-withlock-yield": () =>
    withLockBatch(Effect.yieldNow(), { name: "effect-pidlock-withlock-yield", dir }),
  floor: floorBatch,
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
