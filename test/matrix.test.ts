// Bad input and hostile state: one table, run against the memory and the
// real file system. Each row names the input and the typed error or verdict it
// must give; every row also checks that nothing outside the lock home changed
// (nothing at all, where the lock refuses) and that no staging directory of
// ours is left.
import type * as FileSystem from "@effect/platform/FileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Path from "node:path"
import * as PidLock from "../src/PidLock.js"
import * as ProcessInfo from "../src/ProcessInfo.js"
import {
  type Environment,
  type Fixture,
  isSocketOf,
  NAME,
  plantHolder,
  recordOf,
  snapshot,
  withFixture
} from "./support/environment.js"
import { memoryEnvironment, memoryPortableEnvironment } from "./support/memoryEnvironment.js"
import { nodeEnvironment, portableNodeEnvironment } from "./support/nodeEnvironment.js"

type Context = Fixture & { readonly fs: FileSystem.FileSystem; readonly home: string }

type Expected =
  | { readonly error: "InvalidOptions"; readonly option: string; readonly says: string }
  | {
    readonly error: "CorruptLock"
    readonly reason: PidLock.CorruptLock["reason"]
    readonly at: (home: string) => string
  }
  | { readonly error: "LockHeld"; readonly verdict: ProcessInfo.Verdict["_tag"] }
  | { readonly error: "NameClash"; readonly ownerUid: number }
  | { readonly acquired: true }

interface Row {
  readonly input: string
  /** Options other than `name: NAME, dir: <fixture dir>`. */
  readonly options?: (context: Context) => Partial<PidLock.Options>
  readonly setup?: (context: Context) => Effect.Effect<unknown, unknown, ProcessInfo.ProcessInfo | Scope.Scope>
  readonly expected: Expected
  /** Why the real file system cannot show it, for rows only the memory one can. */
  readonly memoryOnly?: string
}

const LOCK = (home: string) => Path.join(home, "lock")
const invalid = (option: string, says: string): Expected => ({ error: "InvalidOptions", option, says })
const corrupt = (reason: PidLock.CorruptLock["reason"], at: (home: string) => string = LOCK): Expected => ({
  error: "CorruptLock",
  reason,
  at
})

// A live holder of our own host, for rows about its record.
const plantRecordText = (text: string, entry = "12.ab") => ({ fs, home }: Context) =>
  Effect.zipRight(fs.makeDirectory(LOCK(home), { recursive: true }), fs.symlink(text, Path.join(LOCK(home), entry)))

const validRecord = (changes: object) =>
  Effect.map(
    ProcessInfo.ProcessInfo,
    ({ self }) => JSON.stringify({ ...recordOf({ ...self, pid: 12 }, "ab"), ...changes })
  )

// A lock home used before (its lock free) whose generation counter `plant`
// makes: the lock is taken, found unable to hand out a generation, and given
// back, so that nothing is changed but our socket.
const COUNTER = (home: string) => Path.join(home, "generation")
const plantCounter =
  (plant: (counter: string, context: Context) => Effect.Effect<unknown, unknown>) => (context: Context) =>
    Effect.zipRight(
      context.fs.makeDirectory(LOCK(context.home), { recursive: true }),
      plant(COUNTER(context.home), context)
    )

// A holder of this very host but another boot, with `changes` to its record.
const otherBoot = (changes: object) => (context: Context) =>
  Effect.flatMap(
    validRecord({ bootId: "00000000-0000-4000-8000-000000000000", ...changes }),
    (text) => plantRecordText(text)(context)
  )

