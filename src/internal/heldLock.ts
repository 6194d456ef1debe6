import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import * as PidLock from "../PidLock.js"

// What both backends do with a lock once it is held: one release in flight,
// the watchdog, and `withLock`.

const isCompromised = (error: unknown): error is PidLock.LockCompromised => Predicate.isTagged(error, "LockCompromised")

/** @internal */
export interface Releaser<E> {
  readonly release: Effect.Effect<void, PidLock.LockCompromised | E>
  /** False from the start of our own release: what it removes is no loss. */
  readonly isHeld: () => boolean
}

/**
 * Runs `removal` at most once at a time, its outcome shared by every caller.
 * The lock counts as released from the start of the removal, so that
 * neither `verify` nor the watchdog takes it for a loss; as held again after
 * a failure other than a compromise, so that the next call (or the scope's
 * finalizer) tries again.
 *
 * @internal
 */
export const makeReleaser = <E>(removal: Effect.Effect<void, PidLock.LockCompromised | E>): Releaser<E> => {
  let state: "held" | "releasing" | "released" = "held"
  // The outcome of the release in flight, made only when a second caller
  // comes to wait for it.
  let waiting: Deferred.Deferred<void, PidLock.LockCompromised | E> | undefined
  const release = Effect.suspend((): Effect.Effect<void, PidLock.LockCompromised | E> => {
    if (state === "released") return Effect.void
    if (state === "releasing") return Deferred.await(waiting ??= Deferred.unsafeMake(FiberId.none))
    state = "releasing"
    return Effect.flatMap(Effect.exit(removal), (exit) => {
      const retryable = Exit.isFailure(exit) &&
        !Option.exists(Cause.failureOption(exit.cause), isCompromised)
      state = retryable ? "held" : "released"
      const waiters = waiting
      waiting = undefined
      return waiters === undefined ? exit : Effect.zipRight(Deferred.done(waiters, exit), exit)
    })
  }).pipe(Effect.uninterruptible)
  return { release, isHeld: () => state === "held" }
}

/**
 * How the loss of a held lock reaches the program, once: the watchdog
 * completes `deferred`, and whichever of `lost` and `verify` hands the loss
 * to the program tells it. The release in the scope's finalizer then says
 * nothing more of it; it warns only of a loss that nothing told.
 *
 * @internal
 */
export interface Loss {
  readonly deferred: Deferred.Deferred<never, PidLock.LockCompromised>
  /** The lock's `lost`. */
  readonly lost: Effect.Effect<never, PidLock.LockCompromised>
  /** `effect`, which tells the loss it fails with. */
  readonly tell: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  readonly isTold: () => boolean
}

/**
 * A lock as the program holds it, and the `verify` its watchdog runs, which
 * tells nothing.
 *
 * @internal
 */
export interface Held<L extends PidLock.PidLock<unknown>> {
  readonly lock: L
  readonly verify: L["verify"]
}

/** @internal */
export const makeLoss = (): Loss => {
  // Made when first asked for: most locks are never lost nor watched.
  let deferred: Deferred.Deferred<never, PidLock.LockCompromised> | undefined
  const deferredOf = () => deferred ??= Deferred.unsafeMake<never, PidLock.LockCompromised>(FiberId.none)
  let told = false
  const tell = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.tapError(effect, (error) =>
      isCompromised(error)
        ? Effect.sync(() => {
          told = true
        })
        : Effect.void)
  return {
    get deferred() {
      return deferredOf()
    },
    lost: tell(Effect.suspend(() => Deferred.await(deferredOf()))),
    tell,
    isTold: () => told
  }
}

// A release that fails for a passing reason (EIO, a dropped connection) is
// tried again at once.
/** @internal */
export const releaseRetried = <E>(lock: PidLock.PidLock<E>) => {
  // Written out: a retry schedule would be built on every release.
  const again = <A, R>(effect: Effect.Effect<A, PidLock.LockCompromised | E, R>) =>
    Effect.catchIf(effect, (error) => !isCompromised(error), () => lock.release)
  return again(again(lock.release))
}

