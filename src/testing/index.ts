/**
 * A test kit: an in-memory `FileSystem` with the POSIX semantics the lock
 * relies on, fault injection on every call, a fake process table served
 * under `/proc`, and the `Posix` service (`lstat`, Unix sockets) of each fake
 * process, so that `ProcessInfo.makeLinux` and the lock run unchanged on it.
 *
 * The memory file system answers as the Node layer of `@effect/platform-node`
 * does on Linux, down to the error: the same `SystemError` `reason`, `method`,
 * `syscall` and `pathOrDescriptor`, and in `cause` an `Error` with the same
 * `code`, `errno`, `syscall`, `path` and `dest`. Where the two differ, the
 * difference is documented on {@link makeFileSystem}.
 *
 * Several fake processes, each with its own `ProcessInfo` and `Posix`, can
 * contend on one memory file system:
 *
 * ```ts
 * const processes = yield* Testing.makeProcessTable()
 * const memory = yield* Testing.makeFileSystem({ processes })
 * const a = yield* processes.spawn()
 * const b = yield* processes.spawn()
 * const asA = Effect.provide(Testing.layerProcessInfo(a.pid).pipe(Layer.provideMerge(memory.layer)))
 * const asB = Effect.provide(Testing.layerProcessInfo(b.pid).pipe(Layer.provideMerge(memory.layer)))
 * ```
 *
 * @since 0.1.0
 */
import type { PlatformError, SystemError } from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Posix from "../Posix.js"
import type * as ProcessInfo from "../ProcessInfo.js"
import type * as SystemCommand from "../SystemCommand.js"
import * as internal from "./memoryFileSystem.js"
import * as internalProcessTable from "./processTable.js"

// -----------------------------------------------------------------------------
// errors
// -----------------------------------------------------------------------------

/**
 * The error codes the memory file system and its fault hooks produce, with
 * Linux's numbers (negated, as Node reports them in `errno`).
 *
 * @since 0.1.0
 * @category errors
 */
export type Errno =
  | "EPERM"
  | "ENOENT"
  | "ESRCH"
  | "EINTR"
  | "EIO"
  | "ENXIO"
  | "EBADF"
  | "EAGAIN"
  | "ENOMEM"
  | "EACCES"
  | "EBUSY"
  | "EEXIST"
  | "EXDEV"
  | "ENOTDIR"
  | "EISDIR"
  | "EINVAL"
  | "ENFILE"
  | "EMFILE"
  | "EFBIG"
  | "ENOSPC"
  | "EROFS"
  | "EMLINK"
  | "ENAMETOOLONG"
  | "ENOTEMPTY"
  | "ELOOP"
  | "EMSGSIZE"
  | "EADDRINUSE"
  | "ECONNRESET"
  | "ETIMEDOUT"
  | "ECONNREFUSED"
  | "ECANCELED"

/**
 * The error the Node layer would report for `method` failing with `errno` on
 * `path`: `reason` mapped as the Node layer maps it (`ENOENT` → `NotFound`,
 * `EACCES` → `PermissionDenied`, `EEXIST` → `AlreadyExists`,
 * `EISDIR`/`ENOTDIR`/`ELOOP` → `BadResource`, `EBUSY` → `Busy`, anything else
 * `Unknown`), and `cause` an `Error` with `code`, `errno`, `syscall`, `path`
 * (and `dest` when given).
 *
 * `method` is the `FileSystem` method (`"utimes"` is reported as `"utime"`, as
 * the Node layer names it), or the `Posix` one (`lstat`, `listen`, `probe`);
 * `syscall` defaults to the system call Node names for that method and code
 * (`connect` for `probe`). As in Node, `path` is the method's first argument:
 * for `symlink` that is the link's target text, and the link is `dest`. For
 * `listen` and `probe`, `cause` is shaped as `node:net`'s error instead
 * (`listen EADDRINUSE: address already in use <path>`, `connect EACCES
 * <path>`), with `address` for the path.
 *
 * @since 0.1.0
 * @category errors
 */
export const systemError: (
  method: string,
  path: string,
  errno: Errno,
  options?: { readonly syscall?: string | undefined; readonly dest?: string | undefined }
) => SystemError = internal.systemError

// -----------------------------------------------------------------------------
// fault hooks
// -----------------------------------------------------------------------------

