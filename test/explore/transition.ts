// What one scheduling choice does to the shared state, and when two choices
// commute: the independence relation behind the partial-order reduction.
import type * as Testing from "../../src/testing/index.js"

/**
 * One choice the scheduler can make: let a fiber of a contender make the
 * file-system call it is stopped at, or crash the contender.
 *
 * Each choice belongs to an actor, named as printed in schedules: `a` is the
 * main fiber of contender 0, `a1` the next fiber of it that makes a call (a
 * background fiber of the lock), `A` its crash. A crash is offered only where
 * the contender is about to change the file system; it depends on the
 * contender's own calls and on every read of its life: of its `/proc` entry,
 * a probe of its socket, `kill(pid, 0)` and `ps` of its PID.
 */
export interface Transition {
  readonly actor: string
  readonly contender: number
  readonly crash: boolean
  /** Entries read, by their canonical path (the path resolves through each ancestor). */
  readonly reads: ReadonlyArray<string>
  /** Entries created, replaced or removed, each with everything below it. */
  readonly writes: ReadonlyArray<string>
  /** Directories whose list of names is read or watched. */
  readonly listings: ReadonlyArray<string>
  /** Directories whose link count is read: it counts their subdirectories. */
  readonly linkCounts: ReadonlyArray<string>
  /** Directories made, removed or moved: they change their parent's link count. */
  readonly directories: ReadonlyArray<string>
  /** May change who holds the lock: checked invariants change only at these. */
  readonly visible: boolean
  /** For schedules and messages; equal labels mean the same transition in every replay. */
  readonly label: string
}

const letterOf = (contender: number): string => String.fromCharCode(97 + contender)

export const callActor = (contender: number, fiber: number): string =>
  fiber === 0 ? letterOf(contender) : `${letterOf(contender)}${fiber}`

export const crashActor = (contender: number): string => letterOf(contender).toUpperCase()

/** The actors of a printed schedule, checked against the number of contenders. */
export const actorsOf = (schedule: string, contenders: number): ReadonlyArray<string> =>
  schedule.replace(/\s+/g, "").match(/[a-zA-Z]\d*/g)?.map((actor) => {
    const contender = actor.toLowerCase().charCodeAt(0) - 97
    if (contender >= contenders) throw new Error(`schedule actor ${actor} names none of ${contenders} contenders`)
    return actor
  }) ?? []

// Staging directories and owner entries are named `<pid>.<random token>`: a
// contender makes one per acquire, so the PID names it across replays.
export const canonical = (text: string): string => text.replace(/\b(\d+)\.[0-9a-f]{16}\b/g, "$1.T")

const isWithin = (path: string, ancestor: string): boolean =>
  path === ancestor || path.startsWith(ancestor === "/" ? "/" : `${ancestor}/`)

const parentOf = (path: string): string => path.slice(0, Math.max(1, path.lastIndexOf("/")))

// `stat` reads an entry, not its directory's names: its link count and times
// change with every name made below, but the lock reads only the type, owner
// and mode of the directory the home lies in, which no call of a contender
// changes. The `lstat` of the home also reads its link count, which tells
// whether it holds a directory besides `lock`: it depends on the directories
// made and removed in the home.
const READS_ENTRY = new Set(["readLink", "readFile", "access", "realPath", "stat", "lstat", "probe"])
const READS_LISTING = new Set(["readDirectory", "watch"])

// A socket `<pid>.<token>.sock` answers while process <pid> lives: a probe
// reads that process's life as well as the entry.
const SOCKET = /\/(\d+)\.[^/]*\.sock$/

/**
 * The portable ProcessInfo's calls, which read the process table and no
 * file: `kill(pid, 0)` (the PID as the path) and a run of `ps` or `sysctl`
 * (the command line as the path).
 */
export const READS_PROCESSES = new Set(["kill", "command"])

// The one process a `ps` asks about.
const PS_PID = /^ps .*-p (\d+)$/

// The process whose life a call reads, which its crash changes (`/proc/<pid>`
// stands for it). `sysctl` reads the boot and the host, which no step changes.
const processReadBy = (call: Testing.FileSystemCall): string | undefined =>
  call.method === "probe"
    ? SOCKET.exec(call.path)?.[1]
    : call.method === "kill"
    ? call.path
    : call.method === "command"
    ? PS_PID.exec(call.path)?.[1]
    : undefined

