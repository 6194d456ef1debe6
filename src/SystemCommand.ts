/**
 * Running a system command (`ps`, `sysctl`) and reading what it printed
 * together with its exit code.
 *
 * The portable `ProcessInfo` asks the system about other processes through
 * this service, never through `node:child_process`, so that the in-memory test
 * kit (`effect-pidlock/testing`) can answer for `ps` and `sysctl` from its
 * fake process table, as it answers for `/proc`.
 *
 * @since 0.2.0
 */
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type { PlatformError } from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as internal from "./internal/systemCommand.js"

/**
 * @since 0.2.0
 * @category type ids
 */
export const TypeId: unique symbol = internal.TypeId

/**
 * @since 0.2.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * What a command that ran to its end printed, and its exit code.
 *
 * @since 0.2.0
 * @category models
 */
export interface Output {
  readonly exitCode: number
  /** Standard output, decoded as UTF-8. */
  readonly stdout: string
  /** Standard error, decoded as UTF-8: for messages, never parsed. */
  readonly stderr: string
}

/**
 * @since 0.2.0
 * @category models
 */
export interface SystemCommand {
  readonly [TypeId]: TypeId
  /**
   * Run `command` with `args` (no shell), its environment this process's
   * with `env` added, and wait for it to end. A command that cannot be
   * started (not installed: `NotFound`) is an error; one that ran and exited
   * with any code is an {@link Output}, for the caller to read.
   */
  readonly run: (
    command: string,
    args: ReadonlyArray<string>,
    options?: { readonly env?: Readonly<Record<string, string>> | undefined }
  ) => Effect.Effect<Output, PlatformError>
}

/**
 * @since 0.2.0
 * @category tags
 */
export const SystemCommand: Context.Tag<SystemCommand, SystemCommand> = internal.tag

/**
 * The implementation on `@effect/platform`'s `CommandExecutor`.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerExecutor: Layer.Layer<SystemCommand, never, CommandExecutor.CommandExecutor> = internal.layerExecutor

/**
 * The Node implementation: {@link layerExecutor} on the `CommandExecutor` of
 * `@effect/platform-node`, an optional peer dependency, loaded only when the
 * layer is built: importing this module loads nothing of it. Where it is not
 * installed, building the layer fails with a `SystemError` (`NotFound`,
 * method `import`) that says so.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerNode: Layer.Layer<SystemCommand, PlatformError, FileSystem.FileSystem> = internal.layerNode
