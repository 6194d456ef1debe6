// Steady state: heap growth over many acquire + release cycles with the
// default options, after garbage collection. Run with --expose-gc.
// Usage: node --expose-gc heap.mjs <dir> <cycles>
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as PidLock from "effect-pidlock/PidLock"
import * as ProcessInfo from "effect-pidlock/ProcessInfo"
import { freshDir, send } from "./common.mjs"

const [dir, cycles] = [process.argv[2], Number(process.argv[3])]
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

await run(2000) // warm-up: code compiled, caches filled
const before = await settledHeap()
const start = performance.now()
await run(cycles)
const seconds = (performance.now() - start) / 1000
const after = await settledHeap()
await runtime.dispose()
send({ before, after, growthKb: (after - before) / 1024, cycles, seconds })
