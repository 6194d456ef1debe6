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
import type * as SystemCommand from "../SystemCommand.js"
import { errnoOf } from "./errno.js"
import * as posix from "./posix.js"

// Both implementations live in this one module, the portable one (`ps`,
// `sysctl`, `kill(pid, 0)`) below the /proc one: every module on the import
// path of `PidLock` and `ProcessInfo` costs start-up time to load, and
// `makePortable` must stay synchronous (it is run with `Effect.runSync`), so
// its code cannot be loaded on demand. `./portable.js` re-exports its parts
// for the tests; `./systemCommand.js`, the Node `SystemCommand`, is loaded
// when `layerPortableNode` is built.

/** @internal */
export const TypeId: ProcessInfo.TypeId = Symbol.for("effect-pidlock/ProcessInfo") as ProcessInfo.TypeId

/** @internal */
export const tag = Context.GenericTag<ProcessInfo.ProcessInfo>("effect-pidlock/ProcessInfo")

/** @internal */
export const Verdict = Data.taggedEnum<ProcessInfo.Verdict>()

/** @internal */
export const CommandTypeId: SystemCommand.TypeId = Symbol.for("effect-pidlock/SystemCommand") as SystemCommand.TypeId

/**
 * `SystemCommand.SystemCommand`: made here, beside the portable
 * implementation that asks it, and re-exported by `./systemCommand.js`.
 *
 * @internal
 */
export const commandTag = Context.GenericTag<SystemCommand.SystemCommand>("effect-pidlock/SystemCommand")

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

// The portable implementation, for systems without /proc (macOS, FreeBSD):
// `ps`, `sysctl` and `kill(pid, 0)`.

// -----------------------------------------------------------------------------
// what each system is asked
// -----------------------------------------------------------------------------

/**
 * What the portable layer asks `ps` and `sysctl` on one system, and how it
 * reads the answers.
 *
 * @internal
 */
export interface PlatformQueries {
  /** The `ps` column after `stat` that tells the process's pid namespace (Linux) or jail (FreeBSD). */
  readonly namespaceColumn: "pidns" | "jid" | undefined
  /** Turns that column's text into `Identity.pidNamespace`. */
  readonly namespaceOf: (column: string | undefined) => string
  /** `sysctl` names of the boot's identity and the host's name, asked in one call. */
  readonly bootAndHost: readonly [string, string]
  /** Turns the boot's `sysctl` value into `Identity.bootId`. */
  readonly bootIdOf: (text: string) => string | undefined
  /** Where the machine id comes from: a `sysctl` name, or systemd's file. */
  readonly machineId: { readonly sysctl: string } | "machine-id-file"
}

// kern.boottime is printed by the BSDs' sysctl as a struct:
// `{ sec = 1767225600, usec = 250000 } Thu Jan  1 00:00:00 2026`.
const bootTimeOf = (text: string): string | undefined => {
  const seconds = /\bsec = (\d+)/.exec(text)?.[1]
  return seconds === undefined ? undefined : `${BOOT_TIME_PREFIX}${seconds}`
}

/**
 * A boot id derived from the boot time rather than drawn at random: it moves
 * when the wall clock is set, so it never proves a reboot by itself.
 *
 * @internal
 */
export const BOOT_TIME_PREFIX = "boottime:"

const nonEmpty = (text: string): string | undefined => text === "" ? undefined : text

/** @internal */
export const PLATFORMS: Readonly<Record<string, PlatformQueries>> = {
  // procps: the kernel's random boot id and the namespace's inode number,
  // in the form /proc/self/ns/pid shows it, so that a holder recorded by
  // the /proc layer and one recorded here on the same machine compare equal.
  linux: {
    namespaceColumn: "pidns",
    namespaceOf: (column) => `pid:[${column ?? ""}]`,
    bootAndHost: ["kernel.random.boot_id", "kernel.hostname"],
    bootIdOf: nonEmpty,
    machineId: "machine-id-file"
  },
  // No pid namespaces; kern.uuid is the hardware's UUID (IOPlatformUUID).
  darwin: {
    namespaceColumn: undefined,
    namespaceOf: () => "",
    bootAndHost: ["kern.boottime", "kern.hostname"],
    bootIdOf: bootTimeOf,
    machineId: { sysctl: "kern.uuid" }
  },
  // A jail sees only its own processes: like a pid namespace, a holder in
  // another jail is asked through its socket.
  freebsd: {
    namespaceColumn: "jid",
    namespaceOf: (column) => `jail:${column ?? ""}`,
    bootAndHost: ["kern.boottime", "kern.hostname"],
    bootIdOf: bootTimeOf,
    machineId: { sysctl: "kern.hostuuid" }
  }
}

