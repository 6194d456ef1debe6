import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as portable from "../../src/internal/portable.js"
import * as ProcessInfo from "../../src/ProcessInfo.js"
import { type Environment, readProcStat } from "./environment.js"

/** The real file system and this process, as an application provides them. */
export const nodeLayer = ProcessInfo.layer.pipe(Layer.provideMerge(NodeFileSystem.layer))

/** The same with the portable `ProcessInfo` (ps, sysctl, kill), as macOS and FreeBSD get it. */
export const portableNodeLayer = ProcessInfo.layerPortableNode.pipe(Layer.provideMerge(NodeFileSystem.layer))

/** Which `ProcessInfo` a run of the lock uses: `/proc` (the default on Linux) or the portable one. */
export type ProcessInfoKind = "proc" | "portable"

export const nodeLayerOf = (kind: ProcessInfoKind) => kind === "proc" ? nodeLayer : portableNodeLayer

// State and start time of `pid` as each layer records them: /proc's clock
// ticks since boot, or ps's seconds since 1970.
const readState = (kind: ProcessInfoKind, fs: FileSystem.FileSystem, pid: number) =>
  kind === "proc" ? readProcStat(fs, pid) : Effect.sync(() => {
    const text = ChildProcess.execFileSync("ps", portable.psArgs(portable.PLATFORMS.linux!, pid), {
      encoding: "utf8",
      env: { ...process.env, LC_ALL: "C", TZ: "UTC" }
    })
    const row = portable.parsePsRow(portable.PLATFORMS.linux!, text)!
    return { state: row.state.slice(0, 1), startTime: row.startTime }
  })

/** A scoped temporary directory on the real disk. */
export const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "pidlock-test-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

// A child process that lives until the scope closes.
const spawnScoped = (command: string, args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.async<ChildProcess.ChildProcess, Error>((resume) => {
      const child = ChildProcess.spawn(command, args, { stdio: ["ignore", "pipe", "inherit"] })
      child.once("spawn", () => resume(Effect.succeed(child)))
      child.once("error", (error) => resume(Effect.fail(error)))
    }),
    (child) =>
      Effect.async<void>((resume) => {
        if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
        child.once("exit", () => resume(Effect.void))
        child.kill("SIGKILL")
      })
  ).pipe(Effect.orDie)

const awaitExit = (child: ChildProcess.ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
  })

const firstLine = (child: ChildProcess.ChildProcess) =>
  Effect.async<string>((resume) => {
    let text = ""
    child.stdout!.on("data", (chunk) => {
      text += chunk
      if (text.includes("\n")) resume(Effect.succeed(text.split("\n")[0]!))
    })
  })

const identify = (pid: number) =>
  Effect.flatMap(ProcessInfo.ProcessInfo, (info) => info.identify(pid)).pipe(
    Effect.flatten,
    Effect.orDie
  )

/** The real Node `FileSystem` on a temporary directory, with real processes, judged by the `ProcessInfo` of `kind`. */
export const makeNodeEnvironment = (kind: ProcessInfoKind): Environment => ({
  name: kind === "proc" ? "node" : "node (portable ProcessInfo)",
  fixture: Effect.gen(function*() {
    const dir = yield* tempDir
    const context = yield* Layer.build(nodeLayerOf(kind)).pipe(Effect.orDie)
    const provide = Effect.provide(context)
    return {
      dir,
      layer: Layer.succeedContext(context),
      live: Effect.gen(function*() {
        const child = yield* spawnScoped("sleep", ["60"])
        return yield* provide(identify(child.pid!))
      }),
      exited: Effect.gen(function*() {
        const child = yield* spawnScoped("sleep", ["60"])
        const identity = yield* provide(identify(child.pid!))
        child.kill("SIGKILL")
        yield* awaitExit(child)
        return identity
      }),
      // The shell becomes `sleep 60` by exec and never waits for its child,
      // which stays a zombie once it exits.
      zombie: Effect.gen(function*() {
        const parent = yield* spawnScoped("sh", ["-c", "sleep 0.2 & echo $!; exec sleep 60"])
        const pid = Number(yield* firstLine(parent))
        const self = yield* provide(ProcessInfo.ProcessInfo)
        const fs = yield* provide(FileSystem.FileSystem)
        const stat = yield* readState(kind, fs, pid).pipe(
          Effect.filterOrFail((stat) => stat.state === "Z"),
          Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("5 seconds"))),
          Effect.orDie
        )
        return { ...self.self, pid, startTime: stat.startTime, cmdline: ["sleep", "0.2"] }
      }),
      kill: (pid) => Effect.sync(() => process.kill(pid, "SIGKILL")),
      makeFifo: (path) => Effect.sync(() => ChildProcess.execFileSync("mkfifo", [path])),
      giveAway: (path) => Effect.sync(() => Fs.chownSync(path, 65534, 65534))
    }
  })
})

/** The real Node `FileSystem` with the `/proc` `ProcessInfo`. */
export const nodeEnvironment: Environment = makeNodeEnvironment("proc")

/** The real Node `FileSystem` with the portable `ProcessInfo`. */
export const portableNodeEnvironment: Environment = makeNodeEnvironment("portable")
