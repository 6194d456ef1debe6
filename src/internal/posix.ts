import type { PlatformError, SystemErrorReason } from "@effect/platform/Error"
import { BadArgument, SystemError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import * as NFS from "node:fs"
import * as Net from "node:net"
import * as OS from "node:os"
import * as Path from "node:path"
import type * as Posix from "../Posix.js"

/** @internal */
export const TypeId: Posix.TypeId = Symbol.for("effect-pidlock/Posix") as Posix.TypeId

/** @internal */
export const tag = Context.GenericTag<Posix.Posix>("effect-pidlock/Posix")

// -----------------------------------------------------------------------------
// errors, as the Node FileSystem of @effect/platform-node makes them
// -----------------------------------------------------------------------------

const reasonOf = (code: string | undefined): SystemErrorReason => {
  switch (code) {
    case "ENOENT":
      return "NotFound"
    case "EACCES":
      return "PermissionDenied"
    case "EEXIST":
      return "AlreadyExists"
    case "EISDIR":
    case "ENOTDIR":
    case "ELOOP":
      return "BadResource"
    case "EBUSY":
      return "Busy"
    default:
      return "Unknown"
  }
}

const systemError = (
  method: string,
  path: string,
  error: NodeJS.ErrnoException,
  reason: SystemErrorReason = reasonOf(error.code)
): SystemError =>
  new SystemError({
    reason,
    module: "FileSystem",
    method,
    pathOrDescriptor: path,
    ...(error.syscall === undefined ? {} : { syscall: error.syscall }),
    description: error.message,
    cause: error
  })

// A failure found here rather than by a system call, shaped as Node shapes
// the ones it reports, so that `cause.code` reads the same.
const nodeError = (code: keyof typeof OS.constants.errno, syscall: string, path: string): NodeJS.ErrnoException =>
  Object.assign(new Error(`${syscall} ${code} ${path}`), {
    code,
    errno: -OS.constants.errno[code],
    syscall,
    address: path
  })

// -----------------------------------------------------------------------------
// the calls of the lock's cycle, made synchronously
// -----------------------------------------------------------------------------

const isErrnoException = (cause: unknown): cause is NodeJS.ErrnoException =>
  typeof cause === "object" && cause !== null && typeof (cause as NodeJS.ErrnoException).errno === "number"

// Each is one system call on one directory entry: made on this thread, it
// costs less than the hand-over to libuv's pool and back. `path` is the one
// the platform's error names (a symlink's target, a rename's source).
const syncCall = <A>(method: string, path: string, call: () => A): Effect.Effect<A, PlatformError> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(call())
    } catch (cause) {
      // Node throws without an errno for a path it cannot hand to the system
      // (a NUL byte in it): the platform reports that as a bad argument.
      return Effect.fail(
        isErrnoException(cause)
          ? systemError(method, path, cause)
          : new BadArgument({ module: "FileSystem", method, cause })
      )
    }
  })

const makeDirectory = (path: string, mode: number) =>
  syncCall("makeDirectory", path, () => void NFS.mkdirSync(path, mode))
const symlink = (target: string, path: string) => syncCall("symlink", target, () => NFS.symlinkSync(target, path))
const rename = (from: string, to: string) => syncCall("rename", from, () => NFS.renameSync(from, to))
const readLink = (path: string) => syncCall("readLink", path, () => NFS.readlinkSync(path))
const unlink = (path: string) => syncCall("unlink", path, () => NFS.unlinkSync(path))

// -----------------------------------------------------------------------------
// lstat
// -----------------------------------------------------------------------------

