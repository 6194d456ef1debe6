import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { fileURLToPath } from "node:url"
import { decodeRecord } from "../src/internal/ownerRecord.js"
import * as portable from "../src/internal/portable.js"
import * as PidLock from "../src/PidLock.js"
import * as Posix from "../src/Posix.js"
import * as ProcessInfo from "../src/ProcessInfo.js"
import * as SystemCommand from "../src/SystemCommand.js"
import * as Testing from "../src/testing/index.js"
import { recordOf } from "./support/environment.js"

// Output of the systems' own ps and sysctl, written from their documented
// formats (procps-ng ps(1), macOS and FreeBSD ps(1): lstart is strftime's
// `%c`, in the C locale `%a %b %e %H:%M:%S %Y`; sysctl(8) prints
// kern.boottime as a struct timeval and its date): a change of format fails
// here first.
const fixture = (name: string) =>
  Fs.readFileSync(fileURLToPath(new URL(`./fixtures/portable/${name}`, import.meta.url)), "utf8")

const JAN_1_09_05_07 = String(Date.UTC(2026, 0, 1, 9, 5, 7) / 1000)
const JAN_12_23_59_59 = String(Date.UTC(2026, 0, 12, 23, 59, 59) / 1000)

describe("the portable layer's parsers, on the systems' output", () => {
  const { darwin, freebsd, linux } = portable.PLATFORMS as Record<string, portable.PlatformQueries>

  it("ps on Linux (procps): state, pid namespace, start time, command", () => {
    assert.deepStrictEqual(portable.parsePsRow(linux!, fixture("linux-ps.txt")), {
      state: "Ssl",
      namespace: "4026531836",
      startTime: JAN_1_09_05_07,
      args: "node /home/ada/app/main.js --port 8080"
    })
    assert.deepStrictEqual(portable.parsePsRow(linux!, fixture("linux-ps-zombie.txt")), {
      state: "Z+",
      namespace: "4026532201",
      startTime: JAN_12_23_59_59,
      args: "[node] <defunct>"
    })
  })

  it("ps on macOS: no namespace column", () => {
    assert.deepStrictEqual(portable.parsePsRow(darwin!, fixture("darwin-ps.txt")), {
      state: "Ss",
      namespace: undefined,
      startTime: JAN_1_09_05_07,
      args: "/usr/local/bin/node /Users/ada/app/main.js --port 8080"
    })
    assert.strictEqual(portable.parsePsRow(darwin!, fixture("darwin-ps-zombie.txt"))?.state, "Z")
  })

  it("ps on FreeBSD: the jail id", () => {
    assert.deepStrictEqual(portable.parsePsRow(freebsd!, fixture("freebsd-ps.txt")), {
      state: "Ss",
      namespace: "3",
      startTime: JAN_1_09_05_07,
      args: "/usr/local/bin/node /home/ada/app/main.js --port 8080"
    })
  })

  it("another format is not read: a localized date, another column order, nothing", () => {
    assert.isUndefined(portable.parsePsRow(darwin!, fixture("darwin-ps-de_DE.txt")))
    // The macOS row read with Linux's columns: the start time is where the namespace should be.
    assert.isUndefined(portable.parsePsRow(linux!, fixture("darwin-ps.txt")))
    assert.isUndefined(portable.parsePsRow(linux!, ""))
  })

  it("ps's arguments: one -o per column, so that BSD ps takes no comma into a header", () => {
    assert.deepStrictEqual(portable.psArgs(freebsd!, 42), [
      "-o",
      "stat=",
      "-o",
      "jid=",
      "-o",
      "lstart=",
      "-o",
      "args=",
      "-p",
      "42"
    ])
  })

  it("sysctl: the boot (kern.boottime's seconds on the BSDs, the kernel's boot id on Linux) and the host", () => {
    const [boot, host] = portable.parseSysctl(fixture("darwin-sysctl-boot-host.txt"), 2)!
    assert.strictEqual(darwin!.bootIdOf(boot!), "boottime:1767225600")
    assert.strictEqual(host, "ada-mbp.local")
    const [bsdBoot, bsdHost] = portable.parseSysctl(fixture("freebsd-sysctl-boot-host.txt"), 2)!
    assert.strictEqual(freebsd!.bootIdOf(bsdBoot!), "boottime:1767225600")
    assert.strictEqual(bsdHost, "bsd1.example.org")
    const [linuxBoot] = portable.parseSysctl(fixture("linux-sysctl-boot-host.txt"), 2)!
    assert.strictEqual(linux!.bootIdOf(linuxBoot!), "48161840-6fd4-44d7-b11d-fbb43767ce01")
    assert.isUndefined(darwin!.bootIdOf("1767225600"))
    assert.isUndefined(portable.parseSysctl("one\n", 2))
  })
})

