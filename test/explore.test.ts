// A bounded run of the interleaving explorer (`npm run explore` runs it at full
// bounds), and a check that it can fail at all.
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Posix from "../src/Posix.js"
import * as ProcessInfo from "../src/ProcessInfo.js"
import { replay, search, type SearchOptions } from "./explore/explorer.js"

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

// A few seconds each on an idle machine: `npm run explore` runs every schedule
// of two contenders up to the order of independent steps, and tens of
// thousands of random ones of three.
const SCHEDULES = 300
const TIMEOUT = 90_000

describe("interleaving explorer", () => {
  for (const contenders of [2, 3]) {
    it.each(["free", "stale"] as const)(`${contenders} contenders from a %s lock: seeded random schedules, crashes included`, (scenario) =>
      clean({ contenders, scenario, strategy: { _tag: "random", count: SCHEDULES, seed: contenders } }, SCHEDULES), TIMEOUT)
  }

  // Every holder listens on its socket before a record names it: where /proc
  // is wrong, the socket still proves a live holder alive.
  it("with /proc calling every holder dead, the holders' sockets alone keep the lock exclusive", () =>
    clean({ contenders: 2, scenario: "free", processInfo: everyHolderStale, strategy: { _tag: "random", count: SCHEDULES, seed: 7 } }, SCHEDULES), TIMEOUT)

  it("finds the lock taken from a live holder when the judge calls it dead, and the printed schedule replays it", () => {
    const options = { contenders: 2, scenario: "free", processInfo: everyHolderStale, posix: noSocketAnswers } as const
    const report = search({ ...options, strategy: { _tag: "reduced" }, stopAtFirst: true })
    assert.strictEqual(report.violations, 1)
    const [failure] = report.failures
    assert.isDefined(failure)
    assert.isTrue(failure.messages.some((message) => message.includes("holds the lock")), failure.messages.join("; "))
    const replayed = replay(options, failure.schedule)
    assert.deepStrictEqual(replayed.violations, failure.messages)
  })
})
