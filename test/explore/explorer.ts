// Searches the schedules of a World: every one, every one up to the order of
// independent steps (dynamic partial-order reduction), or seeded random ones.
import { actorsOf, dependent, type Transition } from "./transition.js"
import { type Conclusion, type Next, World, type WorldOptions } from "./world.js"

/**
 * - `exhaustive`: every order of every choice, crashes included.
 * - `reduced`: one schedule per class of schedules that differ only in the
 *   order of independent steps (Flanagan and Godefroid's dynamic partial-order
 *   reduction with sleep sets), so every reachable end state and every
 *   sequence of holder changes is still seen. A contender and its crash are
 *   one process to it: wherever the contender is tried, its crash is tried
 *   too, as another outcome of its next change.
 * - `random`: `count` schedules, each drawn from its own seed.
 */
export type Strategy =
  | { readonly _tag: "exhaustive" }
  | { readonly _tag: "reduced" }
  | { readonly _tag: "random"; readonly count: number; readonly seed: number }

export interface SearchOptions extends WorldOptions {
  readonly strategy: Strategy
  /** Stop at the first violation or stuck lock. */
  readonly stopAtFirst?: boolean | undefined
  /** Collect the end state of every finished schedule (to compare strategies). */
  readonly collectEndStates?: boolean | undefined
  /** At most this many crashes in one schedule; all K by default. */
  readonly maxCrashes?: number | undefined
  /** Called with the transitions of every schedule the depth-first search runs to its end. */
  readonly onSchedule?: ((steps: ReadonlyArray<Transition>) => void) | undefined
  /** Called every `PROGRESS_EVERY` schedules. */
  readonly onProgress?: ((report: Report) => void) | undefined
}

const PROGRESS_EVERY = 1000

/** A schedule that broke an invariant or left the lock stuck: `replay(options, schedule)` runs it again. */
export interface Failure {
  readonly schedule: string
  readonly messages: ReadonlyArray<string>
}

export interface Report {
  /** Schedules run to their end (or to a violation). */
  schedules: number
  /** Reduced search only: schedules cut off because each choice left was covered by one already explored. */
  sleepBlocked: number
  violations: number
  stuck: number
  /** The first few failures. */
  readonly failures: Array<Failure>
  readonly endStates: Set<string>
}

const FAILURES_KEPT = 5
// The protocol has no loop that runs without another contender's progress:
// a run this long is a livelock.
const MAX_STEPS = 400

/** What running one schedule gives. */
export interface Replayed {
  readonly violations: ReadonlyArray<string>
  /** Undefined when the schedule stopped before every contender had finished or crashed, or it was not stuck. */
  readonly stuck: string | undefined
  readonly finished: boolean
}

/** Run `schedule` (as printed: `a` is a call of contender 0's main fiber, `a1` of its next fiber, `A` its crash) and check it as the search did. */
export const replay = (options: WorldOptions, schedule: string): Replayed => {
  const world = World.make(options)
  for (const actor of actorsOf(schedule, options.contenders)) {
    if (world.violations.length > 0) break
    world.take(actor)
  }
  if (!world.finished) return { violations: [...world.violations], stuck: undefined, finished: false }
  const { stuck, violations } = world.conclude()
  return { violations, stuck, finished: true }
}

const emptyReport = (): Report => ({
  schedules: 0,
  sleepBlocked: 0,
  violations: 0,
  stuck: 0,
  failures: [],
  endStates: new Set()
})

// Count a schedule that ended (or broke an invariant); true when the search should stop.
const record = (
  report: Report,
  options: SearchOptions,
  world: World,
  schedule: string,
  nextByEnd: Map<string, Next>
): boolean => {
  report.schedules++
  if (report.schedules % PROGRESS_EVERY === 0) options.onProgress?.(report)
  const conclusion: Conclusion | undefined = world.violations.length === 0 && world.finished
    ? world.conclude(nextByEnd)
    : undefined
  const violations = conclusion?.violations ?? world.violations
  const stuck = conclusion?.stuck
  if (conclusion !== undefined && options.collectEndStates) report.endStates.add(conclusion.endState)
  if (violations.length === 0 && stuck === undefined) return false
  if (violations.length > 0) report.violations++
  if (stuck !== undefined) report.stuck++
  if (report.failures.length < FAILURES_KEPT) {
    report.failures.push({ schedule, messages: stuck === undefined ? violations : [...violations, stuck] })
  }
  return options.stopAtFirst === true
}

