/**
 * `effect-pidlock status`: who holds the lock, without touching it.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { describeHeld, describeStale } from "../internal/ownerRecord.js"
import { escapeText } from "../internal/text.js"
import type * as PidLock from "../PidLock.js"
import type { StatusArgs } from "./args.js"
import { makeBackend } from "./backend.js"
import { exitCodeOf, exitWith } from "./exitCodes.js"
import { printLine } from "./output.js"

const STATUS_FREE = 0
const STATUS_HELD = 1
const STATUS_STALE = 2

/**
 * Who holds the lock, in the words of the error that acquiring would give,
 * without its next step: what to do next is the command's to say.
 *
 * @internal
 */
export const describeStatus = (status: PidLock.Status): string =>
  status.verdict._tag === "Stale"
    ? describeStale(status.location, status.holder, status.verdict.reason)
    : describeHeld(status)

interface Report {
  readonly name: string | null
  readonly state: "free" | "held" | "stale" | "error"
  readonly location: string | null
  readonly holder: PidLock.OwnerRecord | null
  readonly verdict: PidLock.Status["verdict"] | null
  readonly error?: { readonly _tag: string; readonly message: string }
}

// JSON.stringify escapes C0 controls but not C1 or bidi ones, which a planted
// record may hold: those become \u escapes as well, and JSON.parse still gives
// the record's very strings.
const printJson = (report: Report) => printLine(escapeText(JSON.stringify(report)))

/**
 * `status --json` answers in JSON whatever happens: a failure is a report of
 * state "error", beside its message on stderr, with its exit code.
 *
 * @internal
 */
export const printJsonError = (name: string | null, error: { readonly _tag: string; readonly message: string }) =>
  Effect.zipRight(
    printJson({
      name,
      state: "error",
      location: null,
      holder: null,
      verdict: null,
      error: { _tag: error._tag, message: error.message }
    }),
    Effect.zipRight(Effect.logError(error.message), exitWith(exitCodeOf(error)))
  )

/** @internal */
export const status = (args: StatusArgs) =>
  Effect.scoped(Effect.gen(function*() {
    const { json, name } = args
    const backend = yield* makeBackend(args)
    const found = yield* backend.inspect(name)
    const state = Option.match(found, {
      onNone: () => "free" as const,
      onSome: (status) => status.verdict._tag === "Stale" ? "stale" as const : "held" as const
    })
    const location = Option.isSome(found) ? found.value.location : yield* backend.location(name)
    if (json) {
      const status = Option.getOrNull(found)
      yield* printJson({ name, state, location, holder: status?.holder ?? null, verdict: status?.verdict ?? null })
    } else {
      yield* printLine(Option.match(found, { onNone: () => `${location} is free`, onSome: describeStatus }))
    }
    yield* exitWith({ free: STATUS_FREE, held: STATUS_HELD, stale: STATUS_STALE }[state])
  })).pipe(
    Effect.catchAll((error) => args.json ? printJsonError(args.name, error) : Effect.fail(error))
  )