const fileInfo = (stats: NFS.Stats): FileSystem.File.Info => ({
  type: stats.isFile()
    ? "File"
    : stats.isDirectory()
    ? "Directory"
    : stats.isSymbolicLink()
    ? "SymbolicLink"
    : stats.isBlockDevice()
    ? "BlockDevice"
    : stats.isCharacterDevice()
    ? "CharacterDevice"
    : stats.isFIFO()
    ? "FIFO"
    : stats.isSocket()
    ? "Socket"
    : "Unknown",
  mtime: Option.fromNullable(stats.mtime),
  atime: Option.fromNullable(stats.atime),
  birthtime: Option.fromNullable(stats.birthtime),
  dev: stats.dev,
  rdev: Option.fromNullable(stats.rdev),
  ino: Option.fromNullable(stats.ino),
  mode: stats.mode,
  nlink: Option.fromNullable(stats.nlink),
  uid: Option.fromNullable(stats.uid),
  gid: Option.fromNullable(stats.gid),
  size: FileSystem.Size(stats.size),
  blksize: Option.map(Option.fromNullable(stats.blksize), FileSystem.Size),
  blocks: Option.fromNullable(stats.blocks)
})

const lstat = (path: string): Effect.Effect<FileSystem.File.Info, PlatformError> =>
  syncCall("lstat", path, () => fileInfo(NFS.lstatSync(path)))

// -----------------------------------------------------------------------------
// socket addresses
// -----------------------------------------------------------------------------

// sun_path holds 108 bytes with the final NUL. Node (libuv's uv_pipe_bind and
// uv_pipe_connect) cuts a longer path short without a word, binding or
// reaching another name, so it is never handed one.
const MAX_ADDRESS_BYTES = 107

// O_PATH opens the directory for path lookups only: search permission on it
// is enough, as for the socket's own path. Node does not export the flag.
const O_PATH = process.platform === "linux" ? 0o10000000 : 0

const openDirectory = (directory: string): Effect.Effect<number, NodeJS.ErrnoException> =>
  Effect.async((resume) => {
    NFS.open(directory, O_PATH | NFS.constants.O_DIRECTORY, (error, fd) =>
      resume(error === null ? Effect.succeed(fd) : Effect.fail(error)))
  })

const closeDescriptor = (fd: number): Effect.Effect<void> =>
  Effect.async((resume) => {
    NFS.close(fd, () => resume(Effect.void))
  })

// An address that reaches `path`: the path itself, or, when it is too long,
// the same name under `/proc/self/fd/<fd>`, an alias of its directory kept
// open until the scope closes. The socket file still lies at `path`.
const addressOf = (
  syscall: string,
  path: string
): Effect.Effect<string, NodeJS.ErrnoException, Scope.Scope> => {
  if (Buffer.byteLength(path) <= MAX_ADDRESS_BYTES) return Effect.succeed(path)
  const name = Path.basename(path)
  return Effect.acquireRelease(openDirectory(Path.dirname(path)), closeDescriptor).pipe(
    Effect.flatMap((fd) => {
      const alias = `/proc/self/fd/${fd}/${name}`
      return Buffer.byteLength(alias) <= MAX_ADDRESS_BYTES
        ? Effect.succeed(alias)
        : Effect.fail(nodeError("ENAMETOOLONG", syscall, path))
    })
  )
}

// -----------------------------------------------------------------------------
// listen
// -----------------------------------------------------------------------------

// Connections wait here only while the holder's event loop is busy, or for
// ever once the socket lives on in a child that never accepts; a full queue
// still reads as listening, so a short one is enough and pins little.
const BACKLOG = 8

// A server and the connections it has open: a connection that sends nothing
// is kept until its client hangs up, so closing the listener ends them too.
interface Bound {
  readonly server: Net.Server
  readonly connections: Set<Net.Socket>
}

