// Real processes on a real disk: every child runs test/fixtures/holder.mjs,
// which loads the built package (dist/) by its own name, as an application
// would. `npm test` builds first; after changing src/, run `npm run build`.
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schedule from "effect/Schedule"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as PidLock from "../src/PidLock.js"
import * as ProcessInfo from "../src/ProcessInfo.js"
import { nodeLayer, tempDir } from "./support/nodeEnvironment.js"

const HOLDER = fileURLToPath(new URL("./fixtures/holder.mjs", import.meta.url))
const REPO = fileURLToPath(new URL("..", import.meta.url))
const NAME = "app"
const NOBODY = 65534
const isRoot = process.getuid?.() === 0


// -----------------------------------------------------------------------------
// Helpers
// -----------------------------------------------------------------------------

interface Child {
  readonly process: ChildProcess.ChildProcess
  readonly pid: number
  /** Lines printed on stdout so far. */
  readonly lines: Array<string>
  readonly stderr: () => string
  /** Set once the process has exited and its output is closed. */
  readonly status: () => { readonly code: number | null; readonly signal: NodeJS.Signals | null } | undefined
  readonly closed: Promise<void>
}

/**
 * Runs `holder.mjs` with `args`. The process is SIGKILLed (if still running)
 * and awaited when the scope closes, whether the test passed or not.
 */
const spawnHolder = (args: ReadonlyArray<string>, options: ChildProcess.SpawnOptions = {}) =>
  Effect.acquireRelease(
    Effect.sync((): Child => {
      const child = ChildProcess.spawn(process.execPath, [HOLDER, ...args], {
        cwd: REPO,
        stdio: ["pipe", "pipe", "pipe"],
        ...options
      })
      const lines: Array<string> = []
      let partial = ""
      let stderr = ""
      let status: { code: number | null; signal: NodeJS.Signals | null } | undefined
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
        const parts = (partial + chunk).split("\n")
        partial = parts.pop()!
        lines.push(...parts)
      })
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => void (stderr += chunk))
      const closed = new Promise<void>((resolve) => {
        child.once("close", (code, signal) => {
          status = { code, signal }
          resolve()
        })
        child.once("error", (error) => {
          stderr += String(error)
          status = { code: null, signal: null }
          resolve()
        })
      })
      return {
        process: child,
        pid: child.pid ?? -1,
        lines,
        stderr: () => stderr,
        status: () => status,
        closed
      }
    }),
    (child) =>
      Effect.promise(() => {
        if (child.status() === undefined) child.process.kill("SIGKILL")
        return child.closed
      })
  )

const pending = Symbol("pending")

/**
 * Polls `check` every 10 ms until it returns something other than
 * `undefined`; fails with what it throws, or after `seconds`.
 */
const waitUntil = <A>(what: string, check: () => A | undefined, seconds = 20): Effect.Effect<A, Error> =>
  Effect.try({ try: check, catch: (error) => error as Error }).pipe(
    Effect.flatMap((value) => value === undefined ? Effect.fail(pending) : Effect.succeed(value)),
    Effect.retry({ schedule: Schedule.spaced("10 millis"), while: (error) => error === pending }),
    Effect.timeoutFail({
      duration: `${seconds} seconds`,
      onTimeout: () => new Error(`timed out after ${seconds} s waiting for ${what}`)
    }),
    Effect.catchIf((error): error is typeof pending => error === pending, () => Effect.die("unreachable"))
  )

const describeChild = (child: Child) =>
  `child ${child.pid} (status ${JSON.stringify(child.status())}; stdout ${JSON.stringify(child.lines)}; stderr ${
    JSON.stringify(child.stderr())
  })`

/** Waits for the child's first line `<word> <json>` and returns the JSON. */
const waitForLine = (child: Child, word: string, seconds = 20) =>
  waitUntil(`"${word}" from ${child.pid}`, () => {
    const line = child.lines.find((line) => line.startsWith(`${word} `))
    if (line !== undefined) return JSON.parse(line.slice(word.length + 1)) as Record<string, unknown>
    if (child.status() !== undefined) throw new Error(`no "${word}" line from ${describeChild(child)}`)
    return undefined
  }, seconds)

const waitForExit = (child: Child, seconds = 20) =>
  waitUntil(`exit of ${child.pid}`, () => child.status(), seconds)

const list = (path: string) => Fs.readdirSync(path).sort()

