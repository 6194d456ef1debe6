import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ProcessInfo from "../../src/ProcessInfo.js"
import * as Testing from "../../src/testing/index.js"
import type { Environment } from "./environment.js"

// The in-memory `FileSystem` with a fake process table: this process and
// others are fake processes, judged through the fake `/proc` or, as on macOS,
// through the fake `ps`, `sysctl` and `kill`.
const makeMemoryEnvironment = (processInfo: "proc" | "portable"): Environment => ({
  name: processInfo === "proc" ? "memory" : "memory (portable: fake ps, kill, as on macOS)",
  bootsNamedBy: processInfo === "proc" ? "boot-id" : "boot-time",
  fixture: Effect.gen(function*() {
    const processes = yield* Testing.makeProcessTable()
    const memory = yield* Testing.makeFileSystem({ processes })
    const dir = "/tmp/pidlock-test"
    const self = yield* processes.spawn({ cmdline: ["node", "main.js"] })
    const fileSystem = Layer.succeed(FileSystem.FileSystem, memory.fileSystem)
    const layer = (processInfo === "proc"
      ? Testing.layerProcessInfo(self.pid)
      : Testing.layerPortableProcessInfo(self.pid, { platform: "darwin" })).pipe(
        Layer.provideMerge(fileSystem),
        Layer.orDie
      )
    const context = yield* Layer.build(layer)
    yield* Effect.orDie(memory.fileSystem.makeDirectory(dir))
    const spawn = Effect.flatMap(
      processes.spawn({ cmdline: ["node", "other.js"] }),
      (process) =>
        Effect.flatMap(ProcessInfo.ProcessInfo, (info) => info.identify(process.pid)).pipe(
          Effect.flatten,
          Effect.orDie,
          Effect.provide(context)
        )
    )
    return {
      dir,
      layer: Layer.succeedContext(context),
      live: spawn,
      exited: Effect.tap(spawn, ({ pid }) => processes.exit(pid)),
      zombie: Effect.tap(spawn, ({ pid }) => processes.exit(pid, { zombie: true })),
      kill: (pid) => processes.exit(pid),
      makeFifo: (path) => Effect.orDie(memory.makeFifo(path)),
      giveAway: (path) => Effect.orDie(memory.asUser({ uid: 0, gid: 0 }).chown(path, 65534, 65534)),
      ...(processInfo === "proc"
        ? {
          procFault: (pid: number, errno: "EPERM" | "ESRCH") =>
            errno === "EPERM" ? processes.denyRead(pid) : processes.vanishOnNextRead(pid)
        }
        : {})
    }
  })
})

/** The in-memory `FileSystem`, its holders judged through the fake `/proc`. */
export const memoryEnvironment: Environment = makeMemoryEnvironment("proc")

/** The in-memory `FileSystem`, its holders judged as on macOS: fake `ps`, `sysctl` and `kill`. */
export const memoryPortableEnvironment: Environment = makeMemoryEnvironment("portable")
