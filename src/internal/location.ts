import type { PlatformError } from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Path from "node:path"
import * as PidLock from "../PidLock.js"
import type * as Posix from "../Posix.js"
import type * as ProcessInfo from "../ProcessInfo.js"
import { errnoOf } from "./errno.js"
import { validateName } from "./options.js"
import { tag as posixTag } from "./posix.js"
import { tag as processInfoTag } from "./processInfo.js"

// Where a file lock lives, known without a holder: the directory it is made
// in, from the options, `$PIDLOCK_DIR` or the per-user default.

/** @internal */
export const validateDir = (
  dir: unknown,
  option: string = "dir"
): Either.Either<string | undefined, PidLock.InvalidOptions> => {
  const invalid = (reason: string) => Either.left(new PidLock.InvalidOptions({ option, value: dir, reason }))
  if (dir === undefined) return Either.right(undefined)
  if (typeof dir !== "string") return invalid("must be a string")
  if (dir.length === 0) return invalid("must not be empty")
  if (dir.includes("\0")) return invalid("must not contain a NUL character")
  return Either.right(Path.resolve(dir))
}

// `$PIDLOCK_DIR` is read as it is: a relative or empty value would resolve
// against the working directory, which differs between a job's contexts.
/** @internal */
export const dirFromEnvironment: Effect.Effect<string | undefined, PidLock.InvalidOptions> = Config.option(
  Config.string("PIDLOCK_DIR")
).pipe(
  Effect.orElseSucceed(() => Option.none<string>()),
  Effect.flatMap(Option.match({
    onNone: () => Effect.succeed(undefined),
    onSome: (dir) =>
      Path.isAbsolute(dir) ? validateDir(dir, "PIDLOCK_DIR") : Effect.fail(
        new PidLock.InvalidOptions({
          option: "PIDLOCK_DIR",
          value: dir,
          reason: "must be an absolute path (unset it to use the default directory)"
        })
      )
  }))
)

// The system's lock directory: sticky and writable by all on Linux, and not
// hidden by systemd's PrivateTmp= as /tmp is.
const SYSTEM_LOCK_DIR = "/run/lock"
const FALLBACK_DIR = "/tmp"
const STICKY = 0o1000
const OTHERS_WRITE = 0o002

const isSharedSticky = (info: FileSystem.File.Info) =>
  info.type === "Directory" && (info.mode & (STICKY | OTHERS_WRITE)) === (STICKY | OTHERS_WRITE)

// Nothing there: the path, or a directory on the way to it, does not exist.
const isAbsent = (error: PlatformError) => {
  const code = errnoOf(error)
  return code === "ENOENT" || code === "ENOTDIR"
}

// The default directory depends on the user only, never on the environment
// (XDG_RUNTIME_DIR and TMPDIR differ between cron and a login shell), so that
// every copy of one user's job meets in it: `effect-pidlock-<euid>` in
// /run/lock where it exists (or can be made), else in /tmp, as tmux keeps
// /tmp/tmux-<uid>.
/** @internal */
export const defaultDir = (posix: Posix.Posix, info: ProcessInfo.ProcessInfo): Effect.Effect<string, PlatformError> => {
  const base = Option.match(info.uid, { onNone: () => "effect-pidlock", onSome: (uid) => `effect-pidlock-${uid}` })
  const inSystem = Path.join(SYSTEM_LOCK_DIR, base)
  const fallback = Path.join(FALLBACK_DIR, base)
  return posix.lstat(inSystem).pipe(
    Effect.as(inSystem),
    Effect.catchIf(isAbsent, () =>
      posix.lstat(SYSTEM_LOCK_DIR).pipe(
        Effect.map((system) => isSharedSticky(system) ? inSystem : fallback),
        Effect.catchIf(isAbsent, () => Effect.succeed(fallback))
      ))
  )
}

/**
 * The file lock's location, `<dir>/<name>/lock`, as `acquire` would take it
 * with these options: what `status` shows for a free lock.
 *
 * @internal
 */
export const lockLocation = (options: { readonly name: string; readonly dir?: string | undefined }) =>
  Effect.gen(function*() {
    const name = yield* validateName(options.name)
    const given = (yield* validateDir(options.dir)) ?? (yield* dirFromEnvironment)
    const dir = given ?? (yield* defaultDir(yield* posixTag, yield* processInfoTag))
    return Path.join(dir, name, "lock")
  })
