// The edges of real deployments, each reproduced with real processes: every
// lock is taken by test/fixtures/holder.mjs, which loads the built package
// (dist/) by its name; run `npm run build` after changing src/. Most tests need
// root: to run children as uid 65534, to plant directories in /run/lock, and
// to make pid and mount namespaces.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as FileSystem from "@effect/platform/FileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as ProcessInfo from "../src/ProcessInfo.js"
import { plantHolder, recordOf } from "./support/environment.js"

const HOLDER = fileURLToPath(new URL("./fixtures/holder.mjs", import.meta.url))
const REPO = fileURLToPath(new URL("..", import.meta.url))
const NOBODY = 65534
const isRoot = process.getuid?.() === 0
const ROOT_ONLY = "needs root (other uids, /run/lock, namespaces)"

// -----------------------------------------------------------------------------
// Support: child processes that print `<word> <json>` lines
// -----------------------------------------------------------------------------

interface Proc {
  readonly pid: number
  readonly lines: Array<string>
  readonly stderr: () => string
  /** Set once the process has exited and its output is closed. */
  readonly status: () => { readonly code: number | null; readonly signal: string | null } | undefined
  readonly kill: (signal: NodeJS.Signals) => void
}

// The environment of every child, without PIDLOCK_DIR: only the tests of the
// default directory set it.
const baseEnv = (): NodeJS.ProcessEnv => {
  const { PIDLOCK_DIR: _, ...env } = process.env
  return env
}

/**
 * Starts `command`; SIGKILLed (if still running) and awaited when the scope
 * closes. The finalizer awaits the exit, not the end of the output: a
 * grandchild (under nsenter) may keep the pipe open.
 */
const start = (command: string, args: ReadonlyArray<string>, options: ChildProcess.SpawnOptions = {}) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = ChildProcess.spawn(command, args, { cwd: REPO, env: baseEnv(), ...options, stdio: "pipe" })
      const lines: Array<string> = []
      let partial = ""
      let stderr = ""
      let status: { code: number | null; signal: string | null } | undefined
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
        const parts = (partial + chunk).split("\n")
        partial = parts.pop()!
        for (const line of parts) lines.push(line)
      })
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => void (stderr += chunk))
      const exited = new Promise<void>((resolve) => {
        child.once("exit", () => resolve())
        child.once("error", (error) => {
          stderr += String(error)
          status = { code: null, signal: null }
          resolve()
        })
      })
      child.once("close", (code, signal) => void (status = { code, signal }))
      const proc: Proc = {
        pid: child.pid ?? -1,
        lines,
        stderr: () => stderr,
        status: () => status,
        kill: (signal) => void child.kill(signal)
      }
      return { proc, child, exited }
    }),
    ({ child, exited }) =>
      Effect.promise(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
        return exited
      })
  ).pipe(Effect.map(({ proc }) => proc))

const holder = (args: ReadonlyArray<string>, options: ChildProcess.SpawnOptions = {}) =>
  start(process.execPath, [HOLDER, ...args], options)

const describeProc = (proc: Proc) =>
  `pid ${proc.pid} (status ${JSON.stringify(proc.status())}; stdout ${JSON.stringify(proc.lines)}; stderr ${
    JSON.stringify(proc.stderr())
  })`

/** Polls `check` every 10 ms until it returns something; a throw fails the test at once. */
const waitFor = <A>(what: string, check: () => A | undefined, seconds = 20): Effect.Effect<A, Error> =>
  Effect.gen(function*() {
    const deadline = Date.now() + seconds * 1000
    for (;;) {
      const value = yield* Effect.try({ try: check, catch: (error) => error as Error })
      if (value !== undefined) return value
      if (Date.now() > deadline) {
        return yield* Effect.fail(new Error(`timed out after ${seconds} s waiting for ${what}`))
      }
      yield* Effect.sleep("10 millis")
    }
  })

type Json = Record<string, any>

/** The JSON of the first `<word> <json>` line of `proc`. */
const lineOf = (proc: Proc, word: string, seconds = 20) =>
  waitFor(`"${word}" from ${proc.pid}`, (): Json | undefined => {
    const line = proc.lines.find((line) => line.startsWith(`${word} `))
    if (line !== undefined) return JSON.parse(line.slice(word.length + 1))
    if (proc.status() !== undefined) throw new Error(`no "${word}" line from ${describeProc(proc)}`)
    return undefined
  }, seconds)

const linesOf = (proc: Proc, word: string): Array<Json> =>
  proc.lines.filter((line) => line.startsWith(`${word} `)).map((line) => JSON.parse(line.slice(word.length + 1)))