// A SystemCommand that answers with the fixtures, as the real commands would on that system.
const fixtureCommands = (answers: Record<string, string>) =>
  Layer.succeed(
    SystemCommand.SystemCommand,
    SystemCommand.SystemCommand.of({
      [SystemCommand.TypeId]: SystemCommand.TypeId,
      run: (command, args, options) => {
        assert.deepStrictEqual(options?.env, { LC_ALL: "C", TZ: "UTC" })
        const answer = answers[`${command} ${args.join(" ")}`]
        return Effect.succeed(
          answer === undefined
            ? { exitCode: 1, stdout: "", stderr: "unknown" }
            : { exitCode: 0, stdout: answer, stderr: "" }
        )
      }
    })
  )

// Identifying this process asks no other process.
const notAsked = Posix.Posix.of({
  [Posix.TypeId]: Posix.TypeId,
  lstat: () => Effect.dieMessage("not asked"),
  makeDirectory: () => Effect.dieMessage("not asked"),
  symlink: () => Effect.dieMessage("not asked"),
  rename: () => Effect.dieMessage("not asked"),
  readLink: () => Effect.dieMessage("not asked"),
  unlink: () => Effect.dieMessage("not asked"),
  socketPath: () => "",
  listen: () => Effect.dieMessage("not asked"),
  probe: () => Effect.dieMessage("not asked"),
  awaitHangUp: () => Effect.dieMessage("not asked"),
  processExists: () => Effect.dieMessage("not asked"),
  serve: () => Effect.dieMessage("not asked"),
  request: () => Effect.dieMessage("not asked")
})

const identityOn = (platform: "darwin" | "freebsd", answers: Record<string, string>) =>
  Effect.gen(function*() {
    const memory = yield* Testing.makeFileSystem()
    return yield* ProcessInfo.makePortable({ platform, pid: 512, uid: 501 }).pipe(
      Effect.provide(fixtureCommands(answers)),
      Effect.provide(memory.layer),
      Effect.provideService(Posix.Posix, notAsked)
    )
  })

describe("the portable layer's own identity, from the systems' output", () => {
  it.effect("macOS: boot time, host, kern.uuid, no namespace", () =>
    Effect.gen(function*() {
      const info = yield* identityOn("darwin", {
        "ps -o stat= -o lstart= -o args= -p 512": fixture("darwin-ps.txt"),
        "sysctl -n kern.boottime kern.hostname": fixture("darwin-sysctl-boot-host.txt"),
        "sysctl -n kern.uuid": fixture("darwin-sysctl-uuid.txt")
      })
      assert.deepStrictEqual(info.self, {
        pid: 512,
        startTime: JAN_1_09_05_07,
        startClock: "unix-seconds",
        bootId: "boottime:1767225600",
        pidNamespace: "",
        hostname: "ada-mbp.local",
        cmdline: ["/usr/local/bin/node /Users/ada/app/main.js --port 8080"],
        machineId: "8F2C1E5A-3B4D-5C6E-9F70-1A2B3C4D5E6F"
      })
      assert.deepStrictEqual(info.uid, Option.some(501))
    }))

  it.effect("FreeBSD: the jail as the namespace, kern.hostuuid; a machine without one has no machine id", () =>
    Effect.gen(function*() {
      const answers = {
        "ps -o stat= -o jid= -o lstart= -o args= -p 512": fixture("freebsd-ps.txt"),
        "sysctl -n kern.boottime kern.hostname": fixture("freebsd-sysctl-boot-host.txt")
      }
      const withUuid = yield* identityOn("freebsd", {
        ...answers,
        "sysctl -n kern.hostuuid": fixture("freebsd-sysctl-hostuuid.txt")
      })
      assert.strictEqual(withUuid.self.pidNamespace, "jail:3")
      assert.strictEqual(withUuid.self.machineId, "4c4c4544-0042-3510-8052-b4c04f4d3232")
      const withoutUuid = yield* identityOn("freebsd", answers)
      assert.isUndefined(withoutUuid.self.machineId)
    }))

  it.effect("output of another format is an error, not an identity", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(identityOn("darwin", {
        "ps -o stat= -o lstart= -o args= -p 512": fixture("darwin-ps-de_DE.txt"),
        "sysctl -n kern.boottime kern.hostname": fixture("darwin-sysctl-boot-host.txt")
      }))
      assert.strictEqual(error._tag, "SystemError")
      assert.strictEqual(error._tag === "SystemError" && error.reason, "InvalidData")
    }))
})