const rows: ReadonlyArray<Row> = [
  // the options object itself
  {
    input: "options null",
    options: () => null as unknown as PidLock.Options,
    expected: invalid("options", "must be an object")
  },
  {
    input: "options undefined",
    options: () => undefined as unknown as PidLock.Options,
    expected: invalid("options", "must be an object")
  },
  {
    input: "options a string",
    options: () => "app" as unknown as PidLock.Options,
    expected: invalid("options", "must be an object")
  },
  // names
  { input: "name empty", options: () => ({ name: "" }), expected: invalid("name", "must not be empty") },
  { input: `name "."`, options: () => ({ name: "." }), expected: invalid("name", `must not start with "."`) },
  { input: `name ".."`, options: () => ({ name: ".." }), expected: invalid("name", `must not start with "."`) },
  {
    input: "name with a leading dot",
    options: () => ({ name: ".app" }),
    expected: invalid("name", `must not start with "."`)
  },
  { input: `name "a/b"`, options: () => ({ name: "a/b" }), expected: invalid("name", `"/" at index 1`) },
  { input: "name with a NUL", options: () => ({ name: "a\0b" }), expected: invalid("name", "at index 1") },
  {
    input: "name of 101 characters",
    options: () => ({ name: "x".repeat(101) }),
    expected: invalid("name", "101 characters")
  },
  { input: "name with a space", options: () => ({ name: "my app" }), expected: invalid("name", `" " at index 2`) },
  { input: "name with non-ASCII", options: () => ({ name: "dämon" }), expected: invalid("name", `"ä" at index 1`) },
  {
    input: "name not a string",
    options: () => ({ name: 42 as unknown as string }),
    expected: invalid("name", "must be a string")
  },
  { input: "name of 100 characters", options: () => ({ name: "x".repeat(100) }), expected: { acquired: true } },
  // options other than the name
  {
    input: "onStale unknown",
    options: () => ({ onStale: "ignore" as "fail" }),
    expected: invalid("onStale", `"takeover" or "fail"`)
  },
  { input: "dir empty", options: () => ({ dir: "" }), expected: invalid("dir", "must not be empty") },
  { input: "dir with a NUL", options: ({ dir }) => ({ dir: `${dir}/a\0b` }), expected: invalid("dir", "NUL") },
  {
    input: "dir missing (created)",
    options: ({ dir }) => ({ dir: Path.join(dir, "new", "sub") }),
    expected: { acquired: true }
  },
  {
    input: "dir is a file",
    options: ({ dir }) => ({ dir: Path.join(dir, "file") }),
    setup: ({ dir, fs }) => fs.writeFileString(Path.join(dir, "file"), "x"),
    expected: invalid("dir", "is not a directory")
  },
  {
    input: "dir is a dangling symlink",
    options: ({ dir }) => ({ dir: Path.join(dir, "link") }),
    setup: ({ dir, fs }) => fs.symlink(Path.join(dir, "nowhere"), Path.join(dir, "link")),
    expected: invalid("dir", "is not a directory")
  },
  {
    input: "dir writable by others and not sticky (0777)",
    options: ({ dir }) => ({ dir: Path.join(dir, "shared") }),
    setup: ({ dir, fs }) =>
      Effect.zipRight(fs.makeDirectory(Path.join(dir, "shared")), fs.chmod(Path.join(dir, "shared"), 0o777)),
    expected: invalid("dir", "writable by other users and not sticky")
  },
  {
    input: "dir writable by others and sticky (1777, like /tmp)",
    options: ({ dir }) => ({ dir: Path.join(dir, "shared") }),
    setup: ({ dir, fs }) =>
      Effect.zipRight(fs.makeDirectory(Path.join(dir, "shared")), fs.chmod(Path.join(dir, "shared"), 0o1777)),
    expected: { acquired: true }
  },
  {
    input: "dir owned by another user (not root), not sticky",
    options: ({ dir }) => ({ dir: Path.join(dir, "theirs") }),
    setup: ({ dir, fs, giveAway }) =>
      Effect.zipRight(fs.makeDirectory(Path.join(dir, "theirs")), giveAway(Path.join(dir, "theirs"))),
    expected: invalid("dir", "belongs to uid 65534")
  },
  // the lock home
  {
    input: "home writable by others (0777, made under umask 000 by an older release)",
    setup: ({ fs, home }) => Effect.zipRight(fs.makeDirectory(home), fs.chmod(home, 0o777)),
    expected: corrupt("InsecureMode", (home) => home)
  },
  {
    input: "home writable by its group (0770)",
    setup: ({ fs, home }) => Effect.zipRight(fs.makeDirectory(home), fs.chmod(home, 0o770)),
    expected: corrupt("InsecureMode", (home) => home)
  },
  {
    input: "home 0755 (an older release's default)",
    setup: ({ fs, home }) => Effect.zipRight(fs.makeDirectory(home), fs.chmod(home, 0o755)),
    expected: { acquired: true }
  },
  {
    input: "held lock directory writable by others",
    setup: ({ fs, home, live }) =>
      Effect.flatMap(live, (id) =>
        Effect.zipRight(
          Effect.zipRight(fs.makeDirectory(home, { mode: 0o700 }), plantHolder(fs, home, recordOf(id))),
          fs.chmod(LOCK(home), 0o777)
        )),
    expected: corrupt("InsecureMode")
  },
  {
    input: "home is a symlink to another directory",
    setup: ({ dir, fs, home }) =>
      Effect.zipRight(fs.makeDirectory(Path.join(dir, "elsewhere")), fs.symlink(Path.join(dir, "elsewhere"), home)),
    expected: corrupt("SymlinkedHome", (home) => home)
  },
  {
    input: "home is a regular file",
    setup: ({ fs, home }) => fs.writeFileString(home, "x"),
    expected: corrupt("NotADirectory", (home) => home)
  },
  {
    input: "home owned by another user (a name clash, not a corrupt lock)",
    setup: ({ fs, giveAway, home }) => Effect.zipRight(fs.makeDirectory(home), giveAway(home)),
    expected: { error: "NameClash", ownerUid: 65534 }
  },
  // the lock path
  {
    input: "lock path is a regular file",
    setup: ({ fs, home }) => Effect.zipRight(fs.makeDirectory(home), fs.writeFileString(LOCK(home), "x")),
    expected: corrupt("NotADirectory")
  },
  {
    input: "lock path is a symlink to a victim file (never followed)",
    setup: ({ dir, fs, home }) =>
      Effect.all([
        fs.writeFileString(Path.join(dir, "victim"), "precious"),
        fs.makeDirectory(home),
        fs.symlink(Path.join(dir, "victim"), LOCK(home))
      ]),
    expected: corrupt("NotADirectory")
  },
  {
    input: "lock path is a symlink to a victim directory (never followed)",
    setup: ({ dir, fs, home }) =>
      Effect.all([
        fs.makeDirectory(Path.join(dir, "victim")),
        fs.writeFileString(Path.join(dir, "victim", "precious"), "keep"),
        fs.makeDirectory(home),
        fs.symlink(Path.join(dir, "victim"), LOCK(home))
      ]),
    expected: corrupt("NotADirectory")
  },
  {
    input: "lock path is a FIFO (no hang)",
    setup: ({ fs, home, makeFifo }) => Effect.zipRight(fs.makeDirectory(home), makeFifo(LOCK(home))),
    expected: corrupt("NotADirectory")
  },
  {
    input: "lock directory with two entries",
    setup: ({ fs, home, live }) =>
      Effect.flatMap(
        live,
        (id) => Effect.zipRight(plantHolder(fs, home, recordOf(id)), plantHolder(fs, home, recordOf(id)))
      ),
    expected: corrupt("MultipleEntries")
  },
  {
    input: "owner entry is a directory",
    setup: ({ fs, home }) => fs.makeDirectory(Path.join(LOCK(home), "12.ab"), { recursive: true }),
    expected: corrupt("UnexpectedEntry", (home) => Path.join(LOCK(home), "12.ab"))
  },
  {
    input: "entry not named <pid>.<token>",
    setup: plantRecordText("{}", "notes.txt"),
    expected: corrupt("UnexpectedEntry", (home) => Path.join(LOCK(home), "notes.txt"))
  },
  // the owner record
  {
    // Linux refuses an empty symlink target (ENOENT), so "empty" is a blank.
    input: "owner record blank",
    setup: plantRecordText(" "),
    expected: corrupt("UnreadableRecord", (home) => Path.join(LOCK(home), "12.ab"))
  },
  {
    input: "owner record not JSON",
    setup: plantRecordText("{not json"),
    expected: corrupt("UnreadableRecord", (home) => Path.join(LOCK(home), "12.ab"))
  },
  {
    input: "owner record of the wrong shape",
    setup: plantRecordText(JSON.stringify({ v: 1, pid: "12" })),
    expected: corrupt("UnreadableRecord", (home) => Path.join(LOCK(home), "12.ab"))
  },
  {
    input: "owner record of another version",
    setup: (context) => Effect.flatMap(validRecord({ v: 2 }), (text) => plantRecordText(text)(context)),
    expected: corrupt("UnreadableRecord", (home) => Path.join(LOCK(home), "12.ab"))
  },
  {
    input: "owner record naming another entry",
    setup: (context) => Effect.flatMap(validRecord({ pid: 13 }), (text) => plantRecordText(text)(context)),
    expected: corrupt("UnreadableRecord", (home) => Path.join(LOCK(home), "12.ab"))
  },
  {
    // Linux refuses a symlink target over 4,095 bytes (ENAMETOOLONG), and so
    // does the memory file system: a longer record cannot be planted.
    input: "owner record of 4,000 bytes",
    setup: plantRecordText(`{"v":1,"pad":"${"x".repeat(3980)}"}`),
    expected: corrupt("UnreadableRecord", (home) => Path.join(LOCK(home), "12.ab"))
  },
  {
    input: "owner record whose socket is a path",
    setup: (context) =>
      Effect.flatMap(validRecord({ socket: "../../elsewhere/1.ab.sock" }), (text) => plantRecordText(text)(context)),
    expected: corrupt("UnreadableRecord", (home) => Path.join(LOCK(home), "12.ab"))
  },
  // the generation counter
  {
    input: "generation counter is a regular file",
    setup: plantCounter((counter, { fs }) => fs.writeFileString(counter, "7")),
    expected: corrupt("UnreadableRecord", COUNTER)
  },
  {
    input: "generation counter is a directory",
    setup: plantCounter((counter, { fs }) =>
      Effect.zipRight(fs.makeDirectory(counter), fs.writeFileString(Path.join(counter, "precious"), "keep"))
    ),
    expected: corrupt("UnreadableRecord", COUNTER)
  },
  {
    input: "generation counter not a number (a symlink to a path)",
    setup: plantCounter((counter, { fs }) => fs.symlink("../victim", counter)),
    expected: corrupt("UnreadableRecord", COUNTER)
  },
  {
    input: "generation counter with leading zeros",
    setup: plantCounter((counter, { fs }) => fs.symlink("007", counter)),
    expected: corrupt("UnreadableRecord", COUNTER)
  },
  {
    // 2^53: the next one would not be a safe integer.
    input: "generation counter of 9007199254740992 (a huge number)",
    setup: plantCounter((counter, { fs }) => fs.symlink("9007199254740992", counter)),
    expected: corrupt("UnreadableRecord", COUNTER)
  },
  {
    input: "generation counter of 20 digits",
    setup: plantCounter((counter, { fs }) => fs.symlink("99999999999999999999", counter)),
    expected: corrupt("UnreadableRecord", COUNTER)
  },
  {
    input: "generation counter of 9007199254740990 (the next is the largest safe integer)",
    setup: plantCounter((counter, { fs }) => fs.symlink("9007199254740990", counter)),
    expected: { acquired: true }
  },
  // another boot: a reboot only on this very machine
  {
    input: "holder of another boot, same hostname and machine id (rebooted)",
    setup: otherBoot({}),
    expected: { acquired: true }
  },
  {
    input: "holder of another boot, same hostname, another machine id (a twin host)",
    setup: otherBoot({ machineId: "0123456789abcdef0123456789abcdef" }),
    expected: { error: "LockHeld", verdict: "Foreign" }
  },
  {
    input: "holder of another boot, same hostname, no machine id (a release 0.1 record)",
    setup: (context) =>
      Effect.flatMap(ProcessInfo.ProcessInfo, ({ self }) => {
        const { machineId: _, ...record } = {
          ...recordOf({ ...self, pid: 12 }, "ab"),
          bootId: "00000000-0000-4000-8000-000000000000"
        }
        return plantRecordText(JSON.stringify(record))(context)
      }),
    expected: { error: "LockHeld", verdict: "Foreign" }
  },
  // the holder's /proc entry
  {
    input: "holder's /proc/<pid>/stat unreadable (EPERM, as hidepid=1 gives)",
    memoryOnly: "a root test process can read every /proc entry",
    setup: ({ fs, home, live, procFault }) =>
      Effect.flatMap(live, (id) => Effect.zipRight(plantHolder(fs, home, recordOf(id)), procFault!(id.pid, "EPERM"))),
    expected: { error: "LockHeld", verdict: "Alive" }
  },
  {
    input: "holder's /proc/<pid>/stat vanishing mid-read (ESRCH)",
    memoryOnly: "a process cannot be made to exit between open and read on demand",
    setup: ({ fs, home, live, procFault }) =>
      Effect.flatMap(live, (id) => Effect.zipRight(plantHolder(fs, home, recordOf(id)), procFault!(id.pid, "ESRCH"))),
    expected: { acquired: true }
  },
  {
    input: "holder a zombie",
    setup: ({ fs, home, zombie }) => Effect.flatMap(zombie, (id) => plantHolder(fs, home, recordOf(id))),
    expected: { acquired: true }
  }
]