/** @internal */
export const releaseInFinalizer = (loss: Loss) => <E extends { readonly message: string }>(lock: PidLock.PidLock<E>) =>
  releaseRetried(lock).pipe(
    Effect.catchAll((error) =>
      isCompromised(error) && loss.isTold()
        ? Effect.void
        : Effect.logWarning(`PidLock: release of ${lock.location} failed: ${error.message}`)
    )
  )

/**
 * Checks the lock with `verify` at once, then on every `change` and at least
 * every `interval`, and completes `lost` when it is gone. Nothing that a
 * check does ends it: a round that fails in any way is logged, and the next
 * one comes after `interval`. `round` arms what `change` waits for before the
 * check, so that a change made while it looks is still seen. `verify` is the
 * lock's own, which tells the program nothing (see {@link Loss}).
 *
 * @internal
 */
export const watchdog = <E extends { readonly message: string }>(
  location: string,
  verify: Effect.Effect<void, PidLock.LockCompromised | E>,
  lost: Deferred.Deferred<never, PidLock.LockCompromised>,
  interval: Duration.Duration,
  round: (check: (change: Effect.Effect<void>) => Effect.Effect<boolean>) => Effect.Effect<boolean>
): Effect.Effect<void> => {
  const check = (change: Effect.Effect<void>) =>
    Effect.gen(function*() {
      const checked = yield* Effect.either(verify)
      if (checked._tag === "Left") {
        if (isCompromised(checked.left)) {
          yield* Deferred.fail(lost, checked.left)
          return false
        }
        yield* Effect.logWarning(`PidLock: could not check ${location}: ${checked.left.message}`)
      }
      yield* Effect.raceFirst(change, Effect.sleep(interval))
      return true
    })
  const guarded = round(check).pipe(
    Effect.catchAllCause((cause) =>
      Effect.logWarning(`PidLock: the watchdog of ${location} failed; it goes on`, cause).pipe(
        Effect.zipRight(Effect.sleep(interval)),
        Effect.as(true)
      )
    )
  )
  return Effect.asVoid(Effect.iterate(true, { while: (held) => held, body: () => guarded }))
}

/**
 * `lost`, which starts the `watchdog` it makes the first time it is awaited:
 * nothing else reads what the watchdog finds, so a program that never awaits
 * `lost` pays for no fiber. It runs in `runtime`, the acquiring fiber's (its
 * clock, logger and services, as if forked there), and is interrupted when
 * `scope` closes, or at once if it has closed already.
 *
 * @internal
 */
export const whenAwaited = (
  watchdog: () => Effect.Effect<void>,
  runtime: Runtime.Runtime<never>,
  scope: Scope.Scope,
  lost: Effect.Effect<never, PidLock.LockCompromised>
): Effect.Effect<never, PidLock.LockCompromised> => {
  let started = false
  return Effect.suspend(() => {
    if (started) return lost
    started = true
    const fiber = Runtime.runFork(runtime)(watchdog())
    return Effect.zipRight(Scope.addFinalizer(scope, Fiber.interrupt(fiber)), lost)
  })
}

/**
 * Runs `self` while holding the lock that `acquire` takes: a lock lost
 * meanwhile interrupts it (and the loss says so), and the release at the end
 * is part of its outcome.
 *
 * @internal
 */
export const withLockOf = <EL, EA, RA, A, E, R>(
  acquire: Effect.Effect<PidLock.PidLock<EL>, EA, RA>,
  self: Effect.Effect<A, E, R>
): Effect.Effect<A, E | EA | EL | PidLock.LockCompromised, Exclude<R | RA, Scope.Scope>> =>
  Effect.scoped(
    Effect.flatMap(acquire, (lock) => {
      // Awaited (and the watchdog started) once `self` first yields: a body
      // that ends without yielding could not be stopped, and its release
      // still finds a loss.
      const stopped = Effect.zipRight(
        Effect.yieldNow(),
        Effect.catchAll(lock.lost, ({ detail, location, owner }) =>
          Effect.fail(new PidLock.LockCompromised({ location, owner, detail, workStopped: true })))
      )
      return Effect.zipLeft(Effect.raceFirst(self, stopped), releaseRetried(lock))
    })
  )
