// The build (dist/) as an application loads it: each public entry a bundle
// beside the chunks they share (scripts/build-lib.mjs). Run `npm run build`
// after changing src/; `npm test` builds first.
import { assert, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const dist = fileURLToPath(new URL("../dist/", import.meta.url))

// A fresh node that imports the package by its own name, as an application does.
const runModule = (script: string): string =>
  ChildProcess.execFileSync(process.execPath, ["--input-type=module", "-e", script], {
    cwd: fileURLToPath(new URL("..", import.meta.url)),
    encoding: "utf8"
  })

const jsFiles = (dir: string): Array<string> =>
  Fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? entry.name === "cli" ? [] : jsFiles(Path.join(dir, entry.name))
      : entry.name.endsWith(".js")
      ? [Path.join(dir, entry.name)]
      : []
  )

it("the entries share one copy of each module: a lock taken through one is refused and caught through the others", () => {
  const printed = runModule(`
import * as Effect from "effect/Effect"
import * as Package from "effect-pidlock"
import * as PidLock from "effect-pidlock/PidLock"
import * as ProcessInfo from "effect-pidlock/ProcessInfo"
import * as Testing from "effect-pidlock/testing"
const error = await Effect.runPromise(Effect.flip(Effect.scoped(Effect.zipRight(
  Package.PidLock.acquire({ name: "job", dir: "/tmp" }),
  PidLock.acquire({ name: "job", dir: "/tmp" })
))).pipe(Effect.provide(Testing.layer())))
console.log(JSON.stringify({
  tag: error._tag,
  sameClass: error instanceof PidLock.LockHeld && error instanceof Package.PidLock.LockHeld,
  sameService: Package.PidLock.PidLock === PidLock.PidLock && Package.ProcessInfo.ProcessInfo === ProcessInfo.ProcessInfo
}))`)
  assert.deepStrictEqual(JSON.parse(printed), { tag: "LockHeld", sameClass: true, sameService: true })
})

it("no module of effect or @effect is copied into the build: every one is imported from the application's", () => {
  const files = jsFiles(dist)
  assert.isAbove(files.length, 0)
  for (const file of files) {
    const text = Fs.readFileSync(file, "utf8")
    // esbuild names the source of what it copies in a comment: `// node_modules/effect/…`.
    assert.notMatch(text, /^\/\/ node_modules\//m, file)
  }
  const imports = files.flatMap((file) =>
    [...Fs.readFileSync(file, "utf8").matchAll(/from "((?:effect|@effect\/[\w-]+)\/[\w/]+)"/g)].map((match) => match[1])
  )
  assert.include(imports, "effect/Effect")
  assert.include(imports, "@effect/platform/FileSystem")
})