/**
 * One call on a memory file system, as its {@link Hook} sees it.
 *
 * - `index`: 1-based count of the calls made on this file system so far,
 *   this one included. Derived methods count as the call they make: `exists`
 *   is `access`, `readFileString` is `readFile`, `writeFileString` is
 *   `writeFile`, `stream` and `sink` are `open`. `remove` is two calls (see
 *   `syscall`). `makeTempDirectoryScoped` and `makeTempFileScoped` remove the
 *   created directory when their scope closes: two more calls, as `remove`'s.
 *   Operations on an open file are not calls.
 * - `method`: the `FileSystem` method, or the method of a `Posix` service
 *   made by {@link makePosix}: `lstat`, `listen` (once it listens in a
 *   directory, a call for that directory returns its listener and makes no
 *   call), `probe`, `awaitHangUp` and `kill` (`processExists`); or
 *   `command`, a run of a
 *   {@link makeSystemCommand}.
 * - `path`: the path the call acts on; for `symlink`, the link it creates;
 *   for `listen`, the socket it creates; for `kill`, the PID; for `command`,
 *   the command and its arguments, joined by spaces.
 * - `target`: the other argument of `rename`, `copy`, `copyFile` and `link`
 *   (the destination), or of `symlink` (the target text).
 * - `syscall`: for a call that is one step of a method, the step. Node's
 *   `fs.rm` (`remove`, and the clean-up of the scoped temporary directories)
 *   is an `lstat`, then the removal: `"lstat"`, then `"unlink"` (what that
 *   lstat found was not a directory) or `"rmdir"` (a directory, with all
 *   below it). The entry can change between the two; one found gone at the
 *   second counts as removed. A missing path (with `force`) or a directory
 *   without `recursive` ends at the first.
 *
 * The paths are as the caller passed them.
 *
 * @since 0.1.0
 * @category hooks
 */
export interface FileSystemCall {
  readonly index: number
  readonly method: string
  readonly path: string
  readonly target?: string
  /** @since 0.2.0 */
  readonly syscall?: string
}

/**
 * Runs before every call on a memory file system. If it fails, the call fails
 * with that error and changes nothing (a failed second step of `remove`
 * leaves what its first did: nothing); if it suspends, the call waits. Once
 * it succeeds, the call takes effect at once and atomically, so a hook can
 * schedule calls deterministically.
 *
 * @since 0.1.0
 * @category hooks
 */
export type Hook = (call: FileSystemCall) => Effect.Effect<void, PlatformError>

/**
 * The hook that lets every call through.
 *
 * @since 0.1.0
 * @category hooks
 */
export const noFaults: Hook = internal.noFaults

/**
 * Fail the call with the given {@link FileSystemCall.index} (the n-th call on
 * the file system, counted from its creation) with the error the Node layer
 * would report for `errno` there (in its {@link FileSystemCall.syscall} when
 * it has one).
 *
 * @since 0.1.0
 * @category hooks
 */
export const failCall: (index: number, errno: Errno) => Hook = internal.failCall

/**
 * Fail the calls whose `path` matches (a string matches exactly) and, if
 * given, whose `method` is `method`: the first `times` of them, or all of them
 * when `times` is not given. The count is kept by the hook, so make a new one
 * for each file system.
 *
 * @since 0.1.0
 * @category hooks
 */
export const failMatching: (options: {
  readonly method?: string | undefined
  readonly path: string | RegExp
  readonly errno: Errno
  readonly times?: number | undefined
}) => Hook = internal.failMatching

/**
 * Run hooks in order; the first to fail fails the call.
 *
 * @since 0.1.0
 * @category hooks
 */
export const combineHooks: (...hooks: ReadonlyArray<Hook>) => Hook = internal.combineHooks

// -----------------------------------------------------------------------------
// memory file system
// -----------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category type ids
 */
export const MemoryFileSystemTypeId: unique symbol = internal.TypeId

/**
 * @since 0.1.0
 * @category type ids
 */
export type MemoryFileSystemTypeId = typeof MemoryFileSystemTypeId

/**
 * A memory file system and the controls a test needs around it.
 *
 * @since 0.1.0
 * @category models
 */
