/**
 * What the lock needs from the operating system that the platform
 * `FileSystem` does not offer: `lstat` (the entry itself, a symbolic link not
 * followed, in one call), an exact `unlink`, the calls of the lock's
 * uncontended cycle made synchronously, and the holder's Unix socket, a
 * proof of life that crosses pid namespaces.
 *
 * The cycle's calls (`makeDirectory`, `symlink`, `rename`, `readLink`,
 * `unlink`) each change or read one directory entry. The Node layer makes
 * them synchronously: on a local file system such a call takes a few
 * microseconds, where handing it to libuv's thread pool and back costs some
 * 45 µs (BENCHMARKS.md), so a cycle of seven calls is several times faster.
 * The price is that the event loop waits for each call: on a network file
 * system, that is a round trip to the server. Keep lock homes on a local
 * disk or a tmpfs (the per-user default is one); across hosts, use `PgLock`.
 *
 * A holder listens on a socket in the lock home, made once per process and
 * directory and kept while the process lives. A contender
 * that cannot see the holder in `/proc` (another pid namespace, or a `run`
 * wrapper that was killed while its command still runs) connects: the kernel
 * queues the connection while any process still has the listening socket
 * open, and refuses it at once when none has.
 *
 * The same socket carries messages to the holder ({@link Posix.serve},
 * {@link Posix.request}): one frame each way per connection, a 4-byte
 * big-endian length and then that many bytes, at most
 * {@link MAX_FRAME_BYTES}. A connection that sends nothing is kept open
 * while the listener serves ({@link Posix.awaitHangUp}: a waiter learns of
 * the holder's death when it closes); a frame that is too long, cut short or
 * late is dropped, and the listener goes on.
 *
 * The Node implementation is provided by `ProcessInfo.layer`; the in-memory
 * one by `effect-pidlock/testing`, with the same errors as the Node layer.
 *
 * @since 0.2.0
 */
import type { PlatformError } from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/posix.js"

/**
 * @since 0.2.0
 * @category type ids
 */
export const TypeId: unique symbol = internal.TypeId

/**
 * @since 0.2.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * A socket this process listens on, kept until the service's scope closes.
 *
 * @since 0.2.0
 * @category models
 */
export interface Listener {
  /** The socket's path: `<directory>/<pid>.<token>.sock`. */
  readonly path: string
  /**
   * The listening socket's file descriptor, for a child process to inherit
   * (the CLI's `run` passes it to its command as fd 3, so that the proof of
   * life lasts as long as the command). `None` where there is no real socket.
   */
  readonly descriptor: Option.Option<number>
}

/**
 * What a connection to a socket path found.
 *
 * - `Listening`: a process has the socket open (the connection was queued,
 *   or the queue is full).
 * - `Refused`: no process listens there any more (`ECONNREFUSED`), or the
 *   path is not a socket.
 * - `Missing`: there is nothing at the path (`ENOENT`).
 *
 * @since 0.2.0
 * @category models
 */
export type Probe = "Listening" | "Refused" | "Missing"

/**
 * How a connection kept open by {@link Posix.awaitHangUp} ended, or why none
 * was made.
 *
 * - `HungUp`: the connection was made, and then the other side closed it:
 *   the listening process died (the kernel closes what a dead process had
 *   open), or it hung up itself (it listens without serving).
 * - `Refused`, `Missing`: as a {@link Probe}; no connection was made.
 * - `Busy`: a process has the socket open but does not accept (its queue is
 *   full, `EAGAIN`): there is no connection to keep.
 *
 * @since 0.2.0
 * @category models
 */
export type HangUp = "HungUp" | "Refused" | "Missing" | "Busy"

/**
 * The most bytes one frame carries, either way: 64 KiB.
 *
 * @since 0.2.0
 * @category constants
 */
export const MAX_FRAME_BYTES: number = internal.MAX_FRAME_BYTES

/**
 * What a listener does with the payload of a frame it received: the payload
 * of the frame to answer with, or `None` to hang up without an answer.
 *
 * @since 0.2.0
 * @category models
 */