const bind = (
  address: string,
  onConnection: (connection: Net.Socket) => void
): Effect.Effect<Bound, NodeJS.ErrnoException> =>
  Effect.async((resume) => {
    const connections = new Set<Net.Socket>()
    const server = Net.createServer({ pauseOnConnect: true }, (connection) => {
      connections.add(connection)
      connection.on("close", () => connections.delete(connection))
      onConnection(connection)
    })
    // A cap on descriptors; the buffers of frames being read have their own.
    server.maxConnections = MAX_CONNECTIONS
    server.unref()
    const onListenError = (error: NodeJS.ErrnoException) => resume(Effect.fail(error))
    server.once("error", onListenError)
    // exclusive: in a cluster worker, a socket of this process, not one shared
    // through the primary.
    server.listen({ path: address, backlog: BACKLOG, exclusive: true }, () => {
      server.off("error", onListenError)
      // A failed accept (EMFILE…) is emitted later; unheard, it would throw.
      server.on("error", () => {})
      resume(Effect.succeed({ server, connections }))
    })
  })

// Closing unlinks the name the server bound (libuv does so on close): its
// staging name, gone by then once published. The server's callback waits for
// its connections to end, so they are ended first.
const closeServer = ({ connections, server }: Bound): Effect.Effect<void> =>
  Effect.async((resume) => {
    server.close(() => resume(Effect.void))
    for (const connection of connections) connection.destroy()
  })

const unlinkQuietly = (path: string): Effect.Effect<void> =>
  Effect.async((resume) => {
    NFS.unlink(path, () => resume(Effect.void))
  })

// Between bind and listen a socket file exists but refuses connections, as a
// dead holder's does: a contender probing then would take a live holder's
// lock. So the socket is bound under a staging name and linked to its name
// once it listens (a link, unlike a rename, never replaces what is there):
// at its name, it answers from the first moment.
const stagingOf = (path: string) => `${path}.new`

const publish = (path: string): Effect.Effect<void, NodeJS.ErrnoException> =>
  Effect.suspend(() => {
    const staging = stagingOf(path)
    try {
      NFS.linkSync(staging, path)
      return Effect.void
    } catch (error) {
      return Effect.fail(
        isErrnoException(error) && error.code === "EEXIST"
          ? nodeError("EADDRINUSE", "listen", path)
          : error as NodeJS.ErrnoException
      )
    } finally {
      try {
        NFS.unlinkSync(staging)
      } catch {
        // Gone already: nothing to remove.
      }
    }
  })

// libuv reports bind's ENOENT as EACCES (as Windows would): a missing
// directory would read as a permission problem, so its stat tells which.
const unmaskNotFound = (path: string) => (error: NodeJS.ErrnoException): Effect.Effect<never, NodeJS.ErrnoException> =>
  error.code !== "EACCES"
    ? Effect.fail(error)
    : Effect.async((resume) => {
      NFS.stat(Path.dirname(path), (statError) => resume(Effect.fail(statError?.code === "ENOENT" ? statError : error)))
    })

// Node keeps the descriptor on its internal handle; without one, there is none.
const descriptorOf = (server: Net.Server): Option.Option<number> => {
  const fd = (server as unknown as { readonly _handle?: { readonly fd?: unknown } | null })._handle?.fd
  return typeof fd === "number" && fd >= 0 ? Option.some(fd) : Option.none()
}

// A listener in a scope of its own under the layer's, closed at once if it
// cannot be made, so that a failed attempt leaves no descriptor behind.
const open = (
  parent: Scope.Scope,
  path: string,
  onConnection: (connection: Net.Socket) => void
): Effect.Effect<Posix.Listener, PlatformError> =>
  Effect.flatMap(Scope.fork(parent, ExecutionStrategy.sequential), (scope) =>
    addressOf("listen", stagingOf(path)).pipe(
      Effect.flatMap((address) => Effect.acquireRelease(bind(address, onConnection), closeServer)),
      // The file at its name is ours once published, and removed with the listener.
      Effect.tap(() => Effect.acquireRelease(publish(path), () => unlinkQuietly(path))),
      Effect.catchAll(unmaskNotFound(path)),
      Effect.map(({ server }): Posix.Listener => ({ path, descriptor: descriptorOf(server) })),
      Effect.mapError((error) => systemError("listen", path, error)),
      Scope.extend(scope),
      Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
    ))

