import { isPlatformError, type PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Path from "node:path"
import * as PidLock from "../PidLock.js"
import type * as Posix from "../Posix.js"
import * as ProcessInfo from "../ProcessInfo.js"
import * as Channel from "./channel.js"
import { errnoOf, isNotFound } from "./errno.js"
import { type Loss, makeLoss, makeReleaser, releaseInFinalizer, watchdog, whenAwaited, withLockOf } from "./heldLock.js"
import { defaultDir, dirFromEnvironment, validateDir } from "./location.js"
import { validateCheckInterval, validateName, validateObject, validateWait } from "./options.js"
import { decodeRecord, describeHolder, encodeRecord, newToken, SOCKET_NAME } from "./ownerRecord.js"
import { MAX_FRAME_BYTES, tag as posixTag } from "./posix.js"
import { isSameProcess, tag as processInfoTag } from "./processInfo.js"
import { show } from "./text.js"

/** @internal */
export const TypeId: PidLock.TypeId = Symbol.for("effect-pidlock/PidLock") as PidLock.TypeId

/** @internal */
export const tag = Context.GenericTag<PidLock.PidLock>("effect-pidlock/PidLock")

// -----------------------------------------------------------------------------
// Options
// -----------------------------------------------------------------------------

interface Paths {
  readonly name: string
  /** Where the lock home is made. */
  readonly dir: string
  /** `dir` is the per-user default directory, which the lock makes and checks itself. */
  readonly perUser: boolean
  readonly home: string
  readonly lock: string
  /** The generation counter. */
  readonly counter: string
}

const validateOnStale = (onStale: unknown): Either.Either<"takeover" | "fail", PidLock.InvalidOptions> =>
  onStale === undefined || onStale === "takeover" || onStale === "fail"
    ? Either.right(onStale ?? "takeover")
    : Either.left(
      new PidLock.InvalidOptions({ option: "onStale", value: onStale, reason: `is neither "takeover" nor "fail"` })
    )

const pathsOf = (name: string, dir: string, perUser: boolean): Paths => {
  const home = Path.join(dir, name)
  return { name, dir, perUser, home, lock: inDirectory(home, "lock"), counter: inDirectory(home, GENERATION) }
}

// `name` (one path component) in `dir` (absolute and normalized, never
// "/"): what `Path.join` would make, without its normalizing.
const inDirectory = (dir: string, name: string) => `${dir}/${name}`

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
// Nothing there: the path, or a directory on the way to it (a component that
// is a file), does not exist.
const isAbsent = hasCode("ENOENT", "ENOTDIR")

// -----------------------------------------------------------------------------
// Owner record
// -----------------------------------------------------------------------------

const ENTRY_NAME = /^(\d+)\.([0-9a-f]+)$/

const entryName = (record: { readonly pid: number; readonly token: string }) => `${record.pid}.${record.token}`

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
        onLeft: (error) => Effect.fail(corrupt(path, "UnreadableRecord", `owner record is unreadable: ${error}`)),
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
          corrupt(
            lock,
            "MultipleEntries",
            `holds ${entries.length} entries (${show(entries.join(", "))}); a lock holds one`
          )
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

type HomeError = PidLock.CorruptLock | PidLock.NameClash | PidLock.InvalidOptions | PlatformError

const STICKY = 0o1000
const GROUP_OR_OTHERS_WRITE = 0o022
const GROUP_OR_OTHERS_ANY = 0o077

const octal = (mode: number) => `0${(mode & 0o7777).toString(8)}`

// The owner of a file, when it is known to be another user than `uid`.
const otherOwnerOf = (info: FileSystem.File.Info, uid: Option.Option<number>): Option.Option<number> =>
  Option.filter(info.uid, (owner) => Option.isSome(uid) && owner !== uid.value)

// A directory the lock makes and owns, as its checks name it.
interface OwnDirectory {
  readonly what: string
  /** The permission bits that group and others must not have. */
  readonly forbidden: number
  /** What one that belongs to another user is. */
  readonly ofAnotherUser: (
    path: string,
    ownerUid: number,
    effectiveUid: number
  ) => PidLock.CorruptLock | PidLock.NameClash
}

// Made by the lock, so checked as strictly as tmux checks /tmp/tmux-<uid>:
// ours alone, no access for anyone else.
const PER_USER_DIRECTORY: OwnDirectory = {
  what: "the per-user lock directory",
  forbidden: GROUP_OR_OTHERS_ANY,
  ofAnotherUser: (path, ownerUid, effectiveUid) =>
    corrupt(
      path,
      "ForeignOwner",
      `the per-user lock directory belongs to uid ${ownerUid}, not to this process's effective uid ${effectiveUid}`
    )
}

// In a directory that users share, another user's lock home of the same name
// is theirs: a clash of names, not a broken lock.
const LOCK_HOME: OwnDirectory = {
  what: "lock home",
  forbidden: GROUP_OR_OTHERS_WRITE,
  ofAnotherUser: (path, ownerUid, effectiveUid) => new PidLock.NameClash({ path, ownerUid, effectiveUid })
}

// A directory of our own, checked in one lstat: checking the type and then
// the owner in two calls leaves a window in which whoever owns the name in a
// shared /tmp can swap a symlink in.
const checkOwnDirectory = (
  info: ProcessInfo.ProcessInfo,
  path: string,
  stat: FileSystem.File.Info,
  { forbidden, ofAnotherUser, what }: OwnDirectory
): Effect.Effect<void, PidLock.CorruptLock | PidLock.NameClash> => {
  if (stat.type === "SymbolicLink") {
    return Effect.fail(corrupt(path, "SymlinkedHome", `${what} is a symbolic link, which is never followed`))
  }
  if (stat.type !== "Directory") {
    return Effect.fail(corrupt(path, "NotADirectory", `${what} is a ${stat.type}, not a directory`))
  }
  const owner = otherOwnerOf(stat, info.uid)
  if (Option.isSome(owner)) return Effect.fail(ofAnotherUser(path, owner.value, Option.getOrThrow(info.uid)))
  if ((stat.mode & forbidden) !== 0) {
    return Effect.fail(
      corrupt(path, "InsecureMode", `${what} has mode ${octal(stat.mode)}, which lets other users change it`)
    )
  }
  return Effect.void
}

// Makes a directory of ours 0700 whatever the umask: mkdir's mode is masked,
// a chmod's is not. `false` when it existed already.
const makePrivateDirectory = (fs: FileSystem.FileSystem, path: string): Effect.Effect<boolean, PlatformError> =>
  fs.makeDirectory(path, { mode: 0o700 }).pipe(
    Effect.zipRight(fs.chmod(path, 0o700)),
    Effect.as(true),
    Effect.catchIf(hasCode("EEXIST"), () => Effect.succeed(false))
  )

// A directory someone gave us may be shared, but then it must be sticky:
// otherwise anyone who may write it (or owns it, other than root) can rename
// our lock home away while we hold it, and a second instance makes a new one.
const checkGivenDir = (
  info: ProcessInfo.ProcessInfo,
  dir: string,
  stat: FileSystem.File.Info
): Effect.Effect<void, PidLock.InvalidOptions> => {
  if (stat.type !== "Directory") return Effect.fail(notADirectoryOption(dir))
  if ((stat.mode & STICKY) !== 0) return Effect.void
  const invalid = (reason: string) => Effect.fail(new PidLock.InvalidOptions({ option: "dir", value: dir, reason }))
  if ((stat.mode & GROUP_OR_OTHERS_WRITE) !== 0) {
    return invalid(
      `has mode ${octal(stat.mode)}: writable by other users and not sticky, so they could replace the lock home`
    )
  }
  const owner = otherOwnerOf(stat, info.uid)
  if (Option.isSome(owner) && owner.value !== 0) {
    return invalid(`belongs to uid ${owner.value}, who could replace the lock home in it`)
  }
  return Effect.void
}

// The directory a lock home is in, as found: `private` when nobody but this
// user (and root) may make, rename or remove anything in it.
type DirFound = "private" | "shared" | "missing"

// Ours, and writable by nobody else.
const isPrivate = (info: ProcessInfo.ProcessInfo, stat: FileSystem.File.Info): boolean =>
  Option.isSome(info.uid) && Option.contains(stat.uid, info.uid.value) && (stat.mode & GROUP_OR_OTHERS_WRITE) === 0

// The directory the lock home is made in, made first when missing (and then
// `shared`, until a later acquisition looks at it); `missing` when it is
// missing and `create` is false.
const ensureDir = (
  { fs, info, posix }: Services,
  paths: Paths,
  create: boolean
): Effect.Effect<DirFound, HomeError> => {
  const { dir } = paths
  if (paths.perUser) {
    const check = Effect.tap(posix.lstat(dir), (stat) => checkOwnDirectory(info, dir, stat, PER_USER_DIRECTORY))
    return Effect.map(
      ensureOwnDirectory(fs, dir, check, create),
      (found) => found === "missing" ? "missing" : "private"
    )
  }
  return fs.stat(dir).pipe(
    Effect.flatMap((stat) =>
      Effect.as(checkGivenDir(info, dir, stat), isPrivate(info, stat) ? "private" as const : "shared" as const)
    ),
    Effect.catchIf(isNotADirectory, () => Effect.fail(notADirectoryOption(dir))),
    Effect.catchIf(isNotFound, () =>
      create
        ? fs.makeDirectory(dir, { recursive: true, mode: 0o755 }).pipe(
          // A recursive mkdir fails only where a path component is a file or a
          // symlink that leads nowhere (ENOENT).
          Effect.catchIf(hasCode("EEXIST", "ENOTDIR", "ENOENT"), () => Effect.fail(notADirectoryOption(dir))),
          Effect.as("shared" as const)
        )
        : Effect.succeed("missing" as const))
  )
}

const CREATE_ROUNDS = 5

// A directory of our own as found: its lstat when it was there, or whether
// this call made it.
type Found = FileSystem.File.Info | "made" | "missing"

// Checks a directory of our own, first making it when it is missing and
// `create` is true. Another contender may make it between our lstat and our
// mkdir (which then fails EEXIST): it is checked again. Our lock never removes
// a lock home or the per-user directory, so whoever makes and removes it
// round after round is someone else contesting the name.
const ensureOwnDirectory = (
  fs: FileSystem.FileSystem,
  path: string,
  check: Effect.Effect<FileSystem.File.Info, HomeError>,
  create: boolean,
  rounds: number = CREATE_ROUNDS
): Effect.Effect<Found, HomeError> =>
  check.pipe(
    Effect.catchIf(isNotFound, (): Effect.Effect<Found, HomeError> =>
      !create
        ? Effect.succeed("missing")
        : rounds === 0
        ? Effect.fail(corrupt(
          path,
          "ForeignOwner",
          `appeared and vanished ${CREATE_ROUNDS} times while it was checked: someone else makes and removes it`
        ))
        : Effect.flatMap(
          makePrivateDirectory(fs, path),
          (made) => made ? Effect.succeed("made") : ensureOwnDirectory(fs, path, check, create, rounds - 1)
        ))
  )

// The lock home must be a real directory owned by this user and writable by
// nobody else (`/tmp` is shared: a symlink planted there would redirect the
// lock, a writable home would let others remove the owner entry).
const ensureHome = (
  services: Services,
  paths: Paths,
  create: boolean
): Effect.Effect<{ readonly dir: DirFound; readonly home: Found }, HomeError> => {
  const { fs, info, posix } = services
  const { home } = paths
  const check = posix.lstat(home).pipe(
    Effect.tap((stat) => checkOwnDirectory(info, home, stat, LOCK_HOME)),
    Effect.catchIf(isNotADirectory, () => Effect.fail(notADirectoryOption(paths.dir)))
  )
  return Effect.flatMap(
    ensureDir(services, paths, create),
    (dir): Effect.Effect<{ readonly dir: DirFound; readonly home: Found }, HomeError> =>
      dir === "missing"
        ? Effect.succeed({ dir, home: "missing" as const })
        : Effect.map(ensureOwnDirectory(fs, home, check, create), (found) => ({ dir, home: found }))
  )
}

// The lock homes each process (each `Posix` service) has checked, in a
// private directory. A home that passed is ours and writable by nobody else;
// in a private directory nobody but this user (and root) can rename it away,
// remove it or put anything in its place: later acquisitions skip the two
// calls of the check. A surprise (the home gone, any failure but the lock
// being held) forgets it, and the next acquisition checks it again. A home in
// a shared sticky directory (`/tmp` itself) is checked every time: once it is
// gone (removed by its own user, or by a cleaner of old files), anyone may
// plant a symbolic link under its name, which a call that trusted an old
// check would follow.
const checkedHomes = new WeakMap<Posix.Posix, Set<string>>()

const isHomeChecked = (posix: Posix.Posix, home: string): boolean => checkedHomes.get(posix)?.has(home) === true

const rememberHome = (posix: Posix.Posix, home: string): void => {
  const homes = checkedHomes.get(posix)
  if (homes === undefined) checkedHomes.set(posix, new Set([home]))
  else homes.add(home)
}

const forgetHome = (posix: Posix.Posix, home: string): void => {
  checkedHomes.get(posix)?.delete(home)
}

const checkHome = (services: Services, paths: Paths): Effect.Effect<Found, HomeError> =>
  Effect.map(ensureHome(services, paths, true), ({ dir, home }) => {
    if (dir === "private") rememberHome(services.posix, paths.home)
    return home
  })

// Whether a lock home as found may hold a staging directory besides `lock`:
// a directory's link count is 2 and one for each subdirectory, so 3 means
// `lock` alone. A file system that does not count them (btrfs says 1) is
// always looked into.
const mayHoldStaging = (home: Found): boolean =>
  home !== "made" && home !== "missing" && Option.getOrElse(home.nlink, () => 0) !== 3

// The lock directory of a held lock was made by its holder's staging, 0700;
// one writable by others lets them remove the owner entry.
const checkLockDirectory = (
  services: Services,
  lock: string
): Effect.Effect<void, PidLock.CorruptLock | PlatformError> =>
  services.posix.lstat(lock).pipe(
    Effect.flatMap((stat) =>
      stat.type !== "Directory"
        ? Effect.fail(notADirectory(lock))
        : (stat.mode & GROUP_OR_OTHERS_WRITE) !== 0
        ? Effect.fail(corrupt(
          lock,
          "InsecureMode",
          `lock directory has mode ${octal(stat.mode)}, which lets other users remove the owner entry`
        ))
        : Effect.void
    ),
    Effect.catchIf(isNotFound, () => Effect.void)
  )

// -----------------------------------------------------------------------------
// Acquire and release
// -----------------------------------------------------------------------------

interface Services {
  readonly fs: FileSystem.FileSystem
  readonly info: ProcessInfo.ProcessInfo
  readonly posix: Posix.Posix
}

interface Resolved extends Services {
  readonly paths: Paths
}

const Verdict = ProcessInfo.Verdict

// Where /proc cannot see the holder (another pid namespace), or says it is
// gone while a child that inherited its socket may still run (the CLI's
// `run` killed while its command runs), the holder's socket decides: a
// socket that still accepts proves a live holder, one that refuses proves
// that no process has it open. Another boot, or another host, is never asked.
const asksSocket = (verdict: ProcessInfo.Verdict): boolean =>
  verdict._tag === "Foreign" ? verdict.scope === "namespace" : verdict._tag === "Stale" && verdict.reason !== "Rebooted"

//
// The socket is also offered to the judge, which may ask it first where that
// is cheaper than its own look (the portable layer's `ps`); it is connected
// to at most once per verdict, and an answer read before the judge looked is
// as good as one read after: a socket that refused never answers again (its
// name is unique to its holder's life), and a holder's socket answers from
// before its record names it.
const judgeHolder = (
  { info, paths, posix }: Resolved,
  record: PidLock.OwnerRecord
): Effect.Effect<ProcessInfo.Verdict, PlatformError> =>
  record.socket === undefined
    ? info.judge(record)
    : Effect.flatMap(Effect.cached(posix.probe(Path.join(paths.home, record.socket))), (socket) =>
      Effect.flatMap(info.judge(record, { socket }), (verdict) =>
        !asksSocket(verdict)
          ? Effect.succeed(verdict)
          : Effect.map(socket, (probe) =>
            probe === "Listening"
              ? Verdict.Alive()
              : probe === "Refused" && verdict._tag === "Foreign"
              ? Verdict.Stale({ reason: "Exited" })
              : verdict)))

// The socket of a holder judged gone: no process has it open, and no other
// process will ever listen under its name.
const removeSocketOf = ({ paths, posix }: Resolved, record: PidLock.OwnerRecord) =>
  record.socket === undefined
    ? Effect.void
    : Effect.ignore(posix.unlink(Path.join(paths.home, record.socket)))

// What dead processes leave in the lock home, collected after a successful
// acquire that found a staging directory in the home (its link count tells
// without a readdir), or took over a dead holder's lock: staging directories
// of contenders killed before their rename (each holds its creator's record,
// so it is judged like a holder, and only one whose creator is gone — and
// that holds nothing but its own owner entry — is removed) and tombstones of
// interrupted removals (nothing refers to those); and after a takeover, when
// someone is known to have died, sockets that refuse (asking every socket on
// every acquire would cost a connection per live process sharing the home).
// A socket appears only once it listens (see `Posix.listen`), and one that
// refuses will never listen again: its process is gone. The staging
// directories go first, while their creators' sockets can still speak for
// them.
const removeLitter = (resolved: Resolved, keep: string, ownSocket: string | undefined, afterTakeover: boolean) => {
  const { fs, paths, posix } = resolved
  const remove = (name: string) => fs.remove(Path.join(paths.home, name), { force: true, recursive: true })
  const removeStagingIfAbandoned = (name: string) => {
    const staging = Path.join(paths.home, name)
    return Effect.all([fs.readDirectory(staging), readOwnerEntry(fs, Path.join(staging, name))]).pipe(
      Effect.flatMap(([contents, holder]) =>
        contents.length === 1 && Option.isSome(holder)
          ? Effect.flatMap(
            judgeHolder(resolved, holder.value.record),
            (verdict) => verdict._tag === "Stale" ? remove(name) : Effect.void
          )
          : Effect.void
      )
    )
  }
  const removeSocketIfRefused = (name: string) =>
    Effect.flatMap(
      posix.probe(Path.join(paths.home, name)),
      (probe) => probe === "Refused" ? remove(name) : Effect.void
    )
  const each = (names: ReadonlyArray<string>, collect: (name: string) => Effect.Effect<void, unknown>) =>
    Effect.forEach(names, (name) => Effect.ignore(collect(name)), { discard: true })
  return fs.readDirectory(paths.home).pipe(
    Effect.flatMap((names) =>
      Effect.all([
        each(names.filter((name) => name !== keep && ENTRY_NAME.test(name)), removeStagingIfAbandoned),
        each(names.filter((name) => name.endsWith(TOMBSTONE_SUFFIX) || GENERATION_PART.test(name)), remove),
        each(
          afterTakeover ? names.filter((name) => name !== ownSocket && SOCKET_NAME.test(name)) : [],
          removeSocketIfRefused
        )
      ], { discard: true })
    ),
    Effect.ignore
  )
}

// This process's socket in the lock home, made before its first record there
// names it (a record that becomes the lock must name a socket that answers
// from that moment on, or a contender in another pid namespace could not
// judge a holder that dies at once), and kept for the next acquisitions.
// Where it cannot be made (an odd file system), records name none and the lock
// works without that proof.
const listenIn = ({ posix }: Resolved, home: string): Effect.Effect<Option.Option<string>> =>
  posix.listen(home).pipe(
    Effect.map((listener) => Option.some(Path.basename(listener.path))),
    Effect.catchAll((error) =>
      Effect.as(
        Effect.logDebug(`PidLock: no socket in ${home}, the holder check runs without it: ${error.message}`),
        Option.none()
      )
    )
  )

interface Taken {
  /** The owner entry's path. */
  readonly entry: string
  readonly owner: PidLock.OwnerRecord
  /** The owner entry's target: the encoded record. */
  readonly text: string
  readonly generation: number
}

const take = (
  resolved: Resolved,
  onStale: "takeover" | "fail"
): Effect.Effect<Taken, PidLock.PidLockError | PlatformError> =>
  Effect.gen(function*() {
    const { info, paths, posix } = resolved
    // `cached`: checked by an earlier acquisition of this process.
    const home: Found | "cached" = isHomeChecked(posix, paths.home) ? "cached" : yield* checkHome(resolved, paths)
    const socket = yield* listenIn(resolved, paths.home)
    const owner: PidLock.OwnerRecord = {
      v: 1,
      ...info.self,
      acquiredAt: new Date(yield* Clock.currentTimeMillis).toISOString(),
      token: newToken(),
      ...(Option.isSome(socket) ? { socket: socket.value } : {})
    }
    const name = entryName(owner)
    const text = encodeRecord(owner)
    const staging = inDirectory(paths.home, name)
    // 0700 whatever the umask: the lock directory it becomes must not be
    // writable by others.
    const makeStaging = posix.makeDirectory(staging, 0o700)
    yield* home !== "cached" ? makeStaging : makeStaging.pipe(
      // The home is gone since it was checked: checked (and made) again.
      Effect.catchIf(isAbsent, () => {
        forgetHome(posix, paths.home)
        return Effect.zipRight(checkHome(resolved, paths), makeStaging)
      })
    )
    // A staging directory that did not become the lock is removed. (No
    // interruption comes between: `acquire` takes the lock uninterruptibly.)
    const tookOver = yield* Effect.zipRight(
      posix.symlink(text, inDirectory(staging, name)),
      occupy(resolved, staging, owner, onStale)
    ).pipe(
      Effect.tapErrorCause(() => removeStaging(resolved.fs, staging))
    )
    const entry = inDirectory(paths.lock, name)
    // A lock whose counter cannot be advanced is given back: a holder without
    // a generation could not fence its writes.
    const generation = yield* advanceGeneration(resolved, name).pipe(
      Effect.tapError(() => giveBack(posix, entry))
    )
    if (tookOver || (home !== "cached" && mayHoldStaging(home))) {
      yield* removeLitter(resolved, name, owner.socket, tookOver)
    }
    return { entry, owner, text, generation }
  }).pipe(
    Effect.catchAll((error) => {
      if (error._tag !== "LockHeld" && error._tag !== "StaleLock") forgetHome(resolved.posix, resolved.paths.home)
      return Effect.fail(isPlatformError(error) ? refineError(error) : error)
    })
  )

// Renames `staging` onto the lock: exactly one contender wins the rename
// onto an absent or empty lock. A lock held by a live holder fails with
// `LockHeld`; a stale one is taken over (or fails with `StaleLock`), and the
// rename tried again. True when a stale lock was taken over.
const occupy = (
  resolved: Resolved,
  staging: string,
  owner: PidLock.OwnerRecord,
  onStale: "takeover" | "fail"
): Effect.Effect<boolean, PidLock.PidLockError | PlatformError> => {
  const { info, paths, posix } = resolved
  const renamed = posix.rename(staging, paths.lock).pipe(
    Effect.as(true),
    Effect.catchIf(isOccupied, () => Effect.succeed(false)),
    Effect.catchIf(isNotADirectory, () => Effect.fail(notADirectory(paths.lock)))
  )
  const contend = (tookOver: boolean): Effect.Effect<boolean, PidLock.PidLockError | PlatformError> =>
    Effect.gen(function*() {
      yield* checkLockDirectory(resolved, paths.lock)
      const holder = yield* readHolder(resolved.fs, paths.lock)
      if (Option.isSome(holder)) {
        const { entry, record } = holder.value
        const verdict = yield* judgeHolder(resolved, record)
        if (verdict._tag !== "Stale") {
          return yield* new PidLock.LockHeld({
            location: paths.lock,
            holder: record,
            verdict,
            heldByThisProcess: isSameProcess(record, info.self)
          })
        }
        if (onStale === "fail") {
          return yield* new PidLock.StaleLock({ path: paths.lock, holder: record, reason: verdict.reason })
        }
        // The entry's name is unique to its holder's life, so removing it by
        // that name is a compare-and-swap: if another contender broke it first
        // and a new holder moved in, nothing of theirs is touched.
        if (yield* removeEntry(posix, entry)) {
          tookOver = true
          yield* Effect.logInfo(
            `PidLock: taking over ${paths.lock} from ${describeHolder(record)}: ${verdict.reason}`
          ).pipe(Effect.annotateLogs({ lock: paths.lock, holderPid: record.pid, reason: verdict.reason }))
          if (record.socket !== owner.socket) yield* removeSocketOf(resolved, record)
        }
      }
      return yield* Effect.flatMap(renamed, (won) => won ? Effect.succeed(tookOver) : contend(tookOver))
    })
  return Effect.flatMap(renamed, (won) => won ? Effect.succeed(false) : contend(false))
}

// Removes the owner entry at `entry` (`<home>/lock/<pid>.<token>`) if it is
// still there: true when this call removed it, false when it was gone (or
// the lock directory or home is no directory any more). One `unlink` of the
// exact name: of two that race, one succeeds. (`FileSystem.remove` cannot
// tell: Node's `fs.rm` is an lstat then an unlink, and reports success when
// the entry vanished in between.)
const removeEntry = (posix: Posix.Posix, entry: string): Effect.Effect<boolean, PlatformError> =>
  posix.unlink(entry).pipe(
    Effect.as(true),
    Effect.catchIf(isAbsent, () => Effect.succeed(false))
  )

// Release 0.2 removed an entry by renaming it to `<entry>.gone` in the home
// first: one that outlived a crash is litter.
const TOMBSTONE_SUFFIX = ".gone"

// Retried a few times: a staging directory must not outlive a failed attempt
// because of one transient error.
const removeStaging = (fs: FileSystem.FileSystem, staging: string) =>
  fs.remove(staging, { recursive: true }).pipe(
    Effect.catchIf(isNotFound, () => Effect.void),
    Effect.retry({ times: 3 }),
    Effect.catchAll((error) => Effect.logWarning(`PidLock: could not remove staging directory ${staging}`, error))
  )

// The counter of acquisitions in the lock home: a symbolic link whose target
// is the last generation handed out. Only the holder writes it, through a
// link of its own renamed over it, so that a crash leaves the old count or
// the new one, and a link of a crashed holder's is litter.
const GENERATION = "generation"
const GENERATION_PART = /^generation\.\d+\.[0-9a-f]+$/
const GENERATION_TEXT = /^(0|[1-9]\d{0,15})$/

const advanceGeneration = (
  { paths, posix }: Resolved,
  name: string
): Effect.Effect<number, PidLock.CorruptLock | PlatformError> => {
  const { counter } = paths
  const unreadable = (detail: string) => Effect.fail(corrupt(counter, "UnreadableRecord", detail))
  return posix.readLink(counter).pipe(
    Effect.flatMap((text) =>
      GENERATION_TEXT.test(text) && Number.isSafeInteger(Number(text) + 1)
        ? Effect.succeed(Number(text))
        : unreadable(`generation counter ${show(text)} is not a whole number below ${Number.MAX_SAFE_INTEGER}`)
    ),
    Effect.catchIf(isNotFound, () => Effect.succeed(0)),
    Effect.catchIf(isNotALink, () => unreadable("generation counter is not a symbolic link")),
    Effect.flatMap((last) => {
      const next = inDirectory(paths.home, `${GENERATION}.${name}`)
      return posix.symlink(String(last + 1), next).pipe(
        // A link that was not renamed is removed at once: a contender that
        // gives the lock back leaves nothing of its own in the home.
        Effect.zipRight(
          posix.rename(next, counter).pipe(
            Effect.tapError(() => Effect.ignore(posix.unlink(next)))
          )
        ),
        Effect.as(last + 1)
      )
    })
  )
}

// Gives back a lock just taken, tried again as a release is: an entry left
// by a transient error would be held by a live process that does not know it
// holds it, and refuse everyone else until that process exits.
const giveBack = (posix: Posix.Posix, entry: string) =>
  removeEntry(posix, entry).pipe(
    Effect.retry({ times: 2 }),
    Effect.catchAll((error) => Effect.logWarning(`PidLock: could not give back ${entry}`, error))
  )

const makeLock = (
  { fs, paths, posix }: Resolved,
  taken: Taken,
  loss: Loss,
  serving: Channel.Serving,
  watch: Option.Option<{
    readonly interval: Duration.Duration
    readonly runtime: Runtime.Runtime<never>
    readonly scope: Scope.Scope
  }>
): PidLock.FileLock => {
  // Made only when it happens: an error captures a stack trace, too dear to
  // pay on every acquisition.
  const compromised = () => new PidLock.LockCompromised({ location: paths.lock, owner: taken.owner })
  const { isHeld, release } = makeReleaser(
    // Messages are no longer served from the start of the release.
    Effect.zipRight(serving.stop, removeEntry(posix, taken.entry)).pipe(
      Effect.mapError(refineError),
      // Our entry gone already: someone else removed it, the lock was lost.
      Effect.flatMap((removed) => removed ? Effect.void : Effect.fail(compromised()))
    )
  )
  const verify = Effect.suspend(() =>
    !isHeld() ? Effect.void : fs.readLink(taken.entry).pipe(
      Effect.flatMap((text) => text === taken.text ? Effect.void : Effect.fail(compromised())),
      // The home or the lock directory replaced by a file is a loss too.
      Effect.catchIf(isAbsent, () => Effect.fail(compromised())),
      Effect.mapError((error) => error._tag === "LockCompromised" ? error : refineError(error)),
      // Our own release may have begun while we looked: what it removes is no loss.
      Effect.catchAll((error) => isHeld() ? Effect.fail(error) : Effect.void)
    )
  )
  const lock: PidLock.FileLock = {
    [TypeId]: TypeId,
    name: paths.name,
    location: paths.lock,
    generation: taken.generation,
    entry: taken.entry,
    owner: taken.owner,
    release,
    verify: loss.tell(verify),
    // The watchdog only ever tells `lost`: it starts when `lost` is first
    // awaited, in the lock's scope, after the release was registered there,
    // so that it is stopped before the release runs.
    lost: Option.isNone(watch) ? loss.lost : whenAwaited(
      () =>
        watchdog(
          paths.lock,
          verify,
          loss.deferred,
          watch.value.interval,
          (check) => withWatch(fs, paths.lock, check)
        ),
      watch.value.runtime,
      watch.value.scope,
      loss.lost
    ),
    // Made only when read.
    get messages() {
      return serving.messages
    }
  }
  return lock
}

// The next change in the directory at `path`. A watch that cannot be armed
// (the directory is gone, or no watches are left) never fires, so that the
// poll beside it paces the loop instead of a spin. A watch follows an inode,
// so each wait arms a new one.
// Node's watch throws (a defect, not a failure) when the directory vanishes
// while it is armed: that, too, is a watch that never fires.
const nextChange = (fs: FileSystem.FileSystem, path: string): Effect.Effect<void> =>
  Stream.runHead(fs.watch(path)).pipe(Effect.catchAllCause(() => Effect.never))

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

const POLL_FIRST = Duration.millis(10)
const POLL_MAX = Duration.seconds(1)

const isLockHeld = (error: unknown): error is PidLock.LockHeld => error instanceof PidLock.LockHeld

// The LockHeld an attempt failed with, if it did.
const heldBy = <A, E>(exit: Exit.Exit<A, E>): Option.Option<PidLock.LockHeld> =>
  exit._tag === "Failure"
    ? Option.filter(
      Cause.failureOption(exit.cause),
      (error): error is E & PidLock.LockHeld => isLockHeld(error)
    )
    : Option.none()

// A holder's death changes nothing on disk, but it hangs up the connections
// to its socket: a waiter keeps one open to its holder for the rounds of its
// wait, and tries again the moment it closes, or is refused (the holder died
// before it was made). Not twice in a row for one holder: the round after a
// wake waits for the poll and the next connects anew, so that a holder that
// hangs up at once (it listens, not serving yet) is not spun on. Never for a
// holder without a socket, nor for this process (whose own release the watch
// sees). A connection that cannot be kept (no socket file, a full queue, an
// error) wakes no one, and the next round tries a new one.
const makeHangUpWatch = (posix: Posix.Posix, home: string) => {
  let kept: { readonly token: string; readonly ended: Fiber.RuntimeFiber<boolean>; woke: boolean } | undefined
  const hangUp = Effect.suspend(() => {
    const connection = kept
    kept = undefined
    return connection === undefined ? Effect.void : Fiber.interrupt(connection.ended)
  })
  const connect = (token: string, socket: string) =>
    Effect.zipRight(
      hangUp,
      Effect.map(
        Effect.fork(
          posix.awaitHangUp(Path.join(home, socket)).pipe(
            Effect.map((outcome) => outcome === "HungUp" || outcome === "Refused"),
            Effect.orElseSucceed(() => false)
          )
        ),
        (ended) => (kept = { token, ended, woke: false })
      )
    )
  // What this round waits for, besides the watch and the poll.
  const wake = (held: PidLock.LockHeld): Effect.Effect<Effect.Effect<void>> =>
    Effect.gen(function*() {
      const { socket, token } = held.holder
      const sameHolder = kept !== undefined && kept.token === token ? kept : undefined
      if (held.heldByThisProcess || socket === undefined || sameHolder?.woke) {
        yield* hangUp
        return Effect.never
      }
      const connection = sameHolder ?? (yield* connect(token, socket))
      return Effect.flatMap(Fiber.join(connection.ended), (holderGone) =>
        holderGone
          ? Effect.sync(() => {
            connection.woke = true
          })
          : Effect.zipRight(
            Effect.sync(() => {
              if (kept === connection) kept = undefined
            }),
            Effect.never
          ))
    })
  return { wake, hangUp }
}

// Tries again while the lock is held: on every change in the lock directory,
// when the holder's socket hangs up (its process died), and on a poll whose
// interval doubles up to a second, since watches miss events on some file
// systems and a holder without a socket dies without a sign. Only the
// attempts are uninterruptible, never the waiting between them.
const retryWhileHeld = <A, E, R>(
  attempt: Effect.Effect<A, E, R>,
  { fs, paths, posix }: Resolved,
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
    // Tried once without a watch: only a held lock pays for one. The loop's
    // first attempt then runs under its watch, so no change is missed.
    const first = yield* Effect.exit(attempt)
    if (Option.isNone(heldBy(first)) || deadline <= (yield* Clock.currentTimeMillis)) return yield* first
    const holderDeath = makeHangUpWatch(posix, paths.home)
    const round = (poll: Duration.Duration) =>
      withWatch(fs, paths.lock, (change) =>
        Effect.gen(function*() {
          const result = yield* Effect.exit(attempt)
          const held = heldBy(result)
          const remaining = deadline - (yield* Clock.currentTimeMillis)
          if (Option.isNone(held) || remaining <= 0) return Option.some(result)
          yield* Effect.raceAll([
            change,
            yield* holderDeath.wake(held.value),
            Effect.sleep(Duration.min(poll, Duration.millis(remaining)))
          ])
          return Option.none()
        }))
    const rounds = Effect.gen(function*() {
      for (let poll = POLL_FIRST;; poll = Duration.min(Duration.times(poll, 2), POLL_MAX)) {
        const outcome = yield* round(poll)
        if (Option.isSome(outcome)) return yield* outcome.value
      }
    })
    return yield* Effect.ensuring(rounds, holderDeath.hangUp)
  })
}