const exitOf = (proc: Proc, seconds = 20) => waitFor(`exit of ${proc.pid}`, () => proc.status(), seconds)

/** A short command, run to its end. */
const run = (command: string, args: ReadonlyArray<string>) => {
  const result = ChildProcess.spawnSync(command, args, { encoding: "utf8", env: baseEnv() })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

const asNobody = (...command: ReadonlyArray<string>) => [
  "--reuid",
  String(NOBODY),
  "--regid",
  String(NOBODY),
  "--clear-groups",
  ...command
]

/** A scoped temporary directory with `mode` (and owner `uid`), removed with everything in it. */
const scratch = (mode = 0o700, uid?: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "pidlock-deploy-"))
      Fs.chmodSync(dir, mode)
      if (uid !== undefined) Fs.chownSync(dir, uid, uid)
      return dir
    }),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )

const lstatOrUndefined = (path: string) => {
  try {
    return Fs.lstatSync(path)
  } catch {
    return undefined
  }
}

const list = (path: string) => Fs.readdirSync(path).sort()

const permissions = (path: string) => Fs.lstatSync(path).mode & 0o7777

/** What `path` is, down to its inode and times: equal pictures mean untouched. */
const picture = (path: string) => {
  const { ctimeMs, gid, ino, mode, mtimeMs, uid } = Fs.lstatSync(path)
  const isLink = Fs.lstatSync(path).isSymbolicLink()
  return {
    path,
    uid,
    gid,
    mode,
    ino,
    mtimeMs,
    ctimeMs,
    target: isLink ? Fs.readlinkSync(path) : undefined,
    entries: !isLink && Fs.lstatSync(path).isDirectory() ? list(path) : undefined
  }
}

let names = 0
/** A lock name no other test (nor another run) uses: the default directory is shared. */
const uniqueName = () => `deploy-${process.pid}-${++names}-${Math.random().toString(16).slice(2, 8)}`

const perUserDir = (uid: number) => `/run/lock/effect-pidlock-${uid}`

/**
 * Removes, when the scope closes, the lock home `name` in `uid`'s default
 * directory, and that directory itself if it did not exist before and is
 * empty by then (another suite may be using it meanwhile).
 */
const cleanDefaultHome = (uid: number, name: string) =>
  Effect.acquireRelease(
    Effect.sync(() => lstatOrUndefined(perUserDir(uid)) !== undefined),
    (existed) =>
      Effect.sync(() => {
        const dir = perUserDir(uid)
        // Never through a symlink planted in /run/lock.
        if (lstatOrUndefined(dir)?.isDirectory()) Fs.rmSync(Path.join(dir, name), { recursive: true, force: true })
        if (!existed && lstatOrUndefined(dir)?.isDirectory()) {
          try {
            Fs.rmdirSync(dir)
          } catch (error) {
            console.warn(`deployment.test.ts: left ${dir}: ${(error as Error).message}`)
          }
        }
      })
  )

/** `path` must not exist before the test; what the test leaves there is removed (a link, not its target). */
const claimAbsent = (path: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      assert.isUndefined(lstatOrUndefined(path), `${path} exists before the test; remove it to run this test`)
      return path
    }),
    (path) => Effect.sync(() => Fs.rmSync(path, { recursive: true, force: true }))
  )

// This process's identity, as the lock records it (without the holder's socket).
const selfIdentity = Effect.map(ProcessInfo.ProcessInfo, (info) => info.self).pipe(
  Effect.provide(ProcessInfo.layerLinux.pipe(Layer.provide(NodeFileSystem.layer)))
)

/** The owner record of a held lock, read from its entry. */
const recordAt = (entry: string): Json => JSON.parse(Fs.readlinkSync(entry))

/** The pids of the children of `pid`. */
const childrenOf = (pid: number): Array<number> =>
  Fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter((s) => s !== "").map(Number)

/** Gone from /proc, or a zombie: it has exited, and its files (sockets) are closed. */
const hasExited = (pid: number) => {
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")
  } catch {
    return true
  }
}

const takeoverLogs = (proc: Proc) =>
  linesOf(proc, "log").map((log) => String(log.message)).filter((message) => message.includes("taking over"))

// -----------------------------------------------------------------------------
// Tests
// -----------------------------------------------------------------------------