export interface MemoryFileSystem {
  readonly [MemoryFileSystemTypeId]: MemoryFileSystemTypeId
  /** The file system, acting as the user `uid`/`gid`. */
  readonly fileSystem: FileSystem.FileSystem
  /** Provides `fileSystem` and this handle. */
  readonly layer: Layer.Layer<FileSystem.FileSystem | MemoryFileSystem>
  readonly uid: number
  readonly gid: number
  /** The same tree, hook and call count, acting as another user. */
  readonly asUser: (user: { readonly uid: number; readonly gid: number }) => FileSystem.FileSystem
  /** How many calls were made so far: the index the last call got. */
  readonly calls: Effect.Effect<number>
  /** Replace the hook; takes effect from the next call. */
  readonly setHook: (hook: Hook) => Effect.Effect<void>
  /**
   * Create a FIFO (`mkfifo`), for tests that need one where a directory is
   * expected. Not a `FileSystem` call: the hook does not see it.
   */
  readonly makeFifo: (path: string, mode?: number) => Effect.Effect<void, PlatformError>
}

/**
 * @since 0.1.0
 * @category tags
 */
export const MemoryFileSystem: Context.Tag<MemoryFileSystem, MemoryFileSystem> = internal.tag

/**
 * @since 0.1.0
 * @category models
 */
export interface MemoryFileSystemOptions {
  /** Served under `/proc` when given. */
  readonly processes?: ProcessTable | undefined
  /** Defaults to {@link noFaults}. */
  readonly hook?: Hook | undefined
  /** The user the file system acts as; 1000 by default. `0` is root: permission checks pass. */
  readonly uid?: number | undefined
  /** 1000 by default. */
  readonly gid?: number | undefined
  /** Applied to the mode of created files and directories; `0o022` by default. */
  readonly umask?: number | undefined
}

/**
 * Make an empty memory file system: `/` and `/tmp` (mode `1777`, owned by
 * root), and `/proc` and `/etc` when a process table is given.
 *
 * Semantics are Linux's (paths resolve against `/`; symbolic links are
 * followed in every component but the last, which each method follows or not
 * as Node does; 40 links at most; permission bits, the sticky bit and root are
 * honoured; a Unix socket's file, made by {@link makePosix}'s `listen`, is an
 * entry of type `"Socket"` that cannot be opened, `ENXIO`), with these
 * differences from the Node layer:
 *
 * - Every call is atomic. `remove` is two calls, as Node's `fs.rm` is an
 *   `lstat`, then an `unlink` or an `rmdir` (see
 *   {@link FileSystemCall.syscall}): the second holds the rest of Node's
 *   sequence (its own `lstat`, and the children of a directory). Its
 *   failures are those of Node's sequence.
 * - Times are wall-clock `Date.now()`, not the Effect `Clock`.
 * - `readDirectory` returns names sorted; with `recursive` it does not descend
 *   into symbolic links (Node 20 does).
 * - `watch` reports `Create` when a name appears and `Remove` when it goes
 *   (the Node layer re-`stat`s the bare name against the working directory,
 *   so it reports nearly everything as `Remove`); `Update` for content and
 *   attribute changes; one event per change. As with inotify, a watch follows
 *   its inode: it reports `Remove` with the watched name when that inode is
 *   removed, renamed or replaced, and nothing afterwards.
 * - Reading, writing or opening a FIFO fails with `BadArgument` (Node would
 *   block until a peer opens it), and so does `copy`, which is not
 *   implemented.
 * - Under `/proc` and `/etc` (which holds `machine-id` alone) every change
 *   fails `EACCES`, root's too, and `rename` across the mount `EXDEV`;
 *   `/proc/<pid>/ns/pid` can be read with `readLink` but not followed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeFileSystem: (options?: MemoryFileSystemOptions) => Effect.Effect<MemoryFileSystem> = internal.make

/**
 * A fresh memory file system, and its {@link MemoryFileSystem} handle.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFileSystem: (
  options?: MemoryFileSystemOptions
) => Layer.Layer<FileSystem.FileSystem | MemoryFileSystem> = internal.layer

// -----------------------------------------------------------------------------
// process table
// -----------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category type ids
 */
export const ProcessTableTypeId: unique symbol = internalProcessTable.TypeId

/**
 * @since 0.1.0
 * @category type ids
 */
export type ProcessTableTypeId = typeof ProcessTableTypeId

