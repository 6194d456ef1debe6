import { type PlatformError, SystemError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Fs from "node:fs"
import * as PidLock from "../PidLock.js"
import * as ProcessInfo from "../ProcessInfo.js"
import type * as Promised from "../promise.js"

const makeRuntime = () => ManagedRuntime.make(ProcessInfo.layer.pipe(Layer.provideMerge(NodeFileSystem.layer)))

// Built on first use, so that importing the module costs nothing, and shared
// by every lock of the process.
let runtime: ReturnType<typeof makeRuntime> | undefined

const nodeRuntime = () => runtime ??= makeRuntime()

type Services = ManagedRuntime.ManagedRuntime.Context<ReturnType<typeof makeRuntime>>

// Rejects with the error itself (a tagged error, a PlatformError, or a
// defect's original error) rather than a FiberFailure wrapping it, so that
// `e instanceof PidLock.LockHeld` and `e._tag` work in a plain `catch`.
const run = async <A, E>(effect: Effect.Effect<A, E, Services>): Promise<A> => {
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

// -----------------------------------------------------------------------------
// Released on exit
// -----------------------------------------------------------------------------

// The owner entries of the locks this process holds. Like the original
// `pidlock`, the process removes them when it exits without releasing them
// (the event loop ran dry, `process.exit()`, an uncaught exception), so that
// a clean exit leaves the lock free rather than stale. Nothing asynchronous
// runs once `exit` is emitted, hence the synchronous unlink: by the entry's
// exact name, unique to this holder's life, so it never touches another's.
const heldEntries = new Set<string>()

const unlinkHeldEntries = () => {
  for (const entry of heldEntries) {
    try {
      Fs.unlinkSync(entry)
    } catch {
      // Gone already (the lock was lost), or refused: nothing can be reported
      // at exit, and the next contender takes a dead holder's lock over.
    }
  }
}

const releaseOnExit = (entry: string) => {
  if (heldEntries.size === 0) process.on("exit", unlinkHeldEntries)
  heldEntries.add(entry)
}

const forgetOnExit = (entry: string) => {
  heldEntries.delete(entry)
  if (heldEntries.size === 0) process.off("exit", unlinkHeldEntries)
}

// -----------------------------------------------------------------------------
// A lock that does not keep the process alive
// -----------------------------------------------------------------------------

// Node fires a longer timer at once.
const MAX_TIMER_MILLIS = 2 ** 31 - 1

// `clock`, but sleeping on timers that do not keep the event loop alive.
const unrefClock = (clock: Clock.Clock): Clock.Clock => ({
  [Clock.ClockTypeId]: Clock.ClockTypeId,
  unsafeCurrentTimeMillis: () => clock.unsafeCurrentTimeMillis(),
  currentTimeMillis: clock.currentTimeMillis,
  unsafeCurrentTimeNanos: () => clock.unsafeCurrentTimeNanos(),
  currentTimeNanos: clock.currentTimeNanos,
  sleep: (duration) => {
    const millis = Duration.toMillis(duration)
    if (millis > MAX_TIMER_MILLIS) return Effect.never
    return Effect.async<void>((resume) => {
      const timer = setTimeout(() => resume(Effect.void), millis).unref()
      return Effect.sync(() => clearTimeout(timer))
    })
  }
})

// A watch that does not keep the event loop alive. The lock only waits for
// the next change in a directory, so every change is reported as an update.
const unrefWatch = (path: string): Stream.Stream<FileSystem.WatchEvent, PlatformError> =>
  Stream.asyncScoped<FileSystem.WatchEvent, PlatformError>((emit) => {
    const failed = (cause: unknown) =>
      new SystemError({ module: "FileSystem", reason: "Unknown", method: "watch", pathOrDescriptor: path, cause })
    return Effect.acquireRelease(
      Effect.try({
        try: () => {
          const watcher = Fs.watch(path, { persistent: false }, () => emit.single(FileSystem.WatchEventUpdate({ path })))
          watcher.on("error", (cause) => emit.fail(failed(cause)))
          return watcher
        },
        catch: failed
      }),
      (watcher) => Effect.sync(() => watcher.close())
    )
  })

// Runs `effect` with the clock's timers and the file system's watches
// unref'd, so that the watchdog it forks never keeps the process alive.
// Only for an acquisition that fails fast: a wait would sleep on these timers,
// and the process could end while waiting.
const withoutKeepingAlive = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.zip(FileSystem.FileSystem, Effect.clock), ([fs, clock]) =>
    effect.pipe(
      Effect.provideService(FileSystem.FileSystem, { ...fs, watch: unrefWatch }),
      Effect.withClock(unrefClock(clock))
    ))

// -----------------------------------------------------------------------------
// The API
// -----------------------------------------------------------------------------

const acquireLock = async (
  options: PidLock.Options,
  { keepAlive }: { readonly keepAlive: boolean }
): Promise<Promised.Lock> => {
  const scope = Scope.make().pipe(Effect.runSync)
  const lost = handledRejection<PidLock.LockCompromised>()
  const { forwardLost, lock } = await run(
    Effect.gen(function*() {
      const lock = yield* (keepAlive ? PidLock.acquire(options) : withoutKeepingAlive(PidLock.acquire(options)))
      const forwardLost = yield* Effect.forkScoped(
        Effect.catchAll(lock.lost, (error) => Effect.sync(() => lost.reject(error)))
      )
      return { forwardLost, lock }
    }).pipe(
      Scope.extend(scope),
      Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
    )
  )
  releaseOnExit(lock.entry)
  // Shared, so that a second call neither unlinks twice nor reports the
  // first call's success as a compromised lock.
  let releasing: Promise<void> | undefined
  return {
    name: lock.name,
    path: lock.location,
    entry: lock.entry,
    owner: lock.owner,
    // `lost` is let go of first: the watchdog, still running until the scope
    // closes, may see our own unlink as a lost lock. It then never settles.
    release: () =>
      releasing ??= run(
        Fiber.interrupt(forwardLost).pipe(
          Effect.zipRight(lock.release),
          Effect.ensuring(Scope.close(scope, Exit.void)),
          Effect.ensuring(Effect.sync(() => forgetOnExit(lock.entry)))
        )
      ),
    verify: () => run(lock.verify),
    lost: lost.promise
  }
}

/** @internal */
export const acquire = (options: PidLock.Options): Promise<Promised.Lock> => acquireLock(options, { keepAlive: true })

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

// What `cleanup` is when the lock was not taken, as in the original: a no-op.
const notAcquired = (): Promise<void> => Promise.resolve()

/** @internal */
export const guard = (dir: string, key: string, callback: Promised.GuardCallback): void => {
  // As with the original, the process ends when its work is done, whether or
  // not the callback calls `cleanup()`; the lock is then removed on exit.
  // The callback runs on `process.nextTick`, outside the promise chain: what it
  // throws is an uncaught exception, as a throw out of the original's
  // synchronous callback is for a program that calls `guard` at top level,
  // and never an unhandled rejection, nor swallowed.
  acquireLock({ name: key, dir }, { keepAlive: false }).then(
    (lock) => {
      const cleanup = () => {
        const released = lock.release()
        released.catch(() => {})
        return released
      }
      process.nextTick(() => callback(null, lock, cleanup))
    },
    (error: PidLock.PidLockError | PlatformError) =>
      process.nextTick(() => callback(error, undefined, notAcquired))
  )
}