// Directories that lead to the home may be created; everything else outside
// it must stay as it was.
const outside = (lines: ReadonlyArray<string>, home: string) =>
  lines.filter((line) => {
    const path = line.split(" ")[0]!
    return !(path === home || path.startsWith(`${home}/`) || home.startsWith(`${path}/`))
  })

const matrix = (environment: Environment) =>
  describe(`bad input and hostile state on the ${environment.name} file system`, () => {
    for (const row of rows) {
      if (row.memoryOnly !== undefined && environment.name !== "memory") continue
      it.scopedLive(row.input, () =>
        withFixture(environment, (fixture) =>
          Effect.gen(function*() {
            const { dir, fs } = fixture
            // A row may give something other than an options object, as is.
            const given = row.options === undefined ? {} : row.options(fixture) as unknown
            const options = typeof given === "object" && given !== null ? { name: NAME, dir, ...given } : given
            const named = options as Partial<Record<"name" | "dir", unknown>> | null | undefined
            const home = typeof named?.name === "string" && typeof named.dir === "string"
              ? Path.join(Path.resolve(named.dir), named.name)
              : Path.join(dir, NAME)
            const context = { ...fixture, home }
            yield* Effect.orDie(row.setup?.(context) ?? Effect.void)
            const before = yield* snapshot(fs, dir)
            const self = yield* ProcessInfo.ProcessInfo
            const exit = yield* Effect.exit(Effect.scoped(PidLock.acquire(options as PidLock.Options)))
            const after = yield* snapshot(fs, dir)
            const expected = row.expected

            if ("acquired" in expected) {
              assert.isTrue(Exit.isSuccess(exit), Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "")
              assert.deepStrictEqual(outside(after, home), outside(before, home))
            } else {
              const error = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
              assert.strictEqual(error?._tag, expected.error, error?.message)
              if (error?._tag === "InvalidOptions" && expected.error === "InvalidOptions") {
                assert.strictEqual(error.option, expected.option)
                assert.include(error.message, expected.says)
              }
              if (error?._tag === "CorruptLock" && expected.error === "CorruptLock") {
                assert.strictEqual(error.reason, expected.reason)
                assert.strictEqual(error.path, expected.at(home))
              }
              if (error?._tag === "LockHeld" && expected.error === "LockHeld") {
                assert.strictEqual(error.verdict._tag, expected.verdict)
              }
              if (error?._tag === "NameClash" && expected.error === "NameClash") {
                assert.deepStrictEqual(
                  { path: error.path, ownerUid: error.ownerUid, effectiveUid: error.effectiveUid },
                  { path: home, ownerUid: expected.ownerUid, effectiveUid: Option.getOrThrow(self.uid) }
                )
              }
              // Refused: nothing at all was changed, inside the home or out, but
              // for our socket where the home is ours.
              assert.deepStrictEqual(after.filter((line) => !isSocketOf(self.self.pid)(line)), before)
            }
            // Staging directories are `<pid>.<token>`; our socket (`<pid>.<token>.sock`) is kept while we live.
            const ours = new RegExp(`/${Path.basename(home)}/${self.self.pid}\\.[0-9a-f]+[ /]`)
            assert.isFalse(after.some((line) => ours.test(line)), "a staging directory of ours is left")
          })))
    }
  })

describe("the matrix", () => {
  it("has at least 30 rows on each file system", () => {
    assert.isAtLeast(rows.length, 30)
    assert.isAtLeast(rows.filter((row) => row.memoryOnly === undefined).length, 30)
  })
})

for (const environment of [memoryEnvironment, memoryPortableEnvironment, nodeEnvironment, portableNodeEnvironment]) {
  matrix(environment)
}