describe.skipIf(!isRoot)(`deployment edges (${ROOT_ONLY})`, () => {
  describe("1. the default directory does not depend on the environment", () => {
    it.scopedLive("a holder with XDG_RUNTIME_DIR and TMPDIR and a cron-like contender meet in one lock", () =>
      Effect.gen(function*() {
        const system = Fs.lstatSync("/run/lock")
        assert.isTrue(
          system.isDirectory() && (system.mode & 0o1002) === 0o1002,
          "premise: /run/lock is sticky and writable by all"
        )
        const name = uniqueName()
        const uid = process.geteuid!()
        yield* cleanDefaultHome(uid, name)
        const xdg = yield* scratch()
        const tmp = yield* scratch()
        const home = Path.join(perUserDir(uid), name)

        const owner = yield* holder(["hold", "--name", name], {
          env: { PATH: process.env.PATH, HOME: Os.homedir(), XDG_RUNTIME_DIR: xdg, TMPDIR: tmp }
        })
        const ready = yield* lineOf(owner, "ready")
        assert.isTrue(String(ready.entry).startsWith(`${home}/lock/`), `holder's entry ${ready.entry}`)

        // As cron starts a job: nothing but PATH (env -i PATH=…).
        const contender = yield* holder(["try", "--name", name], { env: { PATH: process.env.PATH } })
        const error = yield* lineOf(contender, "error")
        assert.deepStrictEqual(
          { _tag: error._tag, location: error.location, holderPid: error.holderPid, verdict: error.verdict },
          { _tag: "LockHeld", location: `${home}/lock`, holderPid: owner.pid, verdict: "Alive" },
          describeProc(contender)
        )
        assert.deepStrictEqual([list(xdg), list(tmp)], [[], []], "nothing in XDG_RUNTIME_DIR nor TMPDIR")
      }))

    it.scopedLive("the per-user directory is made 0700 and owned by the user (uid 65534, umask 000)", () =>
      Effect.gen(function*() {
        const name = uniqueName()
        const dir = yield* claimAbsent(perUserDir(NOBODY))
        const home = Path.join(dir, name)

        const proc = yield* holder(["try", "--name", name, "--as-user", String(NOBODY), "--umask", "000"], {
          env: { PATH: process.env.PATH }
        })
        const acquired = yield* lineOf(proc, "acquired")
        assert.isTrue(String(acquired.entry).startsWith(`${home}/lock/`), `entry ${acquired.entry}`)
        const made = Fs.lstatSync(dir)
        assert.deepStrictEqual(
          { directory: made.isDirectory(), uid: made.uid, mode: permissions(dir) },
          { directory: true, uid: NOBODY, mode: 0o700 }
        )
        assert.deepStrictEqual({ uid: Fs.lstatSync(home).uid, mode: permissions(home) }, { uid: NOBODY, mode: 0o700 })
      }))

    it.scopedLive("a per-user directory planted by root is refused for uid 65534: CorruptLock ForeignOwner, untouched", () =>
      Effect.gen(function*() {
        const name = uniqueName()
        const dir = yield* claimAbsent(perUserDir(NOBODY))
        Fs.mkdirSync(dir, { mode: 0o700 })
        Fs.chmodSync(dir, 0o700) // whatever our umask: refused for its owner, not its mode
        const before = picture(dir)

        const proc = yield* holder(["try", "--name", name, "--as-user", String(NOBODY)], {
          env: { PATH: process.env.PATH }
        })
        const error = yield* lineOf(proc, "error")
        assert.deepStrictEqual(
          { _tag: error._tag, reason: error.reason, path: error.path },
          { _tag: "CorruptLock", reason: "ForeignOwner", path: dir },
          describeProc(proc)
        )
        assert.deepStrictEqual(picture(dir), before)
      }))

    it.scopedLive("a per-user directory that is a symlink is refused for uid 65534: CorruptLock SymlinkedHome, untouched", () =>
      Effect.gen(function*() {
        const name = uniqueName()
        const dir = yield* claimAbsent(perUserDir(NOBODY))
        // Open to all, so that only the lock's own check keeps 65534 out of it.
        const target = yield* scratch(0o777)
        Fs.symlinkSync(target, dir)
        const before = [picture(dir), picture(target)]

        const proc = yield* holder(["try", "--name", name, "--as-user", String(NOBODY)], {
          env: { PATH: process.env.PATH }
        })
        const error = yield* lineOf(proc, "error")
        assert.deepStrictEqual(
          { _tag: error._tag, reason: error.reason, path: error.path },
          { _tag: "CorruptLock", reason: "SymlinkedHome", path: dir },
          describeProc(proc)
        )
        assert.deepStrictEqual([picture(dir), picture(target)], before)
      }))

    it.scopedLive.each([["empty", ""], ["relative", "relative/path"]])(
      "PIDLOCK_DIR %s fails with InvalidOptions before anything is touched",
      ([, value]) =>
        Effect.gen(function*() {
          const name = uniqueName()
          const uid = process.geteuid!()
          yield* cleanDefaultHome(uid, name)
          const cwd = yield* scratch()
          const proc = yield* holder(["try", "--name", name], {
            cwd,
            env: { PATH: process.env.PATH, PIDLOCK_DIR: value }
          })
          const error = yield* lineOf(proc, "error")
          assert.deepStrictEqual(
            { _tag: error._tag, option: error.option, value: error.value },
            { _tag: "InvalidOptions", option: "PIDLOCK_DIR", value },
            describeProc(proc)
          )
          assert.deepStrictEqual(list(cwd), [], "nothing made in the working directory")
          assert.isUndefined(
            lstatOrUndefined(Path.join(perUserDir(uid), name)),
            "no lock home in the default directory"
          )
        })
    )

    it.scopedLive("an absolute PIDLOCK_DIR is used", () =>
      Effect.gen(function*() {
        const name = uniqueName()
        const uid = process.geteuid!()
        yield* cleanDefaultHome(uid, name)
        const dir = yield* scratch()
        const xdg = yield* scratch()
        const proc = yield* holder(["try", "--name", name], {
          env: { PATH: process.env.PATH, PIDLOCK_DIR: dir, XDG_RUNTIME_DIR: xdg }
        })
        const acquired = yield* lineOf(proc, "acquired")
        assert.isTrue(String(acquired.entry).startsWith(Path.join(dir, name, "lock") + "/"), `entry ${acquired.entry}`)
        assert.deepStrictEqual(list(dir), [name])
        assert.deepStrictEqual(list(xdg), [])
        assert.isUndefined(lstatOrUndefined(Path.join(perUserDir(uid), name)), "no lock home in the default directory")
      }))

    // In a mount namespace of its own, so that the real /run/lock is not
    // touched: a /run/lock that is not sticky and open to all is passed over.
    // The real /tmp is used (the repository may lie below it): what the test
    // makes there is removed afterwards.
    it.scopedLive("without a sticky, world-writable /run/lock the default is /tmp/effect-pidlock-<euid>", () =>
      Effect.gen(function*() {
        const name = uniqueName()
        const fallback = "/tmp/effect-pidlock-0"
        const existed = Fs.existsSync(fallback)
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => Fs.rmSync(existed ? Path.join(fallback, name) : fallback, { recursive: true, force: true }))
        )
        const script = [
          "mount -t tmpfs -o mode=0755 none /run/lock",
          `"$0" "$1" try --name ${name}`,
          `stat -c 'stat {"mode":"%a","uid":%u,"type":"%F"}' ${fallback}`
        ].join(" && ")
        const proc = yield* start("unshare", ["--mount", "sh", "-c", script, process.execPath, HOLDER], {
          env: { PATH: process.env.PATH }
        })
        const acquired = yield* lineOf(proc, "acquired")
        assert.isTrue(
          String(acquired.entry).startsWith(`/tmp/effect-pidlock-0/${name}/lock/`),
          `entry ${acquired.entry}`
        )
        const stat = yield* lineOf(proc, "stat")
        assert.deepStrictEqual(stat, { mode: "700", uid: 0, type: "directory" }, describeProc(proc))
      }))
  })

  // An attacker who owns the name of the lock home in a shared sticky
  // directory swaps it between a directory of its own and a symlink to a
  // directory of the victim's: a home checked in two calls (or followed)
  // would let the victim write into its own directory, or into the attacker's.
  it.scopedLive(
    "2. a lock home swapped between a directory and a symlink in a tight loop is never followed",
    () =>
      Effect.gen(function*() {
        const shared = yield* scratch(0o1777)
        const victims = yield* scratch(0o755)
        const name = "app"
        const stop = Path.join(shared, "stop")
        const attacker = yield* start(
          "setpriv",
          asNobody(process.execPath, "-e", ATTACKER, Path.join(shared, name), victims, stop)
        )
        yield* lineOf(attacker, "ready")

        // Anything made in the victim's directory, even for a moment.
        const events: Array<string> = []
        const watcher = Fs.watch(victims, (event, file) => void events.push(`${event} ${file}`))
        yield* Effect.addFinalizer(() => Effect.sync(() => watcher.close()))

        const victim = yield* holder(["repeat", "--dir", shared, "--name", name, "--count", "150", "--remove-home"])
        const done = yield* lineOf(victim, "done", 60)
        Fs.writeFileSync(stop, "")
        const attack = yield* lineOf(attacker, "done")
        console.log(
          `scenario 2: victim outcomes ${JSON.stringify(done.counts)}; attacker swaps ${JSON.stringify(attack)}`
        )

        const attempts = linesOf(victim, "attempt")
        assert.strictEqual(attempts.length, 150)
        // Safety first: nothing followed, every lock taken in a home of the victim's.
        assert.deepStrictEqual(events, [], "nothing was ever made in the victim's directory")
        assert.deepStrictEqual(list(victims), [], "nothing in the victim's directory")
        const home = Path.join(shared, name)
        const acquired = attempts.filter((attempt) => attempt.outcome === "acquired")
        for (const attempt of acquired) {
          assert.deepStrictEqual(
            {
              home: [attempt.home.type, attempt.home.uid],
              lockDir: [attempt.lockDir.type, attempt.lockDir.uid],
              realHome: attempt.realHome
            },
            { home: ["Directory", 0], lockDir: ["Directory", 0], realHome: home },
            JSON.stringify(attempt)
          )
        }
        // Then the contract: a refusal names what was found, a CorruptLock or
        // (the attacker's own directory) a NameClash.
        const refusals = ["SymlinkedHome", "ForeignOwner", "NotADirectory"]
        const unexpected = attempts.filter((attempt) =>
          attempt.outcome !== "acquired" && attempt._tag !== "NameClash" &&
          !(attempt._tag === "CorruptLock" && refusals.includes(attempt.reason))
        )
        assert.deepStrictEqual(
          unexpected.map(({ _tag, message }) => ({ _tag, message })),
          [],
          `${unexpected.length} of 150 attempts failed otherwise`
        )
        // Premise: the victim met both faces of the swap.
        assert.isAbove(done.counts["CorruptLock:SymlinkedHome"] ?? 0, 0, "no attempt met the symlink")
        assert.isAbove(done.counts["NameClash:"] ?? 0, 0, "no attempt met the attacker's directory")
      }),
    60_000
  )

  describe("3. umask", () => {
    it.scopedLive("a holder under umask 000 makes its home 0700 and its lock directory closed to others, who cannot remove its entry", () =>
      Effect.gen(function*() {
        const dir = yield* scratch(0o755)
        const home = Path.join(dir, "app")
        const owner = yield* holder(["hold", "--dir", dir, "--name", "app", "--umask", "000"])
        const ready = yield* lineOf(owner, "ready")
        const entry = String(ready.entry)
        const record = Fs.readlinkSync(entry)
        assert.strictEqual(permissions(home), 0o700, "home mode")
        assert.strictEqual(
          permissions(Path.join(home, "lock")) & 0o022,
          0,
          `lock directory mode ${permissions(Path.join(home, "lock")).toString(8)}`
        )

        // Another user tries what a careless home would allow.
        const stolen = Path.join(Os.tmpdir(), `pidlock-stolen-${process.pid}`)
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(stolen, { force: true })))
        const rm = run("setpriv", asNobody("rm", "-f", entry))
        const mv = run("setpriv", asNobody("mv", entry, stolen))
        const node = run(
          "setpriv",
          asNobody(
            process.execPath,
            "-e",
            `const fs = require("node:fs"), [entry] = process.argv.slice(1), codes = {}
for (const [what, f] of [["rename", () => fs.renameSync(entry, entry + ".x")], ["unlink", () => fs.unlinkSync(entry)]]) {
  try { f(); codes[what] = "done" } catch (e) { codes[what] = e.code }
}
console.log(JSON.stringify(codes))`,
            entry
          )
        )
        assert.notStrictEqual(rm.status, 0, `rm as ${NOBODY}: ${rm.stderr}`)
        assert.notStrictEqual(mv.status, 0, `mv as ${NOBODY}: ${mv.stderr}`)
        assert.deepStrictEqual(JSON.parse(node.stdout), { rename: "EACCES", unlink: "EACCES" }, node.stderr)
        assert.strictEqual(Fs.readlinkSync(entry), record, "the owner entry is still there")
        assert.deepStrictEqual(list(Path.join(home, "lock")), [Path.basename(entry)])
        assert.isUndefined(owner.status(), "the holder still runs")
      }))

    it.scopedLive("a lock home with mode 0777 is CorruptLock InsecureMode, named with its mode and fix, untouched", () =>
      Effect.gen(function*() {
        const dir = yield* scratch(0o755)
        const home = Path.join(dir, "app")
        Fs.mkdirSync(home)
        Fs.chmodSync(home, 0o777)
        const before = picture(home)
        const proc = yield* holder(["try", "--dir", dir, "--name", "app"])
        const error = yield* lineOf(proc, "error")
        assert.deepStrictEqual(
          { _tag: error._tag, reason: error.reason, path: error.path },
          { _tag: "CorruptLock", reason: "InsecureMode", path: home },
          describeProc(proc)
        )
        const message = String(error.message)
        for (const part of [home, "0777", `chmod 700 ${home}`]) assert.include(message, part)
        assert.deepStrictEqual(picture(home), before)
      }))

    it.scopedLive("a dir writable by others and not sticky (0777) is InvalidOptions dir; nothing is made in it", () =>
      Effect.gen(function*() {
        const dir = yield* scratch(0o777)
        const proc = yield* holder(["try", "--dir", dir, "--name", "app"])
        const error = yield* lineOf(proc, "error")
        assert.deepStrictEqual(
          { _tag: error._tag, option: error.option, value: error.value },
          { _tag: "InvalidOptions", option: "dir", value: dir },
          describeProc(proc)
        )
        assert.deepStrictEqual(list(dir), [])
      }))

    it.scopedLive("a sticky dir writable by all (1777) is accepted", () =>
      Effect.gen(function*() {
        const dir = yield* scratch(0o1777)
        const proc = yield* holder(["try", "--dir", dir, "--name", "app"])
        const acquired = yield* lineOf(proc, "acquired")
        assert.isTrue(String(acquired.entry).startsWith(Path.join(dir, "app", "lock") + "/"), describeProc(proc))
        assert.deepStrictEqual({
          uid: Fs.lstatSync(Path.join(dir, "app")).uid,
          mode: permissions(Path.join(dir, "app"))
        }, {
          uid: 0,
          mode: 0o700
        })
      }))
  })

  describe("4. machine identity: a record from another boot", () => {
    const OTHER_BOOT = "00000000-1111-4222-8333-444444444444"
    const OTHER_MACHINE = "0123456789abcdef0123456789abcdef"

    // The record names this very process, alive: only the boot id and the
    // machine id can make it stale or foreign.
    const plantAndTry = (machineId: "other" | "this" | "none") =>
      Effect.gen(function*() {
        const dir = yield* scratch()
        const home = Path.join(dir, "app")
        Fs.mkdirSync(Path.join(home, "lock"), { recursive: true, mode: 0o700 })
        const self = yield* selfIdentity
        const thisMachine = Fs.readFileSync("/etc/machine-id", "utf8").trim()
        assert.strictEqual(self.machineId, thisMachine, "premise: the lock reads /etc/machine-id")
        const { machineId: _, ...withoutMachine } = self
        const identity = {
          ...withoutMachine,
          bootId: OTHER_BOOT,
          ...(machineId === "none" ? {} : { machineId: machineId === "this" ? thisMachine : OTHER_MACHINE })
        }
        const record = recordOf(identity)
        assert.strictEqual("machineId" in record, machineId !== "none")
        const entry = yield* Effect.flatMap(FileSystem.FileSystem, (fs) => plantHolder(fs, home, record)).pipe(
          Effect.provide(NodeFileSystem.layer)
        )
        const proc = yield* holder(["try", "--dir", dir, "--name", "app"])
        yield* exitOf(proc)
        return { proc, entry }
      })

    it.scopedLive("same hostname, another boot id, another machine id: LockHeld Foreign", () =>
      Effect.gen(function*() {
        const { entry, proc } = yield* plantAndTry("other")
        const error = yield* lineOf(proc, "error")
        assert.deepStrictEqual(
          { _tag: error._tag, verdict: error.verdict },
          { _tag: "LockHeld", verdict: "Foreign" },
          describeProc(proc)
        )
        assert.isDefined(lstatOrUndefined(entry), "the holder's entry stays")
      }))

    it.scopedLive("same hostname, another boot id, this machine id: taken over (Rebooted)", () =>
      Effect.gen(function*() {
        const { entry, proc } = yield* plantAndTry("this")
        yield* lineOf(proc, "acquired")
        const takeovers = takeoverLogs(proc)
        assert.strictEqual(takeovers.length, 1, describeProc(proc))
        assert.include(takeovers[0], "Rebooted")
        assert.isUndefined(lstatOrUndefined(entry), "the rebooted holder's entry is gone")
      }))

    it.scopedLive("same hostname, another boot id, no machine id (a record of release 0.1): LockHeld Foreign", () =>
      Effect.gen(function*() {
        const { entry, proc } = yield* plantAndTry("none")
        const error = yield* lineOf(proc, "error")
        assert.deepStrictEqual(
          { _tag: error._tag, verdict: error.verdict },
          { _tag: "LockHeld", verdict: "Foreign" },
          describeProc(proc)
        )
        assert.isDefined(lstatOrUndefined(entry), "the holder's entry stays")
      }))
  })

  // A restarted container: the holder ran in a pid namespace that is gone,
  // the contender runs in a new one, and /proc cannot see across.
  it.scopedLive("6. pid namespaces: a live holder's socket answers (Alive); a killed one's lock is taken over at once, its socket removed", () =>
    Effect.gen(function*() {
      const dir = yield* scratch()
      const home = Path.join(dir, "app")
      const inNamespace = (...args: ReadonlyArray<string>) =>
        start("unshare", ["--pid", "--fork", "--mount-proc", "--kill-child", process.execPath, HOLDER, ...args])

      const unshare = yield* inNamespace("hold", "--dir", dir, "--name", "app")
      const ready = yield* lineOf(unshare, "ready")
      const record = recordAt(String(ready.entry))
      assert.notStrictEqual(record.pidNamespace, Fs.readlinkSync("/proc/self/ns/pid"), "premise: another pid namespace")
      assert.isString(record.socket, "the record names the holder's socket")
      const socket = Path.join(home, record.socket)
      assert.isTrue(Fs.lstatSync(socket).isSocket(), `${socket} is a socket`)
      const [holderPid] = yield* waitFor("the holder under unshare", () => {
        const children = childrenOf(unshare.pid)
        return children.length > 0 ? children : undefined
      })
      assert.match(
        Fs.readFileSync(`/proc/${holderPid}/status`, "utf8"),
        new RegExp(`^NSpid:\\s+${holderPid}\\s+${ready.pid}$`, "m")
      )

      const contender = yield* inNamespace("try", "--dir", dir, "--name", "app")
      const error = yield* lineOf(contender, "error")
      assert.deepStrictEqual(
        { _tag: error._tag, holderPid: error.holderPid, verdict: error.verdict },
        { _tag: "LockHeld", holderPid: ready.pid, verdict: "Alive" },
        describeProc(contender)
      )

      unshare.kill("SIGKILL") // --kill-child: the kernel kills the holder with it
      yield* exitOf(unshare)
      yield* waitFor(`the exit of the holder ${holderPid}`, () => hasExited(holderPid!) || undefined)

      const next = yield* inNamespace("try", "--dir", dir, "--name", "app")
      yield* lineOf(next, "acquired")
      const takeovers = takeoverLogs(next)
      assert.strictEqual(takeovers.length, 1, describeProc(next))
      assert.include(takeovers[0], "Exited")
      yield* exitOf(next)
      assert.isFalse(list(home).includes(record.socket), `the dead holder's socket is gone: ${list(home).join(", ")}`)
      assert.deepStrictEqual(list(Path.join(home, "lock")), [])
    }))

  // Processes that changed their uids are not dumpable: their /proc/<pid>
  // belongs to root, and hidepid=1 hides it from uid 65534 as well.
  it.scopedLive("7. hidepid=1: a holder whose stat the contender cannot read is LockHeld Alive, not PermissionDenied", () =>
    Effect.gen(function*() {
      const dir = yield* scratch(0o700, NOBODY)
      const namespace = yield* start("unshare", [
        "--mount",
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        "sh",
        "-c",
        "mount -o remount,hidepid=1 /proc && echo 'mounted {}' && exec sleep infinity"
      ])
      yield* lineOf(namespace, "mounted")
      const [init] = yield* waitFor("the namespace's init", () => {
        const children = childrenOf(namespace.pid)
        return children.length > 0 ? children : undefined
      })
      const enter = ["--target", String(init), "--mount", "--pid"]
      const inside = (...args: ReadonlyArray<string>) =>
        start("nsenter", [
          ...enter,
          process.execPath,
          HOLDER,
          ...args,
          "--dir",
          dir,
          "--name",
          "app",
          "--as-user",
          String(NOBODY)
        ])

      const owner = yield* inside("hold")
      const ready = yield* lineOf(owner, "ready")
      // The scenario: inside, uid 65534 cannot read the holder's stat, root can.
      const denied = run("nsenter", [...enter, "setpriv", ...asNobody("cat", `/proc/${ready.pid}/stat`)])
      assert.notStrictEqual(denied.status, 0, `cat as ${NOBODY} read ${denied.stdout}`)
      assert.include(denied.stderr, "Operation not permitted")
      const allowed = run("nsenter", [...enter, "cat", `/proc/${ready.pid}/stat`])
      assert.match(allowed.stdout, new RegExp(`^${ready.pid} \\(`), allowed.stderr)

      const contender = yield* inside("try")
      const error = yield* lineOf(contender, "error")
      assert.deepStrictEqual(
        { _tag: error._tag, holderPid: error.holderPid, verdict: error.verdict },
        { _tag: "LockHeld", holderPid: ready.pid, verdict: "Alive" },
        describeProc(contender)
      )
    }))

  it.scopedLive("8. a holder that changed only its effective uid owns its home; a second one is LockHeld, not ForeignOwner", () =>
    Effect.gen(function*() {
      const dir = yield* scratch(0o700, NOBODY)
      const home = Path.join(dir, "app")
      const owner = yield* holder(["hold", "--dir", dir, "--name", "app", "--as-euid", String(NOBODY)])
      const ready = yield* lineOf(owner, "ready")
      assert.strictEqual(Fs.lstatSync(home).uid, NOBODY, "the home belongs to the effective uid")
      assert.strictEqual(Fs.lstatSync(String(ready.entry)).uid, NOBODY, "so does the owner entry")
      // Premise: only the effective uid changed.
      assert.match(Fs.readFileSync(`/proc/${owner.pid}/status`, "utf8"), new RegExp(`^Uid:\\s+0\\s+${NOBODY}\\s`, "m"))

      const contender = yield* holder(["try", "--dir", dir, "--name", "app", "--as-euid", String(NOBODY)])
      const error = yield* lineOf(contender, "error")
      assert.deepStrictEqual(
        { _tag: error._tag, holderPid: error.holderPid, verdict: error.verdict },
        { _tag: "LockHeld", holderPid: owner.pid, verdict: "Alive" },
        describeProc(contender)
      )
    }))

  describe("9. two users, one lock name, one shared directory", () => {
    // `first` takes the lock `app` in a shared sticky directory and releases
    // it (its home stays); `second`, another user, then tries the same name.
    const clash = (first: ReadonlyArray<string>, second: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const shared = yield* scratch(0o1777)
        const home = Path.join(shared, "app")
        const made = yield* holder(["try", "--dir", shared, "--name", "app", ...first])
        yield* lineOf(made, "acquired")
        yield* exitOf(made)
        const before = picture(home)
        const proc = yield* holder(["try", "--dir", shared, "--name", "app", ...second])
        const error = yield* lineOf(proc, "error")
        assert.deepStrictEqual(picture(home), before, "the other user's home is untouched")
        return { error, home, proc, shared }
      })

    it.scopedLive("uid 65534 meets root's lock home: NameClash, which says whose it is and what to do", () =>
      Effect.gen(function*() {
        const { error, home, proc, shared } = yield* clash([], ["--as-user", String(NOBODY)])
        assert.deepStrictEqual(
          { _tag: error._tag, path: error.path, ownerUid: error.ownerUid, effectiveUid: error.effectiveUid },
          { _tag: "NameClash", path: home, ownerUid: 0, effectiveUid: NOBODY },
          describeProc(proc)
        )
        assert.strictEqual(
          error.message,
          `${home} belongs to uid 0, not to this process's effective uid ${NOBODY}: another user uses the lock name ` +
            `"app" in ${shared}. Choose another name, or a directory of your own: the option dir, or $PIDLOCK_DIR ` +
            `(--dir on the command line)`
        )
      }))

    it.scopedLive("root meets the lock home of uid 65534: NameClash too", () =>
      Effect.gen(function*() {
        const { error, home, proc } = yield* clash(["--as-user", String(NOBODY)], [])
        assert.deepStrictEqual(
          { _tag: error._tag, path: error.path, ownerUid: error.ownerUid, effectiveUid: error.effectiveUid },
          { _tag: "NameClash", path: home, ownerUid: NOBODY, effectiveUid: 0 },
          describeProc(proc)
        )
      }))
  })
})

// The attacker of scenario 2, run as uid 65534: `node -e ATTACKER <name> <victim's dir> <stop file>`.
// It swaps <name> through "its own directory", "absent", "a symlink to the
// victim's directory", "absent", until the stop file appears. Each face is
// held for a short spin, so that a contender mostly meets one of them rather
// than the instant between two system calls when the name is free.
const ATTACKER = `
const fs = require("node:fs")
const [name, target, stop] = process.argv.slice(1)
const swaps = { dir: 0, link: 0 }
let sink = 0
const hold = () => { for (let i = 0; i < 20000; i++) sink += i }
for (let round = 0; ; round++) {
  try { fs.mkdirSync(name); swaps.dir++ } catch {}
  hold()
  try { fs.rmdirSync(name) } catch {}
  try { fs.symlinkSync(target, name); swaps.link++ } catch {}
  hold()
  try { fs.unlinkSync(name) } catch {}
  if (round === 0) fs.writeSync(1, "ready {}\\n")
  if (round % 64 === 0 && fs.existsSync(stop)) break
}
fs.writeSync(1, "done " + JSON.stringify(swaps) + "\\n")
`
