/**
 * The command line, read into what each command needs: a small parser of our
 * own, so that starting the CLI loads no argument library.
 *
 * `effect-pidlock [--log-level <level> | --quiet] <command> [options] [-- <command line>]`:
 * options may come before or after the command's name, never after `--`,
 * which leaves the rest of the line, untouched, to the guarded command.
 *
 * @internal
 */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { parseDuration } from "../internal/duration.js"
import { show } from "../internal/text.js"
import { EX_TEMPFAIL } from "./exitCodes.js"

const COMMANDS = ["run", "send", "status", "break"] as const

/** @internal */
export type CommandName = (typeof COMMANDS)[number]

/** The command line is not one the CLI takes: exit 64, with the usage. @internal */
export class UsageError extends Data.TaggedError("UsageError")<{
  readonly message: string
  /** The command whose usage to show, when it is known. */
  readonly command: CommandName | undefined
}> {}

// Every option, whether it takes a value, and which commands take it
// (`undefined`: all of them, and the line without a command).
const OPTIONS = {
  name: { value: true, commands: ["run", "send", "status", "break"] },
  dir: { value: true, commands: ["run", "send", "status", "break"] },
  postgres: { value: true, commands: ["run", "status", "break"] },
  wait: { value: true, commands: ["run"] },
  forward: { value: false, commands: ["run"] },
  timeout: { value: true, commands: ["run", "send"] },
  "conflict-exit-code": { value: true, commands: ["run"] },
  json: { value: false, commands: ["status"] },
  force: { value: false, commands: ["break"] },
  "log-level": { value: true, commands: undefined },
  quiet: { value: false, commands: undefined },
  help: { value: false, commands: undefined }
} as const satisfies Record<
  string,
  { readonly value: boolean; readonly commands: ReadonlyArray<CommandName> | undefined }
>

type OptionName = keyof typeof OPTIONS

const SHORT_OPTIONS: Readonly<Record<string, OptionName>> = { "-h": "help", "-q": "quiet" }

const isOptionName = (name: string): name is OptionName => Object.hasOwn(OPTIONS, name)

const isCommandName = (name: string): name is CommandName => (COMMANDS as ReadonlyArray<string>).includes(name)

/** The line split into its parts, before any value is read. */
interface Line {
  readonly command: CommandName | undefined
  /** Each option given, with its value (`true` for a flag). */
  readonly options: ReadonlyMap<OptionName, string | true>
  /** What follows `--`, if it was given. */
  readonly commandLine: ReadonlyArray<string> | undefined
}

const splitLine = (argv: ReadonlyArray<string>): Effect.Effect<Line, UsageError> =>
  Effect.suspend(() => {
    const separator = argv.indexOf("--")
    const before = separator === -1 ? argv : argv.slice(0, separator)
    const commandLine = separator === -1 ? undefined : argv.slice(separator + 1)
    const options = new Map<OptionName, string | true>()
    let command: CommandName | undefined
    const fail = (message: string) => Effect.fail(new UsageError({ message, command }))
    for (let index = 0; index < before.length; index++) {
      const arg = before[index]!
      if (!arg.startsWith("-")) {
        if (command === undefined && isCommandName(arg)) {
          command = arg
          continue
        }
        return command === undefined
          ? fail(`unknown command ${show(arg)}: the commands are ${COMMANDS.join(", ")}`)
          : fail(
            `unexpected argument ${show(arg)}${
              command === "run" ? ": put the command to run after --" : command === "send" ? ": put it after --" : ""
            }`
          )
      }
      const equals = arg.indexOf("=")
      const spelled = arg.startsWith("--") && equals !== -1 ? arg.slice(0, equals) : arg
      const name = SHORT_OPTIONS[spelled] ?? (spelled.startsWith("--") ? spelled.slice(2) : spelled)
      if (!isOptionName(name)) return fail(`unknown option ${show(spelled)}`)
      if (options.has(name)) return fail(`--${name} is given twice`)
      if (!OPTIONS[name].value) {
        if (spelled !== arg) return fail(`--${name} takes no value`)
        options.set(name, true)
        continue
      }
      const value = spelled !== arg ? arg.slice(equals + 1) : before[index + 1]
      // A missing value, not the next option taken as one: write --name=--x
      // for a value that starts with "--".
      if (value === undefined || (spelled === arg && value.startsWith("--"))) {
        return fail(`--${name} needs a value`)
      }
      if (spelled === arg) index++
      options.set(name, value)
    }
    // Without a command, the line lacks one: that is what to say.
    for (const name of options.keys()) {
      const commands: ReadonlyArray<CommandName> | undefined = OPTIONS[name].commands
      if (command !== undefined && commands !== undefined && !commands.includes(command)) {
        return fail(`${command} does not take --${name}`)
      }
    }
    return Effect.succeed({ command, options, commandLine })
  })

