// What the errors say to a person: every message ends with the next step,
// each error prints as that one line, an unreadable owner record is said in
// words, and a lost lock is reported once.
import type { PlatformError } from "@effect/platform/Error"
import { SystemError } from "@effect/platform/Error"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Util from "node:util"
import * as PidLock from "../src/PidLock.js"
import * as ProcessInfo from "../src/ProcessInfo.js"
import { describeChild, spawnNode, waitForExit, waitForLine } from "./support/children.js"
import { NAME, withFixture } from "./support/environment.js"
import { memoryEnvironment } from "./support/memoryEnvironment.js"

const holder: PidLock.OwnerRecord = {
  v: 1,
  pid: 4242,
  startTime: "100",
  bootId: "b",
  pidNamespace: "pid:[4026531836]",
  hostname: "web-1",
  cmdline: ["node", "server.js"],
  acquiredAt: "2026-01-02T03:04:05.000Z",
  token: "ab"
}
const WHO = "pid 4242 on web-1 since 2026-01-02T03:04:05.000Z (node server.js)"
const LOCATION = "/tmp/locks/app/lock"
const DATABASE = "postgresql://db:5432/app#app"
const WAIT = `the option wait (e.g. wait: "30s"; --wait 30s on the command line)`

const lockHeld = (fields: Partial<ConstructorParameters<typeof PidLock.LockHeld>[0]> = {}) =>
  new PidLock.LockHeld({
    location: LOCATION,
    holder,
    verdict: ProcessInfo.Verdict.Alive(),
    heldByThisProcess: false,
    ...fields
  })

const refused: PlatformError = new SystemError({
  reason: "PermissionDenied",
  module: "FileSystem",
  method: "makeDirectory",
  pathOrDescriptor: "/srv/locks/app",
  description: "EACCES"
})

