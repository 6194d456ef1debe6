// Checks the package as npm would publish it: `npm pack` into a temporary directory, then publint (package.json's
// fields and exports against the files in the tarball) and @arethetypeswrong/cli (every entry's types resolve, and
// match the JavaScript, under Node's ESM resolution and a bundler's). The package is ESM-only for Node 20 and later,
// so attw's "esm-only" profile leaves out the CommonJS resolutions (node10, node16 from CJS); everything else fails.
// `npm run check:package` (after `npm run build`).
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const bin = (name) => Path.join(root, "node_modules", ".bin", name)

const run = (command, args) => {
  const result = ChildProcess.spawnSync(command, args, { cwd: root, stdio: ["ignore", "pipe", "inherit"] })
  if (result.status !== 0) {
    process.stdout.write(result.stdout ?? "")
    throw new Error(`${Path.basename(command)} ${args.join(" ")}: exit ${result.status ?? result.signal}`)
  }
  return result.stdout.toString()
}

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-pidlock-pack-"))
try {
  const [packed] = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", dir]))
  const tarball = Path.join(dir, packed.filename)
  const files = packed.files.map((file) => file.path)
  for (const required of ["LICENSE", "README.md", "CHANGELOG.md", "RELIABILITY.md", "BENCHMARKS.md"]) {
    if (!files.includes(required)) throw new Error(`${required} is not in the package`)
  }
  console.log(`${packed.filename}: ${packed.entryCount} files, ${(packed.size / 1024).toFixed(0)} kB packed`)
  process.stdout.write(run(bin("publint"), ["--strict", tarball]))
  process.stdout.write(run(bin("attw"), [tarball, "--profile", "esm-only"]))
} catch (error) {
  console.error(`check:package: ${error.message}`)
  process.exitCode = 1
} finally {
  Fs.rmSync(dir, { recursive: true, force: true })
}
