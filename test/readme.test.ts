// The README's test-kit example, kept here so that it is known to pass.
import { assert, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as PidLock from "../src/PidLock.js"
import * as Testing from "../src/testing/index.js"

it.effect("a second instance is refused", () =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(Effect.scoped(Effect.zipRight(
      PidLock.acquire({ name: "job", dir: "/tmp" }),
      PidLock.acquire({ name: "job", dir: "/tmp" })
    )))
    assert.strictEqual(error._tag, "LockHeld")
  }).pipe(Effect.provide(Testing.layer())))