// One machine: a memory file system and its process table, with processes
// judged by the portable layer (ps and sysctl of `platform`) or by /proc.
const machine = (platform: Testing.FakePlatform = "linux") =>
  Effect.gen(function*() {
    const processes = yield* Testing.makeProcessTable()
    const memory = yield* Testing.makeFileSystem({ processes })
    const portableOf = (pid: number) =>
      Effect.provide(ProcessInfo.ProcessInfo, Testing.layerPortableProcessInfo(pid, { platform })).pipe(
        Effect.provide(memory.layer)
      )
    const procOf = (pid: number) => Testing.makeProcessInfo(pid).pipe(Effect.provide(memory.layer))
    return { processes, memory, portableOf, procOf }
  })

describe("the portable layer's verdicts, on a fake process table", () => {
  for (const platform of ["linux", "darwin", "freebsd"] as const) {
    it.effect(`${platform}: alive, exited, zombie, PID reused`, () =>
      Effect.gen(function*() {
        const { portableOf, processes } = yield* machine(platform)
        const judge = yield* portableOf((yield* processes.spawn()).pid)
        const holder = yield* processes.spawn()
        const identity = Option.getOrThrow(yield* judge.identify(holder.pid))
        assert.strictEqual(identity.startClock, "unix-seconds")
        assert.deepStrictEqual(yield* judge.judge(identity), ProcessInfo.Verdict.Alive())
        yield* processes.exit(holder.pid, { zombie: true })
        assert.deepStrictEqual(yield* judge.judge(identity), ProcessInfo.Verdict.Stale({ reason: "Zombie" }))
        assert.isTrue(Option.isNone(yield* judge.identify(holder.pid)))
        yield* processes.reap(holder.pid)
        assert.deepStrictEqual(yield* judge.judge(identity), ProcessInfo.Verdict.Stale({ reason: "Exited" }))
        yield* processes.spawn({ pid: holder.pid })
        assert.deepStrictEqual(yield* judge.judge(identity), ProcessInfo.Verdict.Stale({ reason: "PidReused" }))
      }))
  }

  it.effect("another host, and a reboot: the kernel's boot id proves one, a boot time does not", () =>
    Effect.gen(function*() {
      for (const platform of ["linux", "darwin"] as const) {
        const { portableOf, processes } = yield* machine(platform)
        const judge = yield* portableOf((yield* processes.spawn()).pid)
        const holder = Option.getOrThrow(yield* judge.identify((yield* processes.spawn()).pid))
        assert.deepStrictEqual(
          yield* judge.judge({ ...holder, bootId: "boottime:1", hostname: "elsewhere" }),
          ProcessInfo.Verdict.Foreign({ scope: "host" })
        )
        // The same machine at another boot id: on Linux a reboot; on macOS
        // the boot time may have moved with the clock, so the PID is looked at.
        const otherBoot = { ...holder, bootId: platform === "linux" ? "another-boot" : "boottime:1" }
        assert.deepStrictEqual(
          yield* judge.judge(otherBoot),
          platform === "linux" ? ProcessInfo.Verdict.Stale({ reason: "Rebooted" }) : ProcessInfo.Verdict.Alive()
        )
      }
    }))

  it.effect("kill(pid, 0) comes first: a PID that does not exist is not asked of ps", () =>
    Effect.gen(function*() {
      const { memory, portableOf, processes } = yield* machine()
      const judge = yield* portableOf((yield* processes.spawn()).pid)
      const holder = Option.getOrThrow(yield* judge.identify((yield* processes.spawn()).pid))
      yield* processes.exit(holder.pid)
      const calls: Array<string> = []
      yield* memory.setHook((call) => Effect.sync(() => void calls.push(`${call.method} ${call.path}`)))
      assert.deepStrictEqual(yield* judge.judge(holder), ProcessInfo.Verdict.Stale({ reason: "Exited" }))
      assert.deepStrictEqual(calls, [`kill ${holder.pid}`])
      // A failing kill is an error, never a verdict.
      yield* memory.setHook(Testing.failMatching({ method: "kill", path: String(holder.pid), errno: "EINVAL" }))
      assert.strictEqual((yield* Effect.flip(judge.judge(holder)))._tag, "SystemError")
    }))
})