/**
 * A process in a {@link ProcessTable}, as it was when read.
 *
 * @since 0.1.0
 * @category models
 */
export interface FakeProcess {
  readonly pid: number
  /** Field 22 of `/proc/<pid>/stat`, as `ProcessInfo.Identity` has it. */
  readonly startTime: string
  /** Field 2 of `/proc/<pid>/stat`: at most 15 characters. */
  readonly comm: string
  readonly cmdline: ReadonlyArray<string>
  /** `S` running (sleeping), `Z` exited and not reaped. */
  readonly state: "S" | "Z"
}

/**
 * @since 0.1.0
 * @category models
 */
export interface SpawnOptions {
  /** Defaults to the next free PID above the last one handed out. */
  readonly pid?: number | undefined
  /** Defaults to `["node", "main.js"]`. */
  readonly cmdline?: ReadonlyArray<string> | undefined
  /** Defaults to the base name of `cmdline[0]`; cut to 15 characters as the kernel does. */
  readonly comm?: string | undefined
}

/**
 * A fake process table, served by a memory file system under `/proc`:
 * `/proc/<pid>/stat`, `/proc/<pid>/cmdline`, `/proc/<pid>/ns/pid`,
 * `/proc/self/ns/pid`, `/proc/sys/kernel/random/boot_id` and
 * `/proc/sys/kernel/hostname`, in the kernel's formats; and `/etc/machine-id`
 * (owned by root, mode `0444`, the id and a newline, as systemd writes it).
 * Every process is in one pid namespace; `self` has no PID.
 *
 * Using a PID that is not in the table, or exiting twice, dies: it is a
 * mistake in the test.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProcessTable {
  readonly [ProcessTableTypeId]: ProcessTableTypeId
  /** Start a process; its start time is later than that of every process started before in this boot. */
  readonly spawn: (options?: SpawnOptions) => Effect.Effect<FakeProcess>
  /** End a process: it is gone, or with `zombie` it stays in state `Z` until {@link ProcessTable.reap}. */
  readonly exit: (pid: number, options?: { readonly zombie?: boolean | undefined }) => Effect.Effect<void>
  /** Remove a zombie. */
  readonly reap: (pid: number) => Effect.Effect<void>
  /** Set `process.title` as Node does on Linux: the command line becomes `[title]`, the command name its first 15 characters. */
  readonly setTitle: (pid: number, title: string) => Effect.Effect<void>
  /**
   * From now on, opening `/proc/<pid>/stat` fails `EPERM`, as another user's
   * does under `hidepid=1` (`/proc/<pid>` itself stays visible).
   */
  readonly denyRead: (pid: number) => Effect.Effect<void>
  /** The next read of `/proc/<pid>/stat` fails `ESRCH` and the process is gone: it exited between open and read. */
  readonly vanishOnNextRead: (pid: number) => Effect.Effect<void>
  /**
   * A new boot id; every process is gone (no socket has a listener any more);
   * PIDs and start times start over, so both can repeat. The machine id
   * stays: it is per installation.
   */
  readonly reboot: Effect.Effect<void>
  readonly setHostname: (hostname: string) => Effect.Effect<void>
  /** The link text of `/proc/self/ns/pid`, e.g. `pid:[4026532000]`. */
  readonly setPidNamespace: (pidNamespace: string) => Effect.Effect<void>
  /**
   * The contents of `/etc/machine-id`, without its newline, served as given
   * (a malformed one too); `undefined`: there is no such file (`ENOENT`), as
   * in many container images.
   *
   * @since 0.2.0
   */
  readonly setMachineId: (machineId: string | undefined) => Effect.Effect<void>
  readonly get: (pid: number) => Effect.Effect<Option.Option<FakeProcess>>
  /** In the table and not a zombie. */
  readonly isAlive: (pid: number) => Effect.Effect<boolean>
  /** Every process, zombies included, by PID. */
  readonly list: Effect.Effect<ReadonlyArray<FakeProcess>>
}

/**
 * @since 0.1.0
 * @category tags
 */
export const ProcessTable: Context.Tag<ProcessTable, ProcessTable> = internalProcessTable.tag

/**
 * @since 0.1.0
 * @category models
 */
