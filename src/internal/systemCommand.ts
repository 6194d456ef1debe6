import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type { PlatformError } from "@effect/platform/Error"
import { SystemError } from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as SystemCommand from "../SystemCommand.js"

// The service's tag is made beside the portable ProcessInfo that asks it, so
// that importing ProcessInfo loads no module of its own for it; this module,
// the Node implementation, is loaded when `layerPortableNode` is built.
export {
  /** @internal */
  commandTag as tag,
  /** @internal */
  CommandTypeId as TypeId
} from "./processInfo.js"

/** @internal */
export const layerExecutor: Layer.Layer<SystemCommand.SystemCommand, never, CommandExecutor.CommandExecutor> = Layer
  .unwrapEffect(Effect.map(Effect.promise(() => import("./systemCommandExecutor.js")), (module) => module.layer))

// @effect/platform-node is an optional peer dependency: it is loaded when
// this layer is built (the portable ProcessInfo, on macOS and FreeBSD), never
// by importing this module, so that the /proc layer loads nothing of it and
// an application without it can still import ProcessInfo.
const NODE_EXECUTOR = "@effect/platform-node/NodeCommandExecutor"

const notInstalled = (cause: unknown): PlatformError =>
  new SystemError({
    reason: "NotFound",
    module: "Command",
    method: "import",
    pathOrDescriptor: NODE_EXECUTOR,
    description: `${NODE_EXECUTOR} cannot be loaded (${cause instanceof Error ? cause.message : String(cause)}): ` +
      `the portable ProcessInfo runs ps and sysctl through @effect/platform-node, an optional peer dependency; ` +
      `install it, or provide a SystemCommand of your own`,
    cause
  })

/** @internal */
export const layerNode: Layer.Layer<SystemCommand.SystemCommand, PlatformError, FileSystem.FileSystem> = Layer
  .unwrapEffect(
    Effect.tryPromise({ try: () => import("@effect/platform-node/NodeCommandExecutor"), catch: notInstalled }).pipe(
      Effect.map((NodeCommandExecutor) => Layer.provide(layerExecutor, NodeCommandExecutor.layer))
    )
  )
