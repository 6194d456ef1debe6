// Start-up of the CLI as a shell runs it: `effect-pidlock status` on a free
// file lock, beside a bare `node -e 0` and `flock -n` (util-linux) on the same
// machine, the three taken in turn in every round so that a change of load
// falls on all of them. Prints {cli, node, flock} in ms per run (flock null
// when it is not installed).
// Usage: node cli.mjs <dir> <rounds>
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { freshDir, send } from "./common.mjs"

const [dir, roundsText] = process.argv.slice(2)
const rounds = Number(roundsText)
const bin = fileURLToPath(new URL("../dist/cli/bin.cjs", import.meta.url))
freshDir(dir)
const flockFile = Path.join(dir, "flock")
Fs.writeFileSync(flockFile, "")

const hasFlock = spawnSync("flock", ["--version"]).status === 0

/** Runs `command` to its end and gives the wall-clock time it took, in ms. */
const time = (command, args) => {
  const start = performance.now()
  const result = spawnSync(command, args, { stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" })
  const took = performance.now() - start
  // `status` exits 0 for a free lock: anything else measured something else.
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")} exited ${result.status}: ${result.stderr}`)
  return took
}

const samples = { cli: [], node: [], flock: [] }
// One round to warm the disk cache, not counted.
for (let round = -1; round < rounds; round++) {
  const cli = time(process.execPath, [bin, "status", "--name", "bench", "--dir", dir])
  const node = time(process.execPath, ["-e", "0"])
  const flock = hasFlock ? time("flock", ["-n", flockFile, "true"]) : undefined
  if (round < 0) continue
  samples.cli.push(cli)
  samples.node.push(node)
  if (flock !== undefined) samples.flock.push(flock)
}
send({ ...samples, flock: hasFlock ? samples.flock : null })
