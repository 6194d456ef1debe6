// Builds the library into dist/: the type declarations from tsc, the JavaScript
// as one ES module per public entry (package.json's exports) plus the chunks
// they share, bundled by esbuild from src/.
//
// Why a bundle: Node 20 resolves an `effect/…` import anew for every module
// that makes it (about a quarter of a millisecond each on a quiet machine
// here), and loads each module as a job of its own. Importing
// `PidLock` and `ProcessInfo` loaded fourteen of our modules making 77 such
// imports; bundled, six files making 47 (BENCHMARKS.md). The entries share
// their chunks, so each module's state (a service's tag, an error's class)
// exists once, whichever entries a program imports. Modules loaded on demand
// (the portable layer's command executor) stay chunks of their own.
import * as esbuild from "esbuild"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const root = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..")
const dist = Path.join(root, "dist")

// What an earlier build wrote (a module of before, or tsc's output) goes.
Fs.rmSync(dist, { recursive: true, force: true })

const tsc = spawnSync(process.execPath, [
  Path.join(root, "node_modules", "typescript", "bin", "tsc"),
  "-p",
  "tsconfig.build.json"
], {
  cwd: root,
  stdio: "inherit"
})
if (tsc.status !== 0) throw new Error(`tsc exited ${tsc.status ?? tsc.signal}`)

// Every public entry, as package.json's exports name it: ./dist/X.js from src/X.ts.
const manifest = JSON.parse(Fs.readFileSync(Path.join(root, "package.json"), "utf8"))
const entryPoints = Object.values(manifest.exports)
  .flatMap((target) => typeof target === "object" && typeof target.default === "string" ? [target.default] : [])
  .map((file) => file.replace(/^\.\/dist\//, "src/").replace(/\.js$/, ".ts"))

await esbuild.build({
  absWorkingDir: root,
  entryPoints,
  outbase: "src",
  outdir: "dist",
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  // effect, @effect/* and pg are the application's, found beside ours.
  packages: "external",
  chunkNames: "internal/[name]-[hash]",
  sourcemap: true,
  // src/ is in the package: the maps point into it.
  sourcesContent: false,
  logLevel: "warning"
})
