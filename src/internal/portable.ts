import type { PlatformError } from "@effect/platform/Error"
import { SystemError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Posix from "../Posix.js"
import type * as ProcessInfo from "../ProcessInfo.js"
import { errnoOf } from "./errno.js"
import * as posix from "./posix.js"
import * as systemCommand from "./systemCommand.js"

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

const isGone = (error: PlatformError): boolean => {
  const code = errnoOf(error)
  return code === "ENOENT" || code === "ESRCH"
}

const readMachineIdFile = (fs: FileSystem.FileSystem): Effect.Effect<Option.Option<string>, PlatformError> =>
  Effect.reduce(
    ["/etc/machine-id", "/var/lib/dbus/machine-id"],
    Option.none<string>(),
    (found, path) =>
      Option.isSome(found) ? Effect.succeed(found) : fs.readFileString(path).pipe(
        Effect.map((text) => Option.liftPredicate(text.trim(), (id) => id !== "")),
        Effect.catchIf(isGone, () => Effect.succeedNone)
      )
  )

const isZombie = (state: string): boolean => state.startsWith("Z")

/** @internal */
export const UNIX_SECONDS = "unix-seconds" as const

/** @internal */
export const makePortable = Effect.fnUntraced(function*(
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
  const command = yield* systemCommand.tag
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
    ? readMachineIdFile(fs)
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

// The same constructors as ProcessInfo.Verdict (tagged values compare by
// their fields), made here so that this module does not import its importer.
const Verdict = Data.taggedEnum<ProcessInfo.Verdict>()

// A boot time is the same on two machines booted in the same second: it
// names this boot only together with the host.
const isSameBoot = (a: ProcessInfo.Identity, b: ProcessInfo.Identity): boolean =>
  a.bootId === b.bootId &&
  (!a.bootId.startsWith(BOOT_TIME_PREFIX) || (a.hostname === b.hostname && a.machineId === b.machineId))

const isSameMachine = (a: ProcessInfo.Identity, b: ProcessInfo.Identity): boolean =>
  a.machineId !== undefined && a.machineId === b.machineId && a.hostname === b.hostname