export type Handler = (payload: Uint8Array) => Effect.Effect<Option.Option<Uint8Array>>

/**
 * @since 0.2.0
 * @category models
 */
export interface Posix {
  readonly [TypeId]: TypeId
  /**
   * `lstat(2)`: the entry at `path` itself; a final symbolic link is not
   * followed (`type` is `"SymbolicLink"`). Fails as the platform `FileSystem`'s
   * `stat` does, with `method: "lstat"`.
   */
  readonly lstat: (path: string) => Effect.Effect<FileSystem.File.Info, PlatformError>
  /**
   * `mkdir(2)` of one directory with `mode` (masked by the umask), as the
   * platform `FileSystem`'s `makeDirectory` without `recursive`, and with its
   * errors.
   *
   * @since 0.2.0
   */
  readonly makeDirectory: (path: string, mode: number) => Effect.Effect<void, PlatformError>
  /**
   * `symlink(2)`: a symbolic link at `path` whose target is `target`, as the
   * platform `FileSystem`'s `symlink`, with its errors (the path they name is
   * `target`'s, as the platform's do).
   *
   * @since 0.2.0
   */
  readonly symlink: (target: string, path: string) => Effect.Effect<void, PlatformError>
  /**
   * `rename(2)`, as the platform `FileSystem`'s `rename`, with its errors.
   *
   * @since 0.2.0
   */
  readonly rename: (from: string, to: string) => Effect.Effect<void, PlatformError>
  /**
   * `readlink(2)`, as the platform `FileSystem`'s `readLink`, with its errors.
   *
   * @since 0.2.0
   */
  readonly readLink: (path: string) => Effect.Effect<string, PlatformError>
  /**
   * `unlink(2)` of the entry at `path`, with `method: "unlink"`: it fails
   * with `ENOENT` (`NotFound`) when nothing is there, so that of two calls
   * that remove one entry exactly one succeeds. The platform's `remove` is
   * Node's `fs.rm`, an `lstat` and then the `unlink`, which reports success
   * for an entry that vanished in between.
   *
   * @since 0.2.0
   */
  readonly unlink: (path: string) => Effect.Effect<void, PlatformError>
  /**
   * The path {@link Posix.listen} binds in `directory`:
   * `<directory>/<pid>.<token>.sock`, with a random token (16 lowercase hex
   * digits) fixed for the life of the service. No I/O: the lock names the
   * socket in its owner record before it listens, and listens only once it
   * holds the lock, so that a refused contender leaves nothing behind.
   */
  readonly socketPath: (directory: string) => string
  /**
   * Listen on the socket at `socketPath(directory)`, once per directory for
   * the life of the service: later calls return the same listener; a failed
   * call is not remembered, so a later one tries again. Fails with
   * `method: "listen"`, e.g. `EADDRINUSE` when the name is taken.
   */
  readonly listen: (directory: string) => Effect.Effect<Listener, PlatformError>
  /**
   * Connect to the socket at `path` and hang up at once. Any failure other
   * than those a {@link Probe} names (`EACCES`, `ENOTDIR`, `ELOOP`, …) is an
   * error with `method: "probe"`, never `Refused`.
   */
  readonly probe: (path: string) => Effect.Effect<Probe, PlatformError>
  /**
   * Connect to the socket at `path`, send nothing, and wait until the other
   * side hangs up: how a waiting contender learns at once that a holder died,
   * which changes nothing on disk. A listener that serves keeps such a
   * connection open while its process lives. Completes at once when no
   * connection can be kept (see {@link HangUp}); any other failure is an
   * error with `method: "awaitHangUp"`. Interrupting it hangs up.
   *
   * @since 0.2.0
   */
  readonly awaitHangUp: (path: string) => Effect.Effect<HangUp, PlatformError>
  /**
   * `kill(pid, 0)`: whether a process with this PID exists, without
   * signalling it. `ESRCH` is `false`; success and `EPERM` (it runs as
   * another user) are `true`; so is a zombie, which exists until it is
   * reaped. Any other failure is an error with `method: "kill"`; a PID that
   * is not a positive integer (0 and negative numbers name process groups)
   * is a `BadArgument`.
   *
   * @since 0.2.0
   */
  readonly processExists: (pid: number) => Effect.Effect<boolean, PlatformError>
  /**
   * Answer the frames that reach this process's socket in `directory` with
   * `handler`, for the life of the scope: it listens first, as
   * {@link Posix.listen} does. Without a handler (before, after, or in a
   * process that never serves), a connection is hung up unread, as a probe's
   * always is. One handler per directory: a later call replaces it until its
   * own scope closes. An answer longer than {@link MAX_FRAME_BYTES} is not
   * sent: the connection is hung up.
   *
   * Each frame is answered in a fiber of its own, forked in the runtime of
   * the fiber that called `serve` (its services, logger and tracer), and
   * interrupted when the client hangs up before its answer or the scope
   * closes.
   *
   * @since 0.2.0
   */
  readonly serve: (directory: string, handler: Handler) => Effect.Effect<void, PlatformError, Scope.Scope>
  /**
   * Connect to the socket at `path`, send `payload` in one frame and wait for
   * the answer's frame, all within `timeout`. Fails with `method: "request"`
   * and the code in `cause.code`: `ENOENT` (`NotFound`) nothing there,
   * `ECONNREFUSED` nobody listens, `ECONNRESET` hung up without an answer (a
   * process that listens but does not serve, a malformed answer, or a
   * listener that died meanwhile), `EMSGSIZE` a payload longer than
   * {@link MAX_FRAME_BYTES}, `ETIMEDOUT` (`TimedOut`) no answer in time (a
   * queue that is full stays so past it: a listener whose socket lives on in
   * a process that never accepts).
   *
   * @since 0.2.0
   */
  readonly request: (
    path: string,
    payload: Uint8Array,
    timeout: Duration.DurationInput
  ) => Effect.Effect<Uint8Array, PlatformError>
}