// -----------------------------------------------------------------------------
// frames
// -----------------------------------------------------------------------------

/** @internal */
export const MAX_FRAME_BYTES = 64 * 1024

const HEADER_BYTES = 4

// Connections open at once: a waiter keeps one (see `awaitHangUp`).
const MAX_CONNECTIONS = 1024

// Connections reading a frame at once: each holds a buffer of at most one
// frame, so a cap on them bounds what clients can make the holder keep.
const MAX_READING = 64

// A client that sends its frame slowly, or never finishes it (killed
// mid-frame leaves an end; stopped leaves nothing), is hung up this long after
// its first byte: a frame is written at once, or not at all.
const FRAME_READ_TIMEOUT_MS = 5_000

/** A frame: its payload's length, 4 bytes big-endian, then the payload. @internal */
export const encodeFrame = (payload: Uint8Array): Buffer => {
  const frame = Buffer.allocUnsafe(HEADER_BYTES + payload.length)
  frame.writeUInt32BE(payload.length, 0)
  frame.set(payload, HEADER_BYTES)
  return frame
}

/**
 * Collects the bytes of one frame as they arrive: `"more"` until it is
 * whole, `"tooLong"` when its header announces more than a frame may hold,
 * then its payload.
 *
 * @internal
 */
export const frameReader = () => {
  let buffered: Buffer = Buffer.alloc(0)
  return (chunk: Buffer): "more" | "tooLong" | Uint8Array => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
    if (buffered.length < HEADER_BYTES) return "more"
    const length = buffered.readUInt32BE(0)
    if (length > MAX_FRAME_BYTES) return "tooLong"
    if (buffered.length < HEADER_BYTES + length) return "more"
    return buffered.subarray(HEADER_BYTES, HEADER_BYTES + length)
  }
}

// The connections to one listener: a probe sends nothing and is hung up as it
// ends; a waiter sends nothing and is kept until it hangs up (or this process
// dies, which is what it waits for); a frame is read (and anything wrong with
// it ends the connection, never the listener), handed to the handler that
// serves the socket when it arrives, and answered. Without a handler, hung up
// at once, unread.
const serveConnection = (serving: () => Serving | undefined) => {
  let reading = 0
  return (connection: Net.Socket): void => {
    // A reset by the client is its own business.
    connection.on("error", () => connection.destroy())
    if (serving() === undefined) {
      connection.destroy()
      return
    }
    const read = frameReader()
    let counted = false
    const doneReading = () => {
      if (counted) reading--
      counted = false
    }
    connection.on("close", doneReading)
    // The client hangs up (it gave up waiting, or died): so does the holder,
    // and the answer being made for it is interrupted.
    connection.on("end", () => connection.destroy())
    const onData = (chunk: Buffer): void => {
      if (!counted) {
        if (reading >= MAX_READING) {
          connection.destroy()
          return
        }
        reading++
        counted = true
        connection.setTimeout(FRAME_READ_TIMEOUT_MS, () => connection.destroy())
      }
      const frame = read(chunk)
      if (frame === "more") return
      connection.off("data", onData)
      connection.setTimeout(0)
      doneReading()
      const serve = serving()
      if (frame === "tooLong" || serve === undefined) {
        connection.destroy()
        return
      }
      // Anything sent after the frame is read and ignored, so that a hang-up is seen.
      connection.on("data", () => {})
      const answering = serve(new Uint8Array(frame))
      connection.on("close", () => answering.unsafeInterruptAsFork(FiberId.none))
      answering.addObserver((exit) =>
        Option.match(answerOf(exit), {
          onNone: () => connection.destroy(),
          onSome: (answer) => {
            if (!connection.destroyed) connection.end(encodeFrame(answer))
          }
        })
      )
    }
    connection.on("data", onData)
    connection.resume()
  }
}

