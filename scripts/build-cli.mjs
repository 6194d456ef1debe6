// Bundles the CLI (src/cli/main.ts) into dist/cli/bin.js and its chunks, so
// that it starts like a shell tool and needs nothing at run time but what it
// ships: one copy of effect and the modules the lock uses, minified. The
// PostgreSQL support (PgLock, @effect/sql-pg, @effect/sql) is a chunk of its
// own, loaded only when PostgreSQL is used; `pg` is left out, to be found
// beside effect-pidlock, as @effect/sql-pg brings it.
import * as esbuild from "esbuild"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const root = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..")
const outdir = Path.join(root, "dist", "cli")

const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: { bin: "src/cli/main.ts" },
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  minify: true,
  chunkNames: "chunks/[name]-[hash]",
  external: ["pg"],
  // The CommonJS modules bundled with @effect/sql-pg (pg-cursor,
  // pg-connection-string) call `require`, which an ES module lacks.
  banner: { js: "import{createRequire as __cr}from\"node:module\";const require=__cr(import.meta.url);" },
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

Fs.chmodSync(Path.join(outdir, "bin.js"), 0o755)

// The chunks of earlier builds, named by other hashes, go; removed after the
// build rather than before, so that a CLI started meanwhile finds its files.
const written = new Set(Object.keys(result.metafile.outputs).map((output) => Path.resolve(root, output)))
const chunks = Path.join(outdir, "chunks")
for (const file of Fs.readdirSync(chunks)) {
  if (!written.has(Path.join(chunks, file))) Fs.rmSync(Path.join(chunks, file))
}