// -----------------------------------------------------------------------------
// The shared log of the race
// -----------------------------------------------------------------------------

interface Analysis {
  readonly enters: number
  readonly holders: ReadonlySet<number>
  /** Kills of a process that held the lock, and whose lock another process then took. */
  readonly holderKills: number
  /** Kills of a process that did not hold the lock at that point of the log. */
  readonly otherKills: number
  /** A killed holder whose lock nobody took afterwards (only possible at the end of the log). */
  readonly untakenKill: string | undefined
  /** Overlapping holders, or exits that match no holder. */
  readonly violations: ReadonlyArray<string>
}

/**
 * Replays the log. A holding runs from its `enter` to its `exit`, or to the
 * parent's `kill` of its process. Children log `enter` after acquiring and
 * `exit` before releasing, and the parent logs `kill` before sending SIGKILL,
 * so every logged holding lies inside the real one: two logged holdings that
 * overlap prove two real holders at once.
 */
const analyze = (lines: ReadonlyArray<string>): Analysis => {
  let current: { pid: number; token: string; line: number; killedAt?: number } | undefined
  let enters = 0
  let holderKills = 0
  let otherKills = 0
  const holders = new Set<number>()
  const violations: Array<string> = []
  lines.forEach((text, index) => {
    const line = index + 1
    const [word, pidText, token] = text.split(" ")
    const pid = Number(pidText)
    if (word === "enter") {
      enters++
      holders.add(pid)
      if (current !== undefined) {
        if (current.killedAt === undefined) {
          violations.push(`line ${line}: ${text} while ${current.pid} ${current.token} holds (since line ${current.line})`)
        } else {
          holderKills++ // the killed holder's lock was taken over
        }
      }
      current = { pid, token: token!, line }
    } else if (word === "exit") {
      if (current === undefined || current.pid !== pid || current.token !== token) {
        violations.push(`line ${line}: ${text}, but the holder is ${current ? `${current.pid} ${current.token}` : "nobody"}`)
      } else {
        // Killed just after it logged its exit: it may have released, so it
        // does not count as killed while holding.
        if (current.killedAt !== undefined) otherKills++
        current = undefined
      }
    } else if (word === "kill") {
      if (current !== undefined && current.pid === pid && current.killedAt === undefined) current.killedAt = line
      else otherKills++
    } else {
      violations.push(`line ${line}: unexpected ${JSON.stringify(text)}`)
    }
  })
  return {
    enters,
    holders,
    holderKills,
    otherKills,
    untakenKill: current?.killedAt !== undefined
      ? `line ${current.killedAt}: kill ${current.pid} (holder since line ${current.line}), and no later enter`
      : undefined,
    violations
  }
}

const readLog = (path: string) => Fs.readFileSync(path, "utf8").split("\n").filter((line) => line !== "")

// The holding that the log shows open for `pid`, if any.
const holdsPerLog = (lines: ReadonlyArray<string>, pid: number) => {
  for (let index = lines.length - 1; index >= 0; index--) {
    const [word, pidText] = lines[index]!.split(" ")
    if (Number(pidText) === pid) return word === "enter"
  }
  return false
}

// -----------------------------------------------------------------------------
// Tests
// -----------------------------------------------------------------------------

