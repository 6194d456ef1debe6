// Start-up cost: what importing effect-pidlock adds on top of the modules an
// application built on Effect loads anyway. Prints {base, added} in ms.
import { send } from "./common.mjs"

const t0 = performance.now()
await import("effect/Effect")
await import("@effect/platform/FileSystem")
await import("@effect/platform-node/NodeFileSystem")
const t1 = performance.now()
await import("effect-pidlock/PidLock")
await import("effect-pidlock/ProcessInfo")
const t2 = performance.now()
send({ base: t1 - t0, added: t2 - t1 })
