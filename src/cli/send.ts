/**
 * `effect-pidlock send`, and `run --forward`: words handed to the process
 * that holds a file lock, and its reply printed.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { escapeText } from "../internal/text.js"
import * as PidLock from "../PidLock.js"
import type { SendArgs } from "./args.js"
import { printLine } from "./output.js"

/**
 * What the CLI sends: `{ argv }`, the words after `--`, as given. The holder
 * resolves any path among them against the message's `cwd`.
 *
 * @internal
 */
export interface SentData {
  readonly argv: ReadonlyArray<string>
}

/**
 * Sends `args.argv` to the holder and prints its reply on stdout, as one
 * line of JSON (escaped as `status --json` is: a reply may carry any text).
 *
 * @internal
 */
export const send = (args: SendArgs) =>
  Effect.flatMap(
    PidLock.send({
      name: args.name,
      dir: Option.getOrUndefined(args.dir),
      data: { argv: args.argv } satisfies SentData,
      timeout: Option.getOrUndefined(args.timeout)
    }),
    (reply) => printLine(escapeText(JSON.stringify(reply)))
  )
