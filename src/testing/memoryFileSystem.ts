import type { PlatformError, SystemErrorReason } from "@effect/platform/Error"
import { BadArgument, SystemError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import * as Crypto from "node:crypto"
import * as Path from "node:path"
import { answerOf, installHandler, type Serving } from "../internal/posix.js"
import * as Posix from "../Posix.js"
import * as ProcessInfo from "../ProcessInfo.js"
import * as SystemCommand from "../SystemCommand.js"
import * as FakeCommands from "./fakeCommands.js"
import type * as Testing from "./index.js"
import * as ProcessTable from "./processTable.js"

// =============================================================================
// errors
// =============================================================================

const encoder = new TextEncoder()

// errno as Node reports it (libuv negates Linux's numbers), and libuv's text.
const errnos: { readonly [Code in Testing.Errno]: readonly [errno: number, text: string] } = {
  EPERM: [-1, "operation not permitted"],
  ENOENT: [-2, "no such file or directory"],
  ESRCH: [-3, "no such process"],
  EINTR: [-4, "interrupted system call"],
  EIO: [-5, "i/o error"],
  ENXIO: [-6, "no such device or address"],
  EBADF: [-9, "bad file descriptor"],
  EAGAIN: [-11, "resource temporarily unavailable"],
  ENOMEM: [-12, "not enough memory"],
  EACCES: [-13, "permission denied"],
  EBUSY: [-16, "resource busy or locked"],
  EEXIST: [-17, "file already exists"],
  EXDEV: [-18, "cross-device link not permitted"],
  ENOTDIR: [-20, "not a directory"],
  EISDIR: [-21, "illegal operation on a directory"],
  EINVAL: [-22, "invalid argument"],
  ENFILE: [-23, "file table overflow"],
  EMFILE: [-24, "too many open files"],
  EFBIG: [-27, "file too large"],
  ENOSPC: [-28, "no space left on device"],
  EROFS: [-30, "read-only file system"],
  EMLINK: [-31, "too many links"],
  ENAMETOOLONG: [-36, "name too long"],
  ENOTEMPTY: [-39, "directory not empty"],
  ELOOP: [-40, "too many symbolic links encountered"],
  EMSGSIZE: [-90, "message too long"],
  EADDRINUSE: [-98, "address already in use"],
  ECONNRESET: [-104, "connection reset by peer"],
  ETIMEDOUT: [-110, "connection timed out"],
  ECONNREFUSED: [-111, "connection refused"],
  ECANCELED: [-125, "operation canceled"]
}

// The Node layer's mapping (handleErrnoException); every other code is "Unknown".
const reasons: Partial<Record<Testing.Errno, SystemErrorReason>> = {
  ENOENT: "NotFound",
  EACCES: "PermissionDenied",
  EEXIST: "AlreadyExists",
  EISDIR: "BadResource",
  ENOTDIR: "BadResource",
  ELOOP: "BadResource",
  EBUSY: "Busy"
}

/** Where a failure is reported: the Node layer's method and argument, and the system call Node names. */
interface ErrorSite {
  readonly method: string
  readonly pathOrDescriptor: string | number
  readonly syscall: string
  readonly path?: string | undefined
  readonly dest?: string | undefined
}

// Node's errors for read and write on a descriptor carry no path.
const takesPath = (syscall: string): boolean => syscall !== "read" && syscall !== "write"

// node:net's errors, as the Node `Posix` layer passes them on: a failed
// listen is a UVExceptionWithHostPort, a failed connect an
// ExceptionWithHostPort (no text for the code); both name the `address`.
const socketCause = (code: Testing.Errno, syscall: "listen" | "connect", address: string): Error => {
  const [errno, text] = errnos[code]
  return syscall === "listen"
    ? Object.assign(new Error(`listen ${code}: ${text} ${address}`), { code, errno, syscall, address, port: -1 })
    : Object.assign(new Error(`connect ${code} ${address}`), { errno, code, syscall, address })
}

// Node's own error for a file-system call, properties in the same order.
const fileSystemCause = (code: Testing.Errno, site: ErrorSite): Error => {
  const [errno, text] = errnos[code]
  const path = takesPath(site.syscall) ? site.path : undefined
  const dest = path === undefined ? undefined : site.dest
  const location = path === undefined ? "" : ` '${path}'${dest === undefined ? "" : ` -> '${dest}'`}`
  return Object.assign(new Error(`${code}: ${text}, ${site.syscall}${location}`), {
    errno,
    code,
    syscall: site.syscall,
    ...(path === undefined ? {} : { path }),
    ...(dest === undefined ? {} : { dest })
  })
}

const makeSystemError = (code: Testing.Errno, site: ErrorSite): SystemError => {
  const cause = site.syscall === "listen" || site.syscall === "connect"
    ? socketCause(code, site.syscall, String(site.path ?? site.pathOrDescriptor))
    : fileSystemCause(code, site)
  return new SystemError({
    reason: reasons[code] ?? "Unknown",
    module: "FileSystem",
    method: site.method,
    pathOrDescriptor: site.pathOrDescriptor,
    syscall: site.syscall,
    description: cause.message,
    cause
  })
}

// A request the Node layer gave up on reads "TimedOut", not the code's reason.
const timedOut = (site: ErrorSite): SystemError => {
  const { cause, description, method, module, pathOrDescriptor, syscall } = makeSystemError("ETIMEDOUT", site)
  return new SystemError({
    reason: "TimedOut",
    module,
    method,
    pathOrDescriptor,
    ...(syscall === undefined ? {} : { syscall }),
    ...(description === undefined ? {} : { description }),
    cause
  })
}

// fs.rm refuses a directory without `recursive` with Node's own error, not an errno.
const rmIsDirectory = (method: string, path: string): SystemError => {
  const message = `Path is a directory: rm returned EISDIR (is a directory) ${path}`
  const cause = Object.assign(new Error(message), {
    name: "SystemError",
    code: "ERR_FS_EISDIR",
    info: { code: "EISDIR", message: "is a directory", path, syscall: "rm", errno: 21 },
    errno: 21,
    syscall: "rm",
    path
  })
  return new SystemError({
    reason: "Unknown",
    module: "FileSystem",
    method,
    pathOrDescriptor: path,
    syscall: "rm",
    description: message,
    cause
  })
}

// The Node layer reports `utimes` as "utime".
const nodeMethod = (method: string): string => method === "utimes" ? "utime" : method

const firstSyscalls: Record<string, string> = {
  access: "access",
  chmod: "chmod",
  chown: "chown",
  copy: "cp",
  copyFile: "copyfile",
  kill: "kill",
  link: "link",
  listen: "listen",
  lstat: "lstat",
  makeDirectory: "mkdir",
  makeTempDirectory: "mkdtemp",
  makeTempDirectoryScoped: "mkdtemp",
  makeTempFile: "mkdtemp",
  makeTempFileScoped: "mkdtemp",
  open: "open",
  probe: "connect",
  awaitHangUp: "connect",
  request: "connect",
  readDirectory: "scandir",
  readFile: "open",
  readLink: "readlink",
  realPath: "lstat",
  remove: "lstat",
  rename: "rename",
  stat: "stat",
  symlink: "symlink",
  truncate: "open",
  utimes: "utime",
  watch: "stat",
  writeFile: "open"
}

const lookupCodes: ReadonlySet<Testing.Errno> = new Set([
  "ENOENT",
  "ENOTDIR",
  "ELOOP",
  "EACCES",
  "ENAMETOOLONG",
  "EEXIST"
])

// Methods that make several system calls fail in the first one on a lookup
// error, and in a later one otherwise.
const syscallOf = (method: string, code: Testing.Errno): string => {
  if (!lookupCodes.has(code)) {
    if (method === "readFile") return "read"
    if (method === "writeFile" && code !== "EISDIR") return "write"
    if (method === "remove") return "unlink"
  }
  return firstSyscalls[method] ?? method
}

/** @internal */
export const systemError = (
  method: string,
  path: string,
  errno: Testing.Errno,
  options?: { readonly syscall?: string | undefined; readonly dest?: string | undefined }
): SystemError =>
  makeSystemError(errno, {
    method: nodeMethod(method),
    pathOrDescriptor: path,
    syscall: options?.syscall ?? syscallOf(method, errno),
    path,
    dest: options?.dest
  })

/** A failed system call inside an operation; `perform` turns it into the Node layer's error. */
class Fault {
  constructor(
    readonly code: Testing.Errno,
    readonly at: { readonly syscall?: string | undefined; readonly path?: string | undefined } = {}
  ) {}
}

const fault = (code: Testing.Errno, at?: Fault["at"]): Fault => new Fault(code, at)

const isFault = (error: unknown, code: Testing.Errno): error is Fault => error instanceof Fault && error.code === code

/** Something the memory file system does not do; reported as `BadArgument`. */
class Unsupported {
  constructor(readonly description: string) {}
}

// Report a failure of `run` as on `at.path` (and in the system call
// `at.syscall`), unless a more precise place was given where it happened.
const during = <A>(at: { readonly syscall?: string; readonly path: string }, run: () => A): A => {
  try {
    return run()
  } catch (error) {
    if (!(error instanceof Fault)) throw error
    throw fault(error.code, { syscall: error.at.syscall ?? at.syscall, path: error.at.path ?? at.path })
  }
}

const attempt = <A>(site: ErrorSite, run: () => A): Effect.Effect<A, PlatformError> => {
  try {
    return Effect.succeed(run())
  } catch (error) {
    if (error instanceof Fault) {
      return Effect.fail(makeSystemError(error.code, {
        ...site,
        syscall: error.at.syscall ?? site.syscall,
        path: error.at.path ?? site.path
      }))
    }
    if (error instanceof Unsupported) {
      return Effect.fail(new BadArgument({ module: "FileSystem", method: site.method, description: error.description }))
    }
    if (error instanceof SystemError) return Effect.fail(error)
    throw error
  }
}

// =============================================================================
// hooks
// =============================================================================

/** @internal */
export const noFaults: Testing.Hook = () => Effect.void

// The error the Node layer would give for this call, in the system call it
// is at (one step of `remove`): symlink reports its target text as the path
// and the link as `dest`.
const callError = (call: Testing.FileSystemCall, errno: Testing.Errno): SystemError =>
  call.method === "symlink"
    ? systemError(call.method, call.target ?? "", errno, { dest: call.path })
    : systemError(call.method, call.path, errno, { dest: call.target, syscall: call.syscall })

/** @internal */
export const failCall = (index: number, errno: Testing.Errno): Testing.Hook => (call) =>
  call.index === index ? Effect.fail(callError(call, errno)) : Effect.void

/** @internal */
export const failMatching = (options: {
  readonly method?: string | undefined
  readonly path: string | RegExp
  readonly errno: Testing.Errno
  readonly times?: number | undefined
}): Testing.Hook => {
  let remaining = options.times ?? Infinity
  // `search` ignores the `lastIndex` a global RegExp keeps between `test`s.
  const matches = (path: string) =>
    typeof options.path === "string" ? path === options.path : path.search(options.path) !== -1
  return (call) =>
    Effect.suspend(() => {
      if (remaining <= 0 || (options.method !== undefined && options.method !== call.method) || !matches(call.path)) {
        return Effect.void
      }
      remaining--
      return Effect.fail(callError(call, options.errno))
    })
}

/** @internal */
export const combineHooks = (...hooks: ReadonlyArray<Testing.Hook>): Testing.Hook => (call) =>
  Effect.forEach(hooks, (hook) => hook(call), { discard: true })

// =============================================================================
// inodes
// =============================================================================

interface Credentials {
  readonly uid: number
  readonly gid: number
}

const ROOT: Credentials = { uid: 0, gid: 0 }

interface Watcher {
  /** The base name of the watched path: what Node reports for events on the watched inode itself. */
  readonly name: string
  readonly recursive: boolean
  readonly emit: (event: FileSystem.WatchEvent) => void
}

interface Inode {
  readonly ino: number
  /** Permission bits, with set-id and sticky. */
  mode: number
  uid: number
  gid: number
  nlink: number
  atimeMs: number
  mtimeMs: number
  readonly birthtimeMs: number
  /** Under `/proc`: every change fails `EACCES`. */
  readonly readOnly: boolean
  readonly watchers: Set<Watcher>
}

interface Directory extends Inode {
  readonly type: "Directory"
  readonly entries: Map<string, Node>
  /** `undefined` for the root, and once removed. */
  parent: Directory | undefined
  name: string
}

interface RegularFile extends Inode {
  readonly type: "File"
  data: Uint8Array
  /** Content made at each read, as `/proc`'s is; may fail at open or at read. */
  readonly source?: { readonly open: () => void; readonly read: () => Uint8Array }
}

interface SymbolicLink extends Inode {
  readonly type: "SymbolicLink"
  readonly target: string
}

interface Fifo extends Inode {
  readonly type: "FIFO"
}

/** A Unix socket's file, made by a `Posix` service's `listen`. */
interface Socket extends Inode {
  readonly type: "Socket"
  /**
   * Whether its listener still has it open. The kernel finds a listener by
   * the inode, so a renamed or hard-linked socket file still answers.
   */
  readonly listening: () => boolean
  /** The handler that answers its frames, while one is set (`Posix.serve`). */
  readonly served: () => Serving | undefined
  /** Completes when its listener's process ends, which hangs up its connections. */
  readonly ended: Effect.Effect<void>
}

type Node = Directory | RegularFile | SymbolicLink | Fifo | Socket

const READ = 4
const WRITE = 2
const EXECUTE = 1
const STICKY = 0o1000
const MAX_LINKS = 40
// Linux's PATH_MAX and NAME_MAX, in bytes; PATH_MAX counts the final NUL.
const MAX_PATH = 4095
const MAX_NAME = 255

const byteLength = (text: string): number => encoder.encode(text).length

const typeBits: Record<Node["type"], number> = {
  File: 0o100000,
  Directory: 0o040000,
  SymbolicLink: 0o120000,
  FIFO: 0o010000,
  Socket: 0o140000
}

const permits = (node: Node, user: Credentials, wanted: number): boolean => {
  if (user.uid === 0) return (wanted & EXECUTE) === 0 || node.type === "Directory" || (node.mode & 0o111) !== 0
  const shift = user.uid === node.uid ? 6 : user.gid === node.gid ? 3 : 0
  return ((node.mode >> shift) & wanted) === wanted
}

const isAncestor = (ancestor: Directory, dir: Directory): boolean => {
  for (let at: Directory | undefined = dir; at !== undefined; at = at.parent) {
    if (at === ancestor) return true
  }
  return false
}

const pathOf = (dir: Directory): string => {
  const names: Array<string> = []
  for (let at = dir; at.parent !== undefined; at = at.parent) names.unshift(at.name)
  return `/${names.join("/")}`
}

const sizeOf = (node: Node): number => {
  switch (node.type) {
    case "File":
      return node.source === undefined ? node.data.length : 0
    case "Directory":
      return 4096
    case "SymbolicLink":
      return byteLength(node.target)
    case "FIFO":
    case "Socket":
      return 0
  }
}

const infoOf = (node: Node): FileSystem.File.Info => {
  const size = sizeOf(node)
  return {
    type: node.type,
    mtime: Option.some(new Date(node.mtimeMs)),
    atime: Option.some(new Date(node.atimeMs)),
    birthtime: Option.some(new Date(node.birthtimeMs)),
    dev: node.readOnly ? 22 : 1,
    ino: Option.some(node.ino),
    mode: typeBits[node.type] | node.mode,
    nlink: Option.some(node.nlink),
    uid: Option.some(node.uid),
    gid: Option.some(node.gid),
    rdev: Option.some(0),
    size: FileSystem.Size(size),
    blksize: Option.some(FileSystem.Size(4096)),
    blocks: Option.some(Math.ceil(size / 4096) * 8)
  }
}

// -- watch notifications

const watchEvents = {
  Create: FileSystem.WatchEventCreate,
  Update: FileSystem.WatchEventUpdate,
  Remove: FileSystem.WatchEventRemove
}

type Change = keyof typeof watchEvents

// A change to the entry `name` of `dir`: reported to the watchers of `dir`, and
// to the recursive watchers above it with the path below theirs.
const notifyEntry = (dir: Directory, name: string, change: Change): void => {
  let path = name
  for (let at: Directory | undefined = dir; at !== undefined; path = `${at.name}/${path}`, at = at.parent) {
    for (const watcher of at.watchers) {
      if (at === dir || watcher.recursive) watcher.emit(watchEvents[change]({ path }))
    }
  }
}

const notifySelf = (node: Node, change: Change): void => {
  for (const watcher of node.watchers) watcher.emit(watchEvents[change]({ path: watcher.name }))
}

// The inode is gone: its watches report it once, then fall silent.
const destroy = (node: Node): void => {
  notifySelf(node, "Remove")
  node.watchers.clear()
}

const modified = (node: Node): void => {
  node.mtimeMs = Date.now()
}

const addEntry = (dir: Directory, name: string, node: Node): void => {
  dir.entries.set(name, node)
  if (node.type === "Directory") {
    node.parent = dir
    node.name = name
    dir.nlink++
  }
  modified(dir)
  notifyEntry(dir, name, "Create")
}

const dropEntry = (dir: Directory, name: string, node: Node): void => {
  dir.entries.delete(name)
  if (node.type === "Directory") dir.nlink--
  modified(dir)
  notifyEntry(dir, name, "Remove")
}

const deleteEntry = (dir: Directory, name: string, node: Node): void => {
  dropEntry(dir, name, node)
  if (node.type === "Directory") {
    node.parent = undefined
    node.nlink = 0
  } else {
    node.nlink--
  }
  if (node.nlink === 0) destroy(node)
  else notifySelf(node, "Update")
}

const notifyChange = (entry: Found, change: Change): void => {
  notifyEntry(entry.parent, entry.name, change)
  notifySelf(entry.node, change)
}

// -- file contents

const contents = (node: RegularFile | Directory): Uint8Array => {
  if (node.type === "Directory") throw fault("EISDIR", { syscall: "read" })
  return node.source === undefined ? node.data : node.source.read()
}

const resize = (entry: Found, file: RegularFile, length: number): void => {
  const data = new Uint8Array(length)
  data.set(file.data.subarray(0, length))
  file.data = data
  modified(file)
  notifyChange(entry, "Update")
}

const writeAt = (entry: Found, file: RegularFile, position: number, bytes: Uint8Array): void => {
  if (bytes.length === 0) return
  const data = new Uint8Array(Math.max(position + bytes.length, file.data.length))
  data.set(file.data)
  data.set(bytes, position)
  file.data = data
  modified(file)
  notifyChange(entry, "Update")
}

// =============================================================================
// state
// =============================================================================

class State {
  private nextIno = 1
  calls = 0
  nextFd = 3
  tempNames = 0
  readonly root: Directory

  constructor(
    readonly umask: number,
    public hook: Testing.Hook,
    // Whose processes listen on sockets: the table served under /proc.
    readonly processes: ProcessTable.ProcView | undefined
  ) {
    this.root = this.directory(0o755, ROOT, undefined, "")
    this.root.entries.set("tmp", this.directory(0o1777, ROOT, this.root, "tmp"))
    this.root.nlink++
  }

  inode(mode: number, owner: Credentials, readOnly = false): Inode {
    const now = Date.now()
    return {
      ino: this.nextIno++,
      mode: mode & 0o7777,
      uid: owner.uid,
      gid: owner.gid,
      nlink: 1,
      atimeMs: now,
      mtimeMs: now,
      birthtimeMs: now,
      readOnly,
      watchers: new Set()
    }
  }

  directory(
    mode: number,
    owner: Credentials,
    parent: Directory | undefined,
    name: string,
    readOnly = false
  ): Directory {
    return { ...this.inode(mode, owner, readOnly), nlink: 2, type: "Directory", entries: new Map(), parent, name }
  }
}

/** The result of looking a path up: the entry it names, which may not exist. */
interface Entry {
  readonly parent: Directory
  readonly name: string
  readonly node: Node | undefined
  /** The path is `/` or ends in `.` or `..`: it names no entry to create, remove or rename. */
  readonly dot: boolean
  readonly trailingSlash: boolean
}

interface Found extends Entry {
  readonly node: Node
}

/**
 * Whether the last component is followed when it is a symbolic link:
 * `entry` never (`mkdir`, `unlink`, `rename`…), `link` only before a trailing
 * slash (`lstat`, `readlink`), `target` always (`stat`, `open`…).
 */
type Follow = "entry" | "link" | "target"

interface OpenFlags {
  readonly read: boolean
  readonly write: boolean
  readonly create: boolean
  readonly exclusive: boolean
  readonly truncate: boolean
  readonly append: boolean
}

const openFlags = (() => {
  const flags = (
    read: boolean,
    write: boolean,
    create: boolean,
    exclusive: boolean,
    truncate: boolean,
    append: boolean
  ) => ({
    read,
    write,
    create,
    exclusive,
    truncate,
    append
  })
  return {
    r: flags(true, false, false, false, false, false),
    "r+": flags(true, true, false, false, false, false),
    w: flags(false, true, true, false, true, false),
    wx: flags(false, true, true, true, true, false),
    "w+": flags(true, true, true, false, true, false),
    "wx+": flags(true, true, true, true, true, false),
    a: flags(false, true, true, false, false, true),
    ax: flags(false, true, true, true, false, true),
    "a+": flags(true, true, true, false, false, true),
    "ax+": flags(true, true, true, true, false, true)
  } satisfies Record<FileSystem.OpenFlag, OpenFlags>
})()

interface Opened {
  readonly node: RegularFile | Directory
  readonly entry: Found
}

const site = (method: string, path: string, syscall: string, dest?: string): ErrorSite => ({
  method,
  pathOrDescriptor: path,
  syscall,
  path,
  dest
})

// A path's names, last first: a stack to resolve them from.
const componentsOf = (path: string): Array<string> => path.split("/").filter((name) => name !== "").reverse()

// Node takes a number as seconds.
const toMillis = (time: Date | number): number => typeof time === "number" ? time * 1000 : time.getTime()

// =============================================================================
// operations
// =============================================================================

const operations = (state: State, user: Credentials) => {
  const perform = <A>(
    call: {
      readonly method: string
      readonly path: string
      readonly target?: string | undefined
      readonly syscall?: string | undefined
    },
    errorSite: ErrorSite,
    run: () => A
  ): Effect.Effect<A, PlatformError> =>
    Effect.suspend(() => {
      const seen: Testing.FileSystemCall = {
        index: ++state.calls,
        method: call.method,
        path: call.path,
        ...(call.target === undefined ? {} : { target: call.target }),
        ...(call.syscall === undefined ? {} : { syscall: call.syscall })
      }
      return Effect.zipRight(state.hook(seen), Effect.suspend(() => attempt(errorSite, run)))
    })

  // -- lookup

  const walk = (path: string, follow: Follow): Entry => {
    if (path === "") throw fault("ENOENT")
    if (byteLength(path) > MAX_PATH) throw fault("ENAMETOOLONG")
    const trailingSlash = path.length > 1 && path.endsWith("/")
    const pending = componentsOf(path)
    let dir = state.root
    let links = 0
    while (pending.length > 0) {
      if (!permits(dir, user, EXECUTE)) throw fault("EACCES")
      const name = pending.pop()!
      if (byteLength(name) > MAX_NAME) throw fault("ENAMETOOLONG")
      if (name === ".") continue
      if (name === "..") {
        dir = dir.parent ?? dir
        continue
      }
      const node = dir.entries.get(name)
      const last = pending.length === 0
      if (node?.type === "SymbolicLink" && (!last || follow === "target" || (trailingSlash && follow === "link"))) {
        if (++links > MAX_LINKS) throw fault("ELOOP")
        if (node.target === "") throw fault("ENOENT")
        if (node.target.startsWith("/")) dir = state.root
        for (const component of componentsOf(node.target)) pending.push(component)
        continue
      }
      if (last) return { parent: dir, name, node, dot: false, trailingSlash }
      if (node === undefined) throw fault("ENOENT")
      if (node.type !== "Directory") throw fault("ENOTDIR")
      dir = node
    }
    return { parent: dir.parent ?? dir, name: dir.name, node: dir, dot: true, trailingSlash }
  }

  const lookup = (path: string, follow: Follow): Found => {
    const entry = walk(path, follow)
    if (entry.node === undefined) throw fault("ENOENT")
    if (entry.trailingSlash && entry.node.type !== "Directory") throw fault("ENOTDIR")
    return entry as Found
  }

  const mayCreate = (dir: Directory): void => {
    if (dir.readOnly || !permits(dir, user, WRITE | EXECUTE)) throw fault("EACCES")
  }

  const mayDelete = (dir: Directory, victim: Node): void => {
    mayCreate(dir)
    if ((dir.mode & STICKY) !== 0 && user.uid !== 0 && user.uid !== dir.uid && user.uid !== victim.uid) {
      throw fault("EPERM")
    }
  }

  const mayChangeAttributes = (node: Node): void => {
    if (node.readOnly) throw fault("EACCES")
    if (user.uid !== 0 && user.uid !== node.uid) throw fault("EPERM")
  }

  // The mount point of /proc.
  const isMountPoint = (entry: Found): boolean => entry.node.readOnly && !entry.parent.readOnly

  // -- creation

  // mkdir takes a trailing slash; symlink and mknod do not.
  const create = (path: string, make: () => Node, trailingSlash: "allowed" | "ENOENT"): void => {
    const entry = walk(path, "entry")
    if (entry.dot || entry.node !== undefined) throw fault("EEXIST")
    if (entry.trailingSlash && trailingSlash === "ENOENT") throw fault("ENOENT")
    mayCreate(entry.parent)
    addEntry(entry.parent, entry.name, make())
  }

  const mkdir = (path: string, mode: number): void => {
    during({ path }, () => create(path, () => state.directory(mode & ~state.umask, user, undefined, ""), "allowed"))
  }

  // Node's recursive mkdir (MKDirpAsync): climb on ENOENT, then create downwards.
  const mkdirp = (path: string, mode: number): void => {
    const stack = [path]
    while (stack.length > 0) {
      const next = stack.pop()!
      let code: Testing.Errno
      try {
        mkdir(next, mode)
        continue
      } catch (error) {
        if (!(error instanceof Fault)) throw error
        code = error.code
      }
      if (code === "EACCES" || code === "ENOSPC" || code === "ENOTDIR" || code === "EPERM") {
        throw fault(code, { path: next })
      }
      const slash = next.lastIndexOf("/")
      if (code === "ENOENT" && slash > 0) {
        stack.push(next, next.slice(0, slash))
        continue
      }
      // Something is in the way: fine if it is a directory. Below the path
      // asked for, anything else (a dangling link too) is "not a directory".
      const below = code === "EEXIST" && stack.length > 0
      let existing: Node
      try {
        existing = lookup(next, "target").node
      } catch (error) {
        if (!(error instanceof Fault)) throw error
        throw fault(below ? "ENOTDIR" : error.code, { path: next })
      }
      if (existing.type !== "Directory") throw fault(below ? "ENOTDIR" : "EEXIST", { path: next })
    }
  }

  const mkdtemp = (template: string): string => {
    for (;;) {
      const candidate = template + (++state.tempNames).toString(36).padStart(6, "0")
      try {
        mkdir(candidate, 0o700)
        return candidate
      } catch (error) {
        if (!isFault(error, "EEXIST")) throw error
      }
    }
  }

  const tempTemplate = (options?: FileSystem.MakeTempDirectoryOptions): string => {
    const directory = typeof options?.directory === "string" ? Path.posix.join(options.directory, ".") : "/tmp"
    return options?.prefix ? Path.posix.join(directory, options.prefix) : `${directory}/`
  }

  // -- files

  const openNode = (path: string, flag: FileSystem.OpenFlag, mode = 0o666): Opened => {
    const flags = openFlags[flag]
    const entry = walk(path, flags.create && flags.exclusive ? "entry" : "target")
    if (flags.create && entry.trailingSlash) throw fault("EISDIR")
    const node = entry.node
    if (node === undefined) {
      if (!flags.create) throw fault("ENOENT")
      mayCreate(entry.parent)
      const file: RegularFile = { ...state.inode(mode & ~state.umask, user), type: "File", data: new Uint8Array(0) }
      addEntry(entry.parent, entry.name, file)
      return { node: file, entry: { ...entry, node: file } }
    }
    if (flags.create && flags.exclusive) throw fault("EEXIST")
    if (entry.trailingSlash && node.type !== "Directory") throw fault("ENOTDIR")
    if (node.type === "Directory" && flags.write) throw fault("EISDIR")
    if (node.type === "FIFO") throw new Unsupported(`${path} is a FIFO: opening it would block`)
    if ((flags.write && node.readOnly) || !permits(node, user, (flags.read ? READ : 0) | (flags.write ? WRITE : 0))) {
      throw fault("EACCES")
    }
    // A socket cannot be opened, once permitted (ENXIO); a symbolic link was
    // followed or refused above.
    if (node.type !== "File" && node.type !== "Directory") throw fault("ENXIO")
    const found: Found = { ...entry, node }
    if (node.type === "File") {
      node.source?.open()
      if (flags.truncate && node.data.length > 0) resize(found, node, 0)
    }
    return { node, entry: found }
  }

  const writeNode = (path: string, data: Uint8Array, flag: FileSystem.OpenFlag, mode?: number): void => {
    const { entry, node } = openNode(path, flag, mode)
    // Node opens, then writes: with a read-only flag, the write fails.
    if (!openFlags[flag].write || node.type !== "File") throw fault("EBADF", { syscall: "write" })
    writeAt(entry, node, openFlags[flag].append ? node.data.length : 0, data)
  }

  // -- removal, as Node's fs.rm does it: lstat, then unlink, then rmdir and
  // the children when unlink is refused (lib/internal/fs/rimraf.js).

  const unlink = (path: string): void => {
    const entry = walk(path, "entry")
    const node = entry.node
    if (node === undefined) throw fault("ENOENT")
    if (entry.dot) throw fault("EISDIR")
    if (entry.trailingSlash) throw fault(node.type === "Directory" ? "EISDIR" : "ENOTDIR")
    mayDelete(entry.parent, node)
    if (node.type === "Directory") throw fault("EISDIR")
    deleteEntry(entry.parent, entry.name, node)
  }

  const rmdir = (path: string): void => {
    const entry = walk(path, "entry")
    if (entry.dot) throw fault(entry.parent === entry.node ? "EBUSY" : "EINVAL")
    const node = entry.node
    if (node === undefined) throw fault("ENOENT")
    mayDelete(entry.parent, node)
    if (node.type !== "Directory") throw fault("ENOTDIR")
    if (isMountPoint({ ...entry, node })) throw fault("EBUSY")
    if (node.entries.size > 0) throw fault("ENOTEMPTY")
    deleteEntry(entry.parent, entry.name, node)
  }

  const names = (path: string): Array<string> => {
    const { node } = lookup(path, "target")
    if (node.type !== "Directory") throw fault("ENOTDIR")
    if (!permits(node, user, READ)) throw fault("EACCES")
    return Array.from(node.entries.keys()).sort()
  }

  // fs.rm's first step: the lstat that checks the options. `undefined`: nothing to remove.
  const rmCheck = (method: string, path: string, options?: FileSystem.RemoveOptions): Node | undefined => {
    let node: Node
    try {
      node = during({ syscall: "lstat", path }, () => lookup(path, "link").node)
    } catch (error) {
      if (options?.force && isFault(error, "ENOENT")) return undefined
      throw error
    }
    if (node.type === "Directory" && !options?.recursive) throw rmIsDirectory(method, path)
    return node
  }

  // Node's fs.rm is two steps for the hook, the check and then the removal,
  // so that the entry can change in between, as on a real disk: one found
  // gone at the second counts as removed, two removes of one entry both
  // succeed. The second step holds the rest of Node's system calls
  // (rimraf's own lstat, a directory's children).
  const rm = (method: string, path: string, options?: FileSystem.RemoveOptions): Effect.Effect<void, PlatformError> =>
    Effect.flatMap(
      perform({ method, path, syscall: "lstat" }, site(method, path, "lstat"), () => rmCheck(method, path, options)),
      (node) => {
        if (node === undefined) return Effect.void
        const syscall = node.type === "Directory" ? "rmdir" : "unlink"
        return perform({ method, path, syscall }, site(method, path, syscall), () => rimraf(path))
      }
    )

  const rimraf = (path: string): void => {
    try {
      rimrafOnce(path)
    } catch (error) {
      if (!isFault(error, "ENOENT")) throw error
    }
  }

  const rimrafOnce = (path: string): void => {
    let node: Node | undefined
    try {
      node = during({ syscall: "lstat", path }, () => lookup(path, "link").node)
    } catch (error) {
      // Only a missing path ends it here; unlink reports anything else.
      if (isFault(error, "ENOENT")) return
    }
    if (node?.type === "Directory") return rmdirOrChildren(path, undefined)
    try {
      during({ syscall: "unlink", path }, () => unlink(path))
    } catch (error) {
      if (isFault(error, "ENOENT")) return
      if (isFault(error, "EISDIR") || isFault(error, "EPERM")) return rmdirOrChildren(path, error)
      throw error
    }
  }

  const rmdirOrChildren = (path: string, unlinkError: Fault | undefined): void => {
    try {
      during({ syscall: "rmdir", path }, () => rmdir(path))
    } catch (error) {
      if (isFault(error, "ENOTEMPTY") || isFault(error, "EEXIST") || isFault(error, "EPERM")) {
        for (const name of during({ syscall: "scandir", path }, () => names(path))) rimraf(`${path}/${name}`)
        return during({ syscall: "rmdir", path }, () => rmdir(path))
      }
      if (isFault(error, "ENOTDIR")) {
        if (unlinkError !== undefined) throw unlinkError
        return
      }
      throw error
    }
  }

  // -- the file system

  // Recursive listings do not descend into symbolic links (Node 20's does).
  const readDirectory = (path: string, recursive: boolean): Array<string> => {
    const listed = names(path)
    if (!recursive) return listed
    return listed.flatMap((name) => {
      const child = `${path}/${name}`
      if (walk(child, "entry").node?.type !== "Directory") return [name]
      return [name, ...during({ path: child }, () => readDirectory(child, true)).map((below) => `${name}/${below}`)]
    }).sort()
  }

  const realPath = (path: string): string => {
    try {
      const entry = lookup(path, "target")
      return entry.node.type === "Directory" ? pathOf(entry.node) : Path.posix.join(pathOf(entry.parent), entry.name)
    } catch (error) {
      // Node's realpath lstat's each component and stat's a link before reading it.
      if (!(error instanceof Fault)) throw error
      let isLink = false
      try {
        isLink = walk(path, "entry").node?.type === "SymbolicLink"
      } catch {
        // reported as the lstat's failure
      }
      throw isLink ? fault(error.code, { syscall: "stat" }) : error
    }
  }

  const rename = (oldPath: string, newPath: string): void => {
    const from = walk(oldPath, "entry")
    const to = walk(newPath, "entry")
    if (from.dot || to.dot) throw fault("EBUSY")
    const node = from.node
    if (node === undefined) throw fault("ENOENT")
    if (from.parent.readOnly !== to.parent.readOnly) throw fault("EXDEV")
    if (node.type !== "Directory" && (from.trailingSlash || to.trailingSlash)) throw fault("ENOTDIR")
    // Linux's order (do_renameat2, vfs_rename): a directory into itself, then
    // onto an ancestor of itself, then permissions, then the kinds.
    if (node.type === "Directory" && isAncestor(node, to.parent)) throw fault("EINVAL")
    const replaced = to.node
    if (replaced?.type === "Directory" && isAncestor(replaced, from.parent)) throw fault("ENOTEMPTY")
    if (replaced === node) return
    mayDelete(from.parent, node)
    if (replaced === undefined) {
      mayCreate(to.parent)
    } else {
      mayDelete(to.parent, replaced)
      if (node.type === "Directory" && replaced.type !== "Directory") throw fault("ENOTDIR")
      if (node.type !== "Directory" && replaced.type === "Directory") throw fault("EISDIR")
    }
    if (isMountPoint({ ...from, node }) || (replaced !== undefined && isMountPoint({ ...to, node: replaced }))) {
      throw fault("EBUSY")
    }
    // Moving a directory rewrites its "..".
    if (node.type === "Directory" && from.parent !== to.parent && !permits(node, user, WRITE)) throw fault("EACCES")
    if (replaced?.type === "Directory" && replaced.entries.size > 0) throw fault("ENOTEMPTY")
    dropEntry(from.parent, from.name, node)
    if (replaced !== undefined) deleteEntry(to.parent, to.name, replaced)
    addEntry(to.parent, to.name, node)
    notifySelf(node, "Remove")
  }

  const link = (existingPath: string, newPath: string): void => {
    const { node } = lookup(existingPath, "entry")
    const entry = walk(newPath, "entry")
    if (entry.dot || entry.node !== undefined) throw fault("EEXIST")
    if (entry.trailingSlash) throw fault("ENOENT")
    if (node.readOnly !== entry.parent.readOnly) throw fault("EXDEV")
    mayCreate(entry.parent)
    if (node.type === "Directory") throw fault("EPERM")
    node.nlink++
    addEntry(entry.parent, entry.name, node)
    notifySelf(node, "Update")
  }

  const copyFile = (fromPath: string, toPath: string): void => {
    const { node } = openNode(fromPath, "r")
    if (node.type === "Directory") throw fault("EISDIR")
    writeNode(toPath, contents(node).slice(), "w", node.mode)
  }

  const chown = (path: string, uid: number, gid: number): void => {
    const entry = lookup(path, "target")
    const node = entry.node
    mayChangeAttributes(node)
    const keepsOwner = uid === -1 || uid === node.uid
    const ownGroup = gid === -1 || gid === node.gid || gid === user.gid
    if (user.uid !== 0 && !(keepsOwner && ownGroup)) throw fault("EPERM")
    if (uid !== -1) node.uid = uid
    if (gid !== -1) node.gid = gid
    notifyChange(entry, "Update")
  }

  const watch = (
    path: string,
    options?: FileSystem.WatchOptions
  ): Stream.Stream<FileSystem.WatchEvent, PlatformError> =>
    Stream.unwrapScoped(Effect.gen(function*() {
      const queue = yield* Effect.acquireRelease(Queue.unbounded<FileSystem.WatchEvent>(), Queue.shutdown)
      const watcher: Watcher = {
        name: Path.posix.basename(path),
        recursive: options?.recursive ?? false,
        emit: (event) => Queue.unsafeOffer(queue, event)
      }
      // Registered within the call, so no change between the lookup and the
      // watch goes unseen.
      yield* Effect.acquireRelease(
        perform({ method: "watch", path }, site("stat", path, "stat"), () => {
          const { node } = lookup(path, "target")
          node.watchers.add(watcher)
          return node
        }),
        (node) => Effect.sync(() => node.watchers.delete(watcher))
      )
      return Stream.fromQueue(queue)
    }))

  // Node's scoped temporary directories and files: removed with everything in them when the scope closes.
  const tempDirectoryScoped = (
    method: string,
    template: string,
    make: () => string,
    directoryOf: (made: string) => string
  ) =>
    Effect.acquireRelease(
      perform({ method, path: template }, site(method, template, "mkdtemp"), make),
      (made) => Effect.orDie(rm(method, directoryOf(made), { recursive: true }))
    )

  const makeTempFile = (template: string, options?: FileSystem.MakeTempFileOptions): string => {
    const directory = mkdtemp(template)
    const name = (++state.tempNames).toString(16).padStart(12, "0") + (options?.suffix ?? "")
    const path = Path.posix.join(directory, name)
    openNode(path, "w+")
    return path
  }

  const fileSystem = FileSystem.make({
    access: (path, options) =>
      perform({ method: "access", path }, site("access", path, "access"), () => {
        const { node } = lookup(path, "target")
        const wanted = (options?.readable ? READ : 0) | (options?.writable ? WRITE : 0)
        if ((options?.writable && node.readOnly) || !permits(node, user, wanted)) throw fault("EACCES")
      }),
    chmod: (path, mode) =>
      perform({ method: "chmod", path }, site("chmod", path, "chmod"), () => {
        const entry = lookup(path, "target")
        mayChangeAttributes(entry.node)
        entry.node.mode = mode & 0o7777
        notifyChange(entry, "Update")
      }),
    chown: (path, uid, gid) =>
      perform({ method: "chown", path }, site("chown", path, "chown"), () => chown(path, uid, gid)),
    copy: (fromPath, toPath) =>
      perform({ method: "copy", path: fromPath, target: toPath }, site("copy", fromPath, "cp", toPath), () => {
        throw new Unsupported("copy is not implemented by the memory file system")
      }),
    copyFile: (fromPath, toPath) =>
      perform(
        { method: "copyFile", path: fromPath, target: toPath },
        site("copyFile", fromPath, "copyfile", toPath),
        () => copyFile(fromPath, toPath)
      ),
    link: (existingPath, newPath) =>
      perform(
        { method: "link", path: existingPath, target: newPath },
        site("link", existingPath, "link", newPath),
        () => link(existingPath, newPath)
      ),
    makeDirectory: (path, options) =>
      perform({ method: "makeDirectory", path }, site("makeDirectory", path, "mkdir"), () => {
        const mode = options?.mode ?? 0o777
        return options?.recursive ? mkdirp(path, mode) : mkdir(path, mode)
      }),
    makeTempDirectory: (options) => {
      const template = tempTemplate(options)
      return perform(
        { method: "makeTempDirectory", path: template },
        site("makeTempDirectory", template, "mkdtemp"),
        () => mkdtemp(template)
      )
    },
    makeTempDirectoryScoped: (options) => {
      const template = tempTemplate(options)
      return tempDirectoryScoped("makeTempDirectoryScoped", template, () => mkdtemp(template), (made) => made)
    },
    makeTempFile: (options) => {
      const template = tempTemplate(options)
      return perform(
        { method: "makeTempFile", path: template },
        site("makeTempFile", template, "mkdtemp"),
        () => makeTempFile(template, options)
      )
    },
    makeTempFileScoped: (options) => {
      const template = tempTemplate(options)
      return tempDirectoryScoped(
        "makeTempFileScoped",
        template,
        () => makeTempFile(template, options),
        (made) => Path.posix.dirname(made)
      )
    },
    open: (path, options) => {
      const flag = options?.flag ?? "r"
      return perform({ method: "open", path }, site("open", path, "open"), (): FileSystem.File => {
        const opened = openNode(path, flag, options?.mode)
        return new MemoryFile(FileSystem.FileDescriptor(state.nextFd++), opened, openFlags[flag])
      })
    },
    readDirectory: (path, options) =>
      perform(
        { method: "readDirectory", path },
        site("readDirectory", path, "scandir"),
        () => readDirectory(path, options?.recursive ?? false)
      ),
    readFile: (path) =>
      perform(
        { method: "readFile", path },
        site("readFile", path, "open"),
        () => contents(openNode(path, "r").node).slice()
      ),
    readLink: (path) =>
      perform({ method: "readLink", path }, site("readLink", path, "readlink"), () => {
        const { node } = lookup(path, "link")
        if (node.type !== "SymbolicLink") throw fault("EINVAL")
        return node.target
      }),
    realPath: (path) => perform({ method: "realPath", path }, site("realPath", path, "lstat"), () => realPath(path)),
    remove: (path, options) => rm("remove", path, options),
    rename: (oldPath, newPath) =>
      perform(
        { method: "rename", path: oldPath, target: newPath },
        site("rename", oldPath, "rename", newPath),
        () => rename(oldPath, newPath)
      ),
    stat: (path) =>
      perform({ method: "stat", path }, site("stat", path, "stat"), () => infoOf(lookup(path, "target").node)),
    symlink: (target, path) =>
      perform({ method: "symlink", path, target }, site("symlink", target, "symlink", path), () => {
        if (target === "") throw fault("ENOENT")
        if (byteLength(target) > MAX_PATH) throw fault("ENAMETOOLONG")
        create(path, (): SymbolicLink => ({ ...state.inode(0o777, user), type: "SymbolicLink", target }), "ENOENT")
      }),
    truncate: (path, length) =>
      perform({ method: "truncate", path }, site("truncate", path, "open"), () => {
        const { entry, node } = openNode(path, "r+")
        if (node.type === "Directory") throw fault("EISDIR")
        resize(entry, node, Number(length ?? 0))
      }),
    utimes: (path, atime, mtime) =>
      perform({ method: "utimes", path }, site("utime", path, "utime"), () => {
        const entry = lookup(path, "target")
        mayChangeAttributes(entry.node)
        entry.node.atimeMs = toMillis(atime)
        entry.node.mtimeMs = toMillis(mtime)
        notifyChange(entry, "Update")
      }),
    watch,
    writeFile: (path, data, options) =>
      perform(
        { method: "writeFile", path },
        site("writeFile", path, "open"),
        () => writeNode(path, data, options?.flag ?? "w", options?.mode)
      )
  })

  const makeFifo = (path: string, mode = 0o666): Effect.Effect<void, PlatformError> =>
    Effect.suspend(() =>
      attempt(site("makeFifo", path, "mknod"), () => {
        create(path, (): Fifo => ({ ...state.inode(mode & ~state.umask, user), type: "FIFO" }), "ENOENT")
      })
    )

  // -- Posix

  const lstat = (path: string): Effect.Effect<FileSystem.File.Info, PlatformError> =>
    perform({ method: "lstat", path }, site("lstat", path, "lstat"), () => infoOf(lookup(path, "link").node))

  // bind(2) of a Unix socket: the name is created as by mknod, so an existing
  // one, a dangling symbolic link too, is in use.
  const bind = (
    path: string,
    listening: () => boolean,
    served: () => Serving | undefined,
    ended: Effect.Effect<void>
  ): void => {
    try {
      create(
        path,
        (): Socket => ({ ...state.inode(0o777 & ~state.umask, user), type: "Socket", listening, served, ended }),
        "ENOENT"
      )
    } catch (error) {
      if (isFault(error, "EEXIST")) throw fault("EADDRINUSE")
      // libuv reports bind's ENOENT as EACCES (for Windows' sake), and so does Node.
      if (isFault(error, "ENOENT")) throw fault("EACCES")
      throw error
    }
  }

  // connect(2): the path is followed, the socket file must be writable; a
  // file that is not a socket, or a socket no process listens on, refuses.
  const connect = (path: string): Socket | "Missing" | "Refused" => {
    let node: Node
    try {
      node = lookup(path, "target").node
    } catch (error) {
      if (isFault(error, "ENOENT")) return "Missing"
      throw error
    }
    if (!permits(node, user, WRITE)) throw fault("EACCES")
    return node.type === "Socket" && node.listening() ? node : "Refused"
  }

  const probe = (path: string): Posix.Probe => {
    const found = connect(path)
    return typeof found === "string" ? found : "Listening"
  }

  // connect(2) and the connection kept: it is hung up when the listener's
  // process ends, or at once by a listener that serves nothing.
  const keepConnected = (path: string): Effect.Effect<Posix.HangUp> => {
    const found = connect(path)
    return typeof found === "string"
      ? Effect.succeed(found)
      : found.served() === undefined
      ? Effect.succeed("HungUp")
      : Effect.as(found.ended, "HungUp")
  }

  // kill(pid, 0): a zombie exists until it is reaped, as in the kernel.
  const processExists = (pid: number): Effect.Effect<boolean, PlatformError> =>
    !Number.isSafeInteger(pid) || pid <= 0
      ? Effect.fail(new BadArgument({ module: "FileSystem", method: "kill", description: `not a process id: ${pid}` }))
      : perform(
        { method: "kill", path: String(pid) },
        site("kill", String(pid), "kill"),
        () => state.processes?.lifeOf(pid) !== undefined
      )

  // A run of a fake `ps` or `sysctl` is a call too: what it prints is read
  // from the process table once the hook lets it go.
  const command = (commandLine: string): Effect.Effect<void, PlatformError> =>
    perform({ method: "command", path: commandLine }, site("command", commandLine, "spawn"), () => undefined)

  // connect(2) then a frame: the handler that serves the socket reached; a
  // process that listens without one hangs up, as the Node layer's does.
  const connectToServe = (path: string, payload: Uint8Array): Serving => {
    if (payload.length > Posix.MAX_FRAME_BYTES) throw fault("EMSGSIZE", { syscall: "write" })
    const found = connect(path)
    if (found === "Missing") throw fault("ENOENT")
    if (found === "Refused") throw fault("ECONNREFUSED")
    const handler = found.served()
    if (handler === undefined) throw fault("ECONNRESET", { syscall: "read" })
    return handler
  }

  const makePosix = (pid: number): Effect.Effect<Posix.Posix> =>
    Effect.suspend(() => {
      if (state.processes === undefined) {
        return Effect.dieMessage("Testing.makePosix: the memory file system has no process table to run processes in")
      }
      const listening = state.processes.lifeOf(pid)
      const ended = state.processes.endOf(pid)
      if (listening === undefined || ended === undefined) {
        return Effect.dieMessage(`Testing.makePosix: no process with pid ${pid}`)
      }
      const name = `${pid}.${Crypto.randomBytes(8).toString("hex")}.sock`
      const socketPath = (directory: string) => Path.posix.join(directory, name)
      const listeners = new Map<string, Posix.Listener>()
      const servings = new Map<string, Serving>()
      const listen = (directory: string): Effect.Effect<Posix.Listener, PlatformError> =>
        Effect.suspend(() => {
          const path = socketPath(directory)
          const known = listeners.get(path)
          if (known !== undefined) return Effect.succeed(known)
          return perform({ method: "listen", path }, site("listen", path, "listen"), () => {
            // Another call may have made it while this one waited at the hook.
            const made = listeners.get(path)
            if (made !== undefined) return made
            bind(path, listening, () => listening() ? servings.get(path) : undefined, ended)
            const listener: Posix.Listener = { path, descriptor: Option.none() }
            listeners.set(path, listener)
            return listener
          })
        })
      return Effect.succeed(Posix.Posix.of({
        [Posix.TypeId]: Posix.TypeId,
        lstat,
        // The cycle's calls are the file system's own, recorded under the same methods.
        makeDirectory: (path, mode) => fileSystem.makeDirectory(path, { mode }),
        symlink: fileSystem.symlink,
        rename: fileSystem.rename,
        readLink: fileSystem.readLink,
        unlink: (path) =>
          perform({ method: "unlink", path, syscall: "unlink" }, site("unlink", path, "unlink"), () => unlink(path)),
        socketPath,
        listen,
        probe: (path) => perform({ method: "probe", path }, site("probe", path, "connect"), () => probe(path)),
        awaitHangUp: (path) =>
          Effect.flatten(
            perform({ method: "awaitHangUp", path }, site("awaitHangUp", path, "connect"), () => keepConnected(path))
          ),
        processExists,
        serve: (directory, handler) =>
          Effect.zipRight(listen(directory), installHandler(servings, socketPath(directory), handler)),
        request: (path, payload, timeout) => {
          const requestSite = site("request", path, "connect")
          const failWith = (code: Testing.Errno, syscall: string) =>
            attempt({ ...requestSite, syscall }, () => {
              throw fault(code)
            })
          return perform({ method: "request", path }, requestSite, () => connectToServe(path, payload)).pipe(
            // The answer is made in the holder's fiber; a sender that gives up hangs up, which interrupts it.
            Effect.flatMap((serving) =>
              Effect.flatMap(Effect.sync(() => serving(payload)), (answering) =>
                Effect.onInterrupt(Fiber.await(answering), () => Fiber.interrupt(answering))).pipe(
                  Effect.flatMap((exit) =>
                    Option.match(answerOf(exit), {
                      onNone: () =>
                        failWith("ECONNRESET", "read"),
                      onSome: (answer) => listening() ? Effect.succeed(answer) : failWith("ECONNRESET", "read")
                    })
                  ),
                  Effect.timeoutFail({
                    duration: timeout,
                    onTimeout: () => timedOut(requestSite)
                  })
                )
            )
          )
        }
      }))
    })

  return { command, fileSystem, makeFifo, makePosix }
}

// =============================================================================
// open files
// =============================================================================

class MemoryFile implements FileSystem.File {
  readonly [FileSystem.FileTypeId]: FileSystem.FileTypeId = FileSystem.FileTypeId
  private position = 0n

  constructor(
    readonly fd: FileSystem.File.Descriptor,
    private readonly opened: Opened,
    private readonly flags: OpenFlags
  ) {}

  private run<A>(method: string, syscall: string, run: () => A): Effect.Effect<A, PlatformError> {
    return Effect.suspend(() => attempt({ method, pathOrDescriptor: this.fd, syscall }, run))
  }

  private readable(): Uint8Array {
    if (!this.flags.read) throw fault("EBADF", { syscall: "read" })
    return contents(this.opened.node)
  }

  private writable(syscall: string): RegularFile {
    const node = this.opened.node
    if (!this.flags.write || node.type !== "File") throw fault(syscall === "write" ? "EBADF" : "EINVAL", { syscall })
    return node
  }

  get stat() {
    return Effect.sync(() => infoOf(this.opened.node))
  }

  get sync() {
    return Effect.void
  }

  seek(offset: FileSystem.SizeInput, from: FileSystem.SeekMode) {
    return Effect.sync(() => {
      this.position = from === "start" ? FileSystem.Size(offset) : this.position + FileSystem.Size(offset)
    })
  }

  read(buffer: Uint8Array) {
    return this.run("read", "read", () => {
      const data = this.readable()
      const start = Math.min(Number(this.position), data.length)
      const chunk = data.subarray(start, start + buffer.length)
      buffer.set(chunk)
      this.position += BigInt(chunk.length)
      return FileSystem.Size(chunk.length)
    })
  }

  readAlloc(size: FileSystem.SizeInput) {
    return this.run("readAlloc", "read", () => {
      const data = this.readable()
      const start = Math.min(Number(this.position), data.length)
      const chunk = data.slice(start, start + Number(size))
      this.position += BigInt(chunk.length)
      return chunk.length === 0 ? Option.none() : Option.some(chunk)
    })
  }

  truncate(length?: FileSystem.SizeInput) {
    return this.run("truncate", "ftruncate", () => {
      const file = this.writable("ftruncate")
      const size = Number(length ?? 0)
      resize(this.opened.entry, file, size)
      if (!this.flags.append && this.position > BigInt(size)) this.position = BigInt(size)
    })
  }

  write(buffer: Uint8Array) {
    return this.run("write", "write", () => {
      const file = this.writable("write")
      const position = this.flags.append ? file.data.length : Number(this.position)
      writeAt(this.opened.entry, file, position, buffer)
      if (!this.flags.append) this.position += BigInt(buffer.length)
      return FileSystem.Size(buffer.length)
    })
  }

  writeAll(buffer: Uint8Array) {
    return Effect.asVoid(this.write(buffer))
  }
}

// =============================================================================
// /proc
// =============================================================================

const mountProc = (state: State, view: ProcessTable.ProcView): Directory => {
  const inode = (mode: number) => state.inode(mode, ROOT, true)
  const directory = (parent: Directory, name: string, children: Record<string, (self: Directory) => Node>) => {
    const dir = state.directory(0o555, ROOT, parent, name, true)
    for (const [child, make] of Object.entries(children)) dir.entries.set(child, make(dir))
    return dir
  }
  const file = (render: () => string, open: () => void = () => {}): RegularFile => ({
    ...inode(0o444),
    type: "File",
    data: new Uint8Array(0),
    source: { open, read: () => encoder.encode(render()) }
  })
  // The link text of a namespace, e.g. `pid:[4026531836]`; it cannot be followed.
  const pidNamespace = (): SymbolicLink => ({
    ...inode(0o777),
    type: "SymbolicLink",
    get target() {
      return view.pidNamespace
    }
  })

  const processes = new WeakMap<ProcessTable.ProcessRecordView, Directory>()
  const processDirectory = (proc: Directory, record: ProcessTable.ProcessRecordView): Directory => {
    const cached = processes.get(record)
    if (cached !== undefined) return cached
    const dir = directory(proc, String(record.pid), {
      stat: () =>
        file(() => {
          const stat = view.readStat(record)
          if (stat === "ESRCH") throw fault("ESRCH", { syscall: "read" })
          return stat
        }, () => {
          const denied = view.openStat(record)
          if (denied !== undefined) throw fault(denied)
        }),
      cmdline: () => file(() => view.cmdline(record)),
      ns: (self) => directory(self, "ns", { pid: pidNamespace })
    })
    processes.set(record, dir)
    return dir
  }

  const fixed = new Map<string, Node>()
  const proc: Directory = {
    ...inode(0o555),
    nlink: 2,
    type: "Directory",
    parent: state.root,
    name: "proc",
    // Listed afresh at every lookup: processes come and go.
    get entries() {
      const entries = new Map(fixed)
      for (const record of view.records()) entries.set(String(record.pid), processDirectory(proc, record))
      return entries
    }
  }
  fixed.set("self", directory(proc, "self", { ns: (self) => directory(self, "ns", { pid: pidNamespace }) }))
  fixed.set(
    "sys",
    directory(proc, "sys", {
      kernel: (sys) =>
        directory(sys, "kernel", {
          random: (kernel) => directory(kernel, "random", { boot_id: () => file(() => `${view.bootId}\n`) }),
          hostname: () => file(() => `${view.hostname}\n`)
        })
    })
  )
  return proc
}

// /etc holds the machine id alone, served from the table: present while the
// table has one. Read-only like /proc.
const mountEtc = (state: State, view: ProcessTable.ProcView): Directory => {
  const machineId: RegularFile = {
    ...state.inode(0o444, ROOT, true),
    type: "File",
    data: new Uint8Array(0),
    source: { open: () => {}, read: () => encoder.encode(`${view.machineId}\n`) }
  }
  const etc: Directory = {
    ...state.directory(0o755, ROOT, state.root, "etc", true),
    get entries() {
      return new Map<string, Node>(view.machineId === undefined ? [] : [["machine-id", machineId]])
    }
  }
  return etc
}

// =============================================================================
// constructors
// =============================================================================

/** @internal */
export const TypeId: Testing.MemoryFileSystemTypeId = Symbol.for(
  "effect-pidlock/testing/MemoryFileSystem"
) as Testing.MemoryFileSystemTypeId

/** @internal */
export const tag = Context.GenericTag<Testing.MemoryFileSystem>("effect-pidlock/testing/MemoryFileSystem")

// What stands behind each memory FileSystem: the user it acts as (so that a
// fake process's ProcessInfo reports the same uid), and its Posix services.
const actors = new WeakMap<FileSystem.FileSystem, {
  readonly user: Credentials
  readonly makePosix: (pid: number) => Effect.Effect<Posix.Posix>
  readonly processes: ProcessTable.ProcView | undefined
  readonly command: (commandLine: string) => Effect.Effect<void, PlatformError>
}>()

/** @internal */
export const make = (options?: Testing.MemoryFileSystemOptions): Effect.Effect<Testing.MemoryFileSystem> =>
  Effect.sync(() => {
    const processes = options?.processes === undefined ? undefined : ProcessTable.viewOf(options.processes)
    const state = new State(options?.umask ?? 0o022, options?.hook ?? noFaults, processes)
    if (processes !== undefined) {
      state.root.entries.set("proc", mountProc(state, processes))
      state.root.entries.set("etc", mountEtc(state, processes))
      state.root.nlink += 2
    }
    const actingAs = (user: Credentials) => {
      const acting = operations(state, user)
      actors.set(acting.fileSystem, { user, makePosix: acting.makePosix, processes, command: acting.command })
      return acting
    }
    const user: Credentials = { uid: options?.uid ?? 1000, gid: options?.gid ?? 1000 }
    const { fileSystem, makeFifo } = actingAs(user)
    const handle: Testing.MemoryFileSystem = {
      [TypeId]: TypeId,
      fileSystem,
      get layer() {
        return Layer.succeedContext(Context.make(FileSystem.FileSystem, fileSystem).pipe(Context.add(tag, handle)))
      },
      uid: user.uid,
      gid: user.gid,
      asUser: ({ gid, uid }) => actingAs({ uid, gid }).fileSystem,
      calls: Effect.sync(() => state.calls),
      setHook: (hook) =>
        Effect.sync(() => {
          state.hook = hook
        }),
      makeFifo
    }
    return handle
  })

/** @internal */
export const layer = (
  options?: Testing.MemoryFileSystemOptions
): Layer.Layer<FileSystem.FileSystem | Testing.MemoryFileSystem> =>
  Layer.unwrapEffect(Effect.map(make(options), (memory) => memory.layer))

/** @internal */
export const makeProcessInfo = (
  pid: number,
  options?: { readonly uid?: number | undefined }
): Effect.Effect<ProcessInfo.ProcessInfo, PlatformError, FileSystem.FileSystem> =>
  Effect.flatMap(
    FileSystem.FileSystem,
    (fs) => ProcessInfo.makeLinux({ pid, uid: options?.uid ?? actors.get(fs)?.user.uid })
  )

/** @internal */
export const makePosix = (pid: number): Effect.Effect<Posix.Posix, never, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => {
    const actor = actors.get(fs)
    return actor === undefined
      ? Effect.dieMessage("Testing.makePosix: the FileSystem in context is not a memory file system")
      : actor.makePosix(pid)
  })