describe("every message says what happened, then the next step", () => {
  it("LockHeld: wait, or see who holds it with status", () => {
    assert.strictEqual(
      lockHeld().message,
      `${LOCATION} is held by ${WHO}. Wait for its release with ${WAIT}, or see who holds it: ` +
        `effect-pidlock status --name app --dir /tmp/locks`
    )
  })

  it("LockHeld by a holder that cannot be seen: wait, or break it with --force if it is gone", () => {
    assert.strictEqual(
      lockHeld({ verdict: ProcessInfo.Verdict.Foreign({ scope: "host" }) }).message,
      `${LOCATION} is held by ${WHO} (on another host: it cannot be checked, so it counts as alive). Wait for its ` +
        `release with ${WAIT}; if you know that process is gone, remove its lock: ` +
        `effect-pidlock break --name app --dir /tmp/locks --force`
    )
  })

  it("LockHeld by this very process: share one lock, or wait", () => {
    const { message } = lockHeld({ heldByThisProcess: true })
    assert.include(message, "another fiber holds it, and the lock is not re-entrant. Take it once and share it")
    assert.isTrue(message.endsWith(`wait for the other fiber's release with ${WAIT}`), message)
  })

  it("LockHeld over PostgreSQL: status with --postgres, the url never shown", () => {
    assert.isTrue(
      lockHeld({ location: DATABASE }).message.endsWith(
        "or see who holds it: effect-pidlock status --name app --postgres <url>"
      )
    )
  })

  it("StaleLock: break it, or let the lock take it over", () => {
    assert.strictEqual(
      new PidLock.StaleLock({ path: LOCATION, holder, reason: "Exited" }).message,
      `${LOCATION} is stale (Exited): it was held by ${WHO}. Remove it with ` +
        `effect-pidlock break --name app --dir /tmp/locks, or let the lock take it over: onStale: "takeover" (the default)`
    )
  })

  it("PermissionDenied: names the refused path, and where to go instead", () => {
    assert.strictEqual(
      new PidLock.PermissionDenied({
        path: "/srv/locks/app",
        operation: "makeDirectory",
        code: "EACCES",
        cause: refused
      })
        .message,
      `permission denied (EACCES): makeDirectory /srv/locks/app. Give the lock a directory this user can write to: ` +
        `the option dir, or $PIDLOCK_DIR (--dir on the command line)`
    )
  })

  it("InvalidOptions: what the option allows, said once", () => {
    const says = (option: string, value: unknown, reason: string) =>
      new PidLock.InvalidOptions({ option, value, reason }).message
    assert.strictEqual(
      says("name", "a/b", `character "/" at index 1 is not allowed`),
      `invalid option name="a/b": character "/" at index 1 is not allowed. ` +
        `Allowed: 1 to 100 characters of A-Z a-z 0-9 . _ -, not starting with "."`
    )
    assert.isTrue(says("onStale", "ignore", "x").endsWith(`Allowed: "takeover" or "fail" (the default is "takeover")`))
    assert.isTrue(says("dir", "", "must not be empty").endsWith("or a sticky one such as /tmp"))
    // The reasons of the others say what is allowed, and nothing repeats it.
    for (const option of ["options", "wait", "checkInterval", "PIDLOCK_DIR", "log", "toString"]) {
      assert.strictEqual(says(option, 1, "must be 2"), `invalid option ${option}=1: must be 2`)
    }
  })

  it("CorruptLock: the exact path to inspect and remove by hand, and why the lock will not", () => {
    const corrupt = (path: string, reason: PidLock.CorruptLock["reason"], detail: string) =>
      new PidLock.CorruptLock({ path, reason, detail }).message
    assert.strictEqual(
      corrupt(LOCATION, "MultipleEntries", "holds 2 entries"),
      `${LOCATION}: holds 2 entries (MultipleEntries). It is left as it is, since the lock removes only what it ` +
        `made: inspect it (ls -la ${LOCATION}) and, if nothing of yours uses it, remove it by hand (rm -r ${LOCATION})`
    )
    // A path a shell would split is quoted, so that it can be pasted.
    assert.include(corrupt("/tmp/my locks/app", "NotADirectory", "x"), `(rm -r '/tmp/my locks/app')`)
    assert.isTrue(
      corrupt("/tmp/locks/app", "InsecureMode", "lock home has mode 0777").endsWith(
        "if it is yours, make it private: chmod 700 /tmp/locks/app"
      )
    )
    assert.include(
      corrupt(DATABASE, "UnreadableRecord", "owner record is unreadable: not JSON"),
      "look at its row (SELECT * FROM effect_pidlock WHERE name = 'app')"
    )
  })

  it("NameClash: another user uses this name here; another name or a directory of one's own", () => {
    assert.strictEqual(
      new PidLock.NameClash({ path: "/tmp/app", ownerUid: 1001, effectiveUid: 1000 }).message,
      `/tmp/app belongs to uid 1001, not to this process's effective uid 1000: another user uses the lock name "app" ` +
        `in /tmp. Choose another name, or a directory of your own: the option dir, or $PIDLOCK_DIR (--dir on the ` +
        `command line)`
    )
  })

  it("LockCompromised: what happened, and whether the work was stopped", () => {
    const lost = new PidLock.LockCompromised({ location: LOCATION, owner: holder })
    assert.strictEqual(
      lost.message,
      `${LOCATION} was lost while this process held it (its owner entry was removed). Stop the work that relies on ` +
        `the lock: another process may hold it now. Find out what took it (a temporary-file cleaner, effect-pidlock ` +
        `break --force) before starting again`
    )
    const stopped = new PidLock.LockCompromised({
      location: DATABASE,
      owner: holder,
      detail: "its session ended",
      workStopped: true
    })
    assert.include(stopped.message, "(its session ended). The work under the lock was stopped")
    assert.include(stopped.message, "a terminated session, a failover")
  })

  it("UnsupportedPlatform: what is supported", () => {
    assert.strictEqual(
      new ProcessInfo.UnsupportedPlatform({ platform: "aix" }).message,
      `ProcessInfo: no implementation for platform "aix". Supported: Linux (containers included), macOS and ` +
        `FreeBSD; elsewhere, provide layers of your own for ProcessInfo and Posix`
    )
  })

  it("UnsupportedPlatform on Windows: why", () => {
    assert.strictEqual(
      new ProcessInfo.UnsupportedPlatform({ platform: "win32" }).message,
      `ProcessInfo: Windows is not supported: it refuses to rename a directory onto an existing one, even an ` +
        `empty one, and that rename is how the lock is taken atomically. Supported: Linux (containers included), ` +
        `macOS and FreeBSD; elsewhere, provide layers of your own for ProcessInfo and Posix`
    )
  })
})

