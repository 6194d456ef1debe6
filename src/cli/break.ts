/**
 * `effect-pidlock break`: a dead holder's lock removed by hand.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Path from "node:path"
import type { BreakArgs } from "./args.js"
import { makeBackend } from "./backend.js"
import { failWith } from "./exitCodes.js"
import { printLine } from "./output.js"
import { describeStatus } from "./status.js"

const BREAK_REFUSED = 1

/** @internal */
export const breakLock = (args: BreakArgs) =>
  Effect.scoped(Effect.gen(function*() {
    const { force, name } = args
    const backend = yield* makeBackend(args)
    const found = yield* backend.inspect(name)
    if (Option.isNone(found)) return yield* printLine(`${name} is free: nothing to break`)
    const status = found.value
    const { verdict } = status
    if (backend._tag === "Postgres") {
      // The server holds no lock of a session that ended: its holder's
      // session is there, whether or not that holder still works (a host
      // that vanished leaves it open until TCP gives up on it).
      if (!force) {
        return yield* failWith(
          `refusing to break: ${describeStatus(status)}; its database session is alive: pass --force to end it`,
          BREAK_REFUSED
        )
      }
      // Only the session of the holder judged above is ended: one that
      // moved in since has another token, left alone.
      const ended = yield* backend.breakLock(status)
      return yield* printLine(
        ended
          ? `broke ${status.location}: ended its holder's database session (${describeStatus(status)})`
          : `${status.location}: its holder's session had already ended`
      )
    }
    if (verdict._tag === "Alive") {
      return yield* failWith(`refusing to break a live holder's lock: ${describeStatus(status)}`, BREAK_REFUSED)
    }
    if (verdict._tag === "Foreign" && !force) {
      return yield* failWith(
        `refusing to break: ${describeStatus(status)}; pass --force if you know that holder is gone`,
        BREAK_REFUSED
      )
    }
    // The same compare-and-swap as a takeover: only the entry of the holder
    // judged above is removed. If it is gone, someone broke the lock first,
    // and a holder who moved in since has another entry name, left alone.
    const entry = Path.join(status.location, `${status.holder.pid}.${status.holder.token}`)
    const removed = yield* backend.breakLock(status)
    yield* printLine(
      removed
        ? `broke ${status.location}: removed ${entry} (${describeStatus(status)})`
        : `${status.location}: ${entry} was already removed by someone else`
    )
  }))
