// A bounded run of the interleaving explorer (`npm run explore` runs it at full
// bounds), and a check that it can fail at all.
import { assert, beforeEach, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Path from "node:path"
import type * as Posix from "../src/Posix.js"
import * as ProcessInfo from "../src/ProcessInfo.js"
import type * as Testing from "../src/testing/index.js"
import { replay, search, type SearchOptions } from "./explore/explorer.js"
import { callTransition, crashTransition, dependent, type Transition } from "./explore/transition.js"
import { HOME, LOCK, SCENARIOS, World } from "./explore/world.js"

const clean = (options: SearchOptions, atLeast: number) => {
  const report = search(options)
  assert.deepStrictEqual(report.failures, [])
  assert.strictEqual(report.violations, 0)
  assert.strictEqual(report.stuck, 0)
  assert.isAtLeast(report.schedules, atLeast)
}

// A judge that calls every holder dead, the fault the protocol's safety rests
// on: /proc says every holder exited, and no holder's socket answers.
const everyHolderStale = (honest: ProcessInfo.ProcessInfo): ProcessInfo.ProcessInfo => ({
  ...honest,
  judge: () => Effect.succeed(ProcessInfo.Verdict.Stale({ reason: "Exited" }))
})
const noSocketAnswers = (honest: Posix.Posix): Posix.Posix => ({ ...honest, probe: () => Effect.succeed("Refused") })

// The portable judge's own look gone wrong: it compares ps's start time of a
// live holder with one the holder never had, and calls its PID reused.
const startTimeMisread = (honest: ProcessInfo.ProcessInfo): ProcessInfo.ProcessInfo => ({
  ...honest,
  judge: (holder, options) => honest.judge({ ...holder, startTime: "0" }, options)
})

// The generation counter rewritten in place (removed, then made anew) rather
// than by renaming a link over it: a holder that crashes in between leaves no
// counter, and the next one counts from 0 again. The lock advances the counter
// with its Posix calls.
const counterRewrittenInPlace = (honest: Posix.Posix): Posix.Posix => ({
  ...honest,
  rename: (from, to) =>
    Path.basename(to) !== "generation" ? honest.rename(from, to) : honest.readLink(from).pipe(
      Effect.tap(() =>
        honest.unlink(to).pipe(
          Effect.catchIf((error) => error._tag === "SystemError" && error.reason === "NotFound", () => Effect.void)
        )
      ),
      Effect.flatMap((text) => honest.symlink(text, to)),
      Effect.zipRight(honest.unlink(from))
    )
})

// Contender a's choices, taken alone (its crash left out) until it has none.
const runAlone = (world: World, contender: number): ReadonlyArray<Transition> => {
  const taken: Array<Transition> = []
  for (;;) {
    const next = world.enabled().find((open) => open.contender === contender && !open.crash)
    if (next === undefined) return taken
    taken.push(world.take(next.actor))
  }
}

// A few seconds each on an idle machine: `npm run explore` runs every schedule
// of two contenders up to the order of independent steps, and tens of
// thousands of random ones of three.
const SCHEDULES = 300
const TIMEOUT = 90_000

describe("interleaving explorer", () => {
  // Each search holds the thread for seconds: a turn of the event loop before
  // each lets vitest's worker read the answers to its calls, which time out
  // after a minute.
  beforeEach(() => new Promise((resume) => setTimeout(resume, 0)))

  for (const contenders of [2, 3]) {
    it.each(SCENARIOS)(
      `${contenders} contenders from a %s lock: seeded random schedules, crashes included`,
      (scenario) =>
        clean({ contenders, scenario, strategy: { _tag: "random", count: SCHEDULES, seed: contenders } }, SCHEDULES),
      TIMEOUT
    )
    it.each(SCENARIOS)(
      `${contenders} contenders from a %s lock, with the portable ProcessInfo: seeded random schedules, crashes included`,
      (scenario) =>
        clean({
          contenders,
          scenario,
          processInfoKind: "portable",
          strategy: { _tag: "random", count: SCHEDULES, seed: contenders }
        }, SCHEDULES),
      TIMEOUT
    )
  }

  // No socket answers: kill(pid, 0) and ps, each a step of its own, decide.
  it(
    "with the portable ProcessInfo and no socket answering, kill and ps alone keep the lock exclusive",
    () =>
      clean({
        contenders: 2,
        scenario: "free",
        processInfoKind: "portable",
        posix: noSocketAnswers,
        strategy: { _tag: "random", count: SCHEDULES, seed: 7 }
      }, SCHEDULES),
    TIMEOUT
  )

  it(
    "with the portable judge misreading every holder's start time, the holders' sockets alone keep the lock exclusive",
    () =>
      clean({
        contenders: 2,
        scenario: "free",
        processInfoKind: "portable",
        processInfo: startTimeMisread,
        strategy: { _tag: "random", count: SCHEDULES, seed: 7 }
      }, SCHEDULES),
    TIMEOUT
  )

  // Every holder listens on its socket before a record names it: where /proc
  // is wrong, the socket still proves a live holder alive.
  it(
    "with /proc calling every holder dead, the holders' sockets alone keep the lock exclusive",
    () =>
      clean({
        contenders: 2,
        scenario: "free",
        processInfo: everyHolderStale,
        strategy: { _tag: "random", count: SCHEDULES, seed: 7 }
      }, SCHEDULES),
    TIMEOUT
  )

  // A held lock: contender a took it while the world was set up. Its schedule
  // starts at its release, the one unlink of its entry (before which it may
  // crash as the holder), then acquires again: its process checked the lock
  // home the first time, so the second acquisition makes its staging
  // directory at once, and is handed the next generation.
  it("from a held lock, the holder releases, then acquires again without checking the home", () => {
    const world = World.make({ contenders: 2, scenario: "held" })
    const entry = (label: string) => new RegExp(`^unlink ${LOCK}/\\d+\\.T$`).test(label)
    const first = world.enabled().filter((open) => open.contender === 0)
    assert.deepStrictEqual(first.map((open) => open.crash), [false, true])
    assert.isTrue(entry(first[0]!.label), first[0]!.label)
    assert.isTrue(first[1]!.visible, first[1]!.label)
    const labels = runAlone(world, 0).map((step) => step.label)
    assert.isTrue(entry(labels[0]!), labels.join(", "))
    assert.isTrue(labels[1]!.startsWith(`makeDirectory ${HOME}/`), labels.join(", "))
    assert.isFalse(labels.some((label) => /^(stat|lstat) /.test(label)), labels.join(", "))
    assert.strictEqual(labels.filter((label) => label.endsWith(` -> ${LOCK}`)).length, 1, labels.join(", "))
    assert.isTrue(entry(labels[labels.length - 1]!), labels.join(", "))
    runAlone(world, 1)
    const { endState, stuck, violations } = world.conclude()
    assert.deepStrictEqual([violations, stuck], [[], undefined])
    assert.match(endState, /\| released 1 2 released 3 \|/)
  })

  // With every holder judged dead and no socket to say otherwise, the reduced
  // search finds a live holder's lock taken, and its schedule replays.
  const assertFindsLiveHolderTaken = (scenario: "free" | "held", maxCrashes?: number) => {
    const options = { contenders: 2, scenario, processInfo: everyHolderStale, posix: noSocketAnswers } as const
    const report = search({
      ...options,
      strategy: { _tag: "reduced" },
      ...(maxCrashes === undefined ? {} : { maxCrashes }),
      stopAtFirst: true
    })
    assert.strictEqual(report.violations, 1)
    const [failure] = report.failures
    assert.isDefined(failure)
    assert.isTrue(failure.messages.some((message) => message.includes("holds the lock")), failure.messages.join("; "))
    const replayed = replay(options, failure.schedule)
    assert.deepStrictEqual(replayed.violations, failure.messages)
  }

  it("finds the lock taken from a live holder when the judge calls it dead, and the printed schedule replays it", () =>
    assertFindsLiveHolderTaken("free"))

  it("finds the lock taken from a live holder when the portable judge calls it dead after kill and ps, and the printed schedule replays it", () => {
    const options = {
      contenders: 2,
      scenario: "free",
      processInfoKind: "portable",
      processInfo: startTimeMisread,
      posix: noSocketAnswers
    } as const
    let steps: ReadonlyArray<Transition> = []
    const report = search({
      ...options,
      strategy: { _tag: "reduced" },
      stopAtFirst: true,
      onSchedule: (schedule) => {
        steps = schedule
      }
    })
    assert.strictEqual(report.violations, 1)
    const [failure] = report.failures
    assert.isDefined(failure)
    assert.isTrue(failure.messages.some((message) => message.includes("holds the lock")), failure.messages.join("; "))
    // The verdict came from the judge's own look, each call a step.
    const labels = steps.map((step) => step.label)
    assert.isTrue(labels.some((label) => label.startsWith("kill ")), labels.join(", "))
    assert.isTrue(labels.some((label) => label.startsWith("command ps ")), labels.join(", "))
    const replayed = replay(options, failure.schedule)
    assert.deepStrictEqual(replayed.violations, failure.messages)
  })

  // From a held lock, the holder's second acquisition (the cached path) is
  // where the lock is taken from a live holder, or the first one's.
  it("finds the lock taken from the live holder of a held lock when the judge calls it dead, and the printed schedule replays it", () =>
    assertFindsLiveHolderTaken("held", 0))

  it("finds a generation handed out twice when the counter is rewritten in place, and the printed schedule replays it", () => {
    const options = { contenders: 2, scenario: "free", posix: counterRewrittenInPlace } as const
    const report = search({ ...options, strategy: { _tag: "reduced" }, stopAtFirst: true })
    assert.strictEqual(report.violations, 1)
    const [failure] = report.failures
    assert.isDefined(failure)
    assert.isTrue(
      failure.messages.some((message) => /handed generation 1, after 1$/.test(message)),
      failure.messages.join("; ")
    )
    const replayed = replay(options, failure.schedule)
    assert.deepStrictEqual(replayed.violations, failure.messages)
  })
})

describe("the dependency relation", () => {
  const A = "11.00000000000000aa"
  const B = "12.00000000000000bb"
  const step = (contender: number, method: string, path: string, more: Partial<Testing.FileSystemCall> = {}) =>
    callTransition(contender, 0, { index: 0, method, path, ...more }, LOCK)
  const at = (name: string) => Path.join(HOME, name)
  // What contender b may do while contender a advances the counter or checks the home.
  const other = [
    step(1, "makeDirectory", HOME),
    step(1, "lstat", HOME),
    step(1, "makeDirectory", at(B)),
    step(1, "rename", at(B), { target: LOCK }),
    step(1, "remove", at(B), { syscall: "rmdir" }),
    step(1, "readDirectory", LOCK),
    step(1, "unlink", Path.join(LOCK, B)),
    step(1, "readLink", at("generation")),
    step(1, "symlink", at(`generation.${B}`), { target: "2" }),
    step(1, "rename", at(`generation.${B}`), { target: at("generation") }),
    step(1, "readDirectory", HOME),
    step(1, "remove", at(`generation.${A}`), { syscall: "lstat" }),
    step(1, "remove", at(`generation.${A}`), { syscall: "unlink" })
  ]
  const dependsOn = (own: ReturnType<typeof step>) =>
    other.filter((step) => dependent(own, step)).map((step) => step.label)
  const home = "/tmp/locks/app"

  it("orders each call of the generation counter with exactly the calls that touch its names", () => {
    assert.deepStrictEqual(dependsOn(step(0, "readLink", at("generation"))), [
      `makeDirectory ${home}`,
      `rename ${home}/generation.12.T -> ${home}/generation`
    ])
    assert.deepStrictEqual(dependsOn(step(0, "symlink", at(`generation.${A}`), { target: "2" })), [
      `makeDirectory ${home}`,
      `readDirectory ${home}`,
      `remove ${home}/generation.11.T`,
      `remove ${home}/generation.11.T`
    ])
    assert.deepStrictEqual(dependsOn(step(0, "rename", at(`generation.${A}`), { target: at("generation") })), [
      `makeDirectory ${home}`,
      `readLink ${home}/generation`,
      `rename ${home}/generation.12.T -> ${home}/generation`,
      `readDirectory ${home}`,
      `remove ${home}/generation.11.T`,
      `remove ${home}/generation.11.T`
    ])
  })

  it("orders the unlink of an owner entry with the calls that touch its name and the listing of the lock", () => {
    const own = [
      step(1, "makeDirectory", at(A)),
      step(1, "symlink", Path.join(at(A), A), { target: "{}" }),
      step(1, "rename", at(A), { target: LOCK }),
      step(1, "lstat", LOCK),
      step(1, "readDirectory", LOCK),
      step(1, "watch", LOCK),
      step(1, "readLink", Path.join(LOCK, A)),
      step(1, "readLink", Path.join(LOCK, B)),
      step(1, "unlink", Path.join(LOCK, A)),
      step(1, "unlink", Path.join(LOCK, B)),
      step(1, "readDirectory", HOME),
      step(1, "lstat", HOME),
      step(1, "probe", at(`${A}.sock`))
    ]
    const unlink = step(0, "unlink", Path.join(LOCK, A))
    assert.isTrue(unlink.visible)
    assert.deepStrictEqual(own.filter((other) => dependent(unlink, other)).map((other) => other.label), [
      `rename ${home}/11.T -> ${home}/lock`,
      `readDirectory ${home}/lock`,
      `watch ${home}/lock`,
      `readLink ${home}/lock/11.T`,
      `unlink ${home}/lock/11.T`,
      // Both may change who holds the lock.
      `unlink ${home}/lock/12.T`
    ])
  })

  it("orders kill(pid, 0) and ps of a process with its crash alone, and sysctl with no crash", () => {
    const crashOf12 = crashTransition(1, 12, true)
    const crashOf13 = crashTransition(2, 13, false)
    const looks = [step(0, "kill", "12"), step(0, "command", "ps -o stat= -o lstart= -o args= -p 12")]
    for (const look of looks) {
      assert.isTrue(dependent(look, crashOf12), look.label)
      assert.isFalse(dependent(look, crashOf13), look.label)
      assert.deepStrictEqual(dependsOn(look), [], look.label)
    }
    const sysctl = step(0, "command", "sysctl -n kern.boottime kern.hostname")
    assert.isFalse(dependent(sysctl, crashOf12) || dependent(sysctl, crashOf13))
  })

  it("orders the lstat of the home with the directories made, removed and moved in it, not with its symlinks", () => {
    assert.deepStrictEqual(dependsOn(step(0, "lstat", HOME)), [
      `makeDirectory ${home}`,
      `makeDirectory ${home}/12.T`,
      `rename ${home}/12.T -> ${home}/lock`,
      `remove ${home}/12.T`
    ])
  })
})