const services: Effect.Effect<Services, never, FileSystem.FileSystem | ProcessInfo.ProcessInfo | Posix.Posix> = Effect
  .contextWith((context) => ({
    fs: Context.get(context, FileSystem.FileSystem),
    info: Context.get(context, processInfoTag),
    posix: Context.get(context, posixTag)
  }))

// Every option is checked before anything is read or touched, in the order
// below; the first that is invalid is the error.
const checkOptions = (input: unknown) =>
  Either.flatMap(validateObject(input), (options) =>
    Either.all({
      name: validateName(options.name),
      dir: validateDir(options.dir),
      onStale: validateOnStale(options.onStale),
      wait: validateWait(options.wait),
      checkInterval: validateCheckInterval(options.checkInterval),
      onMessage: Channel.validateOnMessage(options.onMessage)
    }))

// A plain chain, not a generator: it runs on every acquisition.
const resolve = (input: unknown) =>
  Effect.flatMap(Effect.zip(checkOptions(input), services), ([options, found]) => {
    const resolved = (dir: string, perUser: boolean) => ({
      resolved: { fs: found.fs, info: found.info, posix: found.posix, paths: pathsOf(options.name, dir, perUser) },
      options
    })
    return options.dir !== undefined
      ? Effect.succeed(resolved(options.dir, false))
      : Effect.flatMap(dirFromEnvironment, (given) =>
        given !== undefined
          ? Effect.succeed(resolved(given, false))
          : Effect.map(Effect.mapError(defaultDir(found.posix, found.info), refineError), (dir) => resolved(dir, true)))
  })

