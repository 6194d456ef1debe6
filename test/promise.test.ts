// The Promise adapter on the real Node file system, as a program without
// Effect uses it.
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Util from "node:util"
import { afterEach, assert, beforeEach, describe, it } from "vitest"
import * as PidLock from "../src/PidLock.js"
import * as PromiseLock from "../src/promise.js"

const NAME = "promise-test"
// Short, so that a lost lock is found at once even where no watch event comes.
const CHECK_INTERVAL = "50 millis"

let dir: string
beforeEach(() => {
  dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "pidlock-promise-"))
})
afterEach(() => {
  Fs.rmSync(dir, { recursive: true, force: true })
})

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
    await lock.verify()
    await lock.release()
    assert.deepStrictEqual(Fs.readdirSync(lock.path), [])
    await lock.release()
    const again = await PromiseLock.acquire({ name: NAME, dir })
    await again.release()
  })

  it("rejects a second acquire with the LockHeld error itself", async () => {
    const lock = await PromiseLock.acquire({ name: NAME, dir })
    const error = await rejection(PromiseLock.acquire({ name: NAME, dir }))
    assert.instanceOf(error, PidLock.LockHeld)
    assert.strictEqual(error._tag, "LockHeld")
    assert.isTrue(error.heldByThisProcess)
    assert.strictEqual(error.holder.token, lock.owner.token)
    await lock.release()
  })

  it("rejects an invalid name with InvalidOptions and touches nothing", async () => {
    const error = await rejection(PromiseLock.acquire({ name: "a/b", dir }))
    assert.instanceOf(error, PidLock.InvalidOptions)
    assert.strictEqual(error.option, "name")
    assert.deepStrictEqual(Fs.readdirSync(dir), [])
  })

  it("a waiter gets the lock once its holder releases it", async () => {
    const holder = await PromiseLock.acquire({ name: NAME, dir })
    const waiting = PromiseLock.acquire({ name: NAME, dir, wait: "20 seconds" })
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
    assert.instanceOf(error, PidLock.LockCompromised)
    assert.instanceOf(await rejection(lock.release()), PidLock.LockCompromised)
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
    const options: PidLock.Options = { name: NAME, dir, checkInterval: CHECK_INTERVAL }
    const error = await rejection(PromiseLock.withLock(options, async (lock) => {
      Fs.rmSync(lock.entry)
      await rejection(lock.lost)
      return "finished"
    }))
    assert.instanceOf(error, PidLock.LockCompromised)
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
      assert.instanceOf(error, PidLock.LockHeld)
      assert.strictEqual(runs, 0)
      await firstCleanup()
      await firstCleanup()
      assert.deepStrictEqual(Fs.readdirSync(Path.join(dir, KEY, "lock")), [])
    })
  })
})
