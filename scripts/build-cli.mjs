// Bundles the CLI (src/cli/main.ts) into dist/cli/main.cjs, so that it starts
// like a shell tool and needs nothing at run time but what it ships: one copy
// of effect and the modules the lock uses, minified. The command itself is
// src/cli/bin.cjs, which starts the bundle from V8's code cache of it
// (main.cjs.cache), made here by running the bundle once. CommonJS, because
// Node 20 caches no compiled ES module. The PostgreSQL support (PgLock,
// @effect/sql-pg, @effect/sql) is in the bundle but evaluated only when
// PostgreSQL is used; `pg` is left out, to be found beside effect-pidlock, as
// @effect/sql-pg brings it.
import * as esbuild from "esbuild"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const root = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..")
const outdir = Path.join(root, "dist", "cli")
const bundle = Path.join(outdir, "main.cjs")

const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: ["src/cli/main.ts"],
  outfile: bundle,
  bundle: true,
  format: "cjs",
  platform: "node",
  target: "node20",
  minify: true,
  external: ["pg"],
  metafile: true,
  logLevel: "warning"
})

// One copy of effect (and of each @effect package), whatever imports it: two
// would be two runtimes, whose fibers and services do not mix. A copy nested
// under another package, or a CommonJS build beside the ES one, would be a
// second.
const inputs = Object.keys(result.metafile.inputs)
const nested = inputs.filter((input) => input.split("node_modules/").length > 2)
const effectCjs = inputs.filter((input) => /node_modules\/(effect|@effect\/[^/]+)\/dist\/cjs\//.test(input))
if (nested.length > 0 || effectCjs.length > 0) {
  throw new Error(`the CLI bundle holds a second copy of a package: ${[...nested, ...effectCjs][0]}`)
}

const bin = Path.join(outdir, "bin.cjs")
Fs.copyFileSync(Path.join(root, "src", "cli", "bin.cjs"), bin)
Fs.chmodSync(bin, 0o755)

// The code cache: the bundle compiled as bin.cjs compiles it, run through a
// `status` on a free lock so that the functions a start runs are compiled
// too, and saved as the process exits.
const WARM_UP = `
const Fs = require("node:fs"), Module = require("node:module"), Path = require("node:path"), Vm = require("node:vm")
const [bundle, cache, ...args] = process.argv.slice(1)
process.argv = [process.argv[0], bundle, ...args]
const script = new Vm.Script(Module.wrap(Fs.readFileSync(bundle, "utf8")), { filename: bundle })
process.on("exit", () => Fs.writeFileSync(cache, script.createCachedData()))
const bundleModule = { exports: {} }
script.runInThisContext()
  .call(bundleModule.exports, bundleModule.exports, Module.createRequire(bundle), bundleModule, bundle, Path.dirname(bundle))
`
const lockDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-pidlock-build-"))
try {
  const warmUp = spawnSync(
    process.execPath,
    ["-e", WARM_UP, bundle, `${bundle}.cache`, "status", "--name", "build", "--dir", lockDir],
    { encoding: "utf8" }
  )
  // `status` exits 0 on a free lock: anything else did not run the start.
  if (warmUp.status !== 0) throw new Error(`the CLI's warm-up run exited ${warmUp.status}: ${warmUp.stderr}`)
} finally {
  Fs.rmSync(lockDir, { recursive: true, force: true })
}

// What earlier builds wrote and this one does not (the ES module bundle and
// its chunks of before) goes.
for (const stale of ["bin.js", "chunks"]) Fs.rmSync(Path.join(outdir, stale), { recursive: true, force: true })