/** @internal */
export const acquire = Effect.fn("PidLock.acquire")(function*(options: PidLock.Options) {
  const { options: { checkInterval, onMessage, onStale, wait }, resolved } = yield* resolve(options)
  const loss = makeLoss()
  // The acquiring fiber's: the watchdog and the answers to messages run in it.
  const runtime = yield* Effect.runtime<never>()
  const serving = Channel.serveMessages(resolved.posix, resolved.paths.home, onMessage, runtime)
  const scope = yield* Effect.scope
  const watch = checkInterval === false ? Option.none() : Option.some({ interval: checkInterval, runtime, scope })
  const attempt = Effect.uninterruptible(Effect.flatMap(take(resolved, onStale), (taken) => {
    const lock = makeLock(resolved, taken, loss, serving, watch)
    return Effect.as(Scope.addFinalizer(scope, releaseInFinalizer(loss)(lock)), lock)
  }))
  const lock = yield* wait === undefined
    ? attempt
    : retryWhileHeld(attempt, resolved, wait)
  // Served once the lock is ours, until its release begins.
  yield* serving.start
  return lock
})

/** @internal */
export const layer = (options: PidLock.Options) => Layer.scoped(tag, acquire(options))

/** @internal */
export const layerConfig = (config: Config.Config.Wrap<PidLock.Options>) =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))