/**
 * @since 0.2.0
 * @category tags
 */
export const Posix: Context.Tag<Posix, Posix> = internal.tag

/**
 * The Node implementation: `lstat` from `node:fs`; `makeDirectory`,
 * `symlink`, `rename`, `readLink` and `unlink` from `node:fs` too, made
 * synchronously (see the module's introduction); sockets from `node:net`
 * (never keeping the process alive, printing nothing). Listeners are closed,
 * and their socket files removed, when the layer's scope closes; a process
 * killed before leaves its socket file, which then probes as `Refused`.
 *
 * Errors are those of the platform's Node `FileSystem`: a `SystemError` with
 * its `reason` for the code, `module: "FileSystem"`, the method's name, the
 * path, and Node's own error in `cause` (read `cause.code`).
 *
 * Linux details:
 *
 * - A socket path holds at most 107 bytes. A longer one is reached through
 *   an alias of its directory, `/proc/self/fd/<fd>/<name>` (the directory is
 *   opened with `O_PATH`, and kept open as long as the listener): the socket
 *   file still lies at `<directory>/<name>`. A name that is too long even so
 *   fails with `ENAMETOOLONG`.
 * - `listen` in a missing directory fails with `ENOENT` (`NotFound`), the
 *   directory's: libuv reports bind's `ENOENT` as `EACCES`, so on `EACCES`
 *   the directory is looked at before the error is told.
 * - A listener that serves nothing hangs up every connection at once; one
 *   that serves reads a frame from each (a frame begun must be whole within
 *   5 seconds) and keeps one that sends nothing open, up to 1,024
 *   connections at once, of which 64 may be reading a frame. It queues few
 *   (8): a child that inherited its descriptor and never accepts fills the
 *   queue, and a probe that finds it full (`EAGAIN`) answers `Listening`.
 * - A probe that has no answer within 2 seconds fails (`reason: "TimedOut"`,
 *   `cause.code` `ETIMEDOUT`). A connection to a Unix socket does not wait,
 *   so this is a guard, not a verdict.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerNode: Layer.Layer<Posix> = internal.layerNode