// Node's remove is two calls: its lstat reads, its unlink writes.
const isRead = (call: Testing.FileSystemCall): boolean =>
  READS_ENTRY.has(call.method) || READS_LISTING.has(call.method) || READS_PROCESSES.has(call.method) ||
  (call.method === "remove" && call.syscall === "lstat")

/**
 * The transition of a contender's call. `makeDirectory` counts as creating
 * its path alone: the lock makes its home and staging directories without
 * `recursive`, and its one recursive call (on `dir`) lies outside the home,
 * where any call is a violation.
 */
export const callTransition = (
  contender: number,
  fiber: number,
  call: Testing.FileSystemCall,
  lock: string
): Transition => {
  const actor = callActor(contender, fiber)
  const path = canonical(call.path)
  const target = call.target === undefined || call.method === "symlink" ? undefined : canonical(call.target)
  const label = `${call.method} ${path}${target === undefined ? "" : ` -> ${target}`}`
  if (isRead(call)) {
    const entries = READS_PROCESSES.has(call.method) ? [] : [path]
    const process = processReadBy(call)
    return {
      actor,
      contender,
      crash: false,
      reads: process === undefined ? entries : [...entries, `/proc/${process}`],
      writes: [],
      listings: READS_LISTING.has(call.method) ? [path] : [],
      linkCounts: call.method === "lstat" ? [path] : [],
      directories: [],
      visible: false,
      label
    }
  }
  // Every other call writes its path (and a rename its target too), with
  // everything below it. The `unlink` of an owner entry (a release, or the
  // removal of a dead holder's entry) writes `<lock>/<entry>`: it depends on
  // every call that reads or writes that name (the readLink of the entry, the
  // rename of a staging directory onto `lock`, which writes `lock` and all in
  // it) and on every listing of `lock` (its readDirectory, its watch).
  const writes = target === undefined ? [path] : [path, target]
  // The lock's only directories: its home and staging directories, made and
  // removed, and a staging directory renamed onto `lock`. Its other renames
  // move a symlink (a link of the generation counter over the counter; in
  // older releases, an owner entry to its tombstone), and its unlinks remove
  // one, which no link count counts.
  const movesDirectory = call.method === "makeDirectory" || (call.method === "remove" && call.syscall === "rmdir") ||
    (call.method === "rename" && target === canonical(lock))
  return {
    actor,
    contender,
    crash: false,
    reads: [],
    writes,
    listings: [],
    linkCounts: [],
    directories: movesDirectory ? writes : [],
    visible: writes.some((written) => isWithin(written, lock) || isWithin(lock, written)),
    label
  }
}

/**
 * The crash of a contender: its process leaves the table, so `/proc/<pid>`
 * changes, and with it every read of its life (its socket's probe, `kill`,
 * `ps`), which reads `/proc/<pid>` too. Visible only when it holds the lock: a crash of anyone else changes
 * no holder. Whether it holds changes only by its own calls, which depend on
 * its crash anyway, so the choice stays the same while it waits.
 */
export const crashTransition = (contender: number, pid: number, holder: boolean): Transition => ({
  actor: crashActor(contender),
  contender,
  crash: true,
  reads: [],
  writes: [`/proc/${pid}`],
  listings: [],
  linkCounts: [],
  directories: [],
  visible: holder,
  label: `crash of pid ${pid}${holder ? ", the holder" : ""}`
})

// Whether `writer` changes what `other` reads or writes.
const affects = (writer: Transition, other: Transition): boolean =>
  writer.writes.some((written) =>
    other.reads.some((path) => isWithin(path, written)) ||
    other.writes.some((path) => isWithin(path, written)) ||
    other.listings.some((dir) => dir === parentOf(written) || isWithin(dir, written))
  ) ||
  writer.directories.some((directory) => other.linkCounts.includes(parentOf(directory)))

/**
 * Two transitions are dependent when their order can matter: they belong to
 * one contender (a crash disables its calls, its last call disables its
 * crash, its fibers share its state), both may change who holds the lock (so the order of holder changes,
 * and every checked state, is the same in all equivalent schedules), or one
 * writes what the other touches. Creating two names in one directory
 * commutes; listing that directory does not.
 */
export const dependent = (a: Transition, b: Transition): boolean =>
  a.contender === b.contender || (a.visible && b.visible) || affects(a, b) || affects(b, a)