// The portable layer of fake process `pid`, on a SystemCommand that counts
// the commands it runs.
const countingPortable = (pid: number, runs: Array<string>) =>
  Layer.effect(ProcessInfo.ProcessInfo, ProcessInfo.makePortable({ platform: "linux", pid, uid: 1000 })).pipe(
    Layer.provideMerge(Layer.effect(Posix.Posix, Testing.makePosix(pid))),
    Layer.provide(Layer.effect(
      SystemCommand.SystemCommand,
      Effect.map(Testing.makeSystemCommand(), (command) =>
        SystemCommand.SystemCommand.of({
          ...command,
          run: (name, args, options) =>
            Effect.zipRight(Effect.sync(() => runs.push(name)), command.run(name, args, options))
        }))
    ))
  )

describe("the holder's socket first, on the portable layer", () => {
  it.scoped("a contended acquire against a live holder with a socket runs no ps; a dead holder's is looked at", () =>
    Effect.gen(function*() {
      const { memory, processes } = yield* machine()
      const [holder, contender] = [yield* processes.spawn(), yield* processes.spawn()]
      const [holderRuns, contenderRuns] = [[] as Array<string>, [] as Array<string>]
      const acquireAs = (pid: number, runs: Array<string>) =>
        PidLock.acquire({ name: "app", dir: "/tmp" }).pipe(
          Effect.provide(countingPortable(pid, runs).pipe(Layer.provideMerge(memory.layer)))
        )
      const held = yield* acquireAs(holder.pid, holderRuns)
      assert.isDefined(held.owner.socket)
      const contended = Effect.gen(function*() {
        const before = contenderRuns.length
        const error = yield* Effect.flip(Effect.scoped(acquireAs(contender.pid, contenderRuns)))
        return { error, runs: contenderRuns.slice(before) }
      })
      // Building the layer asks ps and sysctl about the contender itself;
      // judging the live holder asks nothing.
      const first = yield* contended
      assert.strictEqual(first.error._tag, "LockHeld")
      assert.deepStrictEqual(first.error._tag === "LockHeld" && first.error.verdict, ProcessInfo.Verdict.Alive())
      assert.deepStrictEqual(first.runs.filter((name) => name === "ps"), ["ps"])
      const calls: Array<string> = []
      yield* memory.setHook((call) => Effect.sync(() => void calls.push(call.method)))
      const second = yield* contended
      assert.strictEqual(second.error._tag, "LockHeld")
      assert.deepStrictEqual(second.runs.filter((name) => name === "ps"), ["ps"])
      assert.include(calls, "probe")
      assert.notInclude(calls, "kill")
      yield* memory.setHook(() => Effect.void)
      // Killed: its socket refuses, kill(pid, 0) finds no process, and the
      // lock is taken over, still without a ps about the holder.
      yield* processes.exit(holder.pid)
      const before = contenderRuns.length
      const taken = yield* Effect.scoped(acquireAs(contender.pid, contenderRuns))
      assert.strictEqual(taken.owner.pid, contender.pid)
      assert.deepStrictEqual(contenderRuns.slice(before).filter((name) => name === "ps"), ["ps"])
    }))

  it.effect("a socket that refuses proves nothing by itself: a live PID of the same start is still the holder", () =>
    Effect.gen(function*() {
      const { portableOf, processes } = yield* machine()
      const judge = yield* portableOf((yield* processes.spawn()).pid)
      const holder = Option.getOrThrow(yield* judge.identify((yield* processes.spawn()).pid))
      for (const probe of ["Refused", "Missing"] as const) {
        assert.deepStrictEqual(
          yield* judge.judge(holder, { socket: Effect.succeed(probe) }),
          ProcessInfo.Verdict.Alive()
        )
      }
      // A probe that fails is not a verdict either: the process is looked at.
      const failed = Effect.fail(Testing.systemError("probe", "/tmp/app/x.sock", "EACCES"))
      assert.deepStrictEqual(yield* judge.judge(holder, { socket: failed }), ProcessInfo.Verdict.Alive())
      yield* processes.exit(holder.pid)
      assert.deepStrictEqual(
        yield* judge.judge(holder, { socket: Effect.succeed("Refused") }),
        ProcessInfo.Verdict.Stale({ reason: "Exited" })
      )
      // Another host's holder is not asked: its socket cannot answer here.
      const asked: Array<string> = []
      const socket = Effect.sync(() => asked.push("probe")).pipe(Effect.as("Listening" as const))
      assert.deepStrictEqual(
        yield* judge.judge({ ...holder, bootId: "boottime:1", hostname: "elsewhere" }, { socket }),
        ProcessInfo.Verdict.Foreign({ scope: "host" })
      )
      assert.deepStrictEqual(asked, [])
    }))

  it.effect("the /proc layer does not ask the socket it is given", () =>
    Effect.gen(function*() {
      const { procOf, processes } = yield* machine()
      const judge = yield* procOf((yield* processes.spawn()).pid)
      const holder = Option.getOrThrow(yield* judge.identify((yield* processes.spawn()).pid))
      const socket = Effect.dieMessage("not asked")
      assert.deepStrictEqual(yield* judge.judge(holder, { socket }), ProcessInfo.Verdict.Alive())
      yield* processes.exit(holder.pid)
      assert.deepStrictEqual(yield* judge.judge(holder, { socket }), ProcessInfo.Verdict.Stale({ reason: "Exited" }))
    }))
})

