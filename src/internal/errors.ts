import type * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Path from "node:path"
import { escapeText } from "./text.js"

// What the package's errors share: they are outcomes for people to act on,
// so each prints as the one line of its message, and each message ends with
// the next step a person can take.

// Effect marks an error with the span it failed in, under this key, unless the
// error has the key already; its printer of a failure (`Cause.pretty`, what
// `runMain` logs) then adds the span's call sites to the error's own stack.
const SPAN_ANNOTATION = Symbol.for("effect/SpanAnnotation")

// Node's `inspect` hook, the value of `NodeInspectSymbol` from
// `effect/Inspectable`: named here so that no module is imported for it
// (each import of an `effect/…` path costs start-up time to resolve).
const NODE_INSPECT = Symbol.for("nodejs.util.inspect.custom")

/**
 * `Data.TaggedError`, printed as one line, `<tag>: <message>`, wherever it is
 * printed: by `Cause.pretty`, by Node's `inspect` (`console.error(error)`,
 * which would otherwise list every field, the holder's record included), and
 * as its `stack`. The frames of the lock's own code say nothing to the person
 * who reads it.
 *
 * @internal
 */
export const TaggedError: typeof Data.TaggedError = <Tag extends string>(tag: Tag) => {
  const Base = Data.TaggedError(tag) as new(args: unknown) => Cause.YieldableError & { readonly _tag: Tag }
  class OneLine extends Base {
    constructor(args: unknown) {
      super(args)
      Object.defineProperty(this, "stack", { get: () => this.toString(), configurable: true, enumerable: false })
    }
    override toString(): string {
      return `${this._tag}: ${this.message}`
    }
    [NODE_INSPECT](): string {
      return this.toString()
    }
  }
  Object.defineProperty(OneLine.prototype, SPAN_ANNOTATION, { value: undefined })
  return OneLine as ReturnType<typeof Data.TaggedError<Tag>>
}

/**
 * A message: what happened, then what a person can do next.
 *
 * @internal
 */
export const withNextStep = (what: string, next: string): string => `${what}. ${next}`

/**
 * Whether a lock's location is PostgreSQL's, `postgresql://host:port/database#name`,
 * rather than a lock directory `<dir>/<name>/lock`.
 *
 * @internal
 */
export const isDatabaseLocation = (location: string): boolean => location.startsWith("postgresql://")

/**
 * The name of the lock at `location`.
 *
 * @internal
 */
export const nameAt = (location: string): string =>
  isDatabaseLocation(location) ? location.slice(location.lastIndexOf("#") + 1) : Path.basename(Path.dirname(location))

// An argument as a POSIX shell reads it back.
const shellWord = (text: string): string => /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`

/**
 * A shell command line for a person to run, shown escaped (see `escapeText`).
 *
 * @internal
 */
export const commandLine = (...words: ReadonlyArray<string>): string => escapeText(words.map(shellWord).join(" "))

/**
 * The command-line tool's `command` for the lock at `location`: the file
 * lock's directory, or the PostgreSQL url, which no message shows.
 *
 * @internal
 */
export const cliCommand = (command: string, location: string, ...flags: ReadonlyArray<string>): string =>
  isDatabaseLocation(location)
    ? `${commandLine("effect-pidlock", command, "--name", nameAt(location), ...flags)} --postgres <url>`
    : commandLine(
      "effect-pidlock",
      command,
      "--name",
      nameAt(location),
      "--dir",
      Path.dirname(Path.dirname(location)),
      ...flags
    )

// What an option allows, for the options whose reasons say only what is
// wrong; the reasons of the others say it themselves (`wait`: "must be a
// duration (e.g. 30s, …) or a Schedule").
const ALLOWED: Readonly<Record<string, string>> = {
  name: `Allowed: 1 to 100 characters of A-Z a-z 0-9 . _ -, not starting with "."`,
  dir: "Allowed: a directory (made if missing) that only you or root can write to, or a sticky one such as /tmp",
  onStale: `Allowed: "takeover" or "fail" (the default is "takeover")`
}

/**
 * What an option allows, where its reason does not say it.
 *
 * @internal
 */
export const allowedFor = (option: string): string | undefined =>
  Object.hasOwn(ALLOWED, option) ? ALLOWED[option] : undefined
