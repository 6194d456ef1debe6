// A bounded run of the interleaving explorer (`npm run explore` runs it at full
// bounds), and a check that it can fail at all.
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ProcessInfo from "../src/ProcessInfo.js"
import { replay, search, type SearchOptions } from "./explore/explorer.js"

const clean = (options: SearchOptions, atLeast: number) => {
  const report = search(options)
  assert.deepStrictEqual(report.failures, [])
  assert.strictEqual(report.violations, 0)
  assert.strictEqual(report.stuck, 0)
  assert.isAtLeast(report.schedules, atLeast)
}

// A judge that calls every holder dead, the fault the protocol's safety rests on.
const everyHolderStale = (honest: ProcessInfo.ProcessInfo): ProcessInfo.ProcessInfo => ({
  ...honest,
  judge: () => Effect.succeed(ProcessInfo.Verdict.Stale({ reason: "Exited" }))
})

describe("interleaving explorer", () => {
  it("two contenders from a free lock: every schedule up to the order of independent steps, crashes included", () =>
    clean({ contenders: 2, scenario: "free", strategy: { _tag: "reduced" } }, 500))

  // A few seconds each on an idle machine; `npm run explore` runs 100,000.
  it.each(["free", "stale"] as const)("three contenders from a %s lock: seeded random schedules, crashes included", (scenario) =>
    clean({ contenders: 3, scenario, strategy: { _tag: "random", count: 750, seed: 1 } }, 750))

  it("finds the lock taken from a live holder when the judge calls it dead, and the printed schedule replays it", () => {
    const options = { contenders: 2, scenario: "free", processInfo: everyHolderStale } as const
    const report = search({ ...options, strategy: { _tag: "reduced" }, stopAtFirst: true })
    assert.strictEqual(report.violations, 1)
    const [failure] = report.failures
    assert.isDefined(failure)
    assert.isTrue(failure.messages.some((message) => message.includes("holds the lock")), failure.messages.join("; "))
    const replayed = replay(options, failure.schedule)
    assert.deepStrictEqual(replayed.violations, failure.messages)
  })
})