// -----------------------------------------------------------------------------
// request
// -----------------------------------------------------------------------------

// A listener whose queue is full answers at once with EAGAIN: a busy holder
// takes its connections soon, so the request tries again meanwhile.
const QUEUE_FULL_RETRY = Duration.millis(5)

const timedOut = (path: string): NodeJS.ErrnoException => nodeError("ETIMEDOUT", "connect", path)

// One connection, until `deadline` (a `performance.now()` time): the timer is
// the socket's own, not a fiber raced against it, as a message's round trip
// is a few milliseconds.
const exchange = (
  address: string,
  frame: Buffer,
  deadline: number
): Effect.Effect<Uint8Array, NodeJS.ErrnoException> =>
  Effect.async((resume) => {
    const socket = Net.connect({ path: address })
    const read = frameReader()
    let done = false
    const finish = (outcome: Effect.Effect<Uint8Array, NodeJS.ErrnoException>) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      resume(outcome)
    }
    const timer = setTimeout(() => finish(Effect.fail(timedOut(address))), Math.max(0, deadline - performance.now()))
    socket.on("connect", () => socket.write(frame))
    socket.on("data", (chunk: Buffer) => {
      const answer = read(chunk)
      if (answer === "more") return
      finish(
        answer === "tooLong"
          ? Effect.fail(nodeError("EMSGSIZE", "read", address))
          : Effect.succeed(new Uint8Array(answer))
      )
    })
    // Hung up before the answer was whole, however the kernel tells it.
    const hungUp = nodeError("ECONNRESET", "read", address)
    socket.on("close", () => finish(Effect.fail(hungUp)))
    socket.on(
      "error",
      (error: NodeJS.ErrnoException) =>
        finish(Effect.fail(error.code === "EPIPE" || error.code === "ECONNRESET" ? hungUp : error))
    )
    return Effect.sync(() => {
      clearTimeout(timer)
      socket.destroy()
    })
  })

const request = (
  path: string,
  payload: Uint8Array,
  timeout: Duration.DurationInput
): Effect.Effect<Uint8Array, PlatformError> => {
  if (payload.length > MAX_FRAME_BYTES) {
    return Effect.fail(systemError("request", path, nodeError("EMSGSIZE", "write", path)))
  }
  const frame = encodeFrame(payload)
  return Effect.suspend(() => {
    const deadline = performance.now() + Duration.toMillis(timeout)
    return Effect.scoped(
      Effect.flatMap(addressOf("connect", path), (address) =>
        exchange(address, frame, deadline).pipe(
          Effect.retry({
            while: (error) => error.code === "EAGAIN" && performance.now() < deadline,
            schedule: Schedule.spaced(QUEUE_FULL_RETRY)
          }),
          // Still full at the deadline: no answer in time.
          Effect.mapError((error) => error.code === "EAGAIN" ? timedOut(address) : error)
        ))
    )
  }).pipe(
    Effect.mapError((error) =>
      error.code === "ETIMEDOUT"
        ? systemError("request", path, timedOut(path), "TimedOut")
        : systemError("request", path, error)
    )
  )
}

// -----------------------------------------------------------------------------
// probe
// -----------------------------------------------------------------------------

// Connecting to a Unix socket never waits on Linux (a full queue is EAGAIN at
// once); the guard is for what should not happen, and it fails rather than
// say "Refused", which would hand a live holder's lock to a contender.
const PROBE_TIMEOUT_MILLIS = 2_000

// A timer of the socket's own, not a race of fibers: a probe is on the path
// of every takeover, and of a process's first.
const connect = (address: string, path: string): Effect.Effect<"Listening", NodeJS.ErrnoException> =>
  Effect.async((resume) => {
    const socket = Net.connect({ path: address })
    const timer = setTimeout(() => {
      socket.destroy()
      resume(Effect.fail(nodeError("ETIMEDOUT", "connect", path)))
    }, PROBE_TIMEOUT_MILLIS)
    const end = () => {
      clearTimeout(timer)
      socket.destroy()
    }
    socket.on("connect", () => {
      end()
      resume(Effect.succeed("Listening"))
    })
    socket.on("error", (error) => {
      end()
      resume(Effect.fail(error))
    })
    return Effect.sync(end)
  })

