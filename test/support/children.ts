// Child processes for the real-process tests: started with node, their stdout
// collected by line, SIGKILLed (if still running) and awaited when the scope
// closes, whether the test passed or not.
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { fileURLToPath } from "node:url"

const REPO = fileURLToPath(new URL("../..", import.meta.url))

export interface Child {
  readonly process: ChildProcess.ChildProcess
  readonly pid: number
  /** Lines printed on stdout so far. */
  readonly lines: Array<string>
  readonly stderr: () => string
  /** Set once the process has exited and its output is closed. */
  readonly status: () => { readonly code: number | null; readonly signal: NodeJS.Signals | null } | undefined
  readonly closed: Promise<void>
}

/** Runs `node script ...args` in the repository. */
export const spawnNode = (script: string, args: ReadonlyArray<string>, options: ChildProcess.SpawnOptions = {}) =>
  Effect.acquireRelease(
    Effect.sync((): Child => {
      const child = ChildProcess.spawn(process.execPath, [script, ...args], {
        cwd: REPO,
        stdio: ["pipe", "pipe", "pipe"],
        ...options
      })
      const lines: Array<string> = []
      let partial = ""
      let stderr = ""
      let status: { code: number | null; signal: NodeJS.Signals | null } | undefined
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
        const parts = (partial + chunk).split("\n")
        partial = parts.pop()!
        for (const line of parts) lines.push(line)
      })
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => void (stderr += chunk))
      child.stdin!.on("error", () => {}) // a child that died has closed it
      const closed = new Promise<void>((resolve) => {
        child.once("close", (code, signal) => {
          status = { code, signal }
          resolve()
        })
        child.once("error", (error) => {
          stderr += String(error)
          status = { code: null, signal: null }
          resolve()
        })
      })
      return { process: child, pid: child.pid ?? -1, lines, stderr: () => stderr, status: () => status, closed }
    }),
    (child) =>
      Effect.promise(() => {
        // SIGKILL ends a stopped process too.
        if (child.status() === undefined) child.process.kill("SIGKILL")
        return child.closed
      })
  )

const pending = Symbol("pending")

/**
 * Polls `check` every 10 ms until it gives something other than
 * `undefined`; fails with its failure, or after `seconds`.
 */
export const waitUntil = <A, E, R>(
  what: string,
  check: Effect.Effect<A | undefined, E, R>,
  seconds = 20
): Effect.Effect<A, E | Error, R> =>
  check.pipe(
    Effect.flatMap((value) => value === undefined ? Effect.fail(pending) : Effect.succeed(value)),
    Effect.retry({ schedule: Schedule.spaced("10 millis"), while: (error) => error === pending }),
    Effect.timeoutFail({
      duration: `${seconds} seconds`,
      onTimeout: () => new Error(`timed out after ${seconds} s waiting for ${what}`)
    }),
    Effect.catchIf((error): error is typeof pending => error === pending, () => Effect.die("unreachable"))
  )

/** How many sockets the process `pid` has open: listening, connecting or connected. */
export const socketsOf = (pid: number) =>
  Fs.readdirSync(`/proc/${pid}/fd`).filter((fd) => {
    try {
      return Fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith("socket:")
    } catch {
      return false // closed since it was listed
    }
  }).length

/** Waits until the process `pid` has more than `count` sockets open. */
export const waitForSocketsAbove = (pid: number, count: number) =>
  waitUntil(
    `process ${pid} to have more than ${count} sockets open`,
    Effect.sync(() => socketsOf(pid) > count ? true : undefined)
  )

export const describeChild = (child: Child) =>
  `child ${child.pid} (status ${JSON.stringify(child.status())}; stdout ${JSON.stringify(child.lines.slice(-20))}; ` +
  `stderr ${JSON.stringify(child.stderr())})`

/** A line `<word> <json>` of a fixture: the JSON, which carries the time it was printed at. */
export interface Line {
  readonly [key: string]: unknown
  readonly at: number
}

/** The child's first line `<word> <json>`, parsed; `undefined` if there is none yet. */
export const lineOf = (child: Child, word: string): Line | undefined => {
  const line = child.lines.find((line) => line.startsWith(`${word} `))
  return line === undefined ? undefined : JSON.parse(line.slice(word.length + 1))
}

/** Waits for the child's first line `<word> <json>` and returns the JSON; fails when the child exits without it. */
export const waitForLine = (child: Child, word: string, seconds = 20) =>
  waitUntil(
    `"${word}" from ${child.pid}`,
    Effect.try({
      try: () => {
        const line = lineOf(child, word)
        if (line === undefined && child.status() !== undefined) {
          throw new Error(`no "${word}" line from ${describeChild(child)}`)
        }
        return line
      },
      catch: (error) => error as Error
    }),
    seconds
  )

/** Waits for the child's exit. */
export const waitForExit = (child: Child, seconds = 20) =>
  waitUntil(`exit of ${child.pid}`, Effect.sync(() => child.status()), seconds)
