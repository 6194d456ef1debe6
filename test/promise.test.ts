// The Promise adapter on the real Node file system, as a program without
// Effect uses it. The tests of the process's life run
// test/fixtures/promise-child.mjs, which loads the built package (dist/) by
// its own name: `npm test` builds first; after changing src/, run
// `npm run build`.
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Util from "node:util"
import { afterEach, assert, beforeEach, describe, it } from "vitest"
import * as PidLock from "../src/PidLock.js"
import * as PromiseLock from "../src/promise.js"

const NAME = "promise-test"
// Short, so that a lost lock is found at once even where no watch event comes;
// in the short form the CLI takes.
const CHECK_INTERVAL = "50ms"

let dir: string
beforeEach(() => {
  dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "pidlock-promise-"))
})
afterEach(() => {
  Fs.rmSync(dir, { recursive: true, force: true })
})

const CHILD_FIXTURE = fileURLToPath(new URL("./fixtures/promise-child.mjs", import.meta.url))

interface Child {
  readonly process: ChildProcess.ChildProcess
  /** The data of the first stdout line `<word> <json>`. */
  readonly line: (word: string) => Promise<any>
  /** Every word printed on stdout so far. */
  readonly words: () => Array<string>
  readonly exited: Promise<{
    readonly code: number | null
    readonly signal: NodeJS.Signals | null
    readonly stdout: string
    readonly stderr: string
  }>
}

const children: Array<ChildProcess.ChildProcess> = []
afterEach(() => {
  // A child that outlives its test (it failed) is killed, so that it does not
  // hold the runner open.
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  }
})

const spawnChild = (mode: string, ...args: ReadonlyArray<string>): Child => {
  const child = ChildProcess.spawn(process.execPath, [CHILD_FIXTURE, mode, dir, NAME, ...args], { stdio: "pipe" })
  children.push(child)
  const lines: Array<[string, unknown]> = []
  let partial = ""
  let stdout = ""
  let stderr = ""
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk
    const parts = (partial + chunk).split("\n")
    partial = parts.pop()!
    for (const part of parts) {
      const space = part.indexOf(" ")
      lines.push([part.slice(0, space), JSON.parse(part.slice(space + 1))])
    }
  })
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => void (stderr += chunk))
  const exited = new Promise<Awaited<Child["exited"]>>((resolve) =>
    child.once("close", (code, signal) => resolve({ code, signal, stdout, stderr }))
  )
  const find = (word: string) => lines.find(([printed]) => printed === word)
  const line = (word: string) =>
    new Promise<any>((resolve, reject) => {
      const check = () => {
        const found = find(word)
        if (found !== undefined) {
          child.stdout.off("data", check)
          resolve(found[1])
        }
      }
      child.stdout.on("data", check)
      check()
      void exited.then(({ code, stderr }) => {
        const found = find(word)
        if (found !== undefined) resolve(found[1])
        else reject(new Error(`exited (${code}) without printing ${word}: ${stderr}`))
      })
    })
  return { process: child, line, words: () => lines.map(([word]) => word), exited }
}