describe("a holder recorded by one layer and judged by the other, on one Linux machine", () => {
  it.effect("the same boot, host, machine and namespace on both: only the clock of the start time differs", () =>
    Effect.gen(function*() {
      const { portableOf, procOf, processes } = yield* machine()
      const pid = (yield* processes.spawn()).pid
      const [byProc, byPortable] = [(yield* procOf(pid)).self, (yield* portableOf(pid)).self]
      // The command line is only shown: ps gives it as one string.
      const compared = (identity: ProcessInfo.Identity) => ({ ...identity, startTime: "", cmdline: [] })
      assert.deepStrictEqual(compared(byPortable), { ...compared(byProc), startClock: "unix-seconds" })
    }))

  it.effect("alive is never stale either way, a PID reused too (the clocks cannot be compared); exited is stale", () =>
    Effect.gen(function*() {
      const { portableOf, procOf, processes } = yield* machine()
      const judgePid = (yield* processes.spawn()).pid
      const judges = [yield* procOf(judgePid), yield* portableOf(judgePid)]
      for (const [recorder, judge] of [[judges[0]!, judges[1]!], [judges[1]!, judges[0]!]] as const) {
        const holder = Option.getOrThrow(yield* recorder.identify((yield* processes.spawn()).pid))
        assert.deepStrictEqual(yield* judge.judge(holder), ProcessInfo.Verdict.Alive())
        yield* processes.exit(holder.pid)
        assert.deepStrictEqual(yield* judge.judge(holder), ProcessInfo.Verdict.Stale({ reason: "Exited" }))
        yield* processes.spawn({ pid: holder.pid })
        assert.deepStrictEqual(yield* judge.judge(holder), ProcessInfo.Verdict.Alive())
      }
    }))

  it.scoped("the lock: refused while the other layer's holder lives, taken over once it died", () =>
    Effect.gen(function*() {
      const { memory, processes } = yield* machine()
      const layers = {
        proc: (pid: number) => Testing.layerProcessInfo(pid),
        portable: (pid: number) => Testing.layerPortableProcessInfo(pid)
      }
      for (const [first, second] of [["proc", "portable"], ["portable", "proc"]] as const) {
        const name = `${first}-then-${second}`
        const acquireAs = (layer: typeof layers.proc, pid: number) =>
          PidLock.acquire({ name, dir: "/tmp" }).pipe(Effect.provide(layer(pid).pipe(Layer.provideMerge(memory.layer))))
        const holder = yield* processes.spawn()
        const contender = yield* processes.spawn()
        const held = yield* acquireAs(layers[first], holder.pid)
        assert.strictEqual(held.owner.startClock, first === "portable" ? "unix-seconds" : undefined)
        const refused = yield* Effect.flip(Effect.scoped(acquireAs(layers[second], contender.pid)))
        assert.strictEqual(refused._tag, "LockHeld")
        yield* processes.exit(holder.pid)
        const taken = yield* Effect.scoped(acquireAs(layers[second], contender.pid))
        assert.strictEqual(taken.owner.pid, contender.pid)
      }
    }))

  it("a record with a start clock decodes with it; one without (every earlier record) is in clock ticks", () => {
    const identity: ProcessInfo.Identity = {
      pid: 7,
      startTime: "1767225600",
      startClock: "unix-seconds",
      bootId: "b",
      pidNamespace: "",
      hostname: "h",
      cmdline: []
    }
    const record = recordOf(identity)
    assert.deepStrictEqual(decodeRecord(JSON.stringify(record)), Either.right(record))
    const { startClock: _, ...earlier } = record
    assert.deepStrictEqual(decodeRecord(JSON.stringify(earlier)), Either.right(earlier))
    assert.deepStrictEqual(
      decodeRecord(JSON.stringify({ ...record, startClock: "ticks" })),
      Either.left(`field startClock is "ticks", not "unix-seconds" or absent`)
    )
  })
})

