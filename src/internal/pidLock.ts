import { isPlatformError, type PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Crypto from "node:crypto"
import * as Os from "node:os"
import * as Path from "node:path"
import * as PidLock from "../PidLock.js"
import type * as ProcessInfo from "../ProcessInfo.js"
import { errnoOf, isNotFound } from "./errno.js"
import { isSameProcess, tag as processInfoTag } from "./processInfo.js"

/** @internal */
export const TypeId: PidLock.TypeId = Symbol.for("effect-pidlock/PidLock") as PidLock.TypeId

/** @internal */
export const tag = Context.GenericTag<PidLock.PidLock>("effect-pidlock/PidLock")

// -----------------------------------------------------------------------------
// Options
// -----------------------------------------------------------------------------

const NAME_MAX_LENGTH = 100
const NAME_CHARACTER = /[A-Za-z0-9._-]/

interface Paths {
  readonly name: string
  readonly home: string
  readonly lock: string
}

const validateName = (name: unknown): Either.Either<string, PidLock.InvalidOptions> => {
  const invalid = (reason: string) => Either.left(new PidLock.InvalidOptions({ option: "name", value: name, reason }))
  if (typeof name !== "string") return invalid("must be a string")
  if (name.length === 0) return invalid("must not be empty")
  if (name.length > NAME_MAX_LENGTH) {
    return invalid(`is ${name.length} characters long; at most ${NAME_MAX_LENGTH} are allowed`)
  }
  for (let index = 0; index < name.length; index++) {
    const character = name[index]!
    if (!NAME_CHARACTER.test(character)) {
      return invalid(`character ${JSON.stringify(character)} at index ${index} is not allowed; use A-Z a-z 0-9 . _ -`)
    }
  }
  if (name.startsWith(".")) return invalid(`must not start with "."`)
  return Either.right(name)
}

const validateDir = (dir: unknown): Either.Either<string | undefined, PidLock.InvalidOptions> => {
  const invalid = (reason: string) => Either.left(new PidLock.InvalidOptions({ option: "dir", value: dir, reason }))
  if (dir === undefined) return Either.right(undefined)
  if (typeof dir !== "string") return invalid("must be a string")
  if (dir.length === 0) return invalid("must not be empty")
  if (dir.includes("\0")) return invalid("must not contain a NUL character")
  return Either.right(Path.resolve(dir))
}

const validateOnStale = (onStale: unknown): Either.Either<"takeover" | "fail", PidLock.InvalidOptions> =>
  onStale === undefined || onStale === "takeover" || onStale === "fail"
    ? Either.right(onStale ?? "takeover")
    : Either.left(
      new PidLock.InvalidOptions({ option: "onStale", value: onStale, reason: `must be "takeover" or "fail"` })
    )

// `$PIDLOCK_DIR` names the directory outright; else `$XDG_RUNTIME_DIR`, which
// is private to the user unlike the shared temporary directory, when it is
// usable.
const defaultDir = (fs: FileSystem.FileSystem): Effect.Effect<string> =>
  Config.string("PIDLOCK_DIR").pipe(
    Effect.orElse(() =>
      Config.string("XDG_RUNTIME_DIR").pipe(
        Effect.filterOrFail(Path.isAbsolute),
        Effect.tap((dir) => fs.access(dir, { writable: true }))
      )
    ),
    Effect.map((dir) => Path.resolve(dir)),
    Effect.orElseSucceed(() => Os.tmpdir())
  )

const resolvePaths = (
  fs: FileSystem.FileSystem,
  options: { readonly name: string; readonly dir?: string | undefined }
): Effect.Effect<Paths, PidLock.InvalidOptions> =>
  Effect.gen(function*() {
    const name = yield* validateName(options.name)
    const dir = (yield* validateDir(options.dir)) ?? (yield* defaultDir(fs))
    const home = Path.join(dir, name)
    return { name, home, lock: Path.join(home, "lock") }
  })

// -----------------------------------------------------------------------------
// Errors
// -----------------------------------------------------------------------------

const DENIED = new Set(["EACCES", "EPERM", "EROFS"])

// The platform maps only EACCES to `PermissionDenied`; EPERM and EROFS arrive
// as `Unknown` and are told apart by their errno code.
const refineError = (error: PlatformError): PlatformError | PidLock.PermissionDenied => {
  const code = errnoOf(error)
  if (error._tag === "SystemError" && (error.reason === "PermissionDenied" || (code && DENIED.has(code)))) {
    return new PidLock.PermissionDenied({
      path: String(error.pathOrDescriptor ?? ""),
      operation: error.method,
      code: code ?? "EACCES",
      cause: error
    })
  }
  return error
}

const hasCode = (...codes: ReadonlyArray<string>) => (error: { readonly _tag: string }): boolean => {
  const code = errnoOf(error)
  return code !== undefined && codes.includes(code)
}

// A non-empty directory at the target makes rename fail with ENOTEMPTY, or
// EEXIST where POSIX allows it.
const isOccupied = hasCode("ENOTEMPTY", "EEXIST")
const isNotALink = hasCode("EINVAL")
const isNotADirectory = hasCode("ENOTDIR")

const TEXT_IN_MESSAGES = 200

/** @internal */
export const show = (value: unknown): string => {
  const text = typeof value === "string" ? JSON.stringify(value) : String(value)
  return text.length > TEXT_IN_MESSAGES ? `${text.slice(0, TEXT_IN_MESSAGES)}…` : text
}

/** @internal */
export const describeHolder = (holder: PidLock.OwnerRecord): string => {
  const command = holder.cmdline.join(" ")
  return `pid ${holder.pid} on ${holder.hostname} since ${holder.acquiredAt}` +
    (command === "" ? "" : ` (${show(command).slice(1, -1)})`)
}

// -----------------------------------------------------------------------------
// Owner record
// -----------------------------------------------------------------------------

const OwnerRecordSchema = Schema.Struct({
  v: Schema.Literal(1),
  pid: Schema.Int.pipe(Schema.positive()),
  startTime: Schema.String.pipe(Schema.pattern(/^\d+$/)),
  bootId: Schema.String,
  pidNamespace: Schema.String,
  hostname: Schema.String,
  cmdline: Schema.Array(Schema.String),
  acquiredAt: Schema.String,
  token: Schema.String.pipe(Schema.pattern(/^[0-9a-f]+$/))
})

const decodeRecord = Schema.decodeUnknownEither(Schema.parseJson(OwnerRecordSchema))

// A symlink target is at most PATH_MAX - 1 (4095) bytes on Linux; a long
// command line is cut to the arguments that fit, measured once each.
const RECORD_MAX_BYTES = 3072

const encodeRecord = (record: PidLock.OwnerRecord): string => {
  let budget = RECORD_MAX_BYTES - Buffer.byteLength(JSON.stringify({ ...record, cmdline: [] }))
  let kept = 0
  for (const arg of record.cmdline) {
    budget -= Buffer.byteLength(JSON.stringify(arg)) + 1
    if (budget < 0) break
    kept++
  }
  return JSON.stringify(kept === record.cmdline.length ? record : { ...record, cmdline: record.cmdline.slice(0, kept) })
}

const ENTRY_NAME = /^(\d+)\.([0-9a-f]+)$/

const entryName = (record: { readonly pid: number; readonly token: string }) => `${record.pid}.${record.token}`

const newToken = () => Crypto.randomBytes(8).toString("hex")

interface Holder {
  /** The owner entry's path. */
  readonly entry: string
  readonly record: PidLock.OwnerRecord
}

const corrupt = (path: string, reason: PidLock.CorruptLock["reason"], detail: string) =>
  new PidLock.CorruptLock({ path, reason, detail })

// Reads the owner entry at `path`; `None` when it vanished meanwhile.
const readOwnerEntry = (
  fs: FileSystem.FileSystem,
  path: string
): Effect.Effect<Option.Option<Holder>, PidLock.CorruptLock | PlatformError> => {
  const name = Path.basename(path)
  if (!ENTRY_NAME.test(name)) {
    return Effect.fail(corrupt(path, "UnexpectedEntry", `entry ${show(name)} is not named <pid>.<token>`))
  }
  return fs.readLink(path).pipe(
    Effect.flatMap((text) =>
      Either.match(decodeRecord(text), {
        onLeft: (error) =>
          Effect.fail(corrupt(path, "UnreadableRecord", `owner record is not valid: ${show(error.message)}`)),
        onRight: (record) =>
          entryName(record) === name
            ? Effect.succeed(Option.some<Holder>({ entry: path, record }))
            : Effect.fail(
              corrupt(path, "UnreadableRecord", `owner record names ${entryName(record)}, not the entry's name`)
            )
      })
    ),
    Effect.catchIf(isNotFound, () => Effect.succeedNone),
    Effect.catchIf(isNotALink, () => Effect.fail(corrupt(path, "UnexpectedEntry", "entry is not a symbolic link")))
  )
}

// The holder of the lock at `lock`; `None` when it is free (absent or empty).
const readHolder = (
  fs: FileSystem.FileSystem,
  lock: string
): Effect.Effect<Option.Option<Holder>, PidLock.CorruptLock | PlatformError> =>
  fs.readDirectory(lock).pipe(
    Effect.catchIf(isNotFound, () => Effect.succeed([])),
    Effect.catchIf(isNotADirectory, () => Effect.fail(notADirectory(lock))),
    Effect.flatMap((entries) => {
      if (entries.length === 0) return Effect.succeedNone
      if (entries.length > 1) {
        return Effect.fail(
          corrupt(lock, "MultipleEntries", `holds ${entries.length} entries (${show(entries.join(", "))}); a lock holds one`)
        )
      }
      return readOwnerEntry(fs, Path.join(lock, entries[0]!))
    })
  )

const notADirectory = (lock: string) =>
  corrupt(lock, "NotADirectory", "is not a directory (a file, a symbolic link or a special file)")

// -----------------------------------------------------------------------------
// Lock home
// -----------------------------------------------------------------------------

const notADirectoryOption = (dir: string) =>
  new PidLock.InvalidOptions({
    option: "dir",
    value: dir,
    reason: "is not a directory (a file, or a symbolic link that leads nowhere)"
  })

type HomeError = PidLock.CorruptLock | PidLock.InvalidOptions | PlatformError

// The lock home must be a real directory owned by this user: `/tmp` is shared,
// and a symlink planted there would redirect the lock, so it is never
// followed. `false` when there is no home yet.
const checkHome = (
  fs: FileSystem.FileSystem,
  info: ProcessInfo.ProcessInfo,
  home: string
): Effect.Effect<boolean, HomeError> => {
  const verify = Effect.flatMap(fs.stat(home), (stat) => {
    if (stat.type !== "Directory") {
      return Effect.fail(corrupt(home, "NotADirectory", `lock home is a ${stat.type}, not a directory`))
    }
    if (Option.isSome(stat.uid) && Option.isSome(info.uid) && stat.uid.value !== info.uid.value) {
      return Effect.fail(
        corrupt(home, "ForeignOwner", `lock home belongs to uid ${stat.uid.value}, not to this process's uid ${info.uid.value}`)
      )
    }
    return Effect.succeed(true)
  })
  return fs.readLink(home).pipe(
    Effect.matchEffect({
      onSuccess: (target) =>
        Effect.fail(corrupt(home, "SymlinkedHome", `lock home is a symbolic link to ${show(target)}`)),
      onFailure: (error): Effect.Effect<boolean, HomeError> =>
        isNotALink(error)
          ? verify
          : isNotFound(error)
          ? Effect.succeed(false)
          : isNotADirectory(error)
          ? Effect.fail(notADirectoryOption(Path.dirname(home)))
          : Effect.fail(error)
    })
  )
}

const ensureHome = (
  fs: FileSystem.FileSystem,
  info: ProcessInfo.ProcessInfo,
  home: string
): Effect.Effect<void, HomeError> => {
  const dir = Path.dirname(home)
  const create = fs.makeDirectory(home).pipe(
    Effect.catchIf(isNotFound, () =>
      fs.makeDirectory(dir, { recursive: true }).pipe(
        // A recursive mkdir fails only where a path component is a file or a
        // symlink that leads nowhere (ENOENT).
        Effect.catchIf(hasCode("EEXIST", "ENOTDIR", "ENOENT"), () => Effect.fail(notADirectoryOption(dir))),
        Effect.zipRight(fs.makeDirectory(home))
      )),
    // Another contender made it first: check what is there now.
    Effect.catchIf(hasCode("EEXIST"), () => checkHome(fs, info, home))
  )
  return Effect.flatMap(checkHome(fs, info, home), (exists) => exists ? Effect.void : Effect.asVoid(create))
}

// -----------------------------------------------------------------------------
// Acquire and release
// -----------------------------------------------------------------------------

interface Resolved {
  readonly fs: FileSystem.FileSystem
  readonly info: ProcessInfo.ProcessInfo
  readonly paths: Paths
}

// Staging directories are left behind by contenders killed before their
// rename. Each holds its creator's record, so it is judged like a holder, and
// only one whose creator is gone — and that holds nothing but its own owner
// entry — is removed.
const removeAbandonedStaging = ({ fs, info, paths }: Resolved, keep: string) =>
  fs.readDirectory(paths.home).pipe(
    Effect.flatMap((names) =>
      Effect.forEach(
        names.filter((name) => name !== keep && ENTRY_NAME.test(name)),
        (name) => {
          const staging = Path.join(paths.home, name)
          return Effect.all([fs.readDirectory(staging), readOwnerEntry(fs, Path.join(staging, name))]).pipe(
            Effect.flatMap(([contents, holder]) =>
              contents.length === 1 && Option.isSome(holder)
                ? Effect.flatMap(info.judge(holder.value.record), (verdict) =>
                  verdict._tag === "Stale" ? fs.remove(staging, { recursive: true }) : Effect.void)
                : Effect.void
            ),
            Effect.ignore
          )
        },
        { discard: true }
      )
    ),
    Effect.ignore
  )

interface Taken {
  /** The owner entry's path. */
  readonly entry: string
  readonly owner: PidLock.OwnerRecord
  /** The owner entry's target: the encoded record. */
  readonly text: string
}

const take = (
  resolved: Resolved,
  onStale: "takeover" | "fail"
): Effect.Effect<Taken, PidLock.PidLockError | PlatformError> =>
  Effect.gen(function*() {
    const { fs, info, paths } = resolved
    yield* ensureHome(fs, info, paths.home)
    const { pid, startTime, bootId, pidNamespace, hostname, cmdline } = info.self
    const owner: PidLock.OwnerRecord = {
      v: 1,
      pid,
      startTime,
      bootId,
      pidNamespace,
      hostname,
      cmdline,
      acquiredAt: new Date(yield* Clock.currentTimeMillis).toISOString(),
      token: newToken()
    }
    const name = entryName(owner)
    const text = encodeRecord(owner)
    const staging = Path.join(paths.home, name)
    yield* fs.makeDirectory(staging)

    let renamed = false
    let tookOver = false
    yield* Effect.gen(function*() {
      yield* fs.symlink(text, Path.join(staging, name))
      for (;;) {
        // Exactly one contender wins the rename onto an absent or empty lock.
        const occupied = yield* fs.rename(staging, paths.lock).pipe(
          Effect.as(false),
          Effect.catchIf(isOccupied, () => Effect.succeed(true)),
          Effect.catchIf(isNotADirectory, () => Effect.fail(notADirectory(paths.lock)))
        )
        if (!occupied) {
          renamed = true
          return
        }
        const holder = yield* readHolder(fs, paths.lock)
        if (Option.isNone(holder)) continue
        const { entry, record } = holder.value
        const verdict = yield* info.judge(record)
        if (verdict._tag !== "Stale") {
          return yield* new PidLock.LockHeld({
            path: paths.lock,
            holder: record,
            verdict,
            heldByThisProcess: isSameProcess(record, info.self)
          })
        }
        if (onStale === "fail") {
          return yield* new PidLock.StaleLock({ path: paths.lock, holder: record, reason: verdict.reason })
        }
        // The entry's name is unique to its holder's life, so removing it is a
        // compare-and-swap: if another contender broke it first and a new
        // holder moved in, this fails with ENOENT and touches nothing of theirs.
        const removed = yield* removeEntry(fs, entry)
        if (removed) {
          tookOver = true
          yield* Effect.logInfo(
            `PidLock: taking over ${paths.lock} from ${describeHolder(record)}: ${verdict.reason}`
          ).pipe(Effect.annotateLogs({ lock: paths.lock, holderPid: record.pid, reason: verdict.reason }))
        }
      }
    }).pipe(
      Effect.onExit(() => renamed ? Effect.void : removeStaging(fs, staging))
    )
    if (tookOver) yield* removeAbandonedStaging(resolved, name)
    return { entry: Path.join(paths.lock, name), owner, text }
  }).pipe(Effect.mapError((error) => isPlatformError(error) ? refineError(error) : error))

// Removes the owner entry at `entry` (`<home>/lock/<pid>.<token>`) if it is
// still there: true when this call removed it. `FileSystem.remove` cannot do
// that (Node's `fs.rm` is an lstat then an unlink, and reports success when
// the entry vanished in between), a rename of the exact name can: it fails
// with ENOENT when the entry is gone. The entry goes to a tombstone in the
// home, named after the entry so that no two lives share one, and the
// tombstone is then removed; one left by a crash is collected later.
const removeEntry = (fs: FileSystem.FileSystem, entry: string): Effect.Effect<boolean, PlatformError> => {
  const tombstone = tombstoneOf(entry)
  return fs.rename(entry, tombstone).pipe(
    Effect.zipRight(fs.remove(tombstone, { force: true })),
    Effect.as(true),
    Effect.catchIf(isNotFound, () => Effect.succeed(false))
  )
}

const TOMBSTONE_SUFFIX = ".gone"

const tombstoneOf = (entry: string) => Path.join(Path.dirname(Path.dirname(entry)), Path.basename(entry) + TOMBSTONE_SUFFIX)

// Retried a few times: a staging directory must not outlive a failed attempt
// because of one transient error.
const removeStaging = (fs: FileSystem.FileSystem, staging: string) =>
  fs.remove(staging, { recursive: true }).pipe(
    Effect.catchIf(isNotFound, () => Effect.void),
    Effect.retry({ times: 3 }),
    Effect.catchAll((error) => Effect.logWarning(`PidLock: could not remove staging directory ${staging}`, error))
  )

const makeLock = (
  { fs, paths }: Resolved,
  taken: Taken,
  lost: Deferred.Deferred<never, PidLock.LockCompromised>
): PidLock.PidLock => {
  let released = false
  // Made only when it happens: an error captures a stack trace, too dear to
  // pay on every acquisition.
  const compromised = () => new PidLock.LockCompromised({ path: paths.lock, owner: taken.owner })
  // One unlink of our own uniquely named entry: a compare-and-swap that can
  // never remove a later holder's lock. It counts as released from the start,
  // so that the watchdog does not take our own unlink for a loss; after a
  // failure other than a compromise it may be tried again (the scope's
  // finalizer does).
  const release = Effect.suspend(() => {
    if (released) return Effect.void
    released = true
    return fs.remove(taken.entry).pipe(
      Effect.catchIf(isNotFound, () => Effect.fail(compromised())),
      Effect.mapError((error) => error._tag === "LockCompromised" ? error : refineError(error)),
      Effect.tapError((error) =>
        error._tag === "LockCompromised" ? Effect.void : Effect.sync(() => {
          released = false
        })
      )
    )
  }).pipe(Effect.uninterruptible)
  const verify = Effect.suspend(() =>
    released ? Effect.void : fs.readLink(taken.entry).pipe(
      Effect.flatMap((text) => text === taken.text ? Effect.void : Effect.fail(compromised())),
      Effect.catchIf(isNotFound, () => Effect.fail(compromised())),
      Effect.mapError((error) => error._tag === "LockCompromised" ? error : refineError(error))
    )
  )
  return tag.of({
    [TypeId]: TypeId,
    name: paths.name,
    path: paths.lock,
    entry: taken.entry,
    owner: taken.owner,
    release,
    verify,
    lost: Deferred.await(lost)
  })
}

// The next change in the directory at `path`. A watch that cannot be armed
// (the directory is gone, or no watches are left) never fires, so that the
// poll beside it paces the loop instead of a spin. A watch follows an inode,
// so each wait arms a new one.
const nextChange = (fs: FileSystem.FileSystem, path: string): Effect.Effect<void> =>
  Stream.runHead(fs.watch(path)).pipe(Effect.catchAll(() => Effect.never))

// Runs `body` with a watch on `path` armed first, so that a change made while
// `body` looks is still seen by the wait that follows.
const withWatch = <A, E, R>(
  fs: FileSystem.FileSystem,
  path: string,
  body: (change: Effect.Effect<void>) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.flatMap(
    Effect.fork(nextChange(fs, path)),
    (watch) => Effect.ensuring(body(Fiber.join(watch)), Fiber.interrupt(watch))
  )

// Checks the owner entry at once, then on every change in the lock directory
// and at least every `interval`, and completes `lost` when it is gone or
// replaced.
const watchdog = (
  fs: FileSystem.FileSystem,
  lock: PidLock.PidLock,
  lost: Deferred.Deferred<never, PidLock.LockCompromised>,
  interval: Duration.Duration
): Effect.Effect<void> => {
  const stillHeld = withWatch(fs, lock.path, (change) =>
    Effect.gen(function*() {
      const checked = yield* Effect.either(lock.verify)
      if (checked._tag === "Left") {
        if (checked.left._tag === "LockCompromised") {
          yield* Deferred.fail(lost, checked.left)
          return false
        }
        yield* Effect.logWarning(`PidLock: could not check ${lock.entry}: ${checked.left.message}`)
      }
      yield* Effect.raceFirst(change, Effect.sleep(interval))
      return true
    }))
  return Effect.asVoid(Effect.iterate(true, { while: (held) => held, body: () => stillHeld }))
}

const POLL_FIRST = Duration.millis(10)
const POLL_MAX = Duration.seconds(1)

const isLockHeld = (error: { readonly _tag: string }): boolean => error._tag === "LockHeld"

// Tries again while the lock is held: on every change in the lock directory,
// and on a poll whose interval doubles up to a second, since watches miss
// events on some file systems and a holder's death makes none. Only the
// attempts are uninterruptible, never the waiting between them.
const retryWhileHeld = <A, E extends { readonly _tag: string }, R>(
  attempt: Effect.Effect<A, E, R>,
  fs: FileSystem.FileSystem,
  lockPath: string,
  wait: Duration.Duration | Schedule.Schedule<unknown, PidLock.LockHeld>
): Effect.Effect<A, E, R> => {
  if (Schedule.isSchedule(wait)) {
    // `while` stops at the first other error; the schedule, typed for
    // `LockHeld`, is widened to the attempt's errors only to type-check.
    return Effect.retry(attempt, {
      schedule: wait as unknown as Schedule.Schedule<unknown, E>,
      while: isLockHeld
    })
  }
  return Effect.gen(function*() {
    const deadline = (yield* Clock.currentTimeMillis) + Duration.toMillis(wait)
    let poll = POLL_FIRST
    for (;;) {
      const outcome = yield* withWatch(fs, lockPath, (change) =>
        Effect.gen(function*() {
          const result = yield* Effect.exit(attempt)
          const held = result._tag === "Failure" && Option.exists(Cause.failureOption(result.cause), isLockHeld)
          const remaining = deadline - (yield* Clock.currentTimeMillis)
          if (!held || remaining <= 0) return Option.some(result)
          yield* Effect.raceFirst(change, Effect.sleep(Duration.min(poll, Duration.millis(remaining))))
          return Option.none()
        }))
      if (Option.isSome(outcome)) return yield* outcome.value
      poll = Duration.min(Duration.times(poll, 2), POLL_MAX)
    }
  })
}

const validateWait = (
  wait: unknown
): Either.Either<Duration.Duration | Schedule.Schedule<unknown, PidLock.LockHeld> | undefined, PidLock.InvalidOptions> => {
  if (wait === undefined || Schedule.isSchedule(wait)) {
    return Either.right(wait as Schedule.Schedule<unknown, PidLock.LockHeld> | undefined)
  }
  return Option.match(Duration.decodeUnknown(wait), {
    onNone: () =>
      Either.left(new PidLock.InvalidOptions({ option: "wait", value: wait, reason: "must be a duration or a Schedule" })),
    onSome: Either.right
  })
}

const DEFAULT_CHECK_INTERVAL = Duration.seconds(5)

const validateCheckInterval = (interval: unknown): Either.Either<Duration.Duration | false, PidLock.InvalidOptions> => {
  if (interval === false) return Either.right(false)
  if (interval === undefined) return Either.right(DEFAULT_CHECK_INTERVAL)
  return Option.match(Option.filter(Duration.decodeUnknown(interval), (duration) => Duration.greaterThan(duration, Duration.zero)), {
    onNone: () =>
      Either.left(
        new PidLock.InvalidOptions({ option: "checkInterval", value: interval, reason: "must be a positive duration, or false" })
      ),
    onSome: Either.right
  })
}

const resolve = (options: PidLock.Options) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const info = yield* processInfoTag
    const paths = yield* resolvePaths(fs, options)
    const onStale = yield* validateOnStale(options.onStale)
    const wait = yield* validateWait(options.wait)
    const checkInterval = yield* validateCheckInterval(options.checkInterval)
    return { resolved: { fs, info, paths }, onStale, wait, checkInterval }
  })