/** @internal */
export const layerProcessInfo = (
  pid: number,
  options?: { readonly uid?: number | undefined }
): Layer.Layer<ProcessInfo.ProcessInfo | Posix.Posix, PlatformError, FileSystem.FileSystem> =>
  Layer.merge(
    Layer.effect(ProcessInfo.ProcessInfo, makeProcessInfo(pid, options)),
    Layer.effect(Posix.Posix, makePosix(pid))
  )

/** @internal */
export const makeSystemCommand = (
  options?: { readonly platform?: Testing.FakePlatform | undefined }
): Effect.Effect<SystemCommand.SystemCommand, never, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => {
    const actor = actors.get(fs)
    return actor?.processes === undefined
      ? Effect.dieMessage(
        "Testing.makeSystemCommand: the FileSystem in context is not a memory one with a process table"
      )
      : Effect.succeed(FakeCommands.make(actor.processes, options?.platform ?? "linux", actor.command))
  })

/** @internal */
export const layerPortableProcessInfo = (
  pid: number,
  options?: { readonly platform?: Testing.FakePlatform | undefined; readonly uid?: number | undefined }
): Layer.Layer<ProcessInfo.ProcessInfo | Posix.Posix, PlatformError, FileSystem.FileSystem> =>
  Layer.unwrapEffect(Effect.map(FileSystem.FileSystem, (fs) =>
    Layer.effect(
      ProcessInfo.ProcessInfo,
      ProcessInfo.makePortable({
        platform: options?.platform ?? "linux",
        pid,
        uid: options?.uid ?? actors.get(fs)?.user.uid
      })
    ).pipe(
      Layer.provideMerge(Layer.effect(Posix.Posix, makePosix(pid))),
      Layer.provide(Layer.effect(SystemCommand.SystemCommand, makeSystemCommand(options)))
    )))

/** @internal */
export const layerProcess = (
  options?: Omit<Testing.MemoryFileSystemOptions, "processes"> & {
    readonly spawn?: Testing.SpawnOptions | undefined
    readonly processTable?: Testing.ProcessTableOptions | undefined
  }
): Layer.Layer<
  FileSystem.FileSystem | Testing.MemoryFileSystem | Testing.ProcessTable | ProcessInfo.ProcessInfo | Posix.Posix,
  PlatformError
> =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const processes = yield* ProcessTable.make(options?.processTable)
    const self = yield* processes.spawn(options?.spawn)
    const memory = yield* make({ ...options, processes })
    return layerProcessInfo(self.pid).pipe(
      Layer.provideMerge(Layer.merge(memory.layer, Layer.succeed(ProcessTable.tag, processes)))
    )
  }))