// ps and sysctl print in the C locale, and ps's start time in UTC, whatever
// the user's settings: the parsers read one format.
const ENV = { LC_ALL: "C", TZ: "UTC" }

/** The arguments of the one `ps` call that describes process `pid`. @internal */
export const psArgs = (queries: PlatformQueries, pid: number): ReadonlyArray<string> => [
  "-o",
  "stat=",
  ...(queries.namespaceColumn === undefined ? [] : ["-o", `${queries.namespaceColumn}=`]),
  // Separate -o options: in BSD and POSIX ps, a header after `=` runs to the
  // end of its argument, commas included.
  "-o",
  "lstart=",
  "-o",
  "args=",
  "-p",
  String(pid)
]

// -----------------------------------------------------------------------------
// parsers
// -----------------------------------------------------------------------------

/**
 * One row of `ps`: the state letters, the namespace column (where asked),
 * the start time in whole seconds since 1970 (UTC), and the command line as
 * one string.
 *
 * @internal
 */
export interface PsRow {
  readonly state: string
  readonly namespace: string | undefined
  readonly startTime: string
  readonly args: string
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

// lstart in the C locale is strftime's `%a %b %e %H:%M:%S %Y`, e.g.
// `Thu Jan  1 00:00:00 2026` (the day padded with a space), on procps, macOS
// and FreeBSD alike.
const LSTART = /([A-Z][a-z]{2}) ([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4})/

const secondsOf = (match: RegExpExecArray): number | undefined => {
  const month = MONTHS.indexOf(match[2]!)
  if (month === -1) return undefined
  const millis = Date.UTC(
    Number(match[7]),
    month,
    Number(match[3]),
    Number(match[4]),
    Number(match[5]),
    Number(match[6])
  )
  return Number.isFinite(millis) ? millis / 1000 : undefined
}

/**
 * The row `ps` printed for `psArgs(queries, pid)`, `undefined` when the text
 * is not one.
 *
 * @internal
 */
export const parsePsRow = (queries: PlatformQueries, text: string): PsRow | undefined => {
  const line = text.split("\n").find((line) => line.trim() !== "")
  if (line === undefined) return undefined
  const row = new RegExp(
    `^\\s*(\\S+)\\s+${queries.namespaceColumn === undefined ? "" : "(\\S+)\\s+"}${LSTART.source}(?:\\s+(.*))?$`
  ).exec(line.trimEnd())
  if (row === null) return undefined
  const offset = queries.namespaceColumn === undefined ? 0 : 1
  const lstart = LSTART.exec(line)
  const seconds = lstart === null ? undefined : secondsOf(lstart)
  if (seconds === undefined) return undefined
  return {
    state: row[1]!,
    namespace: offset === 1 ? row[2] : undefined,
    startTime: String(seconds),
    args: row[9 + offset] ?? ""
  }
}

/**
 * The values `sysctl -n` printed for several names, one a line; `undefined`
 * when there are fewer lines than names.
 *
 * @internal
 */
export const parseSysctl = (text: string, count: number): ReadonlyArray<string> | undefined => {
  const lines = text.split("\n").map((line) => line.trim())
  if (lines.at(-1) === "") lines.pop()
  return lines.length === count ? lines : undefined
}

// -----------------------------------------------------------------------------
// the service
// -----------------------------------------------------------------------------

const commandError = (
  method: string,
  args: ReadonlyArray<string>,
  reason: "InvalidData" | "Unknown",
  description: string
): PlatformError =>
  new SystemError({
    reason,
    module: "Command",
    method,
    pathOrDescriptor: [method, ...args].join(" "),
    description
  })

const isZombie = (state: string): boolean => state.startsWith("Z")

/** @internal */
export const UNIX_SECONDS = "unix-seconds" as const

/**
 * The portable service, made into a `ProcessInfo` by `make`.
 *
 * @internal
 */
export const makePortableWith = Effect.fnUntraced(function*(
  options: {
    readonly platform: string
    readonly pid?: number | undefined
    readonly uid?: number | undefined
    readonly cmdline?: ReadonlyArray<string> | undefined
  },
  make: (
    fields: Omit<ProcessInfo.ProcessInfo, ProcessInfo.TypeId>
  ) => ProcessInfo.ProcessInfo
) {
  const queries = PLATFORMS[options.platform]
  if (queries === undefined) {
    return yield* commandError("ps", [], "Unknown", `no ps and sysctl formats known for platform ${options.platform}`)
  }
  const command = yield* commandTag
  const kernel = yield* posix.tag
  const fs = yield* FileSystem.FileSystem
  const pid = options.pid ?? process.pid
  const uid = options.uid ?? process.geteuid?.()

  // `None` when there is no such process: ps exits 1 and prints nothing.
  const ps = (pid: number): Effect.Effect<Option.Option<PsRow>, PlatformError> => {
    const args = psArgs(queries, pid)
    return Effect.flatMap(command.run("ps", args, { env: ENV }), (output) => {
      if (output.exitCode === 1 && output.stdout.trim() === "") return Effect.succeedNone
      if (output.exitCode !== 0) {
        return Effect.fail(commandError("ps", args, "Unknown", `exit code ${output.exitCode}: ${output.stderr.trim()}`))
      }
      const row = parsePsRow(queries, output.stdout)
      return row === undefined
        ? Effect.fail(commandError("ps", args, "InvalidData", `unexpected output: ${JSON.stringify(output.stdout)}`))
        : Effect.succeedSome(row)
    })
  }

  const sysctl = (names: ReadonlyArray<string>): Effect.Effect<Option.Option<ReadonlyArray<string>>, PlatformError> =>
    Effect.flatMap(command.run("sysctl", ["-n", ...names], { env: ENV }), (output) => {
      if (output.exitCode !== 0) return Effect.succeedNone
      const values = parseSysctl(output.stdout, names.length)
      return values === undefined
        ? Effect.fail(
          commandError("sysctl", ["-n", ...names], "InvalidData", `unexpected output: ${JSON.stringify(output.stdout)}`)
        )
        : Effect.succeedSome(values)
    })

  const machineId: Effect.Effect<Option.Option<string>, PlatformError> = queries.machineId === "machine-id-file"
    ? readMachineId(fs)
    : Effect.map(
      sysctl([queries.machineId.sysctl]),
      Option.flatMap((values) => Option.liftPredicate(values[0]!, (id) => id !== ""))
    )

  const [ownRow, bootAndHost, ownMachineId] = yield* Effect.all([ps(pid), sysctl(queries.bootAndHost), machineId])
  const bootArgs = ["-n", ...queries.bootAndHost]
  if (Option.isNone(ownRow)) {
    return yield* commandError("ps", psArgs(queries, pid), "InvalidData", `this process (pid ${pid}) is not listed`)
  }
  if (Option.isNone(bootAndHost)) {
    return yield* commandError("sysctl", bootArgs, "Unknown", `the boot and host names are not known`)
  }
  const bootId = queries.bootIdOf(bootAndHost.value[0]!)
  if (bootId === undefined) {
    return yield* commandError("sysctl", bootArgs, "InvalidData", `unexpected boot identity: ${bootAndHost.value[0]}`)
  }
  const self: ProcessInfo.Identity = {
    pid,
    startTime: ownRow.value.startTime,
    startClock: UNIX_SECONDS,
    bootId,
    pidNamespace: queries.namespaceOf(ownRow.value.namespace),
    hostname: bootAndHost.value[1]!,
    cmdline: options.cmdline ?? (pid === process.pid
      ? [process.argv0, ...process.execArgv, ...process.argv.slice(1)]
      : [ownRow.value.args]),
    ...(Option.isSome(ownMachineId) ? { machineId: ownMachineId.value } : {})
  }

  const identify = (pid: number) =>
    Effect.map(
      ps(pid),
      Option.flatMap((row) =>
        isZombie(row.state)
          ? Option.none()
          : Option.some({ ...self, pid, startTime: row.startTime, cmdline: [row.args] })
      )
    )

  const judge: ProcessInfo.ProcessInfo["judge"] = (holder, options) => {
    if (!isSameBoot(holder, self)) {
      if (!isSameMachine(holder, self)) return Effect.succeed(Verdict.Foreign({ scope: "host" }))
      // A random boot id (Linux) that changed proves a reboot; a boot time
      // also moves when the clock is set, so the process itself is looked at.
      if (!holder.bootId.startsWith(BOOT_TIME_PREFIX) && !self.bootId.startsWith(BOOT_TIME_PREFIX)) {
        return Effect.succeed(Verdict.Stale({ reason: "Rebooted" }))
      }
    } else if (holder.pidNamespace !== self.pidNamespace) {
      return Effect.succeed(Verdict.Foreign({ scope: "namespace" }))
    }
    const look = Effect.flatMap(kernel.processExists(holder.pid), (exists) =>
      !exists
        ? Effect.succeed(Verdict.Stale({ reason: "Exited" }))
        : Effect.map(ps(holder.pid), (row) =>
          Option.match(row, {
            // kill(2) found it, ps does not show it: it has just exited, or
            // ps may not show it to us; either way held is the safe answer.
            onNone: () => Verdict.Alive(),
            onSome: (row) =>
              isZombie(row.state)
                ? Verdict.Stale({ reason: "Zombie" })
                // Recorded by the /proc layer, in clock ticks since boot:
                // not comparable with ps's start time, so a live PID holds.
                : holder.startClock !== UNIX_SECONDS
                ? Verdict.Alive()
                // One second of resolution: a process started in the same
                // second as the holder, with its PID, counts as the holder.
                : row.startTime === holder.startTime
                ? Verdict.Alive()
                : Verdict.Stale({ reason: "PidReused" })
          })))
    // A socket that answers is a live holder (or a child that inherited its
    // socket, which holds for it): no ps is started. Any other answer, or
    // none, proves nothing here; the process is looked at.
    return options?.socket === undefined ? look : options.socket.pipe(
      Effect.catchAll(() => Effect.succeed<Posix.Probe>("Missing")),
      Effect.flatMap((probe) => probe === "Listening" ? Effect.succeed(Verdict.Alive()) : look)
    )
  }

  return make({ self, uid: Option.fromNullable(uid), identify, judge })
})

// A boot time is the same on two machines booted in the same second: it
// names this boot only together with the host.
const isSameBoot = (a: ProcessInfo.Identity, b: ProcessInfo.Identity): boolean =>
  a.bootId === b.bootId &&
  (!a.bootId.startsWith(BOOT_TIME_PREFIX) || (a.hostname === b.hostname && a.machineId === b.machineId))

// -----------------------------------------------------------------------------
// layers
// -----------------------------------------------------------------------------

/** @internal */
export const layerLinux = Layer.effect(tag, makeLinux())

/** @internal */
export const makePortable = (options?: {
  readonly platform?: string | undefined
  readonly pid?: number | undefined
  readonly uid?: number | undefined
}) =>
  makePortableWith(
    { ...options, platform: options?.platform ?? process.platform },
    (fields) => tag.of({ [TypeId]: TypeId, ...fields })
  )

/** @internal */
export const layerPortable = Layer.effect(tag, makePortable())

/** @internal */
export const PORTABLE_PLATFORMS: ReadonlyArray<string> = Object.keys(PLATFORMS)

/** @internal */
export const layerPortableNode: Layer.Layer<
  ProcessInfo.ProcessInfo | Posix.Posix,
  PlatformError,
  FileSystem.FileSystem
> = layerPortable.pipe(
  Layer.provideMerge(posix.layerNode),
  Layer.provide(
    Layer.unwrapEffect(Effect.map(Effect.promise(() => import("./systemCommand.js")), (module) => module.layerNode))
  )
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
