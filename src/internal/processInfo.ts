import type { PlatformError } from "@effect/platform/Error"
import { SystemError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Posix from "../Posix.js"
import type * as ProcessInfo from "../ProcessInfo.js"
import { errnoOf } from "./errno.js"
import * as portable from "./portable.js"
import * as posix from "./posix.js"
import * as systemCommand from "./systemCommand.js"

/** @internal */
export const TypeId: ProcessInfo.TypeId = Symbol.for("effect-pidlock/ProcessInfo") as ProcessInfo.TypeId

/** @internal */
export const tag = Context.GenericTag<ProcessInfo.ProcessInfo>("effect-pidlock/ProcessInfo")

/** @internal */
export const Verdict = Data.taggedEnum<ProcessInfo.Verdict>()

/** @internal */
export const isSameProcess = (a: ProcessInfo.Identity, b: ProcessInfo.Identity): boolean =>
  a.pid === b.pid && a.startTime === b.startTime && a.startClock === b.startClock && a.bootId === b.bootId &&
  a.pidNamespace === b.pidNamespace && a.hostname === b.hostname

interface ProcStat {
  readonly state: string
  readonly startTime: string
}

const invalidData = (path: string, description: string): PlatformError =>
  new SystemError({
    reason: "InvalidData",
    module: "FileSystem",
    method: "readFileString",
    pathOrDescriptor: path,
    description
  })

// The command name (field 2) may hold spaces and parentheses, so the fields
// that follow are counted from the last `)`.
const parseStat = (path: string, text: string): Effect.Effect<ProcStat, PlatformError> => {
  const close = text.lastIndexOf(")")
  const fields = close === -1 ? [] : text.slice(close + 1).trim().split(" ")
  // fields[0] is field 3 (state); field 22 (start time) is fields[19].
  const state = fields[0]
  const startTime = fields[19]
  return state !== undefined && startTime !== undefined && /^\d+$/.test(startTime)
    ? Effect.succeed({ state, startTime })
    : Effect.fail(invalidData(path, `unexpected contents of ${path}`))
}

const parseCmdline = (text: string): ReadonlyArray<string> => {
  const args = text.split("\0")
  if (args.length > 0 && args[args.length - 1] === "") args.pop()
  return args
}

/** @internal */
export const makeLinux = Effect.fnUntraced(function*(
  options?: { readonly pid?: number | undefined; readonly uid?: number | undefined }
) {
  const fs = yield* FileSystem.FileSystem
  const pid = options?.pid ?? process.pid
  // The effective uid is the one the kernel checks and gives to what we
  // create: a process that changed it must see its own lock home as its own.
  const uid = options?.uid ?? process.geteuid?.()

  // None when there is no such process: ENOENT when /proc/<pid> is gone, ESRCH
  // when it exits between open and read.
  const readStat = (pid: number): Effect.Effect<Option.Option<ProcStat>, PlatformError> => {
    const path = `/proc/${pid}/stat`
    return fs.readFileString(path).pipe(
      Effect.flatMap((text) => parseStat(path, text)),
      Effect.map(Option.some),
      Effect.catchIf(
        (error) => error._tag === "SystemError" && isGone(error),
        () => Effect.succeed(Option.none())
      )
    )
  }

  const readCmdline = (pid: number) =>
    fs.readFileString(`/proc/${pid}/cmdline`).pipe(
      Effect.map(parseCmdline),
      Effect.catchIf(isGone, () => Effect.succeed<ReadonlyArray<string>>([]))
    )

  const [ownStat, cmdline, bootId, pidNamespace, hostname, machineId] = yield* Effect.all([
    readStat(pid),
    readCmdline(pid),
    fs.readFileString("/proc/sys/kernel/random/boot_id"),
    fs.readLink(`/proc/${pid}/ns/pid`),
    fs.readFileString("/proc/sys/kernel/hostname"),
    readMachineId(fs)
  ])
  if (Option.isNone(ownStat)) {
    return yield* new SystemError({
      reason: "NotFound",
      module: "FileSystem",
      method: "readFileString",
      pathOrDescriptor: `/proc/${pid}/stat`,
      description: `this process (pid ${pid}) is not in /proc`
    })
  }
  const self: ProcessInfo.Identity = {
    pid,
    startTime: ownStat.value.startTime,
    bootId: bootId.trim(),
    pidNamespace: pidNamespace.trim(),
    hostname: hostname.trim(),
    cmdline,
    ...(Option.isSome(machineId) ? { machineId: machineId.value } : {})
  }

  const identify = (pid: number) =>
    readStat(pid).pipe(
      Effect.flatMap(Option.match({
        onNone: () => Effect.succeedNone,
        onSome: (stat) =>
          isDead(stat.state)
            ? Effect.succeedNone
            : Effect.map(
              readCmdline(pid),
              (cmdline) => Option.some({ ...self, pid, startTime: stat.startTime, cmdline })
            )
      }))
    )

  const judge = (holder: ProcessInfo.Identity): Effect.Effect<ProcessInfo.Verdict, PlatformError> => {
    // Boot ids are random 128-bit values: an equal one means this very kernel,
    // whatever the hostname says now (it can change at run time). Another boot
    // id is a reboot only on this very machine: hostnames repeat (image
    // defaults, compose's `hostname:`), so the machine id must match too, and
    // a record without one (an older release's) cannot be placed.
    if (holder.bootId !== self.bootId) {
      return Effect.succeed(
        isSameMachine(holder, self) ? Verdict.Stale({ reason: "Rebooted" }) : Verdict.Foreign({ scope: "host" })
      )
    }
    if (holder.pidNamespace !== self.pidNamespace) return Effect.succeed(Verdict.Foreign({ scope: "namespace" }))
    return readStat(holder.pid).pipe(
      Effect.map(Option.match({
        onNone: () => Verdict.Stale({ reason: "Exited" }),
        onSome: (stat) =>
          stat.state === "Z"
            ? Verdict.Stale({ reason: "Zombie" })
            : stat.state === "X"
            ? Verdict.Stale({ reason: "Exited" })
            // Recorded by the portable layer, in seconds since 1970: not
            // comparable with clock ticks since boot, so a live PID holds.
            : holder.startClock !== undefined
            ? Verdict.Alive()
            : stat.startTime !== holder.startTime
            ? Verdict.Stale({ reason: "PidReused" })
            : Verdict.Alive()
      })),
      // /proc/<pid>/stat of another user's process can be unreadable
      // (hidepid=1 gives EPERM): something is there, so it is judged alive.
      Effect.catchIf(isDenied, () => Effect.succeed(Verdict.Alive()))
    )
  }

  return tag.of({
    [TypeId]: TypeId,
    self,
    uid: Option.fromNullable(uid),
    identify,
    judge
  })
})

const isGone = (error: PlatformError): boolean => {
  const code = errnoOf(error)
  return code === "ENOENT" || code === "ESRCH"
}

const isDead = (state: string): boolean => state === "Z" || state === "X"

const isDenied = (error: PlatformError): boolean =>
  error._tag === "SystemError" && (error.reason === "PermissionDenied" || errnoOf(error) === "EPERM")

const isSameMachine = (a: ProcessInfo.Identity, b: ProcessInfo.Identity): boolean =>
  a.machineId !== undefined && a.machineId === b.machineId && a.hostname === b.hostname

// systemd's /etc/machine-id, else D-Bus's copy; `None` where neither exists
// (many container images), and then no record is judged rebooted.
const MACHINE_ID_FILES = ["/etc/machine-id", "/var/lib/dbus/machine-id"]

const readMachineId = (fs: FileSystem.FileSystem): Effect.Effect<Option.Option<string>, PlatformError> =>
  Effect.reduce(
    MACHINE_ID_FILES,
    Option.none<string>(),
    (found, path) =>
      Option.isSome(found) ? Effect.succeed(found) : fs.readFileString(path).pipe(
        Effect.map((text) => Option.liftPredicate(text.trim(), (id) => id !== "")),
        Effect.catchIf(isGone, () => Effect.succeedNone)
      )
  )

/** @internal */
export const layerLinux = Layer.effect(tag, makeLinux())

/** @internal */
export const makePortable = (options?: {
  readonly platform?: string | undefined
  readonly pid?: number | undefined
  readonly uid?: number | undefined
}) =>
  portable.makePortable(
    { ...options, platform: options?.platform ?? process.platform },
    (fields) => tag.of({ [TypeId]: TypeId, ...fields })
  )

/** @internal */
export const layerPortable = Layer.effect(tag, makePortable())

/** @internal */
export const PORTABLE_PLATFORMS: ReadonlyArray<string> = Object.keys(portable.PLATFORMS)

/** @internal */
export const layerPortableNode: Layer.Layer<
  ProcessInfo.ProcessInfo | Posix.Posix,
  PlatformError,
  FileSystem.FileSystem
> = layerPortable.pipe(
  Layer.provideMerge(posix.layerNode),
  Layer.provide(systemCommand.layerNode)
)

/** @internal */
export const layerFor = <E>(
  platform: string,
  unsupported: (platform: string) => E
): Layer.Layer<ProcessInfo.ProcessInfo | Posix.Posix, PlatformError | E, FileSystem.FileSystem> =>
  platform === "linux"
    ? Layer.merge(layerLinux, posix.layerNode)
    : PORTABLE_PLATFORMS.includes(platform)
    ? layerPortableNode
    : Layer.fail(unsupported(platform))
