// The SystemCommand on a CommandExecutor, in a module of its own: loaded
// when its layer is built, so that importing ProcessInfo loads none of
// @effect/platform's Command modules where the /proc layer is used.
import * as Command from "@effect/platform/Command"
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import type { PlatformError } from "@effect/platform/Error"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import type * as SystemCommand from "../SystemCommand.js"
import { tag, TypeId } from "./systemCommand.js"

const collect = (stream: Stream.Stream<Uint8Array, PlatformError>) => Stream.mkString(Stream.decodeText(stream))

const make = Effect.map(CommandExecutor.CommandExecutor, (executor) => {
  // `Command.string` drops the exit code, which is what tells "no such
  // process" from an answer: output and exit code are read together, the
  // pipes drained while the command runs so that it never blocks on them.
  const run: SystemCommand.SystemCommand["run"] = (command, args, options) =>
    Effect.scoped(Effect.gen(function*() {
      const process = yield* executor.start(
        Command.make(command, ...args).pipe(Command.env(options?.env ?? {}))
      )
      const [stdout, stderr, exitCode] = yield* Effect.all(
        [collect(process.stdout), collect(process.stderr), process.exitCode],
        { concurrency: "unbounded" }
      )
      return { exitCode, stdout, stderr }
    }))
  return tag.of({ [TypeId]: TypeId, run })
})

/** @internal */
export const layer: Layer.Layer<SystemCommand.SystemCommand, never, CommandExecutor.CommandExecutor> = Layer
  .effect(tag, make)