const rejection = (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(() => assert.fail("expected a rejection"), (error: unknown) => error)

// Resolves once `promise` has rejected, without attaching a handler to it:
// `util.inspect` shows a promise's state.
const untilRejected = async (promise: Promise<unknown>): Promise<void> => {
  while (!Util.inspect(promise).includes("<rejected>")) {
    await new Promise((resume) => setTimeout(resume, 10))
  }
}

describe("effect-pidlock/promise", () => {
  it("acquires and releases a lock", async () => {
    const lock = await PromiseLock.acquire({ name: NAME, dir })
    assert.deepStrictEqual(Fs.readdirSync(lock.path), [Path.basename(lock.entry)])
    assert.strictEqual(lock.owner.pid, process.pid)
    assert.strictEqual(lock.generation, 1)
    await lock.verify()
    await lock.release()
    assert.deepStrictEqual(Fs.readdirSync(lock.path), [])
    await lock.release()
    const again = await PromiseLock.acquire({ name: NAME, dir })
    assert.strictEqual(again.generation, 2)
    await again.release()
  })

  it("exports the error classes of effect-pidlock/PidLock themselves", () => {
    const names = [
      "LockHeld",
      "StaleLock",
      "PermissionDenied",
      "InvalidOptions",
      "CorruptLock",
      "NameClash",
      "LockCompromised"
    ] as const
    for (const name of names) assert.strictEqual(PromiseLock[name], PidLock[name], name)
  })

  it("rejects a second acquire with the LockHeld error itself", async () => {
    const lock = await PromiseLock.acquire({ name: NAME, dir })
    const error = await rejection(PromiseLock.acquire({ name: NAME, dir }))
    assert.instanceOf(error, PromiseLock.LockHeld)
    assert.strictEqual(error._tag, "LockHeld")
    assert.strictEqual(error.location, lock.path)
    assert.isTrue(error.heldByThisProcess)
    assert.strictEqual(error.holder.token, lock.owner.token)
    assert.strictEqual(error.verdict._tag, "Alive")
    await lock.release()
  })

  // Only root can give a directory to another user.
  it.runIf(process.geteuid?.() === 0)(
    "rejects a lock home of another user's with NameClash, and touches nothing",
    async () => {
      const home = Path.join(dir, NAME)
      Fs.mkdirSync(home, { mode: 0o700 })
      Fs.chownSync(home, 1, 1)
      const error = await rejection(PromiseLock.acquire({ name: NAME, dir }))
      assert.instanceOf(error, PromiseLock.NameClash)
      assert.strictEqual(error.path, home)
      assert.strictEqual(error.ownerUid, 1)
      assert.strictEqual(error.effectiveUid, 0)
      assert.deepStrictEqual(Fs.readdirSync(home), [])
    }
  )

  it("inspect resolves with undefined while the lock is free, and with its holder while it is held", async () => {
    assert.isUndefined(await PromiseLock.inspect({ name: NAME, dir }))
    const lock = await PromiseLock.acquire({ name: NAME, dir })
    const status = await PromiseLock.inspect({ name: NAME, dir })
    assert.strictEqual(status?.location, lock.path)
    assert.strictEqual(status?.holder.token, lock.owner.token)
    assert.strictEqual(status?.verdict._tag, "Alive")
    assert.isTrue(status?.heldByThisProcess)
    await lock.release()
    assert.isUndefined(await PromiseLock.inspect({ name: NAME, dir }))
    const error = await rejection(PromiseLock.inspect({ name: "a/b", dir }))
    assert.instanceOf(error, PromiseLock.InvalidOptions)
    assert.strictEqual(error.option, "name")
  })

  it("rejects an invalid name with InvalidOptions and touches nothing", async () => {
    const error = await rejection(PromiseLock.acquire({ name: "a/b", dir }))
    assert.instanceOf(error, PromiseLock.InvalidOptions)
    assert.strictEqual(error.option, "name")
    assert.deepStrictEqual(Fs.readdirSync(dir), [])
  })

  for (const option of ["wait", "checkInterval"] as const) {
    it(`rejects a ${option} that is no duration with InvalidOptions saying what is allowed`, async () => {
      for (const value of ["30 parsecs", "", "-1s", "abc"]) {
        const options = { name: NAME, dir, [option]: value } as unknown as PromiseLock.Options
        const error = await rejection(PromiseLock.acquire(options))
        assert.instanceOf(error, PromiseLock.InvalidOptions)
        assert.strictEqual(error.option, option)
        assert.strictEqual(error.value, value)
        assert.include(error.reason, "30s")
      }
      assert.deepStrictEqual(Fs.readdirSync(dir), [])
    })
  }

  it("rejects a log that is neither false nor a level with InvalidOptions, and touches nothing", async () => {
    for (const log of [true, "verbose", "INFO"]) {
      const options = { name: NAME, dir, log } as unknown as PromiseLock.Options
      const error = await rejection(PromiseLock.withLock(options, () => assert.fail("the body ran")))
      assert.instanceOf(error, PromiseLock.InvalidOptions)
      assert.strictEqual(error.option, "log")
      assert.strictEqual(error.value, log)
      assert.include(error.reason, `"debug"`)
    }
    assert.deepStrictEqual(Fs.readdirSync(dir), [])
  })

  it("rejects options that are not an object with InvalidOptions, not a TypeError", async () => {
    for (const options of [null, undefined, "x"]) {
      const acquired = await rejection(PromiseLock.acquire(options as unknown as PromiseLock.Options))
      assert.instanceOf(acquired, PromiseLock.InvalidOptions)
      assert.strictEqual(acquired.option, "options")
      let ran = false
      const locked = await rejection(PromiseLock.withLock(options as unknown as PromiseLock.Options, () => {
        ran = true
      }))
      assert.instanceOf(locked, PromiseLock.InvalidOptions)
      assert.strictEqual(locked.option, "options")
      assert.isFalse(ran)
    }
    assert.deepStrictEqual(Fs.readdirSync(dir), [])
  })

  it("release called twice at once gives both callers the same outcome", async () => {
    const lock = await PromiseLock.acquire({ name: NAME, dir })
    const released = await Promise.allSettled([lock.release(), lock.release()])
    assert.deepStrictEqual(released, [
      { status: "fulfilled", value: undefined },
      { status: "fulfilled", value: undefined }
    ])
    assert.deepStrictEqual(Fs.readdirSync(lock.path), [])

    const compromised = await PromiseLock.acquire({ name: NAME, dir })
    Fs.rmSync(compromised.entry)
    const [first, second] = (await Promise.allSettled([compromised.release(), compromised.release()])).map(
      (outcome) => outcome.status === "rejected" ? outcome.reason : "fulfilled"
    )
    assert.instanceOf(first, PromiseLock.LockCompromised)
    assert.strictEqual(second, first)
  })

  it("a waiter gets the lock once its holder releases it", async () => {
    const holder = await PromiseLock.acquire({ name: NAME, dir })
    const waiting = PromiseLock.acquire({ name: NAME, dir, wait: "20s" })
    await holder.release()
    const waiter = await waiting
    assert.notStrictEqual(waiter.entry, holder.entry)
    await waiter.release()
  })

  it("withLock returns the body's result and releases the lock", async () => {
    const result = await PromiseLock.withLock({ name: NAME, dir }, async (lock) => {
      assert.lengthOf(Fs.readdirSync(lock.path), 1)
      return 42
    })
    assert.strictEqual(result, 42)
    const again = await PromiseLock.acquire({ name: NAME, dir })
    await again.release()
  })

  it("withLock releases the lock when the body throws, and rejects with its error", async () => {
    const thrown = new Error("the body failed")
    const error = await rejection(PromiseLock.withLock({ name: NAME, dir }, () => {
      throw thrown
    }))
    assert.strictEqual(error, thrown)
    const again = await PromiseLock.acquire({ name: NAME, dir })
    await again.release()
  })

  it("lost rejects with LockCompromised when the owner entry is deleted", async () => {
    const lock = await PromiseLock.acquire({ name: NAME, dir, checkInterval: CHECK_INTERVAL })
    Fs.rmSync(lock.entry)
    const error = await rejection(lock.lost)
    assert.instanceOf(error, PromiseLock.LockCompromised)
    assert.instanceOf(await rejection(lock.release()), PromiseLock.LockCompromised)
  })

  it("an unobserved lost lock is never an unhandled rejection", async () => {
    const unhandled: Array<unknown> = []
    const onUnhandled = (reason: unknown) => unhandled.push(reason)
    process.on("unhandledRejection", onUnhandled)
    try {
      const lock = await PromiseLock.acquire({ name: NAME, dir, checkInterval: CHECK_INTERVAL })
      Fs.rmSync(lock.entry)
      await untilRejected(lock.lost)
      // Node reports unhandled rejections once the microtask queue drains.
      await new Promise((resume) => setImmediate(resume))
      assert.deepStrictEqual(unhandled, [])
      await rejection(lock.release())
    } finally {
      process.off("unhandledRejection", onUnhandled)
    }
  })

  it("withLock rejects with LockCompromised when the lock is lost while the body runs", async () => {
    const options: PromiseLock.Options = { name: NAME, dir, checkInterval: CHECK_INTERVAL }
    const error = await rejection(PromiseLock.withLock(options, async (lock) => {
      Fs.rmSync(lock.entry)
      await rejection(lock.lost)
      return "finished"
    }))
    assert.instanceOf(error, PromiseLock.LockCompromised)
  })

  describe("guard runs the original pidlock README example", () => {
    type Call = Parameters<PromiseLock.GuardCallback>
    const KEY = "supercalifragilisticexpialidocious"

    // The synopsis of the original README, but for its `require` line: it is
    // JavaScript, run as its users run it, in the test's directory.
    const readmeSynopsis = `
pidlock.guard('/tmp', 'supercalifragilisticexpialidocious', function(error, data, cleanup) {
  if (!error) {
    // Should run.
    run();
    cleanup();
  } else {
    // Another instance is already running.
  }
});`

    // Runs the synopsis with a `guard` that also reports how it called the
    // synopsis's callback.
    const runReadmeSynopsis = (run: () => void): Promise<Call> =>
      new Promise((reportCall) => {
        const pidlock = {
          guard: (dir: string, key: string, callback: PromiseLock.GuardCallback) =>
            PromiseLock.guard(dir, key, (...call) => {
              callback(...call)
              reportCall(call)
            })
        }
        new Function("pidlock", "run", readmeSynopsis.replace("'/tmp'", JSON.stringify(dir)))(pidlock, run)
      })

    it("runs when no other instance holds the lock, and cleanup releases it", async () => {
      let runs = 0
      const [error, lock] = await runReadmeSynopsis(() => runs++)
      assert.isNull(error)
      assert.strictEqual(runs, 1)
      assert.strictEqual(lock?.owner.pid, process.pid)
      // The synopsis does not wait for cleanup(): wait for the lock instead.
      const next = await PromiseLock.acquire({ name: KEY, dir, wait: "20 seconds" })
      await next.release()
    })

    it("gets an error while a first guard holds the lock", async () => {
      const firstCleanup = await new Promise<() => Promise<void>>((resolve, reject) =>
        PromiseLock.guard(dir, KEY, (error, _lock, cleanup) => {
          if (!error) resolve(cleanup)
          else reject(error)
        })
      )
      let runs = 0
      const [error] = await runReadmeSynopsis(() => runs++)
      assert.instanceOf(error, PromiseLock.LockHeld)
      assert.strictEqual(runs, 0)
      await firstCleanup()
      await firstCleanup()
      assert.deepStrictEqual(Fs.readdirSync(Path.join(dir, KEY, "lock")), [])
    })

    it("passes a cleanup that does nothing and resolves when the lock is not acquired", async () => {
      const holder = await PromiseLock.acquire({ name: KEY, dir })
      const [error, lock, cleanup] = await new Promise<Call>((resolve) =>
        PromiseLock.guard(dir, KEY, (...call) => resolve(call))
      )
      assert.instanceOf(error, PromiseLock.LockHeld)
      assert.isUndefined(lock)
      assert.isUndefined(await cleanup())
      assert.deepStrictEqual(Fs.readdirSync(holder.path), [Path.basename(holder.entry)])
      await holder.release()
    })
  })

  describe("the life of the process", () => {
    const lockPath = () => Path.join(dir, NAME, "lock")

    it("guard: the process exits once its work is done without cleanup(), and the lock is free", async () => {
      const child = spawnChild("return")
      const guarded = await child.line("guarded")
      assert.isNull(guarded.error)
      assert.strictEqual(Path.dirname(guarded.entry), lockPath())
      const { code, stderr } = await child.exited
      assert.strictEqual(code, 0, stderr)
      assert.deepStrictEqual(Fs.readdirSync(lockPath()), [])
    })

    it("guard: the lock is held while the process lives, and removed when it exits", async () => {
      const child = spawnChild("hold")
      const { entry } = await child.line("guarded")
      const error = await rejection(PromiseLock.acquire({ name: NAME, dir }))
      assert.instanceOf(error, PromiseLock.LockHeld)
      assert.strictEqual(error.holder.pid, child.process.pid)
      assert.deepStrictEqual(Fs.readdirSync(lockPath()), [Path.basename(entry)])
      child.process.stdin!.end("done\n")
      const { code, stderr } = await child.exited
      assert.strictEqual(code, 0, stderr)
      assert.deepStrictEqual(Fs.readdirSync(lockPath()), [])
    })

    it("guard: the lock is still watched while the process lives", async () => {
      const child = spawnChild("hold")
      const { entry } = await child.line("guarded")
      Fs.rmSync(entry)
      assert.deepStrictEqual(await child.line("lost"), { _tag: "LockCompromised" })
      child.process.stdin!.end("done\n")
      const { code, stderr } = await child.exited
      assert.strictEqual(code, 0, stderr)
    })

    it("guard: what the callback throws is an uncaught exception, not an unhandled rejection", async () => {
      const child = spawnChild("observe")
      assert.deepStrictEqual(await child.line("uncaughtException"), { message: "thrown by the callback" })
      const { code, stderr } = await child.exited
      assert.strictEqual(code, 0, stderr)
      assert.notInclude(child.words(), "unhandledRejection")
      assert.deepStrictEqual(Fs.readdirSync(lockPath()), [])
    })

    it("guard: unhandled, it ends the process as in the original, and the lock is removed", async () => {
      const child = spawnChild("throw")
      await child.line("guarded")
      const { code, stderr } = await child.exited
      assert.strictEqual(code, 1)
      assert.include(stderr, "thrown by the callback")
      assert.deepStrictEqual(Fs.readdirSync(lockPath()), [])
    })

    it("acquire: a lock still held at process.exit() is removed", async () => {
      const child = spawnChild("exit")
      await child.line("acquired")
      const { code, stderr } = await child.exited
      assert.strictEqual(code, 0, stderr)
      assert.deepStrictEqual(Fs.readdirSync(lockPath()), [])
    })

    // Leaves the lock of a holder killed with SIGKILL, and returns its pid.
    const killedHolder = async (): Promise<number> => {
      const child = spawnChild("keep")
      await child.line("acquired")
      child.process.kill("SIGKILL")
      const { signal } = await child.exited
      assert.strictEqual(signal, "SIGKILL")
      return child.process.pid!
    }

    it("acquire: a dead holder's lock is StaleLock under onStale: \"fail\", with its holder and reason", async () => {
      const pid = await killedHolder()
      const error = await rejection(PromiseLock.acquire({ name: NAME, dir, onStale: "fail" }))
      assert.instanceOf(error, PromiseLock.StaleLock)
      assert.strictEqual(error.path, lockPath())
      assert.strictEqual(error.holder.pid, pid)
      assert.strictEqual(error.reason, "Exited")
    })

    it("acquire: a takeover is one line on stderr by default, and stdout stays empty", async () => {
      const pid = await killedHolder()
      const { code, stderr, stdout } = await spawnChild("quiet").exited
      assert.strictEqual(code, 0, stderr)
      assert.strictEqual(stdout, "")
      const lines = stderr.trimEnd().split("\n")
      assert.lengthOf(lines, 1, stderr)
      assert.match(lines[0]!, /level=INFO .*taking over/)
      assert.include(lines[0], `holderPid=${pid}`)
    })

    it("acquire: log: false writes nothing on either stream", async () => {
      await killedHolder()
      const { code, stderr, stdout } = await spawnChild("quiet", "false").exited
      assert.strictEqual(code, 0, stderr)
      assert.strictEqual(stdout, "")
      assert.strictEqual(stderr, "")
      assert.deepStrictEqual(Fs.readdirSync(lockPath()), [])
    })

    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      it(`acquire: the lock keeps the process alive, without a watchdog too; ${signal} frees it and ends the process`, async () => {
        const child = spawnChild("keep")
        const { entry } = await child.line("acquired")
        const status = await PromiseLock.inspect({ name: NAME, dir })
        assert.strictEqual(status?.holder.pid, child.process.pid)
        child.process.kill(signal)
        const exited = await child.exited
        assert.deepStrictEqual([exited.code, exited.signal], [null, signal], exited.stderr)
        assert.notInclude(child.words(), "drained", "the event loop ran dry while the lock was held")
        assert.deepStrictEqual(Fs.readdirSync(lockPath()), [], `${Path.basename(entry)} was left`)
        assert.isUndefined(await PromiseLock.inspect({ name: NAME, dir }))
      })
    }

    it("acquire: a program that handles SIGINT itself releases the lock in its handler", async () => {
      const child = spawnChild("trap")
      await child.line("acquired")
      child.process.kill("SIGINT")
      assert.deepStrictEqual(await child.line("released"), {})
      const { code, stderr } = await child.exited
      assert.strictEqual(code, 0, stderr)
      assert.isUndefined(await PromiseLock.inspect({ name: NAME, dir }))
    })
  })
})

