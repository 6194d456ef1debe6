import type { PlatformError } from "@effect/platform/Error"
import { SystemError } from "@effect/platform/Error"
import * as Effect from "effect/Effect"
import type * as SystemCommand from "../SystemCommand.js"
import type * as Testing from "./index.js"
import type * as ProcessTable from "./processTable.js"

// `ps` and `sysctl` as each system prints them, answered from a fake process
// table: the formats the portable ProcessInfo parses, so that the lock runs
// on it unchanged in memory.

const TypeId: SystemCommand.TypeId = Symbol.for("effect-pidlock/SystemCommand") as SystemCommand.TypeId

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
const two = (n: number) => String(n).padStart(2, "0")

/** strftime's `%a %b %e %H:%M:%S %Y` in the C locale, in UTC: ps's `lstart`, and the date after `kern.boottime`. */
export const cDate = (seconds: number): string => {
  const date = new Date(seconds * 1000)
  return `${DAYS[date.getUTCDay()]} ${MONTHS[date.getUTCMonth()]} ${String(date.getUTCDate()).padStart(2, " ")} ` +
    `${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())} ${date.getUTCFullYear()}`
}

const output = (exitCode: number, stdout: string, stderr = ""): SystemCommand.Output => ({ exitCode, stdout, stderr })

// A process in the table as one ps row of the columns asked (`-o NAME=`
// each), space separated as ps pads them; a zombie's command as procps and
// the BSDs show it.
const psRow = (
  platform: Testing.FakePlatform,
  view: ProcessTable.ProcView,
  process: ProcessTable.PsView,
  columns: ReadonlyArray<string>
): string | undefined => {
  const cells: Array<string> = []
  for (const column of columns) {
    switch (column) {
      case "stat":
        cells.push((process.state === "Z" ? "Z" : "Ss").padEnd(4, " "))
        break
      case "pidns":
        if (platform !== "linux") return undefined
        cells.push(/\d+/.exec(view.pidNamespace)?.[0] ?? "-")
        break
      case "jid":
        if (platform !== "freebsd") return undefined
        cells.push("0")
        break
      case "lstart":
        cells.push(cDate(process.startSeconds))
        break
      case "args":
        cells.push(
          process.state === "Z"
            ? platform === "linux" ? `[${process.comm}] <defunct>` : `<defunct>`
            : process.cmdline.join(" ")
        )
        break
      default:
        return undefined
    }
  }
  return cells.join(" ")
}

const ps = (platform: Testing.FakePlatform, view: ProcessTable.ProcView, args: ReadonlyArray<string>) => {
  const columns: Array<string> = []
  let pid: number | undefined
  for (let i = 0; i < args.length; i += 2) {
    const [flag, value] = [args[i], args[i + 1]]
    if (flag === "-o" && value?.endsWith("=")) columns.push(value.slice(0, -1))
    else if (flag === "-p" && value !== undefined && /^\d+$/.test(value)) pid = Number(value)
    else return output(1, "", `ps: unsupported arguments: ${args.join(" ")}\n`)
  }
  if (pid === undefined) return output(1, "", "ps: no -p given\n")
  const process = view.psOf(pid)
  if (process === undefined) return output(1, "")
  const row = psRow(platform, view, process, columns)
  return row === undefined ? output(1, "", `ps: unknown keyword in ${args.join(" ")}\n`) : output(0, `${row}\n`)
}

const sysctlValue = (platform: Testing.FakePlatform, view: ProcessTable.ProcView, name: string): string | undefined => {
  if (platform === "linux") {
    switch (name) {
      case "kernel.random.boot_id":
        return view.bootId
      case "kernel.hostname":
        return view.hostname
    }
    return undefined
  }
  switch (name) {
    case "kern.boottime":
      return `{ sec = ${view.bootTime}, usec = 0 } ${cDate(view.bootTime)}`
    case "kern.hostname":
      return view.hostname
    case "kern.uuid":
      return platform === "darwin" ? view.machineId : undefined
    case "kern.hostuuid":
      return platform === "freebsd" ? view.machineId : undefined
  }
  return undefined
}

// Each value on a line of its own; an unknown name is told on stderr, the
// others still printed, and the exit code is 1.
const sysctl = (platform: Testing.FakePlatform, view: ProcessTable.ProcView, args: ReadonlyArray<string>) => {
  if (args[0] !== "-n") return output(1, "", `sysctl: unsupported arguments: ${args.join(" ")}\n`)
  let stdout = ""
  let stderr = ""
  for (const name of args.slice(1)) {
    const value = sysctlValue(platform, view, name)
    if (value === undefined) {
      stderr += platform === "linux"
        ? `sysctl: cannot stat /proc/sys/${name.replaceAll(".", "/")}: No such file or directory\n`
        : `sysctl: unknown oid '${name}'\n`
    } else stdout += `${value}\n`
  }
  return output(stderr === "" ? 0 : 1, stdout, stderr)
}

/**
 * `hook` runs before each command, with its command line: the memory file
 * system's hook, so that a run is a call there.
 *
 * @internal
 */
export const make = (
  view: ProcessTable.ProcView,
  platform: Testing.FakePlatform,
  hook: (commandLine: string) => Effect.Effect<void, PlatformError>
): SystemCommand.SystemCommand => ({
  [TypeId]: TypeId,
  run: (command, args) => {
    const commandLine = [command, ...args].join(" ")
    return Effect.zipRight(
      hook(commandLine),
      command === "ps"
        ? Effect.sync(() => ps(platform, view, args))
        : command === "sysctl"
        ? Effect.sync(() => sysctl(platform, view, args))
        // As the Node executor reports a command it cannot start.
        : Effect.fail(
          new SystemError({
            reason: "NotFound",
            module: "Command",
            method: "spawn",
            pathOrDescriptor: commandLine,
            description: `spawn ${command} ENOENT`
          })
        )
    )
  }
})
