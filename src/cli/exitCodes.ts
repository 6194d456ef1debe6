/**
 * Exit codes from sysexits.h, so that scripts can tell a busy lock from a
 * mistake in the call and from a broken lock.
 *
 * @internal
 */
import * as Effect from "effect/Effect"

/** @internal */
export const EX_USAGE = 64
/** @internal */
export const EX_DATAERR = 65
/** @internal */
export const EX_UNAVAILABLE = 69
/** @internal */
export const EX_SOFTWARE = 70
/** @internal */
export const EX_CANTCREAT = 73
/** @internal */
export const EX_IOERR = 74
/** @internal */
export const EX_TEMPFAIL = 75
/** @internal */
export const EX_PROTOCOL = 76
/** @internal */
export const EX_NOPERM = 77
/** @internal */
export const EX_CONFIG = 78

/**
 * The exit code of a failure, by its tag: the library's errors are told
 * apart by tag alone, so that the CLI needs none of their classes loaded.
 *
 * @internal
 */
export const exitCodeOf = (error: { readonly _tag: string; readonly reason?: unknown }): number => {
  switch (error._tag) {
    case "UsageError":
    case "InvalidOptions":
    case "ConflictingOptions":
    case "MessageTooLarge":
      return EX_USAGE
    // A message to the holder: nobody to send to; no reply yet (try again
    // later); or a holder that will not answer.
    case "NoHolder":
      return EX_UNAVAILABLE
    case "Timeout":
      return EX_TEMPFAIL
    case "Refused":
      return error.reason === "Busy" ? EX_TEMPFAIL : EX_PROTOCOL
    case "InvalidDatabaseUrl":
      return EX_CONFIG
    case "PostgresUnavailable":
      return EX_UNAVAILABLE
    case "CorruptLock":
      return EX_DATAERR
    case "NameClash":
      return EX_CANTCREAT
    case "PermissionDenied":
    case "PostgresRefused":
      return EX_NOPERM
    default:
      return EX_IOERR
  }
}

/** The failures' exit codes, as the help shows them. @internal */
export const FAILURE_EXIT_CODES: ReadonlyArray<readonly [number, string]> = [
  [EX_USAGE, "bad arguments (e.g. a name with \"/\", --dir with --postgres, a message over 64 KiB)"],
  [EX_DATAERR, "a corrupt lock, left untouched"],
  [EX_UNAVAILABLE, "PostgreSQL cannot be reached or fails (or pg is not installed)"],
  [EX_SOFTWARE, "a bug in effect-pidlock"],
  [EX_CANTCREAT, "the lock home belongs to another user"],
  [EX_IOERR, "any other I/O error"],
  [EX_NOPERM, "permission denied (by the file system, or PostgreSQL refusing the credentials or a privilege)"],
  [EX_CONFIG, "the database url is not a postgresql:// url"]
]

/**
 * Ends the command with `code`: each command sets `process.exitCode`, which
 * the runtime's teardown hands to `process.exit`.
 *
 * @internal
 */
export const exitWith = (code: number) => Effect.sync(() => void (process.exitCode = code))

/** An error on stderr, and `code`. @internal */
export const failWith = (message: string, code: number) => Effect.zipRight(Effect.logError(message), exitWith(code))
