// Every program in examples/ runs here as README.md tells a user to run it (`npx tsx examples/<file>`, here
// `node --import tsx`, so that the signals reach the program itself), in real processes against the built package
// (dist/: `npm test` builds first), each in a lock directory of its own ($PIDLOCK_DIR).
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { type Child, describeChild, spawnNode, waitForExit, waitUntil } from "./support/children.js"
import { freshDatabase } from "./support/postgres.js"

const ROOT = fileURLToPath(new URL("..", import.meta.url))
const README = Fs.readFileSync(Path.join(ROOT, "README.md"), "utf8")

/** The examples this file runs; a new one must be added here (and to the README) to pass the first test. */
const EXAMPLES = ["demo.mjs", "layer.ts", "openInRunning.ts", "pgLayer.ts", "quickstart.ts", "waiting.ts"]

/** A fresh lock directory, removed with the scope. */
const lockDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "pidlock-examples-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** `npx tsx examples/<file> ...args` with `env` added to the environment. */
const runExample = (file: string, env: Record<string, string>, args: ReadonlyArray<string> = []) =>
  spawnNode("--import", ["tsx", Path.join("examples", file), ...args], { env: { ...process.env, ...env } })

/** Everything the program printed: its logs (stdout) and stderr. */
const output = (child: Child) => `${child.lines.join("\n")}\n${child.stderr()}`

const waitForOutput = (child: Child, pattern: RegExp, seconds = 30) =>
  waitUntil(
    `${pattern} from ${describeChild(child)}`,
    Effect.sync(() => {
      const match = pattern.exec(output(child))
      if (match === null && child.status() !== undefined) {
        throw new Error(`exited without ${pattern}: ${describeChild(child)}`)
      }
      return match ?? undefined
    }),
    seconds
  )

const exitOf = (child: Child, seconds = 30) =>
  waitForExit(child, seconds).pipe(Effect.map((status) => ({ ...status, output: output(child) })))