type Requirements = FileSystem.FileSystem | ProcessInfo.ProcessInfo | Posix.Posix

/** @internal */
export const withLock = dual<
  (options: PidLock.Options) => <A, E, R>(
    self: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | PidLock.PidLockError | PlatformError, Exclude<R, Scope.Scope> | Requirements>,
  <A, E, R>(
    self: Effect.Effect<A, E, R>,
    options: PidLock.Options
  ) => Effect.Effect<A, E | PidLock.PidLockError | PlatformError, Exclude<R, Scope.Scope> | Requirements>
>(2, (self, options) => withLockOf(acquire(options), self))

// The lock's holder, read without making its home: `None` when the home or
// the lock is missing, or the lock is free.
const readHolderOf = (resolved: Resolved) =>
  ensureHome(resolved, resolved.paths, false).pipe(
    Effect.flatMap(({ home }) =>
      home === "missing"
        ? Effect.succeedNone
        : Effect.zipRight(
          checkLockDirectory(resolved, resolved.paths.lock),
          readHolder(resolved.fs, resolved.paths.lock)
        )
    ),
    Effect.mapError((error) => isPlatformError(error) ? refineError(error) : error)
  )

/** @internal */
export const inspect = Effect.fn("PidLock.inspect")(function*(
  options: { readonly name: string; readonly dir?: string | undefined }
) {
  const { resolved } = yield* resolve({ name: options?.name, dir: options?.dir })
  const { info, paths } = resolved
  const holder = yield* readHolderOf(resolved)
  if (Option.isNone(holder)) return Option.none<PidLock.Status>()
  const { record } = holder.value
  const verdict = yield* Effect.mapError(judgeHolder(resolved, record), refineError)
  return Option.some<PidLock.Status>({
    location: paths.lock,
    holder: record,
    verdict,
    heldByThisProcess: isSameProcess(record, info.self)
  })
})

/** @internal */
export const send = Effect.fn("PidLock.send")(function*(options: PidLock.SendOptions) {
  const { resolved } = yield* resolve({ name: options?.name, dir: options?.dir })
  const timeout = yield* Channel.validateTimeout(options.timeout)
  const { info, paths, posix } = resolved
  const location = paths.lock
  const found = yield* readHolderOf(resolved)
  if (Option.isNone(found)) return yield* new PidLock.NoHolder({ location, reason: "Free" })
  const holder = found.value.record
  const notServed = (detail: string) => new PidLock.Refused({ location, holder, reason: "NotServed", detail })
  if (holder.socket === undefined) {
    return yield* notServed("its lock names no socket (a holder of release 0.1, or one that could make none)")
  }
  const socket = Path.join(paths.home, holder.socket)
  // The holder's process itself, as /proc sees it: a socket that answers for
  // a holder that is gone lives on in a process that inherited it (the
  // command of `run`), which accepts nothing: told at once, rather than
  // after the whole timeout.
  const seen = yield* Effect.mapError(info.judge(holder), refineError)
  if (seen._tag === "Foreign" && seen.scope !== "namespace") return yield* notServed("it runs on another host")
  if (seen._tag === "Stale") {
    const probe = yield* Effect.mapError(posix.probe(socket), refineError)
    return yield* probe === "Listening"
      ? notServed(`its process is gone; a process that inherited its socket holds the lock and reads no messages`)
      : new PidLock.NoHolder({ location, reason: "Gone" })
  }
  const request = Channel.encodeRequest({
    v: 1,
    argv: info.self.cmdline,
    cwd: process.cwd(),
    pid: info.self.pid,
    data: options.data ?? null
  })
  if (Either.isLeft(request)) {
    return yield* request.left === "NotJson"
      ? new PidLock.InvalidOptions({ option: "data", value: options.data, reason: "is not a value JSON can hold" })
      : new PidLock.MessageTooLarge({ size: request.left, limit: MAX_FRAME_BYTES })
  }
  const answer = yield* posix.request(socket, request.right, timeout).pipe(
    Effect.catchAll((error): Effect.Effect<never, PidLock.SendError | PidLock.PermissionDenied | PlatformError> => {
      const code = errnoOf(error)
      if (code === "ENOENT" || code === "ECONNREFUSED") {
        return Effect.fail(new PidLock.NoHolder({ location, reason: "Gone" }))
      }
      if (error._tag === "SystemError" && error.reason === "TimedOut") {
        return Effect.fail(new PidLock.Timeout({ location, holder, timeout }))
      }
      if (Channel.isHungUp(error)) {
        // Hung up: the holder released the lock or died as it read (then its
        // socket refuses now), or it holds the socket and serves nothing in
        // this lock home.
        return Effect.flatMap(
          Effect.all([
            // Unreadable now: judged by its socket alone.
            Effect.orElseSucceed(readHolder(resolved.fs, paths.lock), () => found),
            Effect.mapError(posix.probe(socket), refineError)
          ]),
          ([now, probe]) =>
            Effect.fail(
              Option.isNone(now) || now.value.record.token !== holder.token
                ? new PidLock.NoHolder({ location, reason: "Free" })
                : probe === "Listening"
                ? notServed("it hung up without a reply (it reads no messages, or the message was malformed)")
                : new PidLock.NoHolder({ location, reason: "Gone" })
            )
        )
      }
      return Effect.fail(refineError(error))
    })
  )
  const reply = Channel.decodeReply(answer)
  if (Option.isNone(reply)) return yield* notServed("its reply is not one this package sends")
  if (reply.value.ok) return reply.value.data
  return yield* new PidLock.Refused({ location, holder, reason: reply.value.reason, detail: reply.value.detail })
})

/** @internal */
export const breakLock = Effect.fn("PidLock.breakLock")(function*(status: PidLock.Status) {
  const posix = yield* posixTag
  return yield* removeEntry(posix, Path.join(status.location, entryName(status.holder))).pipe(
    Effect.mapError(refineError)
  )
})
