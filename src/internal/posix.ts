import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Posix from "../Posix.js"

/** @internal */
export const TypeId: Posix.TypeId = Symbol.for("effect-pidlock/Posix") as Posix.TypeId

/** @internal */
export const tag = Context.GenericTag<Posix.Posix>("effect-pidlock/Posix")

// TODO(helper B): the Node implementation.
/** @internal */
export const layerNode: Layer.Layer<Posix.Posix> = Layer.effect(tag, Effect.die("not yet"))