export interface ProcessTableOptions {
  /** `memory` by default. */
  readonly hostname?: string | undefined
  /** `pid:[4026531836]` (the initial namespace) by default. */
  readonly pidNamespace?: string | undefined
  /** The PID handed out first in every boot; 100 by default. */
  readonly firstPid?: number | undefined
  /**
   * `/etc/machine-id` without its newline; by default a fixed value of 32
   * lowercase hex digits, the same for every table (see
   * {@link ProcessTable.setMachineId} to remove the file).
   *
   * @since 0.2.0
   */
  readonly machineId?: string | undefined
}

/**
 * An empty process table.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeProcessTable: (options?: ProcessTableOptions) => Effect.Effect<ProcessTable> =
  internalProcessTable.make

// -----------------------------------------------------------------------------
// ProcessInfo
// -----------------------------------------------------------------------------

/**
 * The Linux `ProcessInfo` of a fake process: `ProcessInfo.makeLinux` reading
 * `/proc` through the `FileSystem` in context. `uid` defaults to the user that
 * file system acts as, when it is a memory file system.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeProcessInfo: (
  pid: number,
  options?: { readonly uid?: number | undefined }
) => Effect.Effect<ProcessInfo.ProcessInfo, PlatformError, FileSystem.FileSystem> = internal.makeProcessInfo

/**
 * The `Posix` service of fake process `pid` (which must be in the process
 * table), on the memory file system behind the `FileSystem` in context,
 * acting as that file system's user. Dies when that `FileSystem` is not a
 * memory one, or has no process table.
 *
 * Each call goes through the file system's {@link Hook} like a `FileSystem`
 * call (methods `lstat`, `unlink`, `listen`, `probe`, `awaitHangUp`, and the file system's
 * own for the rest), with the Node layer's errors:
 *
 * - `lstat` as the Node `lstat`.
 * - `makeDirectory`, `symlink`, `rename` and `readLink` are the memory file
 *   system's own calls, recorded under those methods.
 * - `unlink(path)` removes the entry as `unlink(2)` does (method `unlink`):
 *   `ENOENT` when nothing is there, `EISDIR` for a directory.
 * - `listen(directory)` creates the socket file `socketPath(directory)`
 *   (`<directory>/<pid>.<token>.sock`, one random token per service), owned
 *   by the user, mode `0777` less the umask, once per directory: later calls
 *   return the same listener (`descriptor` is `None`), without a call. It
 *   fails as Node's `listen` does: `EADDRINUSE` when the name exists (a
 *   dangling symbolic link too), `EACCES` when the directory is missing (as
 *   libuv reports bind's `ENOENT`) or not writable, `ENOTDIR`.
 * - `processExists(pid)` is `kill(pid, 0)` on the process table (method
 *   `kill`, the PID as the path): `true` for a process, a zombie too.
 * - `probe(path)` connects as `connect(2)` does: a final symbolic link is
 *   followed; nothing there is `Missing`; the file must be writable
 *   (`EACCES`); a socket answers `Listening` while the process that listened
 *   on it runs (the kernel finds it by the inode: renamed, or linked
 *   elsewhere, it still answers; from every pid namespace), and `Refused`
 *   once that process exited, as a zombie too (its descriptors are closed),
 *   or when the path is not a socket.
 * - `awaitHangUp(path)` connects as `probe` does (`Missing`, `Refused`, the
 *   same errors) and keeps the connection: it ends (`HungUp`) when the
 *   process that listened exits (a zombie too, or on a reboot), or at once
 *   when that process serves nothing.
 *
 * A socket file stays when its process ends, as after `SIGKILL`; there is no
 * scope to close it by.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makePosix: (pid: number) => Effect.Effect<Posix.Posix, never, FileSystem.FileSystem> = internal.makePosix

/**
 * {@link makeProcessInfo} and {@link makePosix} as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerProcessInfo: (
  pid: number,
  options?: { readonly uid?: number | undefined }
) => Layer.Layer<ProcessInfo.ProcessInfo | Posix.Posix, PlatformError, FileSystem.FileSystem> =
  internal.layerProcessInfo

// -----------------------------------------------------------------------------
// ps and sysctl
// -----------------------------------------------------------------------------

/**
 * The system whose `ps` and `sysctl` a fake {@link makeSystemCommand}
 * imitates: procps and Linux's `sysctl`, macOS's or FreeBSD's.
 *
 * @since 0.2.0
 * @category models
 */