// A fresh node that imports the built package with a loader hook refusing
// every module whose URL matches `refused`: an import that succeeds loaded
// none of them.
const importRefusing = (refused: string, script: string): string =>
  ChildProcess.execFileSync(process.execPath, ["--input-type=module", "-e", `${REFUSING_LOADER}\n${script}`, refused], {
    encoding: "utf8",
    env: { ...process.env, DIST: new URL("../dist/", import.meta.url).href }
  })

const REFUSING_HOOKS = `let refused
export const initialize = (data) => { refused = new RegExp(data.refused) }
export const resolve = async (specifier, context, next) => {
  const resolved = await next(specifier, context)
  if (refused.test(resolved.url)) throw new Error("refused: " + resolved.url)
  return resolved
}`

const REFUSING_LOADER = `import { register } from "node:module"
register("data:text/javascript," + encodeURIComponent(${JSON.stringify(REFUSING_HOOKS)}), {
  data: { refused: process.argv[1] }
})
const dist = (name) => import(new URL(name, process.env.DIST).href)`

describe("@effect/platform-node stays optional", () => {
  it("importing ProcessInfo, SystemCommand or the package loads nothing of it, nor @effect/platform's Command", () => {
    const printed = importRefusing(
      "/@effect/platform-node/|/@effect/platform/dist/esm/Command(Executor)?\\.js$",
      `const [info, command, index] = await Promise.all([dist("ProcessInfo.js"), dist("SystemCommand.js"), dist("index.js")])
console.log(typeof info.layer, typeof info.layerPortableNode, typeof command.layerNode, typeof index.PidLock)`
    )
    assert.strictEqual(printed.trim(), "object object object object")
  })

  it("the portable layer loads its command executor when it is built, and says so where it cannot", () => {
    const script = `const { Effect, Layer } = await import("effect")
const { layer: fsLayer } = await import("@effect/platform-node/NodeFileSystem")
const ProcessInfo = await dist("ProcessInfo.js")
const exit = await Effect.runPromiseExit(Effect.scoped(Layer.build(Layer.provide(ProcessInfo.layerPortableNode, fsLayer))))
console.log(exit._tag === "Success" ? "built" : JSON.stringify(exit.cause.error.message))`
    assert.strictEqual(importRefusing("^$", script).trim(), "built")
    const refused = importRefusing("/NodeCommandExecutor\\.js$", script)
    assert.include(refused, "@effect/platform-node/NodeCommandExecutor cannot be loaded")
    assert.include(refused, "an optional peer dependency")
  })
})
