import type { PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as ProcessInfo from "../src/ProcessInfo.js"
import * as Testing from "../src/testing/index.js"

// A process table served by one memory file system, and the ProcessInfo of any of its processes.
const makeMachine = (options?: Testing.ProcessTableOptions) =>
  Effect.gen(function*() {
    const processes = yield* Testing.makeProcessTable(options)
    const memory = yield* Testing.makeFileSystem({ processes })
    const fs = memory.fileSystem
    const infoOf = (pid: number) => Testing.makeProcessInfo(pid).pipe(Effect.provideService(FileSystem.FileSystem, fs))
    // A new process and its ProcessInfo, as a contender would build it on start.
    const start = (options?: Testing.SpawnOptions) =>
      Effect.flatMap(processes.spawn(options), (process) => infoOf(process.pid))
    return { processes, memory, fs, infoOf, start }
  })

const codeOf = (error: PlatformError) => (error.cause as { code?: string } | undefined)?.code

describe("ProcessTable under /proc", () => {
  it.effect("/proc/<pid>/stat is in the kernel's format: fields counted after the last ')'", () =>
    Effect.gen(function*() {
      const { fs, processes } = yield* makeMachine()
      const process = yield* processes.spawn({ cmdline: ["node", "--test"], comm: "node (vitest 1)" })
      const text = yield* fs.readFileString(`/proc/${process.pid}/stat`)
      assert.isTrue(text.startsWith(`${process.pid} (node (vitest 1)) S `))
      assert.isTrue(text.endsWith("\n"))
      const fields = text.slice(text.lastIndexOf(")") + 2).trim().split(" ")
      // fields[0] is field 3; the line has 52 fields.
      assert.strictEqual(fields.length, 50)
      assert.strictEqual(fields[0], "S")
      assert.strictEqual(fields[19], process.startTime)
    }))

  it.effect("cmdline, boot id, hostname and pid namespaces read as on Linux", () =>
    Effect.gen(function*() {
      const { fs, processes } = yield* makeMachine({ hostname: "box", pidNamespace: "pid:[4026532001]" })
      const process = yield* processes.spawn({ cmdline: ["node", "main.js", "--flag"] })
      assert.strictEqual(yield* fs.readFileString(`/proc/${process.pid}/cmdline`), "node\0main.js\0--flag\0")
      assert.match(
        yield* fs.readFileString("/proc/sys/kernel/random/boot_id"),
        /^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\n$/
      )
      assert.strictEqual(yield* fs.readFileString("/proc/sys/kernel/hostname"), "box\n")
      assert.strictEqual(yield* fs.readLink("/proc/self/ns/pid"), "pid:[4026532001]")
      assert.strictEqual(yield* fs.readLink(`/proc/${process.pid}/ns/pid`), "pid:[4026532001]")
      assert.deepStrictEqual(yield* fs.readDirectory("/proc"), [String(process.pid), "self", "sys"].sort())
      assert.deepStrictEqual(yield* fs.readDirectory(`/proc/${process.pid}`), ["cmdline", "ns", "stat"])
      assert.strictEqual((yield* fs.stat(`/proc/${process.pid}/stat`)).type, "File")
    }))

  it.effect("anything else under /proc is not there", () =>
    Effect.gen(function*() {
      const { fs, processes } = yield* makeMachine()
      const process = yield* processes.spawn()
      for (const path of [`/proc/${process.pid}/environ`, "/proc/4242/stat", "/proc/uptime", "/proc/self/stat"]) {
        const error = yield* Effect.flip(fs.readFileString(path))
        assert.deepStrictEqual(
          [error._tag === "SystemError" && error.reason, codeOf(error)],
          ["NotFound", "ENOENT"],
          path
        )
      }
    }))

  it.effect("/proc is read-only: changes fail EACCES, renames into it EXDEV", () =>
    Effect.gen(function*() {
      const { fs, processes } = yield* makeMachine()
      const process = yield* processes.spawn()
      yield* fs.writeFileString("/tmp/f", "")
      const outcomes = yield* Effect.forEach([
        fs.writeFileString(`/proc/${process.pid}/stat`, "x"),
        fs.writeFileString("/proc/sys/kernel/hostname", "x"),
        fs.makeDirectory("/proc/x"),
        fs.symlink("t", `/proc/${process.pid}/x`),
        fs.remove(`/proc/${process.pid}/stat`),
        fs.chmod(`/proc/${process.pid}/stat`, 0o666),
        fs.rename("/tmp/f", "/proc/f")
      ], (effect) => Effect.map(Effect.flip(effect), codeOf))
      assert.deepStrictEqual(outcomes, ["EACCES", "EACCES", "EACCES", "EACCES", "EACCES", "EACCES", "EXDEV"])
      assert.strictEqual(yield* fs.readFileString("/proc/sys/kernel/hostname"), "memory\n")
    }))

  it.effect("/etc/machine-id: a root-owned 0444 file, 32 lowercase hex digits and a newline, read-only", () =>
    Effect.gen(function*() {
      const { fs } = yield* makeMachine()
      const text = yield* fs.readFileString("/etc/machine-id")
      assert.match(text, /^[0-9a-f]{32}\n$/)
      const info = yield* fs.stat("/etc/machine-id")
      assert.deepStrictEqual(
        [info.type, info.mode.toString(8), info.uid, info.gid],
        ["File", "100444", Option.some(0), Option.some(0)]
      )
      assert.deepStrictEqual(yield* fs.readDirectory("/etc"), ["machine-id"])
      const { memory } = yield* makeMachine()
      const asRoot = memory.asUser({ uid: 0, gid: 0 })
      const outcomes = yield* Effect.forEach([
        asRoot.writeFileString("/etc/machine-id", "x"),
        asRoot.remove("/etc/machine-id"),
        asRoot.writeFileString("/etc/hostname", "x")
      ], (effect) => Effect.map(Effect.flip(effect), codeOf))
      assert.deepStrictEqual(outcomes, ["EACCES", "EACCES", "EACCES"])
      // Unless told otherwise, two tables are two boots of one installation.
      assert.strictEqual(yield* memory.fileSystem.readFileString("/etc/machine-id"), text)
    }))

  it.effect("/etc/machine-id follows the table: given, changed, removed (ENOENT), and kept across a reboot", () =>
    Effect.gen(function*() {
      const { fs, processes } = yield* makeMachine({ machineId: "0123456789abcdef0123456789abcdef" })
      assert.strictEqual(yield* fs.readFileString("/etc/machine-id"), "0123456789abcdef0123456789abcdef\n")
      const bootId = yield* fs.readFileString("/proc/sys/kernel/random/boot_id")
      yield* processes.reboot
      assert.notStrictEqual(yield* fs.readFileString("/proc/sys/kernel/random/boot_id"), bootId)
      assert.strictEqual(yield* fs.readFileString("/etc/machine-id"), "0123456789abcdef0123456789abcdef\n")

      yield* processes.setMachineId(undefined)
      const error = yield* Effect.flip(fs.readFileString("/etc/machine-id"))
      assert.deepStrictEqual([error._tag === "SystemError" && error.reason, codeOf(error)], ["NotFound", "ENOENT"])
      assert.deepStrictEqual(yield* fs.readDirectory("/etc"), [])
      const process = yield* processes.spawn()
      const info = yield* Testing.makeProcessInfo(process.pid).pipe(Effect.provideService(FileSystem.FileSystem, fs))
      assert.isUndefined(info.self.machineId)

      yield* processes.setMachineId("fedcba9876543210fedcba9876543210")
      assert.strictEqual(yield* fs.readFileString("/etc/machine-id"), "fedcba9876543210fedcba9876543210\n")
    }))

  it.effect("without a process table there is no /proc and no /etc", () =>
    Effect.gen(function*() {
      const { fileSystem: fs } = yield* Testing.makeFileSystem()
      assert.deepStrictEqual(yield* fs.readDirectory("/"), ["tmp"])
      assert.strictEqual(codeOf(yield* Effect.flip(fs.readFileString("/etc/machine-id"))), "ENOENT")
    }))

  it.effect("spawn hands out the next free PID, or the one asked for; start times increase", () =>
    Effect.gen(function*() {
      const { processes } = yield* makeMachine({ firstPid: 300 })
      const a = yield* processes.spawn()
      const one = yield* processes.spawn({ pid: 1 })
      yield* processes.spawn({ pid: 302 })
      const b = yield* processes.spawn()
      assert.deepStrictEqual([a.pid, one.pid, b.pid], [300, 1, 301])
      const c = yield* processes.spawn()
      assert.strictEqual(c.pid, 303)
      const starts = [a, one, b, c].map((process) => Number(process.startTime))
      assert.deepStrictEqual(starts, [...starts].sort((x, y) => x - y))
      assert.strictEqual(new Set(starts).size, 4)
      assert.deepStrictEqual((yield* processes.list).map((process) => process.pid), [1, 300, 301, 302, 303])
      assert.isTrue(Exit.isFailure(yield* Effect.exit(processes.spawn({ pid: 1 }))))
    }))

  it.effect("exit, zombie and reap", () =>
    Effect.gen(function*() {
      const { fs, processes } = yield* makeMachine()
      const process = yield* processes.spawn({ comm: "worker" })
      yield* processes.exit(process.pid, { zombie: true })
      assert.isFalse(yield* processes.isAlive(process.pid))
      assert.deepStrictEqual(Option.map(yield* processes.get(process.pid), (p) => p.state), Option.some("Z"))
      const stat = yield* fs.readFileString(`/proc/${process.pid}/stat`)
      assert.isTrue(stat.startsWith(`${process.pid} (worker) Z `))
      assert.strictEqual(yield* fs.readFileString(`/proc/${process.pid}/cmdline`), "")
      assert.isTrue(Exit.isFailure(yield* Effect.exit(processes.exit(process.pid))), "a zombie cannot exit again")
      yield* processes.reap(process.pid)
      assert.isTrue(Option.isNone(yield* processes.get(process.pid)))
      assert.strictEqual(codeOf(yield* Effect.flip(fs.readFileString(`/proc/${process.pid}/stat`))), "ENOENT")
      assert.isTrue(Exit.isFailure(yield* Effect.exit(processes.reap(process.pid))), "no such process")
    }))

  it.effect("denyRead: opening stat fails EPERM, as hidepid=1 refuses another user's; /proc/<pid> stays visible", () =>
    Effect.gen(function*() {
      const { fs, processes } = yield* makeMachine()
      const process = yield* processes.spawn()
      yield* processes.denyRead(process.pid)
      const error = yield* Effect.flip(fs.readFileString(`/proc/${process.pid}/stat`))
      assert.deepStrictEqual(
        [error._tag === "SystemError" && error.reason, codeOf(error), error.description],
        ["Unknown", "EPERM", `EPERM: operation not permitted, open '/proc/${process.pid}/stat'`]
      )
      assert.include(yield* fs.readDirectory("/proc"), String(process.pid))
      assert.strictEqual((yield* fs.stat(`/proc/${process.pid}/stat`)).type, "File")
    }))

  it.effect("vanishOnNextRead: the read fails ESRCH, as Node reports a failed read, and the process is gone", () =>
    Effect.gen(function*() {
      const { fs, processes } = yield* makeMachine()
      const process = yield* processes.spawn()
      yield* processes.vanishOnNextRead(process.pid)
      assert.isTrue(yield* processes.isAlive(process.pid))
      const error = yield* Effect.flip(fs.readFileString(`/proc/${process.pid}/stat`))
      assert.deepStrictEqual(
        [
          error._tag === "SystemError" && error.reason,
          codeOf(error),
          error.description,
          (error.cause as { path?: string }).path
        ],
        ["Unknown", "ESRCH", "ESRCH: no such process, read", undefined]
      )
      assert.isFalse(yield* processes.isAlive(process.pid))
      assert.strictEqual(codeOf(yield* Effect.flip(fs.readFileString(`/proc/${process.pid}/stat`))), "ENOENT")
    }))
})

describe("ProcessInfo.makeLinux on a fake process", () => {
  it.effect("Testing.layer: one fake process, its identity read from /proc", () =>
    Effect.gen(function*() {
      const info = yield* ProcessInfo.ProcessInfo
      const processes = yield* Testing.ProcessTable
      const [process] = yield* processes.list
      assert.deepStrictEqual(info.self, {
        pid: process!.pid,
        startTime: process!.startTime,
        bootId: (yield* (yield* FileSystem.FileSystem).readFileString("/proc/sys/kernel/random/boot_id")).trim(),
        pidNamespace: "pid:[4026531836]",
        hostname: "host-a",
        cmdline: ["node", "server.js"],
        machineId: "0123456789abcdef0123456789abcdef"
      })
      assert.deepStrictEqual(info.uid, Option.some((yield* Testing.MemoryFileSystem).uid))
    }).pipe(Effect.provide(Testing.layer({
      spawn: { cmdline: ["node", "server.js"] },
      processTable: { hostname: "host-a", machineId: "0123456789abcdef0123456789abcdef" }
    }))))

  it.effect("a live holder is Alive, even after it set its title", () =>
    Effect.gen(function*() {
      const { processes, start } = yield* makeMachine()
      const holder = yield* start({ cmdline: ["node", "app.js", "--port=1"] })
      const judge = yield* start()
      assert.deepStrictEqual(yield* judge.judge(holder.self), ProcessInfo.Verdict.Alive())

      yield* processes.setTitle(holder.self.pid, "my app (worker)")
      const now = Option.getOrThrow(yield* judge.identify(holder.self.pid))
      assert.deepStrictEqual([now.cmdline, now.startTime], [["my app (worker)"], holder.self.startTime])
      assert.deepStrictEqual(
        Option.map(yield* processes.get(holder.self.pid), (process) => process.comm),
        Option.some("my app (worker)")
      )
      assert.deepStrictEqual(yield* judge.judge(holder.self), ProcessInfo.Verdict.Alive())
    }))

  it.effect("an exited holder is Stale: Zombie until reaped, then Exited", () =>
    Effect.gen(function*() {
      const { processes, start } = yield* makeMachine()
      const holder = yield* start()
      const judge = yield* start()
      yield* processes.exit(holder.self.pid, { zombie: true })
      assert.deepStrictEqual(yield* judge.judge(holder.self), ProcessInfo.Verdict.Stale({ reason: "Zombie" }))
      assert.isTrue(Option.isNone(yield* judge.identify(holder.self.pid)))
      yield* processes.reap(holder.self.pid)
      assert.deepStrictEqual(yield* judge.judge(holder.self), ProcessInfo.Verdict.Stale({ reason: "Exited" }))
    }))

  it.effect("a reused PID has another start time: PidReused (the container's PID 1)", () =>
    Effect.gen(function*() {
      const { processes, start } = yield* makeMachine()
      const holder = yield* start({ pid: 1 })
      yield* processes.exit(1)
      const next = yield* start({ pid: 1 })
      assert.notStrictEqual(next.self.startTime, holder.self.startTime)
      assert.deepStrictEqual(yield* next.judge(holder.self), ProcessInfo.Verdict.Stale({ reason: "PidReused" }))
    }))

  it.effect("after a reboot the same PID and start time come back, and the holder is Rebooted, not Alive", () =>
    Effect.gen(function*() {
      const { processes, start } = yield* makeMachine()
      const holder = yield* start()
      yield* processes.reboot
      assert.deepStrictEqual(yield* processes.list, [])
      const next = yield* start()
      assert.deepStrictEqual([next.self.pid, next.self.startTime], [holder.self.pid, holder.self.startTime])
      assert.notStrictEqual(next.self.bootId, holder.self.bootId)
      assert.deepStrictEqual(yield* next.judge(holder.self), ProcessInfo.Verdict.Stale({ reason: "Rebooted" }))
    }))

  it.effect("an unreadable holder is judged Alive; identify reports the error", () =>
    Effect.gen(function*() {
      const { processes, start } = yield* makeMachine()
      const holder = yield* start()
      const judge = yield* start()
      yield* processes.denyRead(holder.self.pid)
      assert.deepStrictEqual(yield* judge.judge(holder.self), ProcessInfo.Verdict.Alive())
      assert.strictEqual(codeOf(yield* Effect.flip(judge.identify(holder.self.pid))), "EPERM")
    }))

  it.effect("a holder that exits between open and read (ESRCH) is Exited", () =>
    Effect.gen(function*() {
      const { processes, start } = yield* makeMachine()
      const holder = yield* start()
      const judge = yield* start()
      yield* processes.vanishOnNextRead(holder.self.pid)
      assert.deepStrictEqual(yield* judge.judge(holder.self), ProcessInfo.Verdict.Stale({ reason: "Exited" }))
    }))

  it.effect("another pid namespace, or another machine, cannot be seen: Foreign", () =>
    Effect.gen(function*() {
      const { processes, start } = yield* makeMachine({ hostname: "a" })
      const holder = yield* start()
      yield* processes.setPidNamespace("pid:[4026532999]")
      const inContainer = yield* start()
      assert.strictEqual(inContainer.self.pidNamespace, "pid:[4026532999]")
      assert.deepStrictEqual(yield* inContainer.judge(holder.self), ProcessInfo.Verdict.Foreign({ scope: "namespace" }))
      const otherMachine = yield* makeMachine({ hostname: "b" })
      const onOtherHost = yield* otherMachine.start()
      assert.notStrictEqual(onOtherHost.self.bootId, holder.self.bootId)
      assert.deepStrictEqual(yield* onOtherHost.judge(holder.self), ProcessInfo.Verdict.Foreign({ scope: "host" }))
    }))

  it.effect("a hostname changed at run time is still this machine", () =>
    Effect.gen(function*() {
      const { processes, start } = yield* makeMachine({ hostname: "before" })
      const holder = yield* start()
      yield* processes.setHostname("after")
      const judge = yield* start()
      assert.strictEqual(judge.self.hostname, "after")
      assert.deepStrictEqual(yield* judge.judge(holder.self), ProcessInfo.Verdict.Alive())
    }))

  it.effect("several contenders share one file system, each with its own ProcessInfo", () =>
    Effect.gen(function*() {
      const { infoOf, memory, processes } = yield* makeMachine()
      const [a, b] = yield* Effect.all([processes.spawn(), processes.spawn()])
      const asA = yield* infoOf(a.pid)
      const asB = yield* infoOf(b.pid)
      assert.deepStrictEqual([asA.self.pid, asB.self.pid], [a.pid, b.pid])
      assert.deepStrictEqual([asA.uid, asB.uid], [Option.some(memory.uid), Option.some(memory.uid)])
      assert.deepStrictEqual(yield* asB.judge(asA.self), ProcessInfo.Verdict.Alive())
      // The same through layers.
      const viaLayer = yield* ProcessInfo.ProcessInfo.pipe(
        Effect.provide(Testing.layerProcessInfo(b.pid)),
        Effect.provide(memory.layer)
      )
      assert.isTrue(ProcessInfo.isSameProcess(viaLayer.self, asB.self))
    }))
})