describe("examples/", () => {
  it("every example is run by this file, and listed in the README with how to run it", () => {
    const files = Fs.readdirSync(Path.join(ROOT, "examples")).sort()
    assert.deepStrictEqual(files, EXAMPLES)
    for (const file of files) {
      assert.include(README, `examples/${file}`, `README.md does not mention examples/${file}`)
    }
  })

  it.scopedLive("demo.mjs: refused, taken over after a SIGKILL, released on SIGTERM", () =>
    Effect.gen(function*() {
      const demo = yield* spawnNode("examples/demo.mjs", [])
      const { code, output } = yield* exitOf(demo, 60)
      assert.strictEqual(code, 0, output)
      assert.match(output, /LockHeld: .* is held by pid \d+/)
      assert.match(output, /holds it, \d+ ms after the kill/)
      assert.match(output, /the lock is released: lock directory empty/)
    }), 90_000)

  it.scopedLive(
    "quickstart.ts: runs alone, and logs who holds the lock when another process does",
    () =>
      Effect.gen(function*() {
        const dir = yield* lockDir
        const alone = yield* exitOf(yield* runExample("quickstart.ts", { PIDLOCK_DIR: dir }))
        assert.strictEqual(alone.code, 0, alone.output)
        assert.include(alone.output, "the only copy running")

        // Another process holds "nightly-report": the demo's holder fixture.
        const holder = yield* spawnNode("test/fixtures/holder.mjs", ["hold", "--dir", dir, "--name", "nightly-report"])
        yield* waitUntil(
          "the holder's lock",
          Effect.sync(() => holder.lines.find((line) => line.startsWith("ready ")))
        )
        const refused = yield* exitOf(yield* runExample("quickstart.ts", { PIDLOCK_DIR: dir }))
        assert.strictEqual(refused.code, 0, refused.output) // the example catches LockHeld and logs it
        assert.notInclude(refused.output, "the only copy running")
        assert.match(refused.output, new RegExp(`WARN .*is held by pid ${holder.pid}`))
      }),
    60_000
  )

  it.scopedLive(
    "openInRunning.ts: the first copy opens its file and waits; a second hands it its files and exits",
    () =>
      Effect.gen(function*() {
        const dir = yield* lockDir
        const editor = yield* runExample("openInRunning.ts", { PIDLOCK_DIR: dir }, ["notes.txt"])
        yield* waitForOutput(editor, /waiting for files to open/)
        assert.include(output(editor), `opening ${Path.join(ROOT, "notes.txt")}`)

        const second = yield* exitOf(
          yield* runExample("openInRunning.ts", { PIDLOCK_DIR: dir }, ["todo.txt", "a.txt"])
        )
        assert.strictEqual(second.code, 0, second.output)
        assert.include(second.output, "handed to the running instance: {\"opened\":2}")
        yield* waitForOutput(editor, new RegExp(`opening ${Path.join(ROOT, "a.txt")}`))
        assert.include(output(editor), `opening ${Path.join(ROOT, "todo.txt")}`)
        assert.isUndefined(editor.status(), "the first copy runs on")
      }),
    60_000
  )

  it.scopedLive(
    "layer.ts: holds the lock while it runs, a second copy fails with LockHeld, SIGTERM releases it",
    () =>
      Effect.gen(function*() {
        const dir = yield* lockDir
        const daemon = yield* runExample("layer.ts", { PIDLOCK_DIR: dir })
        yield* waitForOutput(daemon, /single instance, holding .*my-daemon/)

        const second = yield* exitOf(yield* runExample("layer.ts", { PIDLOCK_DIR: dir }))
        assert.strictEqual(second.code, 1, second.output)
        assert.match(second.output, new RegExp(`LockHeld: .* is held by pid ${daemon.pid}`))

        daemon.process.kill("SIGTERM")
        const stopped = yield* exitOf(daemon)
        assert.strictEqual(stopped.code, 0, stopped.output)
        assert.deepStrictEqual(Fs.readdirSync(Path.join(dir, "my-daemon", "lock")), [])

        const next = yield* runExample("layer.ts", { PIDLOCK_DIR: dir })
        yield* waitForOutput(next, /single instance, holding/)
      }),
    60_000
  )

  it.scopedLive(
    "waiting.ts: without APP_LOCK_WAIT a second copy fails at once; with it, it waits its turn",
    () =>
      Effect.gen(function*() {
        const dir = yield* lockDir
        // Another process holds "migrations" until the test lets it go: the demo's holder fixture.
        const holder = yield* spawnNode("test/fixtures/holder.mjs", ["hold", "--dir", dir, "--name", "migrations"])
        yield* waitUntil("the holder's lock", Effect.sync(() => holder.lines.find((line) => line.startsWith("ready "))))

        // Started together, so that when the impatient one has been refused, the waiter has asked too.
        const waiter = yield* runExample("waiting.ts", { PIDLOCK_DIR: dir, APP_LOCK_WAIT: "60s" })
        const impatient = yield* exitOf(yield* runExample("waiting.ts", { PIDLOCK_DIR: dir }))
        assert.strictEqual(impatient.code, 1, impatient.output)
        assert.match(impatient.output, new RegExp(`LockHeld: .* is held by pid ${holder.pid}`))
        yield* Effect.sleep("1 second")
        assert.strictEqual(waiter.status(), undefined, describeChild(waiter))
        assert.notInclude(output(waiter), "holding")

        holder.process.kill("SIGTERM")
        const waited = yield* exitOf(waiter, 40)
        assert.strictEqual(waited.code, 0, waited.output)
        assert.match(waited.output, /holding .*migrations.*generation 2\b[\s\S]*migrating[\s\S]*migrated/)

        const invalid = yield* exitOf(yield* runExample("waiting.ts", { PIDLOCK_DIR: dir, APP_LOCK_WAIT: "soon" }))
        assert.strictEqual(invalid.code, 1, invalid.output)
        assert.match(invalid.output, /APP_LOCK_WAIT/)
      }),
    90_000
  )

  it.scopedLive(
    "pgLayer.ts: over the run's PostgreSQL, a second copy fails with LockHeld, the next gets generation 2",
    () =>
      Effect.gen(function*() {
        const url = yield* freshDatabase
        const daemon = yield* runExample("pgLayer.ts", { DATABASE_URL: url })
        yield* waitForOutput(daemon, /single instance, holding postgresql:\/\/.*#my-daemon, generation 1\b/)

        const second = yield* exitOf(yield* runExample("pgLayer.ts", { DATABASE_URL: url }))
        assert.strictEqual(second.code, 1, second.output)
        assert.match(second.output, /LockHeld/)

        daemon.process.kill("SIGTERM")
        const stopped = yield* exitOf(daemon)
        assert.strictEqual(stopped.code, 0, stopped.output)

        const next = yield* runExample("pgLayer.ts", { DATABASE_URL: url })
        yield* waitForOutput(next, /generation 2\b/)
      }),
    60_000
  )
})