/** @internal */
export const acquire = Effect.fn("PidLock.acquire")(function*(options: PidLock.Options) {
  const { checkInterval, onStale, resolved, wait } = yield* resolve(options)
  const lost = yield* Deferred.make<never, PidLock.LockCompromised>()
  const attempt = Effect.acquireRelease(
    Effect.map(take(resolved, onStale), (taken) => makeLock(resolved, taken, lost)),
    (lock) =>
      lock.release.pipe(
        Effect.catchAll((error) => Effect.logWarning(`PidLock: release of ${lock.path} failed: ${error.message}`))
      )
  )
  const lock = yield* wait === undefined ? attempt : retryWhileHeld(attempt, resolved.fs, resolved.paths.lock, wait)
  // Forked after the release was registered, so it is stopped before the release runs.
  if (checkInterval !== false) yield* Effect.forkScoped(watchdog(resolved.fs, lock, lost, checkInterval))
  return lock
})

/** @internal */
export const layer = (options: PidLock.Options) => Layer.scoped(tag, acquire(options))

/** @internal */
export const layerConfig = (config: Config.Config.Wrap<PidLock.Options>) =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))

/** @internal */
export const withLock = dual<
  (options: PidLock.Options) => <A, E, R>(
    self: Effect.Effect<A, E, R>
  ) => Effect.Effect<
    A,
    E | PidLock.PidLockError | PlatformError,
    Exclude<R, Scope.Scope> | FileSystem.FileSystem | ProcessInfo.ProcessInfo
  >,
  <A, E, R>(
    self: Effect.Effect<A, E, R>,
    options: PidLock.Options
  ) => Effect.Effect<
    A,
    E | PidLock.PidLockError | PlatformError,
    Exclude<R, Scope.Scope> | FileSystem.FileSystem | ProcessInfo.ProcessInfo
  >
