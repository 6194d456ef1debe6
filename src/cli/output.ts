/**
 * What the CLI prints. stdout is the output a command is called for (a
 * status, the help, the guarded command's own); every diagnostic — errors,
 * a takeover, a wait, the library's warnings — goes to stderr, one line each,
 * as `flock`'s do.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import type { Verbosity } from "./args.js"

const PROGRAM = "effect-pidlock"

// https://no-color.org: set and not empty.
const colorsOn = (stream: NodeJS.WriteStream): boolean =>
  stream.isTTY === true && (process.env["NO_COLOR"] ?? "") === ""

const paint = (code: string, text: string) => `\x1b[${code}m${text}\x1b[0m`

// The prefix in red for errors, yellow for warnings, bold otherwise; a
// warning, and a level below info, is named, so that it is told from the rest.
const prefixOf = (level: LogLevel.LogLevel, colors: boolean): string => {
  const named = LogLevel.lessThan(level, LogLevel.Info) || level._tag === "Warning"
    ? ` ${level.label.toLowerCase()}:`
    : ""
  const prefix = `${PROGRAM}:${named}`
  if (!colors) return prefix
  return paint(
    LogLevel.greaterThanEqual(level, LogLevel.Error) ? "1;31" : level._tag === "Warning" ? "1;33" : "1",
    prefix
  )
}

// One diagnostic on stderr: `effect-pidlock: <message>`.
const writeDiagnostic = (level: LogLevel.LogLevel, message: string): void => {
  process.stderr.write(`${prefixOf(level, colorsOn(process.stderr))} ${message}\n`)
}

/** Writes `text` and a newline to stderr, as it is: the usage that follows a mistake. @internal */
export const printToStderr = (text: string): Effect.Effect<void> =>
  Effect.sync(() => void process.stderr.write(`${text}\n`))

/** Writes `text` and a newline to stdout. @internal */
export const printLine = (text: string): Effect.Effect<void> =>
  Effect.sync(() => void process.stdout.write(`${text}\n`))

// The parts of a log message after the first: the library logs a warning's
// error beside its text.
const describePart = (part: unknown): string =>
  part instanceof Error || (typeof part === "object" && part !== null && "message" in part)
    ? String((part as { readonly message: unknown }).message)
    : String(part)

/**
 * Every log line (the library's takeover and warnings, the CLI's own) as one
 * diagnostic on stderr; a defect's cause follows it, in full.
 */
const logger = Logger.make(({ cause, logLevel, message }) => {
  const parts = Array.isArray(message) ? message : [message]
  const text = parts.map(describePart).join(": ")
  const pretty = Cause.isEmpty(cause) ? "" : Cause.pretty(cause, { renderErrorCause: true })
  writeDiagnostic(logLevel, [text, pretty].filter((part) => part !== "").join("\n"))
})

/**
 * The CLI's logger in place of Effect's default one, which writes to stdout,
 * at the level the command line asks for.
 *
 * @internal
 */
export const withLogger = (verbosity: Verbosity) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Logger.withMinimumLogLevel(verbosity.logLevel),
    Effect.provide(Logger.replace(Logger.defaultLogger, logger))
  )
