import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import type { PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import * as ChildProcess from "node:child_process"
import * as NFS from "node:fs"
import * as Path from "node:path"
import * as Posix from "../src/Posix.js"
import * as ProcessInfo from "../src/ProcessInfo.js"
import * as Testing from "../src/testing/index.js"

// =============================================================================
// Conformance: every case runs on the Node layer (real disk) and on the memory
// file system, and must give the same outcome on both.
// =============================================================================

type Entry =
  | { readonly dir: string }
  | { readonly file: string; readonly data: string }
  | { readonly link: string; readonly target: string }
  | { readonly fifo: string }

// The tree every case starts from, in a fresh temporary directory.
const baseTree: ReadonlyArray<Entry> = [
  { dir: "dir" },
  { dir: "dir/sub" },
  { file: "dir/sub/f", data: "x" },
  { dir: "empty" },
  { file: "file", data: "hello" },
  { link: "dangling", target: "nowhere" },
  { link: "linkdir", target: "dir" },
  { link: "linkfile", target: "file" },
  { link: "loop1", target: "loop2" },
  { link: "loop2", target: "loop1" }
]

/** A failure as the Node layer reports it: method, reason, `cause.code`, and the end of the description ("syscall 'path' -> 'dest'"). */
interface Failure {
  readonly method: string
  readonly reason: string
  readonly code: string
  readonly tail: string
}

interface Case {
  readonly name: string
  readonly tree?: ReadonlyArray<Entry>
  /** `at("x")` is the path of `x` in the test's directory. */
  readonly run: (fs: FileSystem.FileSystem, at: (path: string) => string) => Effect.Effect<unknown, PlatformError>
  /** The value on success, with the test's directory written `~`. */
  readonly value?: unknown
  readonly failure?: Failure
  /** How the tree (as `listing` shows it) changed; nothing changes unless said. */
  readonly adds?: ReadonlyArray<string>
  readonly removes?: ReadonlyArray<string>
}

const fails = (method: string, reason: string, code: string, tail: string): Failure => ({ method, reason, code, tail })

const typeOf = (fs: FileSystem.FileSystem, path: string) => Effect.map(fs.stat(path), (info) => info.type)
const modeOf = (fs: FileSystem.FileSystem, path: string) => Effect.map(fs.stat(path), (info) => info.mode.toString(8))

const record = JSON.stringify({ v: 1, pid: 4242, cmdline: ["node", "x".repeat(3900)], token: "00ff" })

const cases: ReadonlyArray<Case> = [
  // -- makeDirectory
  { name: "makeDirectory creates a directory", run: (fs, at) => fs.makeDirectory(at("new")), adds: ["new/"] },
  {
    name: "makeDirectory is exclusive: an existing directory",
    run: (fs, at) => fs.makeDirectory(at("dir")),
    failure: fails("makeDirectory", "AlreadyExists", "EEXIST", "mkdir '~/dir'")
  },
  {
    name: "makeDirectory on a file",
    run: (fs, at) => fs.makeDirectory(at("file")),
    failure: fails("makeDirectory", "AlreadyExists", "EEXIST", "mkdir '~/file'")
  },
  {
    name: "makeDirectory on a dangling symlink",
    run: (fs, at) => fs.makeDirectory(at("dangling")),
    failure: fails("makeDirectory", "AlreadyExists", "EEXIST", "mkdir '~/dangling'")
  },
  {
    name: "makeDirectory with a missing parent",
    run: (fs, at) => fs.makeDirectory(at("no/x")),
    failure: fails("makeDirectory", "NotFound", "ENOENT", "mkdir '~/no/x'")
  },
  {
    name: "makeDirectory under a file",
    run: (fs, at) => fs.makeDirectory(at("file/x")),
    failure: fails("makeDirectory", "BadResource", "ENOTDIR", "mkdir '~/file/x'")
  },
  {
    name: "makeDirectory through a symlinked directory",
    run: (fs, at) => fs.makeDirectory(at("linkdir/new")),
    adds: ["dir/new/"]
  },
  {
    name: "makeDirectory with a trailing slash",
    run: (fs, at) => fs.makeDirectory(at("new/")),
    adds: ["new/"]
  },
  {
    name: "makeDirectory with a mode",
    run: (fs, at) => Effect.zipRight(fs.makeDirectory(at("new"), { mode: 0o700 }), modeOf(fs, at("new"))),
    value: "40700",
    adds: ["new/"]
  },
  {
    name: "makeDirectory recursive: an existing directory is no error",
    run: (fs, at) => fs.makeDirectory(at("dir"), { recursive: true })
  },
  {
    name: "makeDirectory recursive: a symlink to a directory is no error",
    run: (fs, at) => fs.makeDirectory(at("linkdir"), { recursive: true })
  },
  {
    name: "makeDirectory recursive creates the parents",
    run: (fs, at) => fs.makeDirectory(at("a/b/c"), { recursive: true }),
    adds: ["a/", "a/b/", "a/b/c/"]
  },
  {
    name: "makeDirectory recursive on a file",
    run: (fs, at) => fs.makeDirectory(at("file"), { recursive: true }),
    failure: fails("makeDirectory", "AlreadyExists", "EEXIST", "mkdir '~/file'")
  },
  {
    name: "makeDirectory recursive on a dangling symlink",
    run: (fs, at) => fs.makeDirectory(at("dangling"), { recursive: true }),
    failure: fails("makeDirectory", "NotFound", "ENOENT", "mkdir '~/dangling'")
  },
  {
    name: "makeDirectory recursive through a dangling symlink",
    run: (fs, at) => fs.makeDirectory(at("dangling/x"), { recursive: true }),
    failure: fails("makeDirectory", "BadResource", "ENOTDIR", "mkdir '~/dangling'")
  },
  {
    name: "makeDirectory recursive under a file",
    run: (fs, at) => fs.makeDirectory(at("file/x/y"), { recursive: true }),
    failure: fails("makeDirectory", "BadResource", "ENOTDIR", "mkdir '~/file/x/y'")
  },

  // -- symlink, readLink
  {
    name: "symlink stores its target text verbatim, ~4 KiB of JSON included",
    run: (fs, at) => Effect.zipRight(fs.symlink(record, at("entry")), fs.readLink(at("entry"))),
    value: record,
    adds: [`entry -> ${record}`]
  },
  {
    name: "symlink is exclusive, even over a dangling symlink",
    run: (fs, at) => fs.symlink("t", at("dangling")),
    failure: fails("symlink", "AlreadyExists", "EEXIST", "symlink 't' -> '~/dangling'")
  },
  {
    name: "symlink onto a directory",
    run: (fs, at) => fs.symlink("t", at("dir")),
    failure: fails("symlink", "AlreadyExists", "EEXIST", "symlink 't' -> '~/dir'")
  },
  {
    name: "symlink with a missing parent",
    run: (fs, at) => fs.symlink("t", at("no/x")),
    failure: fails("symlink", "NotFound", "ENOENT", "symlink 't' -> '~/no/x'")
  },
  {
    name: "symlink to an empty target",
    run: (fs, at) => fs.symlink("", at("x")),
    failure: fails("symlink", "NotFound", "ENOENT", "symlink '' -> '~/x'")
  },
  {
    name: "symlink to a target longer than 4095 bytes",
    run: (fs, at) => fs.symlink("y".repeat(4096), at("x")),
    failure: fails("symlink", "Unknown", "ENAMETOOLONG", `symlink '${"y".repeat(4096)}' -> '~/x'`)
  },
  {
    name: "readLink of a dangling symlink",
    run: (fs, at) => fs.readLink(at("dangling")),
    value: "nowhere"
  },
  {
    name: "readLink of a file",
    run: (fs, at) => fs.readLink(at("file")),
    failure: fails("readLink", "Unknown", "EINVAL", "readlink '~/file'")
  },
  {
    name: "readLink of a directory",
    run: (fs, at) => fs.readLink(at("dir")),
    failure: fails("readLink", "Unknown", "EINVAL", "readlink '~/dir'")
  },
  {
    name: "readLink of a missing path",
    run: (fs, at) => fs.readLink(at("missing")),
    failure: fails("readLink", "NotFound", "ENOENT", "readlink '~/missing'")
  },
  {
    name: "readLink with a trailing slash follows the link",
    run: (fs, at) => fs.readLink(at("linkdir/")),
    failure: fails("readLink", "Unknown", "EINVAL", "readlink '~/linkdir/'")
  },

  // -- rename
  {
    name: "rename a directory onto a missing path",
    run: (fs, at) => fs.rename(at("dir"), at("moved")),
    removes: ["dir/", "dir/sub/", "dir/sub/f: x"],
    adds: ["moved/", "moved/sub/", "moved/sub/f: x"]
  },
  {
    name: "rename a directory onto an empty directory",
    run: (fs, at) => fs.rename(at("dir"), at("empty")),
    removes: ["dir/", "dir/sub/", "dir/sub/f: x"],
    adds: ["empty/sub/", "empty/sub/f: x"]
  },
  {
    name: "rename a directory onto a non-empty directory",
    run: (fs, at) => fs.rename(at("empty"), at("dir")),
    failure: fails("rename", "Unknown", "ENOTEMPTY", "rename '~/empty' -> '~/dir'")
  },
  {
    name: "rename a directory onto a file",
    run: (fs, at) => fs.rename(at("empty"), at("file")),
    failure: fails("rename", "BadResource", "ENOTDIR", "rename '~/empty' -> '~/file'")
  },
  {
    name: "rename a directory onto a dangling symlink",
    run: (fs, at) => fs.rename(at("empty"), at("dangling")),
    failure: fails("rename", "BadResource", "ENOTDIR", "rename '~/empty' -> '~/dangling'")
  },
  {
    name: "rename a directory onto a symlink to a directory",
    run: (fs, at) => fs.rename(at("empty"), at("linkdir")),
    failure: fails("rename", "BadResource", "ENOTDIR", "rename '~/empty' -> '~/linkdir'")
  },
  {
    name: "rename a file onto a directory",
    run: (fs, at) => fs.rename(at("file"), at("empty")),
    failure: fails("rename", "BadResource", "EISDIR", "rename '~/file' -> '~/empty'")
  },
  {
    name: "rename a symlink to a directory onto a directory",
    run: (fs, at) => fs.rename(at("linkdir"), at("empty")),
    failure: fails("rename", "BadResource", "EISDIR", "rename '~/linkdir' -> '~/empty'")
  },
  {
    name: "rename a directory into its own subtree",
    run: (fs, at) => fs.rename(at("dir"), at("dir/sub/x")),
    failure: fails("rename", "Unknown", "EINVAL", "rename '~/dir' -> '~/dir/sub/x'")
  },
  {
    name: "rename a directory onto its parent",
    run: (fs, at) => fs.rename(at("dir/sub"), at("dir")),
    failure: fails("rename", "Unknown", "ENOTEMPTY", "rename '~/dir/sub' -> '~/dir'")
  },
  {
    name: "rename a missing path",
    run: (fs, at) => fs.rename(at("missing"), at("x")),
    failure: fails("rename", "NotFound", "ENOENT", "rename '~/missing' -> '~/x'")
  },
  {
    name: "rename into a missing directory",
    run: (fs, at) => fs.rename(at("file"), at("no/x")),
    failure: fails("rename", "NotFound", "ENOENT", "rename '~/file' -> '~/no/x'")
  },
  {
    name: "rename a path onto itself",
    run: (fs, at) => fs.rename(at("dir"), at("dir"))
  },
  {
    name: "rename a file onto a symlink replaces the link",
    run: (fs, at) => fs.rename(at("file"), at("linkfile")),
    removes: ["file: hello", "linkfile -> file"],
    adds: ["linkfile: hello"]
  },
  {
    name: "rename a symlink with a trailing slash",
    run: (fs, at) => fs.rename(at("linkdir/"), at("x")),
    failure: fails("rename", "BadResource", "ENOTDIR", "rename '~/linkdir/' -> '~/x'")
  },
  {
    name: "rename a file onto a path with a trailing slash",
    run: (fs, at) => fs.rename(at("file"), at("x/")),
    failure: fails("rename", "BadResource", "ENOTDIR", "rename '~/file' -> '~/x/'")
  },
  {
    name: "rename through a symlinked directory",
    run: (fs, at) => fs.rename(at("linkdir/sub"), at("moved")),
    removes: ["dir/sub/", "dir/sub/f: x"],
    adds: ["moved/", "moved/f: x"]
  },

  // -- remove
  {
    name: "remove a dangling symlink",
    run: (fs, at) => fs.remove(at("dangling")),
    removes: ["dangling -> nowhere"]
  },
  {
    name: "remove a file",
    run: (fs, at) => fs.remove(at("file")),
    removes: ["file: hello"]
  },
  {
    name: "remove a missing path",
    run: (fs, at) => fs.remove(at("missing")),
    failure: fails("remove", "NotFound", "ENOENT", "lstat '~/missing'")
  },
  {
    name: "remove a missing path with force",
    run: (fs, at) => fs.remove(at("missing"), { force: true })
  },
  {
    name: "remove a path under a file, even with force",
    run: (fs, at) => fs.remove(at("file/x"), { force: true }),
    failure: fails("remove", "BadResource", "ENOTDIR", "lstat '~/file/x'")
  },
  {
    name: "remove an empty directory without recursive",
    run: (fs, at) => fs.remove(at("empty")),
    failure: fails(
      "remove",
      "Unknown",
      "ERR_FS_EISDIR",
      "Path is a directory: rm returned EISDIR (is a directory) ~/empty"
    )
  },
  {
    name: "remove a symlinked directory with a trailing slash, without recursive",
    run: (fs, at) => fs.remove(at("linkdir/")),
    failure: fails(
      "remove",
      "Unknown",
      "ERR_FS_EISDIR",
      "Path is a directory: rm returned EISDIR (is a directory) ~/linkdir/"
    )
  },
  {
    name: "remove a directory recursively",
    run: (fs, at) => fs.remove(at("dir"), { recursive: true }),
    removes: ["dir/", "dir/sub/", "dir/sub/f: x"]
  },
  {
    name: "remove a symlinked directory recursively removes the link only",
    run: (fs, at) => fs.remove(at("linkdir"), { recursive: true }),
    removes: ["linkdir -> dir"]
  },

  // -- readDirectory
  {
    name: "readDirectory of a file",
    run: (fs, at) => fs.readDirectory(at("file")),
    failure: fails("readDirectory", "BadResource", "ENOTDIR", "scandir '~/file'")
  },
  {
    name: "readDirectory of a missing path",
    run: (fs, at) => fs.readDirectory(at("missing")),
    failure: fails("readDirectory", "NotFound", "ENOENT", "scandir '~/missing'")
  },
  {
    name: "readDirectory of a dangling symlink",
    run: (fs, at) => fs.readDirectory(at("dangling")),
    failure: fails("readDirectory", "NotFound", "ENOENT", "scandir '~/dangling'")
  },
  {
    name: "readDirectory through a symlinked directory",
    run: (fs, at) => fs.readDirectory(at("linkdir")),
    value: ["sub"]
  },
  {
    name: "readDirectory recursive",
    tree: [{ dir: "a" }, { dir: "a/b" }, { file: "a/b/c", data: "" }, { file: "d", data: "" }],
    run: (fs, at) => Effect.map(fs.readDirectory(at("."), { recursive: true }), (names) => names.sort()),
    value: ["a", "a/b", "a/b/c", "d"]
  },

  // -- stat, exists, access
  {
    name: "stat follows symlinks",
    run: (fs, at) => Effect.all([typeOf(fs, at("linkdir")), typeOf(fs, at("linkfile"))]),
    value: ["Directory", "File"]
  },
  {
    name: "stat of a FIFO",
    tree: [{ fifo: "pipe" }],
    run: (fs, at) => typeOf(fs, at("pipe")),
    value: "FIFO"
  },
  {
    name: "stat of a dangling symlink",
    run: (fs, at) => fs.stat(at("dangling")),
    failure: fails("stat", "NotFound", "ENOENT", "stat '~/dangling'")
  },
  {
    name: "stat of a symlink loop",
    run: (fs, at) => fs.stat(at("loop1")),
    failure: fails("stat", "BadResource", "ELOOP", "stat '~/loop1'")
  },
  {
    name: "stat of a file with a trailing slash",
    run: (fs, at) => fs.stat(at("file/")),
    failure: fails("stat", "BadResource", "ENOTDIR", "stat '~/file/'")
  },
  {
    name: "stat under a file",
    run: (fs, at) => fs.stat(at("file/x")),
    failure: fails("stat", "BadResource", "ENOTDIR", "stat '~/file/x'")
  },
  {
    name: "exists is false for a dangling symlink and a missing path",
    run: (fs, at) => Effect.all([fs.exists(at("dangling")), fs.exists(at("linkdir")), fs.exists(at("missing"))]),
    value: [false, true, false]
  },
  {
    name: "access of a missing path",
    run: (fs, at) => fs.access(at("missing")),
    failure: fails("access", "NotFound", "ENOENT", "access '~/missing'")
  },

  // -- readFile, writeFile, truncate
  {
    name: "readFile through a symlinked directory",
    run: (fs, at) => fs.readFileString(at("linkdir/sub/f")),
    value: "x"
  },
  {
    name: "readFile of a directory",
    run: (fs, at) => fs.readFile(at("dir")),
    failure: fails("readFile", "BadResource", "EISDIR", "read")
  },
  {
    name: "readFile of a missing path",
    run: (fs, at) => fs.readFile(at("missing")),
    failure: fails("readFile", "NotFound", "ENOENT", "open '~/missing'")
  },
  {
    name: "readFile of a symlink loop",
    run: (fs, at) => fs.readFile(at("loop1")),
    failure: fails("readFile", "BadResource", "ELOOP", "open '~/loop1'")
  },
  {
    name: "writeFile through a dangling symlink creates its target",
    run: (fs, at) => fs.writeFileString(at("dangling"), "data"),
    adds: ["nowhere: data"]
  },
  {
    name: "writeFile exclusive on a dangling symlink",
    run: (fs, at) => fs.writeFileString(at("dangling"), "data", { flag: "wx" }),
    failure: fails("writeFile", "AlreadyExists", "EEXIST", "open '~/dangling'")
  },
  {
    name: "writeFile exclusive on a file",
    run: (fs, at) => fs.writeFileString(at("file"), "data", { flag: "wx" }),
    failure: fails("writeFile", "AlreadyExists", "EEXIST", "open '~/file'")
  },
  {
    name: "writeFile on a directory",
    run: (fs, at) => fs.writeFileString(at("dir"), "data"),
    failure: fails("writeFile", "BadResource", "EISDIR", "open '~/dir'")
  },
  {
    name: "writeFile on a file with a trailing slash",
    run: (fs, at) => fs.writeFileString(at("file/"), "data"),
    failure: fails("writeFile", "BadResource", "EISDIR", "open '~/file/'")
  },
  {
    name: "writeFile replaces, or appends with flag a",
    run: (fs, at) =>
      Effect.zipRight(fs.writeFileString(at("file"), "bye"), fs.writeFileString(at("file"), "!", { flag: "a" })),
    removes: ["file: hello"],
    adds: ["file: bye!"]
  },
  {
    name: "writeFile with a mode",
    run: (fs, at) => Effect.zipRight(fs.writeFileString(at("new"), "", { mode: 0o600 }), modeOf(fs, at("new"))),
    value: "100600",
    adds: ["new: "]
  },
  {
    name: "truncate shortens and extends with zeros",
    run: (fs, at) =>
      Effect.zipRight(
        fs.truncate(at("file"), 2),
        Effect.zipRight(fs.truncate(at("file"), 4), Effect.map(fs.readFile(at("file")), (bytes) => Array.from(bytes)))
      ),
    value: [104, 101, 0, 0],
    removes: ["file: hello"],
    adds: ["file: he\0\0"]
  },
  {
    name: "truncate a directory",
    run: (fs, at) => fs.truncate(at("dir")),
    failure: fails("truncate", "BadResource", "EISDIR", "open '~/dir'")
  },

  // -- realPath
  {
    name: "realPath resolves symlinks",
    run: (fs, at) => fs.realPath(at("linkdir/sub")),
    value: "~/dir/sub"
  },
  {
    name: "realPath of a dangling symlink",
    run: (fs, at) => fs.realPath(at("dangling")),
    failure: fails("realPath", "NotFound", "ENOENT", "stat '~/dangling'")
  },
  {
    name: "realPath of a missing path",
    run: (fs, at) => fs.realPath(at("missing")),
    failure: fails("realPath", "NotFound", "ENOENT", "lstat '~/missing'")
  },
  {
    name: "realPath of a symlink loop",
    run: (fs, at) => fs.realPath(at("loop1")),
    failure: fails("realPath", "BadResource", "ELOOP", "stat '~/loop1'")
  },

  // -- link, copyFile
  {
    name: "link makes a second name for the same inode",
    run: (fs, at) =>
      Effect.zipRight(
        fs.link(at("file"), at("hard")),
        Effect.map(
          Effect.all([fs.stat(at("file")), fs.stat(at("hard"))]),
          ([a, b]) => [a.nlink, Option.getOrThrow(a.ino) === Option.getOrThrow(b.ino)]
        )
      ),
    value: [Option.some(2), true],
    adds: ["hard: hello"]
  },
  {
    name: "link of a directory",
    run: (fs, at) => fs.link(at("dir"), at("hard")),
    failure: fails("link", "Unknown", "EPERM", "link '~/dir' -> '~/hard'")
  },
  {
    name: "link onto an existing name",
    run: (fs, at) => fs.link(at("file"), at("dangling")),
    failure: fails("link", "AlreadyExists", "EEXIST", "link '~/file' -> '~/dangling'")
  },
  {
    name: "link of a missing path",
    run: (fs, at) => fs.link(at("missing"), at("hard")),
    failure: fails("link", "NotFound", "ENOENT", "link '~/missing' -> '~/hard'")
  },
  {
    name: "copyFile copies the content",
    run: (fs, at) => fs.copyFile(at("file"), at("copy")),
    adds: ["copy: hello"]
  },
  {
    name: "copyFile of a directory",
    run: (fs, at) => fs.copyFile(at("dir"), at("copy")),
    failure: fails("copyFile", "BadResource", "EISDIR", "copyfile '~/dir' -> '~/copy'")
  },
  {
    name: "copyFile onto a directory",
    run: (fs, at) => fs.copyFile(at("file"), at("dir")),
    failure: fails("copyFile", "BadResource", "EISDIR", "copyfile '~/file' -> '~/dir'")
  },
  {
    name: "copyFile of a missing path",
    run: (fs, at) => fs.copyFile(at("missing"), at("copy")),
    failure: fails("copyFile", "NotFound", "ENOENT", "copyfile '~/missing' -> '~/copy'")
  },

  // -- makeTempDirectory (its six random characters written XXXXXX)
  {
    name: "makeTempDirectory with a prefix in a given directory",
    run: (fs, at) =>
      fs.makeTempDirectory({ directory: at("."), prefix: "pre-" }).pipe(
        Effect.tap((made) => fs.remove(made, { recursive: true })),
        Effect.map((made) => made.slice(0, -6) + "XXXXXX")
      ),
    value: "~/pre-XXXXXX"
  },
  {
    name: "makeTempDirectory in a missing directory",
    run: (fs, at) =>
      fs.makeTempDirectory({ directory: at("missing") }).pipe(
        Effect.flip,
        Effect.orDie,
        Effect.map((error) => {
          const cause = error.cause as { code: string; path: string }
          return [
            error.method,
            "pathOrDescriptor" in error && error.pathOrDescriptor,
            "syscall" in error && error.syscall,
            cause.code,
            cause.path.slice(0, -6) + "XXXXXX"
          ]
        })
      ),
    value: ["makeTempDirectory", "~/missing/", "mkdtemp", "ENOENT", "~/missing/XXXXXX"]
  },

  // -- chmod, chown, utimes, watch
  {
    name: "chmod sets the permission bits",
    run: (fs, at) => Effect.zipRight(fs.chmod(at("file"), 0o600), modeOf(fs, at("file"))),
    value: "100600"
  },
  {
    name: "chmod of a dangling symlink",
    run: (fs, at) => fs.chmod(at("dangling"), 0o600),
    failure: fails("chmod", "NotFound", "ENOENT", "chmod '~/dangling'")
  },
  {
    name: "chown of a missing path",
    run: (fs, at) => fs.chown(at("missing"), 0, 0),
    failure: fails("chown", "NotFound", "ENOENT", "chown '~/missing'")
  },
  {
    name: "utimes takes numbers as seconds",
    run: (fs, at) =>
      Effect.zipRight(
        fs.utimes(at("file"), 1000, new Date(5000)),
        Effect.map(fs.stat(at("file")), (info) => [Option.map(info.atime, Number), Option.map(info.mtime, Number)])
      ),
    value: [Option.some(1_000_000), Option.some(5000)]
  },
  {
    name: "utimes of a missing path is reported as utime",
    run: (fs, at) => fs.utimes(at("missing"), 0, 0),
    failure: fails("utime", "NotFound", "ENOENT", "utime '~/missing'")
  },
  {
    name: "watch of a missing path",
    run: (fs, at) => Stream.runDrain(fs.watch(at("missing"))),
    failure: fails("stat", "NotFound", "ENOENT", "stat '~/missing'")
  }
]

// -- the two implementations

interface Subject {
  readonly name: string
  readonly test: typeof it.scopedLive
  readonly make: Effect.Effect<{
    readonly fs: FileSystem.FileSystem
    readonly makeFifo: (path: string) => Effect.Effect<void, unknown>
  }>
}

const subjects: ReadonlyArray<Subject> = [
  {
    name: "Node",
    test: it.scopedLive,
    make: Effect.map(Effect.provide(FileSystem.FileSystem, NodeFileSystem.layer), (fs) => ({
      fs,
      makeFifo: (path) => Effect.sync(() => ChildProcess.execFileSync("mkfifo", [path]))
    }))
  },
  {
    name: "memory",
    test: it.scoped,
    make: Effect.map(Testing.makeFileSystem(), (memory) => ({ fs: memory.fileSystem, makeFifo: memory.makeFifo }))
  }
]

const plant = (
  fs: FileSystem.FileSystem,
  makeFifo: (path: string) => Effect.Effect<void, unknown>,
  root: string,
  tree: ReadonlyArray<Entry>
) =>
  Effect.forEach(tree, (entry) => {
    if ("dir" in entry) return fs.makeDirectory(`${root}/${entry.dir}`)
    if ("file" in entry) return fs.writeFileString(`${root}/${entry.file}`, entry.data)
    if ("link" in entry) return fs.symlink(entry.target, `${root}/${entry.link}`)
    return makeFifo(`${root}/${entry.fifo}`)
  }, { discard: true })

/** Every path below `root`: `name/` for a directory, `name: content` for a file, `name -> target` for a link. */
const listing = (fs: FileSystem.FileSystem, root: string): Effect.Effect<Array<string>, PlatformError> => {
  const walk = (relative: string): Effect.Effect<Array<string>, PlatformError> =>
    Effect.flatMap(fs.readDirectory(`${root}${relative}`), (names) =>
      Effect.map(
        Effect.forEach(names, (name) => {
          const path = `${relative}/${name}`
          return Effect.flatMap(Effect.option(fs.readLink(`${root}${path}`)), (target) => {
            if (Option.isSome(target)) return Effect.succeed([`${path.slice(1)} -> ${target.value}`])
            return Effect.flatMap(fs.stat(`${root}${path}`), (info) => {
              switch (info.type) {
                case "Directory":
                  return Effect.map(walk(path), (below) => [`${path.slice(1)}/`, ...below])
                case "File":
                  return Effect.map(fs.readFileString(`${root}${path}`), (data) => [`${path.slice(1)}: ${data}`])
                default:
                  return Effect.succeed([`${path.slice(1)} (${info.type})`])
              }
            })
          })
        }),
        (lists) => lists.flat()
      ))
  return Effect.map(walk(""), (entries) => entries.sort())
}

const relativeTo = (root: string) => (value: unknown): unknown =>
  typeof value === "string"
    ? value.split(root).join("~")
    : Array.isArray(value)
    ? value.map(relativeTo(root))
    : value

for (const subject of subjects) {
  describe(`conformance: ${subject.name} file system`, () => {
    for (const testCase of cases) {
      subject.test(testCase.name, () =>
        Effect.gen(function*() {
          const { fs, makeFifo } = yield* subject.make
          const root = yield* fs.makeTempDirectoryScoped({ prefix: "conformance-" })
          yield* plant(fs, makeFifo, root, testCase.tree ?? baseTree)
          const before = yield* listing(fs, root)
          const relative = relativeTo(root)

          const result = yield* Effect.either(testCase.run(fs, (path) => `${root}/${path}`))
          if (result._tag === "Left") {
            const error = result.left
            assert.isDefined(testCase.failure, `unexpected failure: ${error.message}`)
            assert.strictEqual(error._tag, "SystemError")
            if (error._tag !== "SystemError") return
            const cause = error.cause as { code: string; errno: number; syscall: string; message: string }
            const failure = testCase.failure!
            assert.deepStrictEqual(
              { method: error.method, reason: error.reason, code: cause.code },
              { method: failure.method, reason: failure.reason, code: failure.code }
            )
            // "ENOENT: no such file or directory, lstat '~/missing'", or Node's own text for ERR_ codes.
            const description = String(relative(error.description))
            assert.isTrue(
              description === failure.tail ||
                (description.startsWith(`${failure.code}: `) && description.endsWith(`, ${failure.tail}`)),
              `description: ${description}`
            )
            assert.strictEqual(error.module, "FileSystem")
            assert.strictEqual(cause.syscall, error.syscall)
            assert.strictEqual(cause.message, error.description)
            assert.isNumber(cause.errno)
          } else {
            assert.isUndefined(testCase.failure, "expected a failure")
            if ("value" in testCase) assert.deepStrictEqual(relative(result.right), testCase.value)
          }

          const removes = new Set(testCase.removes ?? [])
          const expected = [...before.filter((entry) => !removes.has(entry)), ...testCase.adds ?? []].sort()
          assert.deepStrictEqual(yield* listing(fs, root), expected)
        }))
    }
  })
}

// =============================================================================
// The memory file system alone: fault hooks, watch, open files, permissions.
// =============================================================================

// What a test can compare of an error: everything but the stack.
const shapeOf = (error: PlatformError) => {
  const cause = error.cause as Record<string, unknown> | undefined
  return {
    tag: error._tag,
    reason: "reason" in error ? error.reason : undefined,
    module: error.module,
    method: error.method,
    pathOrDescriptor: "pathOrDescriptor" in error ? error.pathOrDescriptor : undefined,
    syscall: "syscall" in error ? error.syscall : undefined,
    description: error.description,
    cause: cause && {
      code: cause.code,
      errno: cause.errno,
      syscall: cause.syscall,
      path: cause.path,
      dest: cause.dest,
      message: cause.message
    }
  }
}

const recordCalls = (memory: Testing.MemoryFileSystem) =>
  Effect.gen(function*() {
    const calls: Array<Testing.FileSystemCall> = []
    yield* memory.setHook((call) => Effect.sync(() => void calls.push(call)))
    return calls
  })

describe("memory file system: fault hooks", () => {
  it.effect("systemError builds the error the file system itself reports", () =>
    Effect.gen(function*() {
      const { fileSystem: fs } = yield* Testing.makeFileSystem()
      yield* fs.makeDirectory("/tmp/d/sub", { recursive: true })
      yield* fs.writeFileString("/tmp/f", "")
      const pairs: ReadonlyArray<readonly [Effect.Effect<unknown, PlatformError>, PlatformError]> = [
        [fs.makeDirectory("/tmp/d"), Testing.systemError("makeDirectory", "/tmp/d", "EEXIST")],
        [fs.symlink("record", "/tmp/f"), Testing.systemError("symlink", "record", "EEXIST", { dest: "/tmp/f" })],
        [fs.rename("/tmp/f", "/tmp/d"), Testing.systemError("rename", "/tmp/f", "EISDIR", { dest: "/tmp/d" })],
        [fs.readLink("/tmp/f"), Testing.systemError("readLink", "/tmp/f", "EINVAL")],
        [fs.readFile("/tmp/d"), Testing.systemError("readFile", "/tmp/d", "EISDIR")],
        [fs.remove("/tmp/missing"), Testing.systemError("remove", "/tmp/missing", "ENOENT")],
        [fs.readDirectory("/tmp/f"), Testing.systemError("readDirectory", "/tmp/f", "ENOTDIR")],
        [fs.utimes("/tmp/missing", 0, 0), Testing.systemError("utimes", "/tmp/missing", "ENOENT")]
      ]
      for (const [effect, expected] of pairs) {
        assert.deepStrictEqual(shapeOf(yield* Effect.flip(effect)), shapeOf(expected))
      }
    }))

  it.effect("every call goes through the hook, numbered, with its paths", () =>
    Effect.gen(function*() {
      const memory = yield* Testing.makeFileSystem()
      const fs = memory.fileSystem
      yield* fs.makeDirectory("/tmp/a")
      const calls = yield* recordCalls(memory)
      yield* fs.symlink("record", "/tmp/a/entry")
      yield* fs.rename("/tmp/a", "/tmp/b")
      yield* fs.exists("/tmp/b")
      yield* fs.writeFileString("/tmp/f", "x")
      yield* fs.readFileString("/tmp/f")
      assert.deepStrictEqual(calls, [
        { index: 2, method: "symlink", path: "/tmp/a/entry", target: "record" },
        { index: 3, method: "rename", path: "/tmp/a", target: "/tmp/b" },
        { index: 4, method: "access", path: "/tmp/b" },
        { index: 5, method: "writeFile", path: "/tmp/f" },
        { index: 6, method: "readFile", path: "/tmp/f" }
      ])
      assert.strictEqual(yield* memory.calls, 6)
    }))

  it.effect("failCall(n) fails the n-th call with the Node layer's error, and the call has no effect", () =>
    Effect.gen(function*() {
      const memory = yield* Testing.makeFileSystem()
      const fs = memory.fileSystem
      yield* fs.makeDirectory("/tmp/home")
      const next = (yield* memory.calls) + 1
      yield* memory.setHook(Testing.failCall(next, "ENOSPC"))
      const error = yield* Effect.flip(fs.makeDirectory("/tmp/home/lock"))
      assert.deepStrictEqual(shapeOf(error), shapeOf(Testing.systemError("makeDirectory", "/tmp/home/lock", "ENOSPC")))
      assert.deepStrictEqual(
        [error._tag === "SystemError" && error.reason, (error.cause as { code: string; errno: number }).errno],
        ["Unknown", -28]
      )
      assert.deepStrictEqual(yield* fs.readDirectory("/tmp/home"), [])
      // Only that call: the same one again succeeds.
      yield* fs.makeDirectory("/tmp/home/lock")
    }))

  it.effect("reason follows the Node layer's mapping for injected codes", () =>
    Effect.gen(function*() {
      const expected: ReadonlyArray<readonly [Testing.Errno, string]> = [
        ["ENOENT", "NotFound"],
        ["EACCES", "PermissionDenied"],
        ["EEXIST", "AlreadyExists"],
        ["EISDIR", "BadResource"],
        ["ENOTDIR", "BadResource"],
        ["ELOOP", "BadResource"],
        ["EBUSY", "Busy"],
        ["EPERM", "Unknown"],
        ["ENOTEMPTY", "Unknown"],
        ["ESRCH", "Unknown"],
        ["EXDEV", "Unknown"]
      ]
      for (const [errno, reason] of expected) {
        const memory = yield* Testing.makeFileSystem({ hook: Testing.failCall(1, errno) })
        const error = yield* Effect.flip(memory.fileSystem.rename("/tmp/a", "/tmp/b"))
        assert.deepStrictEqual(
          [error._tag === "SystemError" && error.reason, (error.cause as { code: string }).code],
          [reason, errno]
        )
      }
    }))

  it.effect("failing each call of a clean run in turn leaves exactly the calls before it done", () =>
    Effect.gen(function*() {
      // The lock's acquire: staging directory, owner record, rename onto the lock.
      const steps = (fs: FileSystem.FileSystem) => [
        fs.makeDirectory("/tmp/home", { recursive: true }),
        fs.makeDirectory("/tmp/home/42.aa"),
        fs.symlink("{\"pid\":42}", "/tmp/home/42.aa/42.aa"),
        fs.rename("/tmp/home/42.aa", "/tmp/home/lock"),
        fs.readDirectory("/tmp/home/lock")
      ]
      const clean = yield* Testing.makeFileSystem()
      const afterEach: Array<Array<string>> = [yield* listing(clean.fileSystem, "/tmp")]
      for (const step of steps(clean.fileSystem)) {
        yield* step
        afterEach.push(yield* listing(clean.fileSystem, "/tmp"))
      }
      // listing makes calls too: count the steps' calls on a fresh run.
      const counted = yield* Testing.makeFileSystem()
      yield* Effect.all(steps(counted.fileSystem))
      const total = yield* counted.calls
      assert.strictEqual(total, steps(counted.fileSystem).length)

      for (let n = 1; n <= total; n++) {
        const memory = yield* Testing.makeFileSystem({ hook: Testing.failCall(n, "EIO") })
        const error = yield* Effect.flip(Effect.all(steps(memory.fileSystem)))
        assert.strictEqual((error.cause as { code: string }).code, "EIO")
        yield* memory.setHook(Testing.noFaults)
        assert.deepStrictEqual(yield* listing(memory.fileSystem, "/tmp"), afterEach[n - 1], `failing call ${n}`)
      }
    }))

  it.effect("failMatching fails matching calls, `times` times", () =>
    Effect.gen(function*() {
      const memory = yield* Testing.makeFileSystem({
        hook: Testing.failMatching({ method: "rename", path: /\/staging$/, errno: "EXDEV", times: 1 })
      })
      const fs = memory.fileSystem
      yield* fs.makeDirectory("/tmp/staging")
      const error = yield* Effect.flip(fs.rename("/tmp/staging", "/tmp/lock"))
      assert.deepStrictEqual(
        shapeOf(error),
        shapeOf(Testing.systemError("rename", "/tmp/staging", "EXDEV", { dest: "/tmp/lock" }))
      )
      yield* fs.rename("/tmp/staging", "/tmp/lock")
      assert.deepStrictEqual(yield* fs.readDirectory("/tmp"), ["lock"])
    }))

  it.effect("failMatching on symlink reports the target text as the path, as Node does", () =>
    Effect.gen(function*() {
      const memory = yield* Testing.makeFileSystem({
        hook: Testing.failMatching({ method: "symlink", path: "/tmp/entry", errno: "ENOSPC" })
      })
      const error = yield* Effect.flip(memory.fileSystem.symlink("record", "/tmp/entry"))
      assert.deepStrictEqual(
        shapeOf(error),
        shapeOf(Testing.systemError("symlink", "record", "ENOSPC", { dest: "/tmp/entry" }))
      )
      assert.deepStrictEqual(yield* memory.fileSystem.readDirectory("/tmp"), [])
    }))

  it.effect("combineHooks: the first failing hook wins; setHook replaces the hook", () =>
    Effect.gen(function*() {
      const memory = yield* Testing.makeFileSystem()
      const fs = memory.fileSystem
      const seen: Array<number> = []
      yield* memory.setHook(Testing.combineHooks(
        (call) => Effect.sync(() => void seen.push(call.index)),
        Testing.failMatching({ path: "/tmp/a", errno: "EACCES" }),
        Testing.failMatching({ path: /./, errno: "EIO" })
      ))
      const first = yield* Effect.flip(fs.makeDirectory("/tmp/a"))
      const second = yield* Effect.flip(fs.makeDirectory("/tmp/b"))
      assert.deepStrictEqual([first, second].map((error) => (error.cause as { code: string }).code), ["EACCES", "EIO"])
      assert.deepStrictEqual(seen, [1, 2])
      yield* memory.setHook(Testing.noFaults)
      yield* fs.makeDirectory("/tmp/a")
      assert.deepStrictEqual(yield* fs.readDirectory("/tmp"), ["a"])
    }))

  it.effect("a suspended hook holds the call back; the call takes effect once released, or never if interrupted", () =>
    Effect.gen(function*() {
      const memory = yield* Testing.makeFileSystem()
      const fs = memory.fileSystem
      yield* fs.makeDirectory("/tmp/staging")
      const release = yield* Deferred.make<void>()
      yield* memory.setHook((call) => call.method === "rename" ? Deferred.await(release) : Effect.void)

      const renaming = yield* Effect.fork(fs.rename("/tmp/staging", "/tmp/lock"))
      yield* Effect.yieldNow()
      assert.deepStrictEqual(yield* fs.readDirectory("/tmp"), ["staging"])
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(renaming)
      assert.deepStrictEqual(yield* fs.readDirectory("/tmp"), ["lock"])

      yield* memory.setHook((call) => call.method === "rename" ? Effect.never : Effect.void)
      const stuck = yield* Effect.fork(fs.rename("/tmp/lock", "/tmp/other"))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(stuck)
      assert.deepStrictEqual(yield* fs.readDirectory("/tmp"), ["lock"])
    }))
})

// Start watching, and wait until the watch is registered: it is, within its call, as soon as the forked fiber runs.
const watching = (memory: Testing.MemoryFileSystem, path: string, options?: FileSystem.WatchOptions) =>
  Effect.gen(function*() {
    const events = yield* Queue.unbounded<string>()
    const calls = yield* memory.calls
    yield* Effect.forkScoped(
      Stream.runForEach(
        memory.fileSystem.watch(path, options),
        (event) => Queue.offer(events, `${event._tag} ${event.path}`)
      )
    )
    while ((yield* memory.calls) === calls) yield* Effect.yieldNow()
    return events
  })

const received = (events: Queue.Queue<string>, count: number) =>
  Effect.gen(function*() {
    const taken = Chunk.toReadonlyArray(yield* Queue.takeBetween(events, count, count))
    for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
    assert.strictEqual(yield* Queue.size(events), 0, "no more events")
    return taken
  })

describe("memory file system: watch", () => {
  it.scoped("a directory watch reports its entries: Create, Update, Remove", () =>
    Effect.gen(function*() {
      const memory = yield* Testing.makeFileSystem()
      const fs = memory.fileSystem
      yield* fs.makeDirectory("/tmp/w")
      yield* fs.writeFileString("/tmp/w/old", "x")
      const events = yield* watching(memory, "/tmp/w")
      yield* fs.writeFileString("/tmp/w/new", "data")
      yield* fs.writeFileString("/tmp/w/old", "more")
      yield* fs.makeDirectory("/tmp/w/d")
      yield* fs.rename("/tmp/w/new", "/tmp/w/new2")
      yield* fs.remove("/tmp/w/old")
      yield* fs.chmod("/tmp/w/d", 0o700)
      yield* fs.writeFileString("/tmp/w/d/deeper", "")
      assert.deepStrictEqual(yield* received(events, 9), [
        "Create new",
        "Update new",
        // Truncated, then written, as Node reports it.
        "Update old",
        "Update old",
        "Create d",
        "Remove new",
        "Create new2",
        "Remove old",
        "Update d"
      ])
    }))

  it.scoped("a file watch follows the inode: renamed, written, then removed", () =>
    Effect.gen(function*() {
      const memory = yield* Testing.makeFileSystem()
      const fs = memory.fileSystem
      yield* fs.writeFileString("/tmp/f", "x")
      const events = yield* watching(memory, "/tmp/f")
      yield* fs.rename("/tmp/f", "/tmp/g")
      yield* fs.writeFileString("/tmp/g", "y", { flag: "a" })
      yield* fs.remove("/tmp/g")
      yield* fs.writeFileString("/tmp/f", "a new inode")
      assert.deepStrictEqual(yield* received(events, 3), ["Remove f", "Update f", "Remove f"])
    }))

  it.scoped("a watch on a lock directory falls silent once a staging directory is renamed onto it", () =>
    Effect.gen(function*() {
      const memory = yield* Testing.makeFileSystem()
      const fs = memory.fileSystem
      yield* fs.makeDirectory("/tmp/home/lock", { recursive: true })
      const onLock = yield* watching(memory, "/tmp/home/lock")
      const onHome = yield* watching(memory, "/tmp/home")
      yield* fs.symlink("old holder", "/tmp/home/lock/1.a")
      yield* fs.remove("/tmp/home/lock/1.a")
      yield* fs.makeDirectory("/tmp/home/2.b")
      yield* fs.symlink("new holder", "/tmp/home/2.b/2.b")
      yield* fs.rename("/tmp/home/2.b", "/tmp/home/lock")
      yield* fs.remove("/tmp/home/lock/2.b")
      assert.deepStrictEqual(yield* received(onLock, 3), ["Create 1.a", "Remove 1.a", "Remove lock"])
      assert.deepStrictEqual(yield* received(onHome, 4), ["Create 2.b", "Remove 2.b", "Remove lock", "Create lock"])
    }))

  it.scoped("a recursive watch reports paths below it", () =>
    Effect.gen(function*() {
      const memory = yield* Testing.makeFileSystem()
      const fs = memory.fileSystem
      yield* fs.makeDirectory("/tmp/r")
      const events = yield* watching(memory, "/tmp/r", { recursive: true })
      yield* fs.makeDirectory("/tmp/r/sub")
      yield* fs.writeFileString("/tmp/r/sub/x", "")
      yield* fs.remove("/tmp/r/sub", { recursive: true })
      assert.deepStrictEqual(yield* received(events, 4), ["Create sub", "Create sub/x", "Remove sub/x", "Remove sub"])
    }))
})

describe("memory file system: files, temporary directories, what it does not do", () => {
  it.scoped("open, stream and sink read and write; an open file keeps its inode after unlink", () =>
    Effect.gen(function*() {
      const { fileSystem: fs } = yield* Testing.makeFileSystem()
      yield* Stream.make(new TextEncoder().encode("hello "), new TextEncoder().encode("world")).pipe(
        Stream.run(fs.sink("/tmp/f"))
      )
      const chunks = yield* Stream.runCollect(fs.stream("/tmp/f", { chunkSize: 4 }))
      assert.strictEqual(new TextDecoder().decode(Buffer.concat(Chunk.toReadonlyArray(chunks))), "hello world")

      const file = yield* fs.open("/tmp/f", { flag: "r+" })
      yield* fs.remove("/tmp/f")
      yield* file.seek(6, "start")
      yield* file.write(new TextEncoder().encode("WORLD"))
      yield* file.seek(0, "start")
      const read = yield* file.readAlloc(64)
      assert.strictEqual(new TextDecoder().decode(Option.getOrThrow(read)), "hello WORLD")
      assert.isFalse(yield* fs.exists("/tmp/f"))
    }))

  it.scoped("makeTempDirectoryScoped and makeTempFileScoped are removed with the scope", () =>
    Effect.gen(function*() {
      const { fileSystem: fs } = yield* Testing.makeFileSystem()
      const [directory, file] = yield* Effect.scoped(Effect.gen(function*() {
        const directory = yield* fs.makeTempDirectoryScoped({ prefix: "lock-" })
        yield* fs.writeFileString(`${directory}/inside`, "")
        const file = yield* fs.makeTempFileScoped({ suffix: ".json" })
        assert.deepStrictEqual(yield* fs.readFileString(file), "")
        return [directory, file] as const
      }))
      assert.match(directory, /^\/tmp\/lock-\w{6}$/)
      assert.match(file, /^\/tmp\/\w{6}\/\w{12}\.json$/)
      assert.deepStrictEqual(yield* fs.readDirectory("/tmp"), [])
    }))

  it.scoped("what it does not do fails with BadArgument naming the method, and never blocks", () =>
    Effect.gen(function*() {
      const memory = yield* Testing.makeFileSystem()
      const fs = memory.fileSystem
      yield* memory.makeFifo("/tmp/pipe")
      const errors = yield* Effect.all([
        Effect.flip(fs.copy("/tmp", "/copy")),
        Effect.flip(fs.readFile("/tmp/pipe")),
        Effect.flip(fs.writeFileString("/tmp/pipe", "x")),
        Effect.flip(fs.open("/tmp/pipe"))
      ])
      assert.deepStrictEqual(
        errors.map((error) => [error._tag, error.method]),
        [["BadArgument", "copy"], ["BadArgument", "readFile"], ["BadArgument", "writeFile"], ["BadArgument", "open"]]
      )
    }))

  it.effect("relative paths resolve against /", () =>
    Effect.gen(function*() {
      const { fileSystem: fs } = yield* Testing.makeFileSystem()
      yield* fs.writeFileString("tmp/f", "x")
      assert.strictEqual(yield* fs.readFileString("/tmp/f"), "x")
      assert.strictEqual(yield* fs.realPath("tmp/../tmp/./f"), "/tmp/f")
    }))
})

describe("memory file system: an unprivileged user", () => {
  // Each outcome as the Node layer reported it, measured on Linux as uid 1000
  // in a directory set up by root:
  //   sticky/ (1777) holding root's rootfile, rootdir/ and uid 1000's own;
  //   ro/ (555) holding f and sub/; noread/ (300); nosearch/ (600) holding f;
  //   secret (600); mine (uid 1000).
  const setUp = Effect.gen(function*() {
    const memory = yield* Testing.makeFileSystem({ uid: 0, gid: 0 })
    const fs = memory.fileSystem
    yield* fs.makeDirectory("/tmp/sticky", { mode: 0o777 })
    yield* fs.chmod("/tmp/sticky", 0o1777)
    yield* fs.writeFileString("/tmp/sticky/rootfile", "")
    yield* fs.makeDirectory("/tmp/sticky/rootdir")
    yield* fs.writeFileString("/tmp/sticky/own", "")
    yield* fs.chown("/tmp/sticky/own", 1000, 1000)
    yield* fs.makeDirectory("/tmp/ro/sub", { recursive: true })
    yield* fs.writeFileString("/tmp/ro/f", "")
    yield* fs.chmod("/tmp/ro", 0o555)
    yield* fs.makeDirectory("/tmp/noread", { mode: 0o300 })
    yield* fs.makeDirectory("/tmp/nosearch")
    yield* fs.writeFileString("/tmp/nosearch/f", "")
    yield* fs.chmod("/tmp/nosearch", 0o600)
    yield* fs.writeFileString("/tmp/secret", "s", { mode: 0o600 })
    yield* fs.writeFileString("/tmp/mine", "")
    yield* fs.chown("/tmp/mine", 1000, 1000)
    return memory.asUser({ uid: 1000, gid: 1000 })
  })

  const outcomes: ReadonlyArray<
    readonly [string, (fs: FileSystem.FileSystem) => Effect.Effect<unknown, PlatformError>, string]
  > = [
    // fs.rm: unlink EPERM (sticky), then rmdir EPERM, then reading the "directory" fails.
    [
      "remove another's file in a sticky directory",
      (fs) => fs.remove("/tmp/sticky/rootfile"),
      "ENOTDIR scandir /tmp/sticky/rootfile"
    ],
    [
      "remove another's directory in a sticky directory",
      (fs) => fs.remove("/tmp/sticky/rootdir", { recursive: true }),
      "EPERM rmdir /tmp/sticky/rootdir"
    ],
    [
      "rename another's file in a sticky directory",
      (fs) => fs.rename("/tmp/sticky/rootfile", "/tmp/sticky/x"),
      "EPERM rename /tmp/sticky/rootfile"
    ],
    ["makeDirectory in a read-only directory", (fs) => fs.makeDirectory("/tmp/ro/x"), "EACCES mkdir /tmp/ro/x"],
    [
      "makeDirectory of an existing name in a read-only directory",
      (fs) => fs.makeDirectory("/tmp/ro/sub"),
      "EEXIST mkdir /tmp/ro/sub"
    ],
    [
      "makeDirectory recursive of an existing directory in a read-only directory",
      (fs) => fs.makeDirectory("/tmp/ro/sub", { recursive: true }),
      "ok"
    ],
    ["symlink in a read-only directory", (fs) => fs.symlink("t", "/tmp/ro/x"), "EACCES symlink t"],
    [
      "symlink onto an existing name in a read-only directory",
      (fs) => fs.symlink("t", "/tmp/ro/f"),
      "EEXIST symlink t"
    ],
    ["remove in a read-only directory", (fs) => fs.remove("/tmp/ro/f"), "EACCES unlink /tmp/ro/f"],
    [
      "rename out of a read-only directory",
      (fs) => fs.rename("/tmp/ro/f", "/tmp/sticky/mine"),
      "EACCES rename /tmp/ro/f"
    ],
    [
      "rename into a read-only directory",
      (fs) => fs.rename("/tmp/sticky/own", "/tmp/ro/own"),
      "EACCES rename /tmp/sticky/own"
    ],
    [
      "rename a missing name in a read-only directory",
      (fs) => fs.rename("/tmp/ro/missing", "/tmp/sticky/zz"),
      "ENOENT rename /tmp/ro/missing"
    ],
    ["readDirectory without read permission", (fs) => fs.readDirectory("/tmp/noread"), "EACCES scandir /tmp/noread"],
    [
      "stat through a directory without search permission",
      (fs) => fs.stat("/tmp/nosearch/f"),
      "EACCES stat /tmp/nosearch/f"
    ],
    [
      "readLink through a directory without search permission",
      (fs) => fs.readLink("/tmp/nosearch/f"),
      "EACCES readlink /tmp/nosearch/f"
    ],
    [
      "remove with force through a directory without search permission",
      (fs) => fs.remove("/tmp/nosearch/missing", { force: true }),
      "EACCES lstat /tmp/nosearch/missing"
    ],
    ["readFile without read permission", (fs) => fs.readFile("/tmp/secret"), "EACCES open /tmp/secret"],
    ["writeFile without write permission", (fs) => fs.writeFileString("/tmp/secret", "x"), "EACCES open /tmp/secret"],
    ["access readable", (fs) => fs.access("/tmp/secret", { readable: true }), "EACCES access /tmp/secret"],
    ["access writable", (fs) => fs.access("/tmp/ro", { writable: true }), "EACCES access /tmp/ro"],
    ["access", (fs) => fs.access("/tmp/ro"), "ok"],
    ["chmod of another's file", (fs) => fs.chmod("/tmp/secret", 0o777), "EPERM chmod /tmp/secret"],
    ["chown to root", (fs) => fs.chown("/tmp/mine", 0, 0), "EPERM chown /tmp/mine"],
    ["utimes of another's file", (fs) => fs.utimes("/tmp/secret", 0, 0), "EPERM utime /tmp/secret"]
  ]

  for (const [name, run, expected] of outcomes) {
    it.effect(name, () =>
      Effect.gen(function*() {
        const fs = yield* setUp
        const outcome = yield* Effect.match(run(fs), {
          onSuccess: () => "ok",
          onFailure: (error) => {
            const cause = error.cause as { code: string; syscall: string; path: string }
            return `${cause.code} ${cause.syscall} ${cause.path}`
          }
        })
        assert.strictEqual(outcome, expected)
      }))
  }

  it.effect("files the user creates are theirs, with the umask applied", () =>
    Effect.gen(function*() {
      const fs = yield* setUp
      yield* fs.writeFileString("/tmp/sticky/new", "")
      const info = yield* fs.stat("/tmp/sticky/new")
      assert.deepStrictEqual([info.uid, info.gid, info.mode.toString(8)], [
        Option.some(1000),
        Option.some(1000),
        "100644"
      ])
    }))
})

describe("memory file system: remove is two calls, as Node's fs.rm", () => {
  it.scoped("the hook sees an lstat, then an unlink or an rmdir; a missing path or a directory without recursive ends at the lstat", () =>
    Effect.gen(function*() {
      const memory = yield* Testing.makeFileSystem()
      const fs = memory.fileSystem
      yield* fs.writeFileString("/tmp/f", "")
      yield* fs.makeDirectory("/tmp/d/sub", { recursive: true })
      yield* fs.symlink("d", "/tmp/l")
      yield* fs.makeDirectory("/tmp/e")
      const calls = yield* recordCalls(memory)
      yield* fs.remove("/tmp/f")
      yield* fs.remove("/tmp/l", { recursive: true })
      yield* fs.remove("/tmp/d", { recursive: true })
      yield* fs.remove("/tmp/missing", { force: true })
      yield* Effect.flip(fs.remove("/tmp/e"))
      const steps = (path: string, ...syscalls: ReadonlyArray<string>) =>
        syscalls.map((syscall) => ({ method: "remove", path, syscall }))
      assert.deepStrictEqual(calls.map(({ index: _, ...call }) => call), [
        ...steps("/tmp/f", "lstat", "unlink"),
        ...steps("/tmp/l", "lstat", "unlink"),
        ...steps("/tmp/d", "lstat", "rmdir"),
        ...steps("/tmp/missing", "lstat"),
        ...steps("/tmp/e", "lstat")
      ])
      assert.deepStrictEqual(calls.map((call) => call.index), [5, 6, 7, 8, 9, 10, 11, 12])
      assert.deepStrictEqual(yield* fs.readDirectory("/tmp"), ["e"])

      // The scoped temporary directories are removed the same way.
      calls.length = 0
      const made = yield* Effect.scoped(fs.makeTempDirectoryScoped())
      assert.deepStrictEqual(calls.slice(1).map(({ index: _, ...call }) => call), [
        { method: "makeTempDirectoryScoped", path: made, syscall: "lstat" },
        { method: "makeTempDirectoryScoped", path: made, syscall: "rmdir" }
      ])
    }))

  it.effect("two removes of one entry, interleaved between their lstat and unlink, both succeed", () =>
    Effect.gen(function*() {
      const memory = yield* Testing.makeFileSystem()
      const fs = memory.fileSystem
      yield* fs.symlink("record", "/tmp/entry")
      // Each remove waits at its unlink until both have made their lstat.
      const bothChecked = yield* Deferred.make<void>()
      let checked = 0
      const steps: Array<string> = []
      yield* memory.setHook((call) =>
        Effect.suspend(() => {
          steps.push(call.syscall ?? call.method)
          if (call.syscall !== "lstat") return Deferred.await(bothChecked)
          return ++checked === 2 ? Deferred.succeed(bothChecked, undefined) : Effect.void
        })
      )
      const exits = yield* Effect.all([Effect.exit(fs.remove("/tmp/entry")), Effect.exit(fs.remove("/tmp/entry"))], {
        concurrency: "unbounded"
      })
      assert.deepStrictEqual(steps, ["lstat", "unlink", "lstat", "unlink"])
      assert.deepStrictEqual(exits.map(Exit.isSuccess), [true, true])
      assert.deepStrictEqual(yield* fs.readDirectory("/tmp"), [])
      // Not interleaved, the second finds nothing at its lstat.
      yield* memory.setHook(Testing.noFaults)
      yield* fs.symlink("record", "/tmp/entry")
      yield* fs.remove("/tmp/entry")
      assert.strictEqual(codeOfError(yield* Effect.flip(fs.remove("/tmp/entry"))), "ENOENT")
    }))

  it.effect("no compare-and-swap: an entry replaced between the two steps is removed, the new one", () =>
    Effect.gen(function*() {
      const memory = yield* Testing.makeFileSystem()
      const fs = memory.fileSystem
      yield* fs.symlink("old holder", "/tmp/entry")
      const atUnlink = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      yield* memory.setHook((call) =>
        call.syscall === "unlink" && call.path === "/tmp/entry"
          ? Effect.zipRight(Deferred.succeed(atUnlink, undefined), Deferred.await(release))
          : Effect.void
      )
      const removing = yield* Effect.fork(fs.remove("/tmp/entry"))
      yield* Deferred.await(atUnlink)
      yield* memory.setHook(Testing.noFaults)
      yield* fs.rename("/tmp/entry", "/tmp/moved")
      yield* fs.symlink("new holder", "/tmp/entry")
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(removing)
      assert.deepStrictEqual(yield* fs.readDirectory("/tmp"), ["moved"])
      assert.strictEqual(yield* fs.readLink("/tmp/moved"), "old holder")
    }))

  it.effect("a fault injected at either step reports that step's system call, and removes nothing", () =>
    Effect.gen(function*() {
      for (const [index, syscall] of [[2, "lstat"], [3, "unlink"]] as const) {
        const memory = yield* Testing.makeFileSystem({ hook: Testing.failCall(index, "EIO") })
        const fs = memory.fileSystem
        yield* fs.writeFileString("/tmp/f", "")
        const error = yield* Effect.flip(fs.remove("/tmp/f"))
        assert.deepStrictEqual(shapeOf(error), shapeOf(Testing.systemError("remove", "/tmp/f", "EIO", { syscall })))
        assert.strictEqual(error.description, `EIO: i/o error, ${syscall} '/tmp/f'`)
        assert.deepStrictEqual(yield* fs.readDirectory("/tmp"), ["f"])
      }
    }))
})

// =============================================================================
// The Posix service of a fake process: lstat, listen, probe.
// =============================================================================

const codeOfError = (error: PlatformError) => (error.cause as { code?: string } | undefined)?.code

const makeMachine = (options?: Omit<Testing.MemoryFileSystemOptions, "processes">) =>
  Effect.gen(function*() {
    const processes = yield* Testing.makeProcessTable()
    const memory = yield* Testing.makeFileSystem({ ...options, processes })
    const posixOf = (pid: number, fs: FileSystem.FileSystem = memory.fileSystem) =>
      Effect.provideService(Testing.makePosix(pid), FileSystem.FileSystem, fs)
    // A new process and its Posix service.
    const start = Effect.flatMap(processes.spawn(), (process) => posixOf(process.pid))
    return { processes, memory, fs: memory.fileSystem, posixOf, start }
  })

describe("memory Posix: lstat", () => {
  // Each path of the conformance tree, on the real disk through node:fs and in memory.
  const paths = [
    "file",
    "dir",
    "linkfile",
    "linkdir",
    "linkdir/",
    "dangling",
    "dangling/",
    "loop1",
    "loop1/",
    "missing",
    "file/x",
    "file/"
  ]

  it.scopedLive("answers as Node's lstat on every entry of the conformance tree", () =>
    Effect.gen(function*() {
      const node = yield* Effect.provide(FileSystem.FileSystem, NodeFileSystem.layer)
      const realRoot = yield* node.makeTempDirectoryScoped({ prefix: "lstat-" })
      yield* plant(node, () => Effect.void, realRoot, baseTree)
      const { memory, start } = yield* makeMachine()
      yield* plant(memory.fileSystem, memory.makeFifo, "/tmp", baseTree)
      const posix = yield* start

      for (const path of paths) {
        let expected: unknown
        try {
          const stats = NFS.lstatSync(`${realRoot}/${path}`)
          expected = {
            type: stats.isSymbolicLink() ? "SymbolicLink" : stats.isDirectory() ? "Directory" : "File",
            size: stats.isDirectory() ? undefined : stats.size
          }
        } catch (error) {
          const { code, message, syscall } = error as NodeJS.ErrnoException
          expected = { code, syscall, message: message.split(realRoot).join("~") }
        }
        const actual = yield* posix.lstat(`/tmp/${path}`).pipe(
          Effect.map((info) => ({ type: info.type, size: info.type === "Directory" ? undefined : Number(info.size) })),
          Effect.catchAll((error) => {
            const cause = error.cause as NodeJS.ErrnoException
            assert.strictEqual(error.method, "lstat")
            assert.strictEqual(error._tag === "SystemError" && error.syscall, "lstat")
            assert.strictEqual(error.description, cause.message)
            return Effect.succeed({
              code: cause.code,
              syscall: cause.syscall,
              message: cause.message.split("/tmp").join("~")
            })
          })
        )
        assert.deepStrictEqual(actual, expected, path)
      }
    }))

  it.effect("goes through the hook, and its errors are those systemError builds", () =>
    Effect.gen(function*() {
      const { memory, start } = yield* makeMachine()
      const posix = yield* start
      const calls = yield* recordCalls(memory)
      const error = yield* Effect.flip(posix.lstat("/tmp/missing"))
      assert.deepStrictEqual(shapeOf(error), shapeOf(Testing.systemError("lstat", "/tmp/missing", "ENOENT")))
      yield* memory.setHook(Testing.failMatching({ method: "lstat", path: "/tmp", errno: "EIO" }))
      const injected = yield* Effect.flip(posix.lstat("/tmp"))
      assert.deepStrictEqual(shapeOf(injected), shapeOf(Testing.systemError("lstat", "/tmp", "EIO")))
      assert.deepStrictEqual(calls, [{ index: 1, method: "lstat", path: "/tmp/missing" }])
    }))
})

describe("memory Posix: listen", () => {
  it.effect("makes <directory>/<pid>.<token>.sock, a socket of the user, mode 0777 less the umask, once per directory", () =>
    Effect.gen(function*() {
      const { fs, memory, posixOf, processes } = yield* makeMachine({ umask: 0o027 })
      const process = yield* processes.spawn()
      const posix = yield* posixOf(process.pid)
      yield* fs.makeDirectory("/tmp/home")
      const calls = yield* recordCalls(memory)
      const listener = yield* posix.listen("/tmp/home")
      assert.match(listener.path, new RegExp(`^/tmp/home/${process.pid}\\.[0-9a-f]{16}\\.sock$`))
      assert.strictEqual(listener.path, posix.socketPath("/tmp/home"))
      assert.isTrue(Option.isNone(listener.descriptor))
      const info = yield* fs.stat(listener.path)
      assert.deepStrictEqual(
        [info.type, info.mode.toString(8), info.uid, info.gid, Number(info.size)],
        ["Socket", "140750", Option.some(1000), Option.some(1000), 0]
      )
      // The same listener for the same directory, however spelled, without a call.
      assert.strictEqual(yield* posix.listen("/tmp/home/"), listener)
      assert.strictEqual(yield* posix.listen("/tmp/./home"), listener)
      assert.deepStrictEqual(calls, [
        { index: 2, method: "listen", path: listener.path },
        { index: 3, method: "stat", path: listener.path }
      ])
      // Another directory: the same name there.
      const inTmp = yield* posix.listen("/tmp")
      assert.strictEqual(inTmp.path, Path.join("/tmp", Path.basename(listener.path)))
      assert.deepStrictEqual(yield* fs.readDirectory("/tmp/home"), [Path.basename(listener.path)])
      // Another service of the same process: another token.
      const again = yield* posixOf(process.pid)
      assert.notStrictEqual(again.socketPath("/tmp/home"), listener.path)
    }))

  it.effect("two concurrent listens on one directory make one socket", () =>
    Effect.gen(function*() {
      const { fs, memory, start } = yield* makeMachine()
      const posix = yield* start
      const bothArrived = yield* Deferred.make<void>()
      let arrived = 0
      yield* memory.setHook(() =>
        Effect.suspend(() => ++arrived === 2 ? Deferred.succeed(bothArrived, undefined) : Deferred.await(bothArrived))
      )
      const [a, b] = yield* Effect.all([posix.listen("/tmp"), posix.listen("/tmp")], { concurrency: "unbounded" })
      assert.strictEqual(arrived, 2)
      assert.strictEqual(a, b)
      yield* memory.setHook(Testing.noFaults)
      assert.deepStrictEqual(yield* fs.readDirectory("/tmp"), [Path.basename(a.path)])
    }))

  it.effect("fails as Node's listen: EADDRINUSE, EACCES for a missing or unwritable directory, ENOTDIR; a failure is not kept", () =>
    Effect.gen(function*() {
      const { fs, start } = yield* makeMachine()
      const posix = yield* start
      const inHome = posix.socketPath("/tmp/home")
      yield* fs.makeDirectory("/tmp/home")
      // bind creates the name as mknod does: a dangling symbolic link is in use too.
      yield* fs.symlink("nowhere", inHome)
      const inUse = yield* Effect.flip(posix.listen("/tmp/home"))
      assert.deepStrictEqual(shapeOf(inUse), shapeOf(Testing.systemError("listen", inHome, "EADDRINUSE")))
      assert.deepStrictEqual(shapeOf(inUse), {
        tag: "SystemError",
        reason: "Unknown",
        module: "FileSystem",
        method: "listen",
        pathOrDescriptor: inHome,
        syscall: "listen",
        description: `listen EADDRINUSE: address already in use ${inHome}`,
        cause: {
          code: "EADDRINUSE",
          errno: -98,
          syscall: "listen",
          path: undefined,
          dest: undefined,
          message: `listen EADDRINUSE: address already in use ${inHome}`
        }
      })
      assert.strictEqual((inUse.cause as { address: string }).address, inHome)

      yield* fs.writeFileString("/tmp/file", "")
      yield* fs.makeDirectory("/tmp/ro", { mode: 0o555 })
      const failures = yield* Effect.forEach(
        ["/tmp/missing", "/tmp/ro", "/tmp/file"],
        (directory) =>
          Effect.map(Effect.flip(posix.listen(directory)), (error) => [
            error._tag === "SystemError" && error.reason,
            error.description
          ])
      )
      assert.deepStrictEqual(failures, [
        ["PermissionDenied", `listen EACCES: permission denied ${posix.socketPath("/tmp/missing")}`],
        ["PermissionDenied", `listen EACCES: permission denied ${posix.socketPath("/tmp/ro")}`],
        ["BadResource", `listen ENOTDIR: not a directory ${posix.socketPath("/tmp/file")}`]
      ])
      assert.deepStrictEqual(yield* fs.readDirectory("/tmp/ro"), [])

      yield* fs.remove(inHome)
      const listener = yield* posix.listen("/tmp/home")
      assert.strictEqual((yield* fs.stat(listener.path)).type, "Socket")
    }))
})

describe("memory Posix: probe", () => {
  it.effect("Missing where nothing is, Refused where no socket is, Listening while the listener's process runs", () =>
    Effect.gen(function*() {
      const { fs, start } = yield* makeMachine()
      const holder = yield* start
      const contender = yield* start
      const { path } = yield* holder.listen("/tmp")
      yield* fs.writeFileString("/tmp/file", "")
      yield* fs.symlink(path, "/tmp/link")
      yield* fs.symlink("nowhere", "/tmp/dangling")
      const probes = yield* Effect.forEach(
        [path, "/tmp/link", "/tmp/file", "/tmp", "/tmp/missing", "/tmp/missing/x", "/tmp/dangling"],
        contender.probe
      )
      assert.deepStrictEqual(probes, ["Listening", "Listening", "Refused", "Refused", "Missing", "Missing", "Missing"])
      // The kernel finds the listener by the inode: renamed or linked, the socket still answers.
      yield* fs.rename(path, "/tmp/renamed.sock")
      yield* fs.link("/tmp/renamed.sock", "/tmp/hard.sock")
      assert.deepStrictEqual(
        yield* Effect.forEach([path, "/tmp/renamed.sock", "/tmp/hard.sock"], contender.probe),
        ["Missing", "Listening", "Listening"]
      )
    }))

  it.effect("Refused once the process exits, as a zombie too, for whoever reuses its PID, and after a reboot", () =>
    Effect.gen(function*() {
      const { posixOf, processes, start } = yield* makeMachine()
      const contender = yield* start
      const zombie = yield* processes.spawn()
      const zombieSocket = yield* Effect.flatMap(posixOf(zombie.pid), (posix) => posix.listen("/tmp"))
      assert.strictEqual(yield* contender.probe(zombieSocket.path), "Listening")
      yield* processes.exit(zombie.pid, { zombie: true })
      assert.strictEqual(yield* contender.probe(zombieSocket.path), "Refused")
      yield* processes.reap(zombie.pid)
      yield* processes.spawn({ pid: zombie.pid })
      assert.strictEqual(yield* contender.probe(zombieSocket.path), "Refused", "a new life of the PID")

      const holder = yield* start
      const socket = yield* holder.listen("/tmp")
      assert.strictEqual(yield* contender.probe(socket.path), "Listening")
      yield* processes.reboot
      assert.strictEqual(yield* contender.probe(socket.path), "Refused")
    }))

  it.effect("a socket answers across pid namespaces, where /proc cannot tell", () =>
    Effect.gen(function*() {
      const { fs, posixOf, processes } = yield* makeMachine()
      const holder = yield* processes.spawn()
      const socket = yield* Effect.flatMap(posixOf(holder.pid), (posix) => posix.listen("/tmp"))
      const holderInfo = yield* Effect.provideService(Testing.makeProcessInfo(holder.pid), FileSystem.FileSystem, fs)
      yield* processes.setPidNamespace("pid:[4026532999]")
      const inContainer = yield* processes.spawn()
      const judge = yield* Effect.provideService(Testing.makeProcessInfo(inContainer.pid), FileSystem.FileSystem, fs)
      assert.deepStrictEqual(yield* judge.judge(holderInfo.self), ProcessInfo.Verdict.Foreign({ scope: "namespace" }))
      const contender = yield* posixOf(inContainer.pid)
      assert.strictEqual(yield* contender.probe(socket.path), "Listening")
      yield* processes.exit(holder.pid)
      assert.strictEqual(yield* contender.probe(socket.path), "Refused")
    }))

  it.effect("needs write permission on the socket file and search on the directories: EACCES, as connect reports it", () =>
    Effect.gen(function*() {
      const { fs, memory, posixOf, processes, start } = yield* makeMachine()
      const holder = yield* start
      yield* fs.makeDirectory("/tmp/home")
      const { path } = yield* holder.listen("/tmp/home")
      yield* fs.writeFileString("/tmp/home/file", "", { mode: 0o644 })
      yield* fs.writeFileString("/tmp/file", "")
      const other = memory.asUser({ uid: 2000, gid: 2000 })
      const contender = yield* posixOf((yield* processes.spawn()).pid, other)

      const denied = yield* Effect.flip(contender.probe(path))
      assert.deepStrictEqual(shapeOf(denied), shapeOf(Testing.systemError("probe", path, "EACCES")))
      assert.deepStrictEqual(
        [denied._tag === "SystemError" && denied.reason, denied.method, denied.description],
        ["PermissionDenied", "probe", `connect EACCES ${path}`]
      )
      const cause = denied.cause as { syscall: string; address: string }
      assert.deepStrictEqual([cause.syscall, cause.address], ["connect", path])
      // A file that is not writable is refused that way before it is found not to be a socket.
      assert.strictEqual(codeOfError(yield* Effect.flip(contender.probe("/tmp/home/file"))), "EACCES")
      yield* fs.chmod(path, 0o777)
      assert.strictEqual(yield* contender.probe(path), "Listening")
      yield* fs.chmod("/tmp/home", 0o700)
      assert.strictEqual(codeOfError(yield* Effect.flip(contender.probe(path))), "EACCES")
      const underFile = yield* Effect.flip(holder.probe("/tmp/file/x"))
      assert.deepStrictEqual(
        [underFile._tag === "SystemError" && underFile.reason, underFile.description],
        ["BadResource", "connect ENOTDIR /tmp/file/x"]
      )
    }))
})

describe("memory Posix: sockets in the tree, the hook, the constructors", () => {
  it.scoped("a socket is an entry like any other: listed, lstat'ed, renamed, removed, but never opened (ENXIO)", () =>
    Effect.gen(function*() {
      const { fs, memory, start } = yield* makeMachine()
      const posix = yield* start
      const { path } = yield* posix.listen("/tmp")
      assert.deepStrictEqual(yield* fs.readDirectory("/tmp"), [Path.basename(path)])
      assert.strictEqual((yield* posix.lstat(path)).type, "Socket")
      // Measured on Linux: open(2) of a socket fails ENXIO, once permitted.
      const unopened = yield* Effect.all([
        Effect.flip(fs.readFile(path)),
        Effect.flip(fs.writeFileString(path, "x")),
        Effect.flip(fs.copyFile(path, "/tmp/copy")),
        Effect.flip(fs.open(path))
      ])
      assert.deepStrictEqual(
        unopened.map(shapeOf),
        [
          Testing.systemError("readFile", path, "ENXIO", { syscall: "open" }),
          Testing.systemError("writeFile", path, "ENXIO", { syscall: "open" }),
          Testing.systemError("copyFile", path, "ENXIO", { dest: "/tmp/copy" }),
          Testing.systemError("open", path, "ENXIO")
        ].map(shapeOf)
      )
      // Permission is checked first: others may read this one (0755), not write it.
      const other = memory.asUser({ uid: 2000, gid: 2000 })
      assert.strictEqual(codeOfError(yield* Effect.flip(other.readFile(path))), "ENXIO")
      assert.strictEqual(codeOfError(yield* Effect.flip(other.writeFileString(path, "x"))), "EACCES")

      yield* fs.rename(path, "/tmp/moved.sock")
      assert.strictEqual(yield* posix.probe("/tmp/moved.sock"), "Listening")
      yield* fs.remove("/tmp/moved.sock")
      assert.deepStrictEqual(yield* fs.readDirectory("/tmp"), [])
      assert.strictEqual(yield* posix.probe("/tmp/moved.sock"), "Missing")
    }))

  it.effect("the hook sees listen and probe, can fail them without effect, and can hold them back", () =>
    Effect.gen(function*() {
      const { fs, memory, processes } = yield* makeMachine()
      const holder = yield* processes.spawn()
      const posix = yield* Effect.provideService(Testing.makePosix(holder.pid), FileSystem.FileSystem, fs)
      const path = posix.socketPath("/tmp")
      yield* memory.setHook(Testing.combineHooks(
        Testing.failMatching({ method: "listen", path: /\.sock$/, errno: "ENOSPC", times: 1 }),
        Testing.failMatching({ method: "probe", path: "/tmp/x", errno: "EIO" })
      ))
      const noSpace = yield* Effect.flip(posix.listen("/tmp"))
      assert.strictEqual(noSpace.description, `listen ENOSPC: no space left on device ${path}`)
      assert.deepStrictEqual(yield* fs.readDirectory("/tmp"), [])
      const io = yield* Effect.flip(posix.probe("/tmp/x"))
      assert.deepStrictEqual(shapeOf(io), shapeOf(Testing.systemError("probe", "/tmp/x", "EIO")))
      assert.deepStrictEqual([io._tag === "SystemError" && io.syscall, io.description], [
        "connect",
        "connect EIO /tmp/x"
      ])
      yield* posix.listen("/tmp")

      // A probe takes effect when its hook lets it go: the process ended meanwhile.
      const arrived = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      yield* memory.setHook((call) =>
        call.method === "probe"
          ? Effect.zipRight(Deferred.succeed(arrived, undefined), Deferred.await(release))
          : Effect.void
      )
      const probing = yield* Effect.fork(posix.probe(path))
      yield* Deferred.await(arrived)
      yield* processes.exit(holder.pid)
      yield* Deferred.succeed(release, undefined)
      assert.strictEqual(yield* Fiber.join(probing), "Refused")
    }))

  it.effect("makePosix dies without a memory file system, without a process table, or for a PID not in it", () =>
    Effect.gen(function*() {
      const messageOf = (exit: Exit.Exit<unknown, unknown>) =>
        Exit.isFailure(exit) && Cause.isDie(exit.cause) ? String(Cause.squash(exit.cause)) : "no defect"
      const onNode = yield* Effect.exit(Effect.provide(Testing.makePosix(1), NodeFileSystem.layer))
      assert.include(messageOf(onNode), "not a memory file system")
      const bare = yield* Testing.makeFileSystem()
      const noTable = yield* Effect.exit(
        Effect.provideService(Testing.makePosix(1), FileSystem.FileSystem, bare.fileSystem)
      )
      assert.include(messageOf(noTable), "no process table")
      const { posixOf } = yield* makeMachine()
      assert.include(messageOf(yield* Effect.exit(posixOf(4242))), "no process with pid 4242")
    }))

  it.effect("Testing.layer provides the Posix service of its process", () =>
    Effect.gen(function*() {
      const posix = yield* Posix.Posix
      const processes = yield* Testing.ProcessTable
      const [self] = yield* processes.list
      const listener = yield* posix.listen("/tmp")
      assert.isTrue(listener.path.startsWith(`/tmp/${self!.pid}.`))
      assert.strictEqual(yield* posix.probe(listener.path), "Listening")
      yield* processes.exit(self!.pid)
      assert.strictEqual(yield* posix.probe(listener.path), "Refused")
    }).pipe(Effect.provide(Testing.layer())))
})