export type FakePlatform = "linux" | "darwin" | "freebsd"

/**
 * A `SystemCommand` that answers `ps` and `sysctl` from the process table of
 * the memory file system behind the `FileSystem` in context, in the output
 * formats of `platform` (`linux` by default), as the portable `ProcessInfo`
 * asks them:
 *
 * - `ps -o NAME= … -p PID` with the columns `stat` (`Ss`, or `Z` for a
 *   zombie), `pidns` (Linux: the number in the table's pid namespace),
 *   `jid` (FreeBSD: `0`), `lstart` (in the C locale and UTC) and `args`;
 *   exit code 1 and no output when there is no such process. A process
 *   started `startTime` seconds after its boot (a clock tick of the table is
 *   one second here), and the first boot at 2026-01-01T00:00:00Z; every
 *   reboot a day later.
 * - `sysctl -n NAME…`: `kernel.random.boot_id` and `kernel.hostname` on
 *   Linux; `kern.boottime` (`{ sec = N, usec = 0 } <date>`), `kern.hostname`
 *   and the machine id as `kern.uuid` (macOS) or `kern.hostuuid` (FreeBSD);
 *   each value on a line; an unknown name told on stderr, exit code 1.
 * - Any other command fails as one that is not installed (`NotFound`).
 *
 * Each run goes through the file system's {@link Hook} as a call (method
 * `command`), and answers from the table as it is once the hook lets it go.
 *
 * Dies when that `FileSystem` is not a memory one with a process table.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeSystemCommand: (
  options?: { readonly platform?: FakePlatform | undefined }
) => Effect.Effect<SystemCommand.SystemCommand, never, FileSystem.FileSystem> = internal.makeSystemCommand

/**
 * The portable `ProcessInfo` (`ProcessInfo.makePortable`) of fake process
 * `pid`, asking {@link makeSystemCommand}'s `ps` and `sysctl` of `platform`
 * (`linux` by default) and `kill(pid, 0)` of its {@link makePosix}, with that
 * `Posix`: as {@link layerProcessInfo}, without `/proc`.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerPortableProcessInfo: (
  pid: number,
  options?: { readonly platform?: FakePlatform | undefined; readonly uid?: number | undefined }
) => Layer.Layer<ProcessInfo.ProcessInfo | Posix.Posix, PlatformError, FileSystem.FileSystem> =
  internal.layerPortableProcessInfo

/**
 * One fake process on a fresh memory file system with a fresh process table:
 * its `ProcessInfo` and `Posix`, the file system, and the handles to both.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import * as PidLock from "effect-pidlock/PidLock"
 * import * as Testing from "effect-pidlock/testing"
 *
 * // A second acquisition of a held name is refused, on a file system that lives in memory.
 * const secondInstance = Effect.scoped(Effect.gen(function*() {
 *   yield* PidLock.acquire({ name: "job", dir: "/tmp" })
 *   return yield* Effect.flip(PidLock.acquire({ name: "job", dir: "/tmp" }))
 * }))
 *
 * // Another fake process takes the lock and dies holding it: the lock is taken over at once.
 * const takeover = Effect.scoped(Effect.gen(function*() {
 *   const table = yield* Testing.ProcessTable
 *   const holder = yield* table.spawn()
 *   yield* PidLock.acquire({ name: "job", dir: "/tmp" }).pipe(Effect.provide(Testing.layerProcessInfo(holder.pid)))
 *   yield* table.exit(holder.pid)
 *   return yield* PidLock.acquire({ name: "job", dir: "/tmp" })
 * }))
 *
 * Effect.runPromise(secondInstance.pipe(Effect.provide(Testing.layer()))).then((error) => {
 *   assert.strictEqual(error._tag, "LockHeld")
 * })
 * Effect.runPromise(takeover.pipe(Effect.provide(Testing.layer()))).then((lock) => {
 *   assert.strictEqual(lock.generation, 2)
 * })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: (
  options?: Omit<MemoryFileSystemOptions, "processes"> & {
    readonly spawn?: SpawnOptions | undefined
    readonly processTable?: ProcessTableOptions | undefined
  }
) => Layer.Layer<
  FileSystem.FileSystem | MemoryFileSystem | ProcessTable | ProcessInfo.ProcessInfo | Posix.Posix,
  PlatformError
> = internal.layerProcess