>(2, (self, options) =>
  Effect.scoped(
    Effect.flatMap(acquire(options), (lock) => Effect.zipLeft(Effect.raceFirst(self, lock.lost), lock.release))
  ))

/** @internal */
export const inspect = Effect.fn("PidLock.inspect")(function*(
  options: { readonly name: string; readonly dir?: string | undefined }
) {
  const fs = yield* FileSystem.FileSystem
  const info = yield* processInfoTag
  const paths = yield* resolvePaths(fs, options)
  const holder = yield* checkHome(fs, info, paths.home).pipe(
    Effect.zipLeft(fs.readLink(paths.lock).pipe(
      Effect.flatMap(() => Effect.fail(notADirectory(paths.lock))),
      Effect.catchIf((error) => isNotALink(error) || isNotFound(error), () => Effect.void)
    )),
    Effect.flatMap((exists) => exists ? readHolder(fs, paths.lock) : Effect.succeedNone),
    Effect.mapError((error) => isPlatformError(error) ? refineError(error) : error)
  )
  if (Option.isNone(holder)) return Option.none<PidLock.Status>()
  const { record } = holder.value
  const verdict = yield* Effect.mapError(info.judge(record), refineError)
  return Option.some<PidLock.Status>({
    path: paths.lock,
    holder: record,
    verdict,
    heldByThisProcess: isSameProcess(record, info.self)
  })
})

/** @internal */
export const breakLock = Effect.fn("PidLock.breakLock")(function*(status: PidLock.Status) {
  const fs = yield* FileSystem.FileSystem
  return yield* removeEntry(fs, Path.join(status.path, entryName(status.holder))).pipe(Effect.mapError(refineError))
})
