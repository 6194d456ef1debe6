import type { PlatformError } from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Scope from "effect/Scope"
import * as PidLock from "../PidLock.js"
import * as ProcessInfo from "../ProcessInfo.js"
import type * as Promised from "../promise.js"

// Built on first use, so that importing the module costs nothing, and shared
// by every lock of the process.
let runtime:
  | ManagedRuntime.ManagedRuntime<
    FileSystem.FileSystem | ProcessInfo.ProcessInfo,
    PlatformError | ProcessInfo.UnsupportedPlatform
  >
  | undefined

const nodeRuntime = () =>
  runtime ??= ManagedRuntime.make(ProcessInfo.layer.pipe(Layer.provideMerge(NodeFileSystem.layer)))

// Rejects with the error itself (a tagged error, a PlatformError, or a
// defect's original error) rather than a FiberFailure wrapping it, so that
// `e instanceof PidLock.LockHeld` and `e._tag` work in a plain `catch`.
const run = async <A, E>(effect: Effect.Effect<A, E, FileSystem.FileSystem | ProcessInfo.ProcessInfo>): Promise<A> => {
  const exit = await nodeRuntime().runPromiseExit(effect)
  if (Exit.isSuccess(exit)) return exit.value
  throw unwrapSpans(Cause.squash(exit.cause))
}

// An error that fails through a traced function (`Effect.fn`) comes back
// wrapped in a Proxy per span; users get the instance that was created.
const unwrapSpans = (error: unknown): unknown => {
  const original = Cause.originalError(error)
  return original === error ? error : unwrapSpans(original)
}

// A promise that nobody may ever look at: its rejection is marked handled, so
// that an unobserved lost lock never ends the process as an unhandled
// rejection, while `await lock.lost` still sees it.
const handledRejection = <E>() => {
  let reject!: (error: E) => void
  const promise = new Promise<never>((_, rejectPromise) => {
    reject = rejectPromise
  })
  promise.catch(() => {})
  return { promise, reject }
}

/** @internal */
export const acquire = async (options: PidLock.Options): Promise<Promised.Lock> => {
  const scope = Scope.make().pipe(Effect.runSync)
  const lost = handledRejection<PidLock.LockCompromised>()
  const { forwardLost, lock } = await run(
    Effect.gen(function*() {
      const lock = yield* PidLock.acquire(options)
      const forwardLost = yield* Effect.forkScoped(
        Effect.catchAll(lock.lost, (error) => Effect.sync(() => lost.reject(error)))
      )
      return { forwardLost, lock }
    }).pipe(
      Scope.extend(scope),
      Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
    )
  )
  // Shared, so that a second call neither unlinks twice nor reports the
  // first call's success as a compromised lock.
  let releasing: Promise<void> | undefined
  return {
    name: lock.name,
    path: lock.path,
    entry: lock.entry,
    owner: lock.owner,
    // `lost` is let go of first: the watchdog, still running until the scope
    // closes, may see our own unlink as a lost lock. It then never settles.
    release: () =>
      releasing ??= run(
        Fiber.interrupt(forwardLost).pipe(
          Effect.zipRight(lock.release),
          Effect.ensuring(Scope.close(scope, Exit.void))
        )
      ),
    verify: () => run(lock.verify),
    lost: lost.promise
  }
}

/** @internal */
export const withLock = async <A>(
  options: PidLock.Options,
  body: (lock: Promised.Lock) => A | PromiseLike<A>
): Promise<A> => {
  const lock = await acquire(options)
  const watch: { lostWith?: PidLock.LockCompromised } = {}
  lock.lost.catch((error: PidLock.LockCompromised) => {
    watch.lostWith = error
  })
  // The body cannot be interrupted: it is awaited to the end even when the
  // lock is lost, so that the caller never starts another run beside it.
  const [outcome] = await Promise.allSettled([Promise.resolve(lock).then(body)])
  const [released] = await Promise.allSettled([lock.release()])
  if (watch.lostWith !== undefined) throw watch.lostWith
  if (outcome.status === "rejected") throw outcome.reason
  if (released.status === "rejected") throw released.reason
  return outcome.value
}

/** @internal */
export const guard = (dir: string, key: string, callback: Promised.GuardCallback): void => {
  // `then(onHeld, onFailed)`, not `.then().catch()`: an exception thrown by the
  // callback must not call it a second time as a failure.
  acquire({ name: key, dir }).then(
    (lock) =>
      callback(null, lock, () => {
        const released = lock.release()
        released.catch(() => {})
        return released
      }),
    (error: PidLock.PidLockError | PlatformError) => callback(error, undefined, undefined)
  )
}