describe("effect-pidlock/promise: messages", () => {
  it("send reaches a holder's onMessage in another process; what it throws is Refused (Declined)", async () => {
    const holder = spawnChild("serve")
    await holder.line("acquired")
    const reply = await PromiseLock.send({ name: NAME, dir, data: { open: ["a.txt"] } })
    const { argv, echo, pid } = reply as { echo: unknown; argv: Array<string>; pid: number }
    assert.deepStrictEqual(echo, { open: ["a.txt"] })
    assert.strictEqual(pid, process.pid)
    assert.isTrue(argv.length > 0 && argv.every((arg) => typeof arg === "string"), "the sender's command line")
    const declined = await rejection(PromiseLock.send({ name: NAME, dir, data: "decline" }))
    assert.instanceOf(declined, PromiseLock.Refused)
    assert.strictEqual((declined as PromiseLock.Refused).reason, "Declined")
    assert.include((declined as PromiseLock.Refused).message, "no thanks")
    holder.process.kill("SIGKILL")
    await holder.exited
    const gone = await rejection(PromiseLock.send({ name: NAME, dir, data: 1 }))
    assert.instanceOf(gone, PromiseLock.NoHolder)
  })

  it("a child's send gets this process's onMessage reply; a lock without onMessage refuses at once", async () => {
    const lock = await PromiseLock.acquire({
      name: NAME,
      dir,
      checkInterval: CHECK_INTERVAL,
      onMessage: (message) => ({ got: message.data, from: message.pid })
    })
    try {
      const sender = spawnChild("send", JSON.stringify(["x", 1]))
      const { data } = await sender.line("reply")
      assert.deepStrictEqual(data, { got: ["x", 1], from: sender.process.pid })
      assert.strictEqual((await sender.exited).code, 0)
    } finally {
      await lock.release()
    }
    const deaf = await PromiseLock.acquire({ name: NAME, dir, checkInterval: CHECK_INTERVAL })
    try {
      // Refused, not Timeout: the holder answered it (a holder that never
      // answered would leave the child its Timeout after 3 s).
      const sender = spawnChild("send", "null")
      const error = await sender.line("error")
      assert.strictEqual(error._tag, "Refused")
      assert.strictEqual(error.reason, "NotServed")
      assert.include(error.message, "no onMessage option")
      assert.strictEqual((await sender.exited).code, 1)
    } finally {
      await deaf.release()
    }
  })

  it("a message over 64 KiB is MessageTooLarge; an onMessage that is no function InvalidOptions", async () => {
    const tooLarge = await rejection(PromiseLock.send({ name: NAME, dir, data: "x".repeat(70_000) }))
    // Nobody holds the lock: told before the size, which needs a holder to matter.
    assert.instanceOf(tooLarge, PromiseLock.NoHolder)
    const holder = spawnChild("serve")
    await holder.line("acquired")
    const large = await rejection(PromiseLock.send({ name: NAME, dir, data: "x".repeat(70_000) }))
    assert.instanceOf(large, PromiseLock.MessageTooLarge)
    holder.process.kill("SIGKILL")
    await holder.exited
    const invalid = await rejection(PromiseLock.acquire({ name: NAME, dir, onMessage: "yes" as never }))
    assert.instanceOf(invalid, PidLock.InvalidOptions)
    assert.strictEqual((invalid as PidLock.InvalidOptions).option, "onMessage")
  })
})
