// Steady state: heap growth over many acquire + release cycles with the
// default options, after garbage collection. Run with --expose-gc.
// Usage: node --expose-gc heap.mjs <dir> <warm-up cycles> <cycles>
// The heap is measured after 2,000 cycles, after the warm-up, and after the
// cycles that follow it: Effect's scheduler keeps a WeakMap of runners keyed
// by fiber, whose table grows in steps that depend on when the GCs come, and
// stopped growing after about 50,000 cycles in one longer check.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as PidLock from "effect-pidlock/PidLock"
import * as ProcessInfo from "effect-pidlock/ProcessInfo"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { freshDir, send } from "./common.mjs"

const [dir, warmUp, cycles] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])]
freshDir(dir)
const runtime = ManagedRuntime.make(ProcessInfo.layer.pipe(Layer.provideMerge(NodeFileSystem.layer)))
const cycle = Effect.scoped(PidLock.acquire({ name: "heap", dir }))
const run = (n) => runtime.runPromise(Effect.repeatN(cycle, n - 1))

const settledHeap = async () => {
  for (let i = 0; i < 4; i++) {
    globalThis.gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
  return process.memoryUsage().heapUsed
}

await run(2000) // code compiled
const early = await settledHeap()
await run(warmUp - 2000)
const before = await settledHeap()
const start = performance.now()
await run(cycles)
const seconds = (performance.now() - start) / 1000
const after = await settledHeap()
await runtime.dispose()
send({
  early,
  before,
  after,
  growthKb: (after - before) / 1024,
  warmUpGrowthKb: (before - early) / 1024,
  cycles,
  seconds
})