const probe = (path: string): Effect.Effect<Posix.Probe, PlatformError> =>
  (Buffer.byteLength(path) <= MAX_ADDRESS_BYTES
    ? connect(path, path)
    : Effect.scoped(Effect.flatMap(addressOf("connect", path), (address) => connect(address, path)))).pipe(
      Effect.catchAll((error): Effect.Effect<Posix.Probe, PlatformError> => {
        switch (error.code) {
          // a listener that is not accepting, its queue full: it exists
          case "EAGAIN":
          // the connection was made and then reset: a listener took it (ours
          // hang up at once), or died while it was queued, after it answered
          case "ECONNRESET":
            return Effect.succeed("Listening")
          case "ETIMEDOUT":
            return Effect.fail(systemError("probe", path, error, "TimedOut"))
          default:
            return noListener("probe", path, error)
        }
      })
    )

// A connect(2) that failed because nobody listens, or nothing is there; any
// other failure is an error of `method`.
const noListener = (
  method: string,
  path: string,
  error: NodeJS.ErrnoException
): Effect.Effect<"Refused" | "Missing", PlatformError> =>
  error.code === "ECONNREFUSED"
    ? Effect.succeed("Refused")
    : error.code === "ENOENT"
    ? Effect.succeed("Missing")
    : Effect.fail(systemError(method, path, error))

// -----------------------------------------------------------------------------
// awaitHangUp
// -----------------------------------------------------------------------------

// A connection that sends nothing, kept until the other side ends it (or
// resets it: a reset after the connection was made is a hang-up too). It
// never keeps the process alive: whoever waits on it has a timer of its own.
const keepConnected = (address: string): Effect.Effect<Posix.HangUp, NodeJS.ErrnoException> =>
  Effect.async((resume) => {
    const socket = Net.connect({ path: address })
    socket.unref()
    let connected = false
    let done = false
    const finish = (outcome: Effect.Effect<Posix.HangUp, NodeJS.ErrnoException>) => {
      if (done) return
      done = true
      socket.destroy()
      resume(outcome)
    }
    socket.on("connect", () => {
      connected = true
    })
    // Whatever the listener sends is dropped, so that its end is seen.
    socket.on("data", () => {})
    socket.on("close", () => finish(Effect.succeed("HungUp")))
    socket.on(
      "error",
      (error: NodeJS.ErrnoException) => finish(connected ? Effect.succeed("HungUp") : Effect.fail(error))
    )
    return Effect.sync(() => {
      done = true
      socket.destroy()
    })
  })

const awaitHangUp = (path: string): Effect.Effect<Posix.HangUp, PlatformError> =>
  Effect.scoped(Effect.flatMap(addressOf("connect", path), keepConnected)).pipe(
    Effect.catchAll((error): Effect.Effect<Posix.HangUp, PlatformError> =>
      // a listener that is not accepting, its queue full: no connection to keep
      error.code === "EAGAIN" ? Effect.succeed("Busy") : noListener("awaitHangUp", path, error)
    )
  )

// -----------------------------------------------------------------------------
// kill(pid, 0)
// -----------------------------------------------------------------------------

const processExists = (pid: number): Effect.Effect<boolean, PlatformError> =>
  Effect.suspend((): Effect.Effect<boolean, PlatformError> => {
    // 0 and negative PIDs name process groups: never what a record means.
    if (!Number.isSafeInteger(pid) || pid <= 0) {
      return Effect.fail(
        new BadArgument({ module: "FileSystem", method: "kill", description: `not a process id: ${pid}` })
      )
    }
    try {
      process.kill(pid, 0)
      return Effect.succeed(true)
    } catch (cause) {
      const error = cause as NodeJS.ErrnoException
      switch (error.code) {
        case "ESRCH":
          return Effect.succeed(false)
        // It exists, and belongs to another user.
        case "EPERM":
          return Effect.succeed(true)
        default:
          return Effect.fail(systemError("kill", String(pid), error))
      }
    }
  })