describe("an error prints as the one line of its message", () => {
  const error = lockHeld()
  const line = `LockHeld: ${error.message}`

  it("as a string, as its stack, and through Node's inspect (console.error), without its fields", () => {
    assert.strictEqual(String(error), line)
    assert.strictEqual(error.stack, line)
    assert.strictEqual(Util.inspect(error), line)
    assert.strictEqual(Util.format("%o", error), line)
  })

  it.effect("in Effect's printing of a failure, even one that failed inside a span (as runMain logs it)", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Effect.withSpan(error, "PidLock.acquire"))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        assert.strictEqual(Cause.pretty(exit.cause, { renderErrorCause: true }), line)
        assert.strictEqual(Option.getOrThrow(Cause.failureOption(exit.cause)), error)
      }
    }))
})

describe("an unreadable owner record is said in words", () => {
  const entry = "12.ab"
  const valid = { ...holder, pid: 12 }
  const records: ReadonlyArray<readonly [string, string]> = [
    [" ", "not JSON"],
    ["{not json", "not JSON"],
    ["[1,2]", "JSON of a list, not of an object"],
    ["42", "JSON of 42, not of an object"],
    [JSON.stringify({ v: 1, pid: "12" }), `field pid is "12", not a positive whole number`],
    [JSON.stringify({ ...valid, v: 2 }), "field v is 2, not 1, the only version there is"],
    [JSON.stringify({ ...valid, startTime: undefined }), "field startTime is missing"],
    [JSON.stringify({ ...valid, bootId: null }), "field bootId is null, not a string"],
    [JSON.stringify({ ...valid, cmdline: ["node", 7] }), "field cmdline[1] is 7, not a string"],
    [JSON.stringify({ ...valid, cmdline: "node" }), `field cmdline is "node", not a list of strings`],
    [JSON.stringify({ ...valid, token: "AB" }), `field token is "AB", not a string of lowercase hexadecimal digits`],
    [
      JSON.stringify({ ...valid, socket: "../1.ab.sock" }),
      `field socket is "../1.ab.sock", not a name <pid>.<token>.sock`
    ],
    [JSON.stringify({ ...valid, hostname: { name: "x" } }), "field hostname is an object, not a string"]
  ]
  for (const [text, says] of records) {
    it.scopedLive(`${JSON.stringify(text).slice(0, 60)}: ${says}`, () =>
      withFixture(memoryEnvironment, ({ dir, fs, home }) =>
        Effect.gen(function*() {
          const lock = Path.join(home, "lock")
          yield* fs.makeDirectory(lock, { recursive: true })
          yield* fs.symlink(text, Path.join(lock, entry))
          const error = yield* Effect.flip(Effect.scoped(PidLock.acquire({ name: NAME, dir })))
          assert.strictEqual(error._tag, "CorruptLock")
          if (error._tag === "CorruptLock") {
            assert.deepStrictEqual(
              { reason: error.reason, path: error.path, detail: error.detail },
              {
                reason: "UnreadableRecord",
                path: Path.join(lock, entry),
                detail: `owner record is unreadable: ${says}`
              }
            )
          }
        })))
  }
})

