// One run of K contenders on one memory file system, advanced one
// file-system call (or one crash) at a time by whoever drives it.
import type { PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import type * as Scheduler from "effect/Scheduler"
import * as Path from "node:path"
import * as PidLock from "../../src/PidLock.js"
import * as Posix from "../../src/Posix.js"
import * as ProcessInfo from "../../src/ProcessInfo.js"
import * as Testing from "../../src/testing/index.js"
import { plantHolder, plantStaging, recordOf } from "../support/environment.js"
import { callTransition, canonical, crashTransition, READS_PROCESSES, type Transition } from "./transition.js"

export const DIR = "/tmp/locks"
export const NAME = "app"
export const HOME = Path.join(DIR, NAME)
export const LOCK = Path.join(HOME, "lock")
const COUNTER = Path.join(HOME, "generation")

/**
 * Where the contenders start: `free`, no lock home yet; `stale`, the lock
 * held by a crashed process, next to the staging directory of another
 * process that crashed before its rename; `held`, the lock held by a live
 * process, contender `a`, whose acquisition (every call of it, before any
 * other contender's) is part of setting the world up. Its schedule then runs
 * its release, and a second acquisition and release, which find the lock
 * home already checked by that process.
 */
export type Scenario = "free" | "stale" | "held"

/** The scenarios, in the order the explorer runs them. */
export const SCENARIOS: ReadonlyArray<Scenario> = ["free", "stale", "held"]

/**
 * Which `ProcessInfo` judges a holder: `proc`, the Linux one, reading
 * `/proc`; `portable`, the one of macOS and FreeBSD (here macOS's), asking the
 * holder's socket, then `kill(pid, 0)`, then `ps`.
 */
export type ProcessInfoKind = "proc" | "portable"

export interface WorldOptions {
  readonly contenders: number
  readonly scenario: Scenario
  /** `proc` by default. */
  readonly processInfoKind?: ProcessInfoKind | undefined
  /** Replaces each contender's `ProcessInfo`: a test breaks the judge with it to show that the explorer can fail. */
  readonly processInfo?: ((honest: ProcessInfo.ProcessInfo) => ProcessInfo.ProcessInfo) | undefined
  /** Replaces each contender's `Posix`, whose socket probe is the judge's other half. */
  readonly posix?: ((honest: Posix.Posix) => Posix.Posix) | undefined
  /**
   * Wraps the file system each contender uses: a test changes how the lock
   * writes with it. (The calls of the lock's cycle, its staging directory,
   * record, rename, counter and unlink, go through its `Posix`: see `posix`.)
   */
  readonly fileSystem?: ((honest: FileSystem.FileSystem) => FileSystem.FileSystem) | undefined
}

/** What one more contender, started once a run has ended, met: remembered by the end it started from. */
export interface Next {
  /** Why it could not take the lock at once; undefined when it could. */
  readonly stuck: string | undefined
  /** The generation it was handed. */
  readonly generation: number | undefined
}

/** How a finished run ended: what went wrong, and a picture of the run to compare searches by. */
export interface Conclusion {
  readonly violations: ReadonlyArray<string>
  /** Why one more contender could not take the lock at once. */
  readonly stuck: string | undefined
  /** The visible transitions in order, how each contender ended, and what the lock home holds. */
  readonly endState: string
}

const MAX_TASKS_PER_STEP = 100_000

/**
 * Runs Effect's tasks only when told to. Every contender fiber runs on it, so
 * after a flush each one is stopped at a call of the hook or has finished: no
 * timer, no microtask, nothing but the explorer's choices decides the order.
 */
class StepScheduler implements Scheduler.Scheduler {
  private tasks: Array<Scheduler.Task> = []

  scheduleTask(task: Scheduler.Task): void {
    this.tasks.push(task)
  }

  shouldYield(): false {
    return false
  }

  flush(): void {
    let run = 0
    while (this.tasks.length > 0) {
      const tasks = this.tasks
      this.tasks = []
      for (const task of tasks) task()
      // Fibers that never stop at a call would spin here for ever.
      if ((run += tasks.length) > MAX_TASKS_PER_STEP) {
        throw new Error(`more than ${MAX_TASKS_PER_STEP} tasks in one step`)
      }
    }
  }
}

// Which contender a fiber runs for: the hook sees only the call itself.
const contenderRef = FiberRef.unsafeMake(-1)

interface Waiting {
  readonly transition: Transition
  readonly resume: (effect: Effect.Effect<void, PlatformError>) => void
}

interface Contender {
  readonly index: number
  readonly pid: number
  /** Ids of its fibers that made calls, in the order of their first call: its main fiber makes the first. */
  readonly fibers: Array<number>
  /** The calls its fibers are stopped at, by their place in `fibers`. */
  readonly waiting: Map<number, Waiting>
  /** `<pid>.<token>` of its current acquisition: its staging directory and, once renamed, its owner entry. */
  entry: string | undefined
  /** Its staging directory became the lock: seen on the file system right after its rename. */
  renamed: boolean
  /**
   * Its own call took its entry out of the lock (its release unlinks it; an
   * older release renamed it to a tombstone): it holds no more, whatever it
   * does next.
   */
  left: boolean
  /** Set by its own program: returned from acquire, and from release; back to acquiring when it acquires again. */
  phase: "acquiring" | "holding" | "released"
  /** The generations it was handed, one for each return from acquire. */
  readonly generations: Array<number>
  crashed: boolean
  exit: Exit.Exit<void, PidLock.PidLockError | PlatformError> | undefined
}

const READ_METHODS = new Set(["readLink", "readFile", "readDirectory", "stat", "lstat", "access", "realPath"])
const STAGING = /^\d+\.[0-9a-f]+$/
const TOMBSTONE = ".gone"

const isWithin = (path: string, ancestor: string) => path === ancestor || path.startsWith(`${ancestor}/`)

// Contenders never finish but by returning: no log output is wanted from them.
const quiet = Logger.withMinimumLogLevel(LogLevel.None)

export class World {
  /** What went wrong so far, in the order it was seen. */
  readonly violations: Array<string> = []
  private readonly scheduler = new StepScheduler()
  private readonly contenders: Array<Contender> = []
  private lockEntries: ReadonlyArray<string> = []
  // The choices open now, until the next one is taken.
  private open: ReadonlyArray<Transition> | undefined
  // The visible transitions so far: their order is the same in every schedule equivalent to this one.
  private readonly history: Array<string> = []
  private readonly mainFibers: Array<Fiber.RuntimeFiber<void, PidLock.PidLockError | PlatformError>> = []
  // Holders that returned from acquire since the last check, in that order, and the highest generation handed out
  // before them.
  private readonly handedOut: Array<Contender> = []
  private highestGeneration = 0

  private constructor(
    private readonly options: WorldOptions,
    private readonly processes: Testing.ProcessTable,
    private readonly fs: FileSystem.FileSystem
  ) {}

  /** A fresh file system and process table, the scenario planted, every contender stopped at its first call. */
  static make(options: WorldOptions): World {
    const processes = Effect.runSync(Testing.makeProcessTable())
    const memory = Effect.runSync(Testing.makeFileSystem({
      processes,
      hook: (call) =>
        Effect.flatMap(FiberRef.get(contenderRef), (index) => index < 0 ? Effect.void : world.gate(index, call))
    }))
    const world: World = new World(options, processes, memory.fileSystem)
    world.start()
    return world
  }

  private run<A, E>(effect: Effect.Effect<A, E, FileSystem.FileSystem>): A {
    return Effect.runSync(Effect.orDie(Effect.provideService(effect, FileSystem.FileSystem, this.fs)))
  }

  // A new process and its ProcessInfo.
  private readonly spawn = Effect.gen(this, function*() {
    const process = yield* this.processes.spawn()
    // The portable ProcessInfo asks the kill(pid, 0) of its own Posix.
    const [honest, honestPosix] = yield* Effect.all([ProcessInfo.ProcessInfo, Posix.Posix]).pipe(
      Effect.provide(
        this.options.processInfoKind === "portable"
          ? Testing.layerPortableProcessInfo(process.pid, { platform: "darwin" })
          : Testing.layerProcessInfo(process.pid)
      )
    )
    const info = this.options.processInfo?.(honest) ?? honest
    const posix = this.options.posix?.(honestPosix) ?? honestPosix
    return {
      pid: process.pid,
      context: Context.make(ProcessInfo.ProcessInfo, info).pipe(Context.add(Posix.Posix, posix))
    }
  })

  private start(): void {
    const spawned = this.run(Effect.gen(this, function*() {
      yield* this.fs.makeDirectory(DIR, { recursive: true })
      const spawned = yield* Effect.replicateEffect(this.spawn, this.options.contenders)
      if (this.options.scenario === "stale") {
        // A process of this machine that ran and crashed: the record it wrote, as its ProcessInfo saw it.
        const crashed = Effect.gen(this, function*() {
          const process = yield* this.processes.spawn({ cmdline: ["node", "crashed.js"] })
          const identity = yield* yield* Context.get(spawned[0]!.context, ProcessInfo.ProcessInfo).identify(process.pid)
          yield* this.processes.exit(process.pid)
          return recordOf(identity)
        })
        yield* plantHolder(this.fs, HOME, yield* crashed)
        yield* plantStaging(this.fs, HOME, yield* crashed)
      }
      return spawned
    }))
    for (const [index, { context, pid }] of spawned.entries()) {
      const contender: Contender = {
        index,
        pid,
        fibers: [],
        waiting: new Map(),
        entry: undefined,
        renamed: false,
        left: false,
        phase: "acquiring",
        generations: [],
        crashed: false,
        exit: undefined
      }
      this.contenders.push(contender)
      // Acquire, then release; from a held lock, the holder does it twice, in
      // one process (one Posix service): its second acquisition finds the lock
      // home checked already.
      const once = Effect.sync(() => {
        contender.phase = "acquiring"
        contender.entry = undefined
        contender.renamed = false
        contender.left = false
      }).pipe(
        Effect.zipRight(PidLock.acquire({ name: NAME, dir: DIR, checkInterval: false })),
        Effect.tap((lock) => {
          contender.phase = "holding"
          contender.generations.push(lock.generation)
          this.handedOut.push(contender)
        }),
        Effect.flatMap((lock) => lock.release),
        Effect.tap(() => {
          contender.phase = "released"
        }),
        Effect.scoped
      )
      const program = (this.options.scenario === "held" && index === 0 ? Effect.zipRight(once, once) : once).pipe(
        Effect.provide(this.withFileSystem(context)),
        Effect.locally(contenderRef, index),
        quiet
      )
      const fiber = Effect.runFork(program, { scheduler: this.scheduler })
      fiber.addObserver((exit) => {
        contender.exit = exit
      })
      this.mainFibers.push(fiber)
    }
    this.readLock()
    this.settle()
    if (this.options.scenario === "held") this.holdFirst(this.contenders[0]!)
  }

  // Set-up of a held lock: every call of the holder's first acquisition, in
  // its own order, before anyone else's first call. Its checks are made, its
  // invariants checked, and its generation counted; the schedule starts after.
  private holdFirst(holder: Contender): void {
    while (holder.phase !== "holding") {
      const next = this.enabled().find((open) => open.contender === holder.index && !open.crash)
      if (next === undefined || this.violations.length > 0) {
        throw new Error(`${this.name(holder)} could not take a free lock to start from: ${this.violations.join("; ")}`)
      }
      this.take(next.actor)
    }
    this.history.length = 0
  }

  private withFileSystem(context: Context.Context<ProcessInfo.ProcessInfo | Posix.Posix>) {
    return Context.add(context, FileSystem.FileSystem, this.options.fileSystem?.(this.fs) ?? this.fs)
  }

  // The hook, for a contender's call: stop its fiber until the scheduler lets it go.
  private gate(index: number, call: Testing.FileSystemCall): Effect.Effect<void, PlatformError> {
    const contender = this.contenders[index]!
    // A crashed process makes no more calls: its finalizers' calls fail and change nothing.
    if (contender.crashed) return Effect.fail(Testing.systemError(call.method, call.path, "EIO"))
    // Besides the lock home, a contender reads /proc (or asks kill and ps),
    // /etc/machine-id, and the directory the home lies in (its type, owner and mode).
    const confined = READS_PROCESSES.has(call.method) ||
      (call.path.startsWith("/proc/") || call.path === "/etc/machine-id" || call.path === DIR
        ? READ_METHODS.has(call.method)
        : isWithin(call.path, HOME) &&
          (call.target === undefined || call.method === "symlink" || isWithin(call.target, HOME)))
    if (!confined) {
      this.violate(`${this.name(contender)} ${call.method} ${call.path} ${call.target ?? ""}: outside the lock home`)
    }
    if (call.method === "makeDirectory" && Path.dirname(call.path) === HOME && STAGING.test(Path.basename(call.path))) {
      contender.entry = Path.basename(call.path)
    }
    return Effect.withFiberRuntime((fiber) => {
      const id = fiber.id().id
      const known = contender.fibers.indexOf(id)
      const place = known >= 0 ? known : contender.fibers.push(id) - 1
      const transition = callTransition(index, place, call, LOCK)
      return Effect.async<void, PlatformError>((resume) => {
        contender.waiting.set(place, { transition, resume })
        // An interrupted fiber (its scope closed) no longer waits.
        return Effect.sync(() => contender.waiting.delete(place))
      })
    })
  }

  // Messages name entries without their random tokens, so that a replay gives the very same ones.
  private violate(message: string): void {
    this.violations.push(canonical(message))
  }

  private name(contender: Contender): string {
    return `contender ${String.fromCharCode(97 + contender.index)} (pid ${contender.pid})`
  }

  // Run every fiber as far as it goes: each contender must then be done, or
  // have a fiber stopped at a call (its main fiber may wait for that one, as
  // when closing its scope waits for a background fiber to stop).
  private settle(): void {
    this.scheduler.flush()
    for (const contender of this.contenders) {
      if ((contender.waiting.size > 0) === (contender.exit !== undefined)) {
        throw new Error(
          `${this.name(contender)} is neither stopped at a call nor finished: something ran outside the scheduler`
        )
      }
    }
  }

  /**
   * The choices open now: each waiting fiber's call, then the crash of each
   * contender that waits at a call that changes the file system. A crash
   * between two reads leaves the same files and the same process table as a
   * crash right before the next change (the reads only fed the crashed
   * process), so crashes are offered there alone. Every way through acquire
   * and release ends with a change (the release, or the removal of the
   * staging directory), so no crash point is lost at the end either.
   */
  enabled(): ReadonlyArray<Transition> {
    return this.open ??= this.choices()
  }

  private choices(): ReadonlyArray<Transition> {
    const calls = this.contenders.flatMap((contender) =>
      [...contender.waiting.keys()].sort((a, b) => a - b).map((place) => contender.waiting.get(place)!.transition)
    )
    const crashes = this.contenders
      .filter((contender) =>
        contender.exit === undefined &&
        [...contender.waiting.values()].some((waiting) => waiting.transition.writes.length > 0)
      )
      .map((contender) => crashTransition(contender.index, contender.pid, this.holds(contender)))
    return [...calls, ...crashes]
  }

  get finished(): boolean {
    return this.contenders.every((contender) => contender.exit !== undefined)
  }

  /** Take one of the choices open now, then check the invariants. */
  take(actor: string): Transition {
    const transition = this.enabled().find((open) => open.actor === actor)
    if (transition === undefined) throw new Error(`${actor} has no choice to make now`)
    const contender = this.contenders[transition.contender]!
    if (transition.crash) {
      contender.crashed = true
      this.run(this.processes.exit(contender.pid))
      this.mainFibers[contender.index]!.unsafeInterruptAsFork(FiberId.none)
      // A call in an uninterruptible region (the release) cannot be interrupted: it fails instead.
      for (const waiting of contender.waiting.values()) {
        waiting.resume(Effect.fail(Testing.systemError("crash", LOCK, "EIO")))
      }
      contender.waiting.clear()
    } else {
      const place = [...contender.waiting].find(([, waiting]) => waiting.transition === transition)![0]
      contender.waiting.get(place)!.resume(Effect.void)
      contender.waiting.delete(place)
    }
    this.open = undefined
    this.settle()
    if (transition.visible) {
      this.readLock()
      this.history.push(`${transition.actor} ${transition.label}`)
    }
    // Only its own calls move its entry into the lock (its rename) and out of
    // it (its release's unlink, or an older release's rename to a
    // tombstone). Anyone else's that takes it out is a violation, seen below.
    if (!contender.crashed && transition.visible && !transition.crash && contender.entry !== undefined) {
      const inLock = this.lockEntries.includes(contender.entry)
      contender.left ||= contender.renamed && !inLock
      contender.renamed ||= inLock
    }
    this.check()
    return transition
  }

  // Only visible transitions change the lock directory: it is read after those alone.
  private readLock(): void {
    this.lockEntries = this.run(Effect.orElseSucceed(this.fs.readDirectory(LOCK), (): ReadonlyArray<string> => []))
  }

  // A live holder: from its successful rename until its release takes its
  // entry out of the lock (its unlink), or its crash.
  private holds(contender: Contender): boolean {
    return !contender.crashed && contender.renamed && !contender.left && contender.phase !== "released"
  }

  // Never two live holders, seen from the file system and from the contenders.
  private check(): void {
    const entries = this.lockEntries
    if (entries.length > 1) this.violate(`the lock holds ${entries.length} entries: ${entries.join(", ")}`)
    const alive = this.contenders.filter((contender) => !contender.crashed)
    const holders = alive.filter((contender) => this.holds(contender))
    if (holders.length > 1) {
      this.violate(`two live holders: ${holders.map((holder) => this.name(holder)).join(" and ")}`)
    }
    for (const holder of holders) {
      if (entries.length !== 1 || entries[0] !== holder.entry) {
        this.violate(`${this.name(holder)} holds the lock, but the lock holds [${entries.join(", ")}]`)
      }
    }
    const returned = alive.filter((contender) => contender.phase === "holding" && !contender.left)
    if (returned.length > 1) {
      this.violate(`two live contenders returned from acquire: ${returned.map((c) => this.name(c)).join(" and ")}`)
    }
    for (const contender of returned) {
      if (!contender.renamed) this.violate(`${this.name(contender)} returned from acquire without its rename`)
    }
    // Every generation handed out is greater than every one handed out before it.
    for (const holder of this.handedOut.splice(0)) {
      const generation = holder.generations[holder.generations.length - 1]!
      if (generation <= this.highestGeneration) {
        this.violate(`${this.name(holder)} was handed generation ${generation}, after ${this.highestGeneration}`)
      }
      this.highestGeneration = Math.max(this.highestGeneration, generation)
    }
  }

  /**
   * Once every contender has finished or crashed: how each ended, what it
   * left, and one more contender, whose generation must be greater than every
   * one handed out. `nextByEnd` remembers what that contender met by the end
   * it started from (who crashed, the generations handed out, the names left
   * in the lock home and the counter: every record in them follows from the
   * PID in its name), so that a search runs it once per end rather than once
   * per schedule.
   */
  conclude(nextByEnd?: Map<string, Next>): Conclusion {
    const violations = [...this.violations]
    const home = this.run(
      Effect.orElseSucceed(this.fs.readDirectory(HOME, { recursive: true }), (): Array<string> => [])
    )
    const counter = this.run(Effect.orElseSucceed(this.fs.readLink(COUNTER), () => "none"))
    const outcomes = this.contenders.map((contender) =>
      [this.outcomeOf(contender, home, violations), ...contender.generations].join(" ")
    )
    const end = `${outcomes.join(" ")} | ${home.map(canonical).sort().join(" ")} | generation ${counter}`
    const next = nextByEnd?.get(end) ?? this.oneMore()
    nextByEnd?.set(end, next)
    if (next.generation !== undefined && next.generation <= this.highestGeneration) {
      violations.push(`one more contender was handed generation ${next.generation}, after ${this.highestGeneration}`)
    }
    return { violations: violations.map(canonical), stuck: next.stuck, endState: `${this.history.join(", ")} | ${end}` }
  }

  // How a contender ended; a contender that returned must have left nothing
  // but its socket, which stays while it lives: no staging directory, no
  // link of the generation counter. (A tombstone, which older releases made,
  // is litter for whoever acquires next, not the releaser's to clean.)
  private outcomeOf(contender: Contender, home: ReadonlyArray<string>, violations: Array<string>): string {
    if (contender.crashed) return "crashed"
    const exit = contender.exit!
    const isOwn = (path: string) =>
      path.startsWith(`${contender.pid}.`) || path.startsWith(`generation.${contender.pid}.`)
    if (home.some((path) => isOwn(path) && !path.endsWith(".sock") && !path.endsWith(TOMBSTONE))) {
      violations.push(`${this.name(contender)} returned and left its litter: ${home.join(", ")}`)
    }
    if (Exit.isSuccess(exit)) return contender.phase
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure) && failure.value._tag === "LockHeld") return "LockHeld"
    violations.push(`${this.name(contender)} failed: ${Cause.pretty(exit.cause)}`)
    return "failed"
  }

  // One more contender, started now: whether it takes the lock at once, and with which generation.
  private oneMore(): Next {
    const next = this.run(this.spawn)
    const exit = Effect.runSyncExit(
      PidLock.acquire({ name: NAME, dir: DIR, checkInterval: false }).pipe(
        Effect.tap((lock) => lock.release),
        Effect.scoped,
        Effect.provide(this.withFileSystem(next.context)),
        quiet
      )
    )
    return Exit.isFailure(exit)
      ? {
        stuck: canonical(`one more contender could not take the lock: ${Cause.pretty(exit.cause)}`),
        generation: undefined
      }
      : { stuck: undefined, generation: exit.value.generation }
  }
}