const checkLength = (schedule: string): void => {
  if (schedule.length > MAX_STEPS) throw new Error(`no end after ${MAX_STEPS} steps (a livelock?): ${schedule}`)
}

// The choices open now, within the crash budget.
const choices = (world: World, options: SearchOptions, crashes: number): ReadonlyArray<Transition> => {
  const enabled = world.enabled()
  return crashes < (options.maxCrashes ?? options.contenders)
    ? enabled
    : enabled.filter((transition) => !transition.crash)
}

export const search = (options: SearchOptions): Report =>
  options.strategy._tag === "random" ? sample(options, options.strategy) : depthFirst(options)

// -----------------------------------------------------------------------------
// Random schedules
// -----------------------------------------------------------------------------

// mulberry32: small, fast, and the same on every machine.
const random = (seed: number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// About one crash in a run of three contenders.
const CRASH_CHANCE = 0.04

const sample = (options: SearchOptions, strategy: { readonly count: number; readonly seed: number }): Report => {
  const report = emptyReport()
  const nextByEnd = new Map<string, Next>()
  for (let run = 0; run < strategy.count; run++) {
    const next = random(strategy.seed + run)
    const world = World.make(options)
    let schedule = ""
    let crashed = 0
    for (;;) {
      const enabled = choices(world, options, crashed)
      if (enabled.length === 0 || world.violations.length > 0) break
      const calls = enabled.filter((transition) => !transition.crash)
      const crashes = enabled.filter((transition) => transition.crash)
      const pool = crashes.length > 0 && next() < CRASH_CHANCE ? crashes : calls
      const chosen = pool[Math.floor(next() * pool.length)]!
      world.take(chosen.actor)
      if (chosen.crash) crashed++
      schedule += chosen.actor
      checkLength(schedule)
    }
    if (record(report, options, world, schedule, nextByEnd)) break
  }
  return report
}

// -----------------------------------------------------------------------------
// Depth-first search, with or without reduction
// -----------------------------------------------------------------------------

interface Frame {
  /** The choices open in this state. */
  readonly enabled: ReadonlyArray<Transition>
  /** Actors still to be tried from this state. */
  readonly backtrack: Set<string>
  readonly done: Set<string>
  /** Choices whose schedules from here are covered by ones already explored. */
  readonly sleep: Array<Transition>
  /** The choice taken from this state in the current schedule. */
  chosen: Transition
  /** Vector clock of the chosen step: by contender, 1 + the index of its last step that happens before it. */
  clock: Array<number>
}

const scheduleOf = (frames: ReadonlyArray<Frame>): string => frames.map((frame) => frame.chosen.actor).join("")

const isAsleep = (sleep: ReadonlyArray<Transition>, transition: Transition) =>
  sleep.some((asleep) => asleep.actor === transition.actor)

type Dependence = (a: Transition, b: Transition) => boolean

// Vector clocks over contenders: a contender's calls and its crash are one
// process to the reduction. They happen in its program order, and its crash
// is another outcome of its next change, like a branch it may take.

// The clock of contender `contender`'s last step among the first `length` frames.
const lastClock = (frames: ReadonlyArray<Frame>, length: number, contender: number): ReadonlyArray<number> => {
  for (let index = length - 1; index >= 0; index--) {
    if (frames[index]!.chosen.contender === contender) return frames[index]!.clock
  }
  return []
}

// Take `transition` at frame `index`: its clock joins its contender's last
// step and every earlier step it depends on.
const choose = (frames: Array<Frame>, index: number, transition: Transition, depends: Dependence): void => {
  const frame = frames[index]!
  const clock = [...lastClock(frames, index, transition.contender)]
  for (let earlier = 0; earlier < index; earlier++) {
    const other = frames[earlier]!
    if (!depends(other.chosen, transition)) continue
    other.clock.forEach((time, contender) => {
      if (time > (clock[contender] ?? 0)) clock[contender] = time
    })
  }
  clock[transition.contender] = index + 1
  frame.chosen = transition
  frame.clock = Array.from(clock, (time) => time ?? 0)
  frame.done.add(transition.actor)
}

// Whenever a contender is to be tried from a state, its crash there is tried too.
const alternativesOf = (enabled: ReadonlyArray<Transition>, contender: number): ReadonlyArray<string> =>
  enabled.filter((open) => open.contender === contender).map((open) => open.actor)

// For each choice open now, find the last step it races with (another
// contender's, dependent, and not ordered before it by happens-before): that
// contender must be tried too from the state before that step (or, when it
// had no choice open there, everyone).
const addBacktracks = (frames: ReadonlyArray<Frame>, enabled: ReadonlyArray<Transition>, depends: Dependence): void => {
  for (const transition of enabled) {
    const past = lastClock(frames, frames.length, transition.contender)
    for (let index = frames.length - 1; index >= 0; index--) {
      const frame = frames[index]!
      const step = frame.chosen
      if (step.contender === transition.contender || (past[step.contender] ?? 0) >= index + 1) continue
      if (!depends(step, transition)) continue
      const own = alternativesOf(frame.enabled, transition.contender)
      for (const actor of own.length > 0 ? own : frame.enabled.map((open) => open.actor)) frame.backtrack.add(actor)
      break
    }
  }
}

const depthFirst = (options: SearchOptions): Report => {
  const reduce = options.strategy._tag === "reduced"
  // Under a budget of fewer crashes than contenders, one crash can use up another's chance: then they depend.
  const depends: Dependence = (options.maxCrashes ?? options.contenders) < options.contenders
    ? (a, b) => dependent(a, b) || (a.crash && b.crash)
    : dependent
  const report = emptyReport()
  const nextByEnd = new Map<string, Next>()
  const frames: Array<Frame> = []
  let world = World.make(options)
  for (;;) {
    // Run the current schedule on to its end.
    for (;;) {
      const enabled = choices(world, options, frames.filter((frame) => frame.chosen.crash).length)
      if (enabled.length === 0 || world.violations.length > 0) {
        options.onSchedule?.(frames.map((frame) => frame.chosen))
        if (record(report, options, world, scheduleOf(frames), nextByEnd)) return report
        break
      }
      if (reduce) addBacktracks(frames, enabled, depends)
      const parent = frames[frames.length - 1]
      const sleep = reduce && parent !== undefined
        ? parent.sleep.filter((asleep) => !depends(asleep, parent.chosen))
        : []
      const first = enabled.find((transition) => !isAsleep(sleep, transition))
      if (first === undefined) {
        report.sleepBlocked++
        break
      }
      frames.push({
        enabled,
        backtrack: new Set(
          reduce ? alternativesOf(enabled, first.contender) : enabled.map((transition) => transition.actor)
        ),
        done: new Set(),
        sleep,
        chosen: first,
        clock: []
      })
      choose(frames, frames.length - 1, first, depends)
      world.take(first.actor)
      if (frames.length > MAX_STEPS) checkLength(scheduleOf(frames))
    }
    // Back up to the deepest state with a choice left to try.
    let next: Transition | undefined
    while (frames.length > 0) {
      const frame = frames[frames.length - 1]!
      if (reduce) frame.sleep.push(frame.chosen)
      next = frame.enabled.find((transition) =>
        frame.backtrack.has(transition.actor) && !frame.done.has(transition.actor) && !isAsleep(frame.sleep, transition)
      )
      if (next !== undefined) break
      frames.pop()
    }
    if (next === undefined) return report
    // A schedule cannot be resumed from the middle: replay its prefix on a fresh world.
    world = World.make(options)
    for (const frame of frames.slice(0, -1)) takeAgain(world, frame.chosen)
    choose(frames, frames.length - 1, next, depends)
    takeAgain(world, next)
  }
}

// The runs are deterministic: a replayed prefix offers the very same choices.
const takeAgain = (world: World, transition: Transition): void => {
  const taken = world.take(transition.actor)
  if (taken.label !== transition.label) {
    throw new Error(`replay diverged: expected ${transition.label}, found ${taken.label}`)
  }
}
