// Round trips of PidLock.send to a holder in another process that answers at
// once (test/fixtures/messenger.mjs), one after another.
// Usage: node send.mjs <dir> <count>
// Prints one JSON line: the round-trip times in ms.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as PidLock from "effect-pidlock/PidLock"
import * as ProcessInfo from "effect-pidlock/ProcessInfo"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

const [dir, countText] = process.argv.slice(2)
const name = "send"
const messenger = fileURLToPath(new URL("../test/fixtures/messenger.mjs", import.meta.url))
const holder = spawn(process.execPath, [messenger, "hold", "--dir", dir, "--name", name], {
  stdio: ["ignore", "pipe", "inherit"]
})
await new Promise((resolve) => {
  let output = ""
  holder.stdout.setEncoding("utf8").on("data", (chunk) => {
    output += chunk
    if (output.includes("ready ")) resolve()
  })
})
const runtime = ManagedRuntime.make(ProcessInfo.layer.pipe(Layer.provideMerge(NodeFileSystem.layer)))
const samples = []
try {
  // The first ones warm up both ends.
  for (let index = 0; index < 20 + Number(countText); index++) {
    const began = performance.now()
    await runtime.runPromise(PidLock.send({ name, dir, data: { argv: ["open", "notes.txt"] } }))
    if (index >= 20) samples.push(performance.now() - began)
  }
} finally {
  holder.kill("SIGKILL")
  await runtime.dispose()
}
console.log(JSON.stringify({ samples }))