describe("real processes", () => {
  it.scopedLive("a race of 8+ processes with SIGKILLed holders: never two holders, every dead holder's lock taken over", () =>
    Effect.gen(function*() {
      const CONTENDERS = 8
      const MIN_HOLDER_KILLS = 5
      const dir = yield* tempDir
      const home = Path.join(dir, NAME)
      const lockDir = Path.join(home, "lock")
      const logPath = Path.join(dir, "race.log")
      const stopPath = Path.join(dir, "stop")
      const log = yield* Effect.acquireRelease(
        Effect.sync(() => Fs.openSync(logPath, "a")),
        (fd) => Effect.sync(() => Fs.closeSync(fd))
      )
      // Whatever happens, the children stop looping when the test ends.
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.writeFileSync(stopPath, "")))

      const children = new Map<number, Child>()
      const killed = new Set<number>()
      const start = Effect.gen(function*() {
        const child = yield* spawnHolder(["race", "--dir", dir, "--name", NAME, "--log", logPath, "--stop", stopPath])
        children.set(child.pid, child)
      })
      yield* Effect.repeatN(start, CONTENDERS - 1)

      const started = Date.now()
      yield* waitUntil("the first acquisition", () => readLog(logPath).length > 0 || undefined)
      const raceStarted = Date.now()

      // Every 150–400 ms, SIGKILL the process named by the owner entry if the
      // log shows it holding, and start a replacement.
      for (;;) {
        const elapsed = Date.now() - raceStarted
        const { holderKills } = analyze(readLog(logPath))
        if (elapsed > 10_000 || (elapsed > 4_000 && holderKills >= MIN_HOLDER_KILLS)) break
        yield* Effect.sleep(150 + Math.floor(Math.random() * 250))
        const entries = Fs.existsSync(lockDir) ? Fs.readdirSync(lockDir) : []
        if (entries.length !== 1) continue
        const pid = Number(entries[0]!.split(".")[0])
        const child = children.get(pid)
        assert.isDefined(child, `the owner entry ${entries[0]} names no child of this test`)
        if (killed.has(pid) || !holdsPerLog(readLog(logPath), pid)) continue
        Fs.writeSync(log, `kill ${pid}\n`)
        child!.process.kill("SIGKILL")
        killed.add(pid)
        yield* start
      }
      // The run goes on until the last killed holder's lock has been taken over.
      yield* waitUntil("a takeover after the last kill", () => analyze(readLog(logPath)).untakenKill === undefined || undefined)
      Fs.writeFileSync(stopPath, "")
      for (const child of children.values()) yield* waitForExit(child)
      const seconds = (Date.now() - started) / 1000

      const analysis = analyze(readLog(logPath))
      console.log(
        `race: ${analysis.enters} acquisitions by ${analysis.holders.size} of ${children.size} processes, ` +
          `${analysis.holderKills} holders SIGKILLed (+ ${analysis.otherKills} other kills) in ${seconds.toFixed(1)} s`
      )
      assert.deepStrictEqual(analysis.violations, [], "two holders at once, or an exit without its enter")
      assert.isUndefined(analysis.untakenKill, "a killed holder's lock was never taken over")
      assert.isAtLeast(analysis.holderKills, 3, "holders SIGKILLed while holding, and taken over")
      assert.isAtLeast(analysis.enters, 100, "acquisitions in total")
      assert.isAtLeast(analysis.holders.size, CONTENDERS / 2, "distinct processes that held the lock")
      for (const child of children.values()) {
        assert.deepStrictEqual(
          child.status(),
          killed.has(child.pid) ? { code: null, signal: "SIGKILL" } : { code: 0, signal: null },
          describeChild(child)
        )
      }

      // No stuck lock: a fresh contender takes it at once.
      const fresh = yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
        const lock = yield* PidLock.acquire({ name: NAME, dir })
        assert.deepStrictEqual(list(lockDir), [Path.basename(lock.entry)])
      })).pipe(Effect.provide(nodeLayer)))
      assert.isTrue(Exit.isSuccess(fresh), `a fresh acquire failed: ${String(fresh)}`)
      assert.deepStrictEqual(list(lockDir), [])

      // Staging directories left in the home can only be those of processes
      // killed before their rename, and their creators are gone.
      const info = yield* Effect.provide(ProcessInfo.ProcessInfo, nodeLayer)
      for (const name of list(home).filter((name) => name !== "lock")) {
        const pid = Number(name.split(".")[0])
        assert.match(name, /^\d+\.[0-9a-f]+$/, `unexpected entry ${name} in the lock home`)
        assert.isTrue(killed.has(pid), `staging directory ${name} of a process that was not killed`)
        const record = Path.join(home, name, name)
        if (Fs.existsSync(Path.join(home, name)) && list(Path.join(home, name)).includes(name)) {
          const verdict = yield* info.judge(JSON.parse(Fs.readlinkSync(record)))
          assert.strictEqual(verdict._tag, "Stale", `staging directory ${name} of a live process`)
        }
      }
    }), 30_000)

  it.scopedLive("a holder that set process.title is still alive: the next contender gets LockHeld (fault 3)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const title = "renamed (holder) x"
      const holder = yield* spawnHolder(["hold", "--dir", dir, "--name", NAME, "--title", title])
      yield* waitForLine(holder, "ready")
      // The premise: /proc shows another command line and command name than
      // the ones recorded in the owner entry.
      const [entry] = list(Path.join(dir, NAME, "lock"))
      const record = JSON.parse(Fs.readlinkSync(Path.join(dir, NAME, "lock", entry!)))
      const cmdline = Fs.readFileSync(`/proc/${holder.pid}/cmdline`, "utf8").replace(/\0+$/, "").split("\0")
      assert.deepStrictEqual(cmdline, [title])
      assert.notDeepEqual(record.cmdline, cmdline)
      assert.strictEqual(Fs.readFileSync(`/proc/${holder.pid}/comm`, "utf8").trim(), title.slice(0, 15))

      const contender = yield* spawnHolder(["try", "--dir", dir, "--name", NAME])
      const error = yield* waitForLine(contender, "error")
      assert.deepStrictEqual(
        { _tag: error._tag, holderPid: error.holderPid, verdict: error.verdict },
        { _tag: "LockHeld", holderPid: holder.pid, verdict: "Alive" },
        describeChild(contender)
      )
      assert.deepStrictEqual(list(Path.join(dir, NAME, "lock")), [entry])
      assert.isUndefined(holder.status(), "the holder still runs")
    }))

  it.scopedLive.each(["SIGTERM", "SIGINT"] as const)(
    "NodeRuntime.runMain releases the lock on %s",
    (signal) =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const home = Path.join(dir, NAME)
        const holder = yield* spawnHolder(["hold", "--dir", dir, "--name", NAME])
        const ready = yield* waitForLine(holder, "ready")
        const entries = list(Path.join(home, "lock"))
        assert.strictEqual(entries.length, 1, `lock entries: ${entries.join(", ")}`)
        assert.isTrue(entries[0]!.startsWith(`${holder.pid}.`), `${entries[0]} is not ${holder.pid}'s`)
        assert.strictEqual(ready.entry, Path.join(home, "lock", entries[0]!))

        holder.process.kill(signal)
        const status = yield* waitForExit(holder)
        assert.deepStrictEqual(status, { code: 0, signal: null }, describeChild(holder))
        assert.deepStrictEqual(list(Path.join(home, "lock")), [])
        assert.deepStrictEqual(list(home), ["lock"])
      })
  )

  describe("permissions", () => {
    if (!isRoot) {
      console.warn(
        "processes.test.ts: permission tests skipped: they need root, to run a child as uid 65534 and to chown a lock home"
      )
    }

    it.scopedLive.skipIf(!isRoot)("a contender that cannot create the lock home gets PermissionDenied (EACCES)", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        Fs.chmodSync(dir, 0o755) // mkdtemp makes it 0700: let uid 65534 in
        const parent = Path.join(dir, "root-only")
        Fs.mkdirSync(parent, { mode: 0o755 })
        assert.strictEqual(Fs.statSync(parent).uid, 0)

        const contender = yield* spawnHolder(["try", "--dir", parent, "--name", NAME], { uid: NOBODY, gid: NOBODY })
        const error = yield* waitForLine(contender, "error")
        assert.deepStrictEqual(
          { _tag: error._tag, operation: error.operation, code: error.code, path: error.path },
          { _tag: "PermissionDenied", operation: "makeDirectory", code: "EACCES", path: Path.join(parent, NAME) },
          describeChild(contender)
        )
        assert.deepStrictEqual(list(parent), [])
      }))

    it.scopedLive.skipIf(!isRoot)("a lock home owned by another uid is CorruptLock ForeignOwner, left untouched", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const home = Path.join(dir, NAME)
        Fs.mkdirSync(Path.join(home, "lock"), { recursive: true })
        Fs.chownSync(Path.join(home, "lock"), NOBODY, NOBODY)
        Fs.chownSync(home, NOBODY, NOBODY)
        const picture = () =>
          [home, Path.join(home, "lock")].map((path) => {
            const { uid, gid, mode, ino, mtimeMs, ctimeMs } = Fs.statSync(path)
            return { path, uid, gid, mode, ino, mtimeMs, ctimeMs, entries: list(path) }
          })
        const before = picture()

        const result = yield* Effect.scoped(PidLock.acquire({ name: NAME, dir })).pipe(
          Effect.provide(nodeLayer),
          Effect.flip
        )
        assert.strictEqual(result._tag, "CorruptLock")
        assert.strictEqual((result as PidLock.CorruptLock).reason, "ForeignOwner")
        assert.strictEqual((result as PidLock.CorruptLock).path, home)
        assert.deepStrictEqual(picture(), before)
      }))
  })
})