// -----------------------------------------------------------------------------
// Values
// -----------------------------------------------------------------------------

/** What the log level and --quiet ask for, whatever the command. @internal */
export interface Verbosity {
  readonly logLevel: LogLevel.LogLevel
  /** Errors only, and a held lock told by the exit code alone. */
  readonly quiet: boolean
}

const LOG_LEVELS: Readonly<Record<string, LogLevel.LogLevel>> = {
  all: LogLevel.All,
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
  fatal: LogLevel.Fatal,
  none: LogLevel.None
}

/** @internal */
export const DEFAULT_VERBOSITY: Verbosity = { logLevel: LogLevel.Info, quiet: false }

const verbosityOf = (line: Line): Effect.Effect<Verbosity, UsageError> => {
  const level = line.options.get("log-level")
  const quiet = line.options.has("quiet")
  const fail = (message: string) => Effect.fail(new UsageError({ message, command: line.command }))
  if (typeof level !== "string") return Effect.succeed(quiet ? { logLevel: LogLevel.Error, quiet } : DEFAULT_VERBOSITY)
  if (quiet) return fail("--quiet and --log-level cannot be used together")
  const logLevel = LOG_LEVELS[level.toLowerCase()]
  return logLevel === undefined
    ? fail(`--log-level ${show(level)} is not a level: use one of ${Object.keys(LOG_LEVELS).join(", ")}`)
    : Effect.succeed({ logLevel, quiet })
}

/** The options every command takes: which lock, and where. @internal */
export interface LockArgs {
  readonly name: string
  readonly dir: Option.Option<string>
  readonly postgres: Option.Option<Redacted.Redacted<string>>
}

/** @internal */
export interface RunArgs extends LockArgs {
  readonly wait: Option.Option<Duration.Duration>
  readonly conflictExitCode: number
  /** When the lock is held, hand the command line to its holder instead (`send`). */
  readonly forward: boolean
  /** How long --forward waits for the holder's reply. */
  readonly timeout: Option.Option<Duration.Duration>
  readonly command: readonly [string, ...Array<string>]
}

/** @internal */
export interface SendArgs {
  readonly name: string
  readonly dir: Option.Option<string>
  readonly timeout: Option.Option<Duration.Duration>
  /** The words after --, sent as `{ argv }`. */
  readonly argv: ReadonlyArray<string>
}

/** @internal */
export interface StatusArgs extends LockArgs {
  readonly json: boolean
}

/** @internal */
export interface BreakArgs extends LockArgs {
  readonly force: boolean
}

/** What the command line asks for. @internal */
export type Request = Data.TaggedEnum<{
  Help: { readonly command: CommandName | undefined }
  Run: { readonly args: RunArgs }
  Send: { readonly args: SendArgs }
  Status: { readonly args: StatusArgs }
  Break: { readonly args: BreakArgs }
}>

/** @internal */
export const Request = Data.taggedEnum<Request>()

const readLockArgs = (line: Line, command: CommandName): Effect.Effect<LockArgs, UsageError> => {
  const name = line.options.get("name")
  if (typeof name !== "string") {
    return Effect.fail(new UsageError({ message: `${command} needs --name <name>`, command }))
  }
  const text = (option: OptionName) => {
    const value = line.options.get(option)
    return typeof value === "string" ? Option.some(value) : Option.none()
  }
  return Effect.succeed({ name, dir: text("dir"), postgres: Option.map(text("postgres"), Redacted.make) })
}