describe("a lost lock is reported once", () => {
  const test = (name: string, body: Parameters<typeof withFixture<void, unknown>>[1]) =>
    it.scopedLive(name, () => withFixture(memoryEnvironment, body))

  // The owner entry of the lock `name` once it is held, removed as a
  // temporary-file cleaner would.
  const removeEntryOf = (fs: Parameters<Parameters<typeof test>[1]>[0]["fs"], dir: string, name: string) =>
    fs.readDirectory(Path.join(dir, name, "lock")).pipe(
      Effect.filterOrFail((entries) => entries.length === 1),
      Effect.retry(Schedule.spaced("5 millis")),
      Effect.flatMap(([entry]) => fs.remove(Path.join(dir, name, "lock", entry!)))
    )

  const lossLogs = (logs: ReadonlyArray<string>) => logs.filter((line) => line.includes("was lost"))

  test("withLock: the loss stops the work and is its failure, with no warning besides", ({ dir, fs, logs }) =>
    Effect.gen(function*() {
      const guarded = yield* Effect.fork(PidLock.withLock(Effect.never, { name: NAME, dir }))
      yield* removeEntryOf(fs, dir, NAME)
      const exit = yield* Fiber.await(guarded)
      const error = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
      assert.strictEqual(error?._tag, "LockCompromised")
      if (error?._tag === "LockCompromised") {
        assert.isTrue(error.workStopped)
        assert.include(error.message, "The work under the lock was stopped")
      }
      assert.deepStrictEqual(lossLogs(logs), [])
    }))

  test("withLock: a loss found by the release at the end is its failure, with no warning besides", ({ dir, fs, logs }) =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        PidLock.withLock(removeEntryOf(fs, dir, NAME), { name: NAME, dir, checkInterval: false })
      )
      assert.strictEqual(error._tag, "LockCompromised")
      if (error._tag === "LockCompromised") assert.isUndefined(error.workStopped)
      assert.deepStrictEqual(lossLogs(logs), [])
    }))

  test("a loss the program got from lost is not warned of when the scope closes", ({ dir, fs, logs }) =>
    Effect.gen(function*() {
      yield* Effect.scoped(Effect.gen(function*() {
        const lock = yield* PidLock.acquire({ name: NAME, dir })
        yield* fs.remove(lock.entry)
        assert.strictEqual((yield* Effect.flip(lock.lost))._tag, "LockCompromised")
      }))
      assert.deepStrictEqual(lossLogs(logs), [])
    }))

  test("a loss the program got from verify is not warned of when the scope closes", ({ dir, fs, logs }) =>
    Effect.gen(function*() {
      yield* Effect.scoped(Effect.gen(function*() {
        const lock = yield* PidLock.acquire({ name: NAME, dir, checkInterval: false })
        yield* fs.remove(lock.entry)
        assert.strictEqual((yield* Effect.flip(lock.verify))._tag, "LockCompromised")
      }))
      assert.deepStrictEqual(lossLogs(logs), [])
    }))

  test("a loss that nothing told the program is warned of once, when the scope closes", ({ dir, fs, logs }) =>
    Effect.gen(function*() {
      yield* Effect.scoped(Effect.gen(function*() {
        const lock = yield* PidLock.acquire({ name: NAME, dir })
        yield* fs.remove(lock.entry)
        // The watchdog finds it meanwhile; nobody looks at lost.
        yield* Effect.sleep("50 millis")
      }))
      assert.strictEqual(lossLogs(logs).length, 1, logs.join("\n"))
      assert.include(lossLogs(logs)[0], `PidLock: release of ${Path.join(dir, NAME, "lock")} failed`)
    }))
})

// The fixture loads the built package (dist/): run `npm run build` after
// changing src/.
describe("an uncaught LockHeld under Layer.launch (real processes)", () => {
  const LAUNCH = fileURLToPath(new URL("./fixtures/launch.mjs", import.meta.url))

  const tempDir = Effect.acquireRelease(
    Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "pidlock-launch-"))),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )

  // A first process holds the lock; a second launches the same layer. The
  // message as the second one's lock made it, from the holder's record.
  const launchAgainst = (...flags: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const first = yield* spawnNode(LAUNCH, ["--dir", dir, "--name", NAME])
      const ready = yield* waitForLine(first, "ready")
      const second = yield* spawnNode(LAUNCH, ["--dir", dir, "--name", NAME, ...flags])
      const status = yield* waitForExit(second)
      const message = new PidLock.LockHeld({
        location: Path.join(dir, NAME, "lock"),
        holder: JSON.parse(Fs.readlinkSync(String(ready.entry))),
        verdict: ProcessInfo.Verdict.Alive(),
        heldByThisProcess: false
      }).message
      assert.include(message, `is held by pid ${first.pid} on `)
      assert.include(message, `(${process.execPath} ${LAUNCH} --dir ${dir} --name ${NAME})`)
      return { message, second, status }
    })

  it.scopedLive("runMain reports it in one line that names the holder: no stack, no fields", () =>
    Effect.gen(function*() {
      const { message, second, status } = yield* launchAgainst()
      assert.strictEqual(status.code, 1, describeChild(second))
      // runMain's logger writes to stdout: a header, then the error.
      const [header, ...rest] = second.lines.filter((line) => line !== "")
      assert.match(header ?? "", /^\[\d\d:\d\d:\d\d\.\d{3}\] ERROR \(#\d+\):$/, describeChild(second))
      assert.deepStrictEqual(rest, [`  LockHeld: ${message}`], describeChild(second))
      assert.strictEqual(second.stderr(), "")
    }))

  it.scopedLive("caught with catchTag as the README shows: the message alone on stderr, and the exit code chosen", () =>
    Effect.gen(function*() {
      const { message, second, status } = yield* launchAgainst("--catch")
      assert.strictEqual(status.code, 75, describeChild(second))
      assert.strictEqual(second.stderr(), `${message}\n`)
      assert.deepStrictEqual(second.lines, [])
    }))
})