// -----------------------------------------------------------------------------
// layer
// -----------------------------------------------------------------------------

/**
 * A handler as `serve` installed it: each frame is answered in a fiber of its
 * own, forked in the runtime of the fiber that called `serve` (its services,
 * logger and tracer), and interrupted when that scope closes. `None` when
 * the handler failed or declined to answer.
 *
 * @internal
 */
export type Serving = (payload: Uint8Array) => Fiber.RuntimeFiber<Option.Option<Uint8Array>>

/**
 * Sets `handler` for `path` for the life of the scope; at its end, removes
 * it unless a later one replaced it, then interrupts the answers it is
 * still making.
 *
 * @internal
 */
export const installHandler = (
  servings: Map<string, Serving>,
  path: string,
  handler: Posix.Handler
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.flatMap(Effect.runtime<never>(), (runtime) => {
    // A Set, not effect/FiberSet, which costs some 9 ms of start-up to import.
    const answering = new Set<Fiber.RuntimeFiber<Option.Option<Uint8Array>>>()
    const serving: Serving = (payload) => {
      const fiber = Runtime.runFork(runtime)(Effect.catchAllCause(handler(payload), () => Effect.succeedNone))
      answering.add(fiber)
      fiber.addObserver(() => answering.delete(fiber))
      return fiber
    }
    return Effect.acquireRelease(
      Effect.sync(() => void servings.set(path, serving)),
      () =>
        Effect.suspend(() => {
          if (servings.get(path) === serving) servings.delete(path)
          return Fiber.interruptAll([...answering])
        })
    )
  })

/** Whether `exit` is an answer that fits in a frame. @internal */
export const answerOf = (exit: Exit.Exit<Option.Option<Uint8Array>>): Option.Option<Uint8Array> =>
  Exit.isSuccess(exit) ? Option.filter(exit.value, (answer) => answer.length <= MAX_FRAME_BYTES) : Option.none()

const make = Effect.gen(function*() {
  const scope = yield* Effect.scope
  const name = `${process.pid}.${Crypto.randomBytes(8).toString("hex")}.sock`
  const socketPath = (directory: string) => Path.join(directory, name)
  const listeners = new Map<string, Posix.Listener>()
  const servings = new Map<string, Serving>()
  const mutex = yield* Effect.makeSemaphore(1)
  // One listener per directory; a failed attempt is not remembered, so a
  // later call tries again.
  // A listener made already is returned without the mutex: every acquire asks.
  const listen = (directory: string) =>
    Effect.suspend(() => {
      const path = socketPath(directory)
      const known = listeners.get(path)
      return known !== undefined ? Effect.succeed(known) : mutex.withPermits(1)(Effect.suspend(() => {
        const made = listeners.get(path)
        return made !== undefined
          ? Effect.succeed(made)
          : Effect.tap(
            open(scope, path, serveConnection(() => servings.get(path))),
            (listener) => Effect.sync(() => listeners.set(path, listener))
          )
      }))
    })
  const serve = (directory: string, handler: Posix.Handler) =>
    Effect.zipRight(listen(directory), installHandler(servings, socketPath(directory), handler))
  return tag.of({
    [TypeId]: TypeId,
    lstat,
    makeDirectory,
    symlink,
    rename,
    readLink,
    unlink,
    socketPath,
    listen,
    probe,
    awaitHangUp,
    processExists,
    serve,
    request
  })
})

/** @internal */
export const layerNode: Layer.Layer<Posix.Posix> = Layer.scoped(tag, make)