// A duration option: `None` when not given.
const readDuration = (
  line: Line,
  option: "wait" | "timeout",
  command: CommandName
): Effect.Effect<Option.Option<Duration.Duration>, UsageError> => {
  const text = line.options.get(option)
  if (typeof text !== "string") return Effect.succeedNone
  // A wait of zero is one attempt; a timeout of zero would never let a reply in.
  const duration = Option.filter(
    parseDuration(text),
    (duration) => option === "wait" || Duration.greaterThan(duration, Duration.zero)
  )
  return Option.isSome(duration)
    ? Effect.succeed(duration)
    : Effect.fail(
      new UsageError({
        message: `--${option} ${show(text)} is not a ${
          option === "wait" ? "" : "positive "
        }duration: write e.g. 30s, 500ms, 2m or "30 seconds"`,
        command
      })
    )
}

const readRunArgs = (line: Line): Effect.Effect<RunArgs, UsageError> =>
  Effect.gen(function*() {
    const fail = (message: string) => Effect.fail(new UsageError({ message, command: "run" }))
    const lock = yield* readLockArgs(line, "run")
    const wait = yield* readDuration(line, "wait", "run")
    const forward = line.options.has("forward")
    const timeout = yield* readDuration(line, "timeout", "run")
    // One waits for the holder to go, the other hands the work to it.
    if (forward && Option.isSome(wait)) return yield* fail("--forward and --wait cannot be used together")
    if (!forward && Option.isSome(timeout)) return yield* fail("--timeout is --forward's: give both, or neither")
    const codeText = line.options.get("conflict-exit-code")
    const conflictExitCode = typeof codeText === "string" ? Number(codeText) : EX_TEMPFAIL
    if (typeof codeText === "string" && !(/^\d+$/.test(codeText) && conflictExitCode <= 255)) {
      return yield* fail(`--conflict-exit-code ${show(codeText)} is not an exit code (0 to 255)`)
    }
    const [program, ...args] = line.commandLine ?? []
    if (program === undefined) return yield* fail("run needs a command to run, after --")
    return { ...lock, wait, conflictExitCode, forward, timeout, command: [program, ...args] }
  })

const readSendArgs = (line: Line): Effect.Effect<SendArgs, UsageError> =>
  Effect.gen(function*() {
    const { dir, name } = yield* readLockArgs(line, "send")
    const timeout = yield* readDuration(line, "timeout", "send")
    return { name, dir, timeout, argv: line.commandLine ?? [] }
  })

/**
 * Reads the command line (without the node executable and the script): what
 * to do, and how much to say meanwhile.
 *
 * @internal
 */
export const parseCommandLine = (
  argv: ReadonlyArray<string>
): Effect.Effect<{ readonly request: Request; readonly verbosity: Verbosity }, UsageError> =>
  Effect.gen(function*() {
    const line = yield* splitLine(argv)
    const verbosity = yield* verbosityOf(line)
    const { command } = line
    if (line.options.has("help")) return { request: Request.Help({ command }), verbosity }
    if (command === undefined) {
      return yield* new UsageError({ message: "a command is needed: run, send, status or break", command })
    }
    if (command !== "run" && command !== "send" && line.commandLine !== undefined) {
      return yield* new UsageError({ message: `${command} runs no command: nothing goes after --`, command })
    }
    switch (command) {
      case "run":
        return { request: Request.Run({ args: yield* readRunArgs(line) }), verbosity }
      case "send":
        return { request: Request.Send({ args: yield* readSendArgs(line) }), verbosity }
      case "status":
        return {
          request: Request.Status({
            args: { ...(yield* readLockArgs(line, command)), json: line.options.has("json") }
          }),
          verbosity
        }
      case "break":
        return {
          request: Request.Break({
            args: { ...(yield* readLockArgs(line, command)), force: line.options.has("force") }
          }),
          verbosity
        }
    }
  })

/**
 * Whether the line asks for JSON (`status --json`): then even a line that
 * cannot be read is answered in JSON.
 *
 * @internal
 */
export const asksForJson = (argv: ReadonlyArray<string>): boolean => {
  const separator = argv.indexOf("--")
  return (separator === -1 ? argv : argv.slice(0, separator)).includes("--json")
}
