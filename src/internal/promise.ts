import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { type PlatformError, SystemError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Fs from "node:fs"
import * as PidLock from "../PidLock.js"
import * as ProcessInfo from "../ProcessInfo.js"
import type * as Promised from "../promise.js"
import { refuseUnserved } from "./channel.js"
import { validateObject } from "./options.js"

// A library must leave stdout to its program: the lock's logs (a takeover, a
// failed check) are logfmt lines on stderr, never Effect's default console.log.
const stderrLogger = Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger))

const makeRuntime = () =>
  ManagedRuntime.make(Layer.merge(ProcessInfo.layer.pipe(Layer.provideMerge(NodeFileSystem.layer)), stderrLogger))

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
// Options
// -----------------------------------------------------------------------------

const LOG_LEVELS: Readonly<Record<Promised.LogLevel, LogLevel.LogLevel>> = {
  error: LogLevel.Error,
  warning: LogLevel.Warning,
  info: LogLevel.Info,
  debug: LogLevel.Debug
}

const isLogLevel = (log: unknown): log is Promised.LogLevel => typeof log === "string" && Object.hasOwn(LOG_LEVELS, log)

// The least severe level logged under `options.log`; checked before anything
// is touched, as the lock's own options are.
const minimumLogLevel = (options: unknown): Either.Either<LogLevel.LogLevel, PidLock.InvalidOptions> =>
  Either.flatMap(validateObject(options), ({ log }) => {
    if (log === undefined) return Either.right(LogLevel.Info)
    if (log === false) return Either.right(LogLevel.None)
    if (isLogLevel(log)) return Either.right(LOG_LEVELS[log])
    return Either.left(
      new PidLock.InvalidOptions({
        option: "log",
        value: log,
        reason: `must be false (no logs) or the least severe level written: ${
          Object.keys(LOG_LEVELS).map((level) => JSON.stringify(level)).join(", ")
        }`
      })
    )
  })

// -----------------------------------------------------------------------------
// Released on exit and on a signal
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

// The signals whose default action ends the process without `exit`, leaving
// its locks stale.
const TERMINATING_SIGNALS: ReadonlyArray<NodeJS.Signals> = ["SIGINT", "SIGTERM", "SIGHUP"]

// A listener of ours must not keep the signal from ending the process, as it
// would without this package. When it is the only one, the locks are removed
// and the signal raised again, now with its default action: the process ends
// by the signal, with the status a shell reports for it (130 for SIGINT).
// When the program listens too, the signal is the program's to handle: it may
// release its locks itself, and `process.exit()` removes those it did not.
const onTerminatingSignal = (signal: NodeJS.Signals) => {
  if (process.listenerCount(signal) > 1) return
  unlinkHeldEntries()
  heldEntries.clear()
  stopListening()
  process.kill(process.pid, signal)
}

const stopListening = () => {
  process.off("exit", unlinkHeldEntries)
  for (const signal of TERMINATING_SIGNALS) process.off(signal, onTerminatingSignal)
}

const releaseOnExit = (entry: string) => {
  if (heldEntries.size === 0) {
    process.on("exit", unlinkHeldEntries)
    for (const signal of TERMINATING_SIGNALS) process.on(signal, onTerminatingSignal)
  }
  heldEntries.add(entry)
}

const forgetOnExit = (entry: string) => {
  if (heldEntries.delete(entry) && heldEntries.size === 0) stopListening()
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
          const watcher = Fs.watch(
            path,
            { persistent: false },
            () => emit.single(FileSystem.WatchEventUpdate({ path }))
          )
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

// Holds the event loop open until the returned function is called: while a
// lock of `acquire` is held, whatever `checkInterval` says (the watchdog's
// timers and watch would, but there is none with `checkInterval: false`).
const keepProcessAlive = (): () => void => {
  const timer = setInterval(() => {}, MAX_TIMER_MILLIS)
  return () => clearInterval(timer)
}

// A handler of Promises as the lock's `onMessage`: its result is the reply,
// what it throws declines. Anything but a function is left for the lock to
// refuse as an invalid option.
const effectOnMessage = (onMessage: unknown): PidLock.Options["onMessage"] =>
  typeof onMessage === "function"
    ? (message) =>
      Effect.tryPromise({
        try: async () => onMessage({ argv: message.argv, cwd: message.cwd, pid: message.pid, data: message.data }),
        catch: unwrapSpans
      })
    : onMessage as PidLock.Options["onMessage"]

const acquireLock = async (
  options: Promised.Options,
  { keepAlive }: { readonly keepAlive: boolean }
): Promise<Promised.Lock> => {
  const logLevel = minimumLogLevel(options)
  if (Either.isLeft(logLevel)) throw logLevel.left
  // Every effect of this lock logs at its level; the fibers they fork (the
  // watchdog) inherit it.
  const runLogged = <A, E>(effect: Effect.Effect<A, E, Services>) =>
    run(Logger.withMinimumLogLevel(effect, logLevel.right))
  const scope = Scope.make().pipe(Effect.runSync)
  const lost = handledRejection<PidLock.LockCompromised>()
  const { forwardLost, lock } = await runLogged(
    Effect.gen(function*() {
      const lockOptions: PidLock.Options = { ...options, onMessage: effectOnMessage(options.onMessage) }
      const lock = yield* (keepAlive ? PidLock.acquire(lockOptions) : withoutKeepingAlive(PidLock.acquire(lockOptions)))
      // Without a handler nothing here can read them: refused at once, not
      // left to time out.
      yield* Effect.forkScoped(Stream.runForEach(lock.messages, (message) =>
        refuseUnserved(
          message,
          `pid ${process.pid} took its lock with effect-pidlock/promise and no onMessage option, so it reads no messages`
        )))
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
  const stopKeepingAlive = keepAlive ? keepProcessAlive() : () => {}
  // Shared, so that a second call neither unlinks twice nor reports the
  // first call's success as a compromised lock.
  let releasing: Promise<void> | undefined
  return {
    name: lock.name,
    path: lock.location,
    entry: lock.entry,
    generation: lock.generation,
    owner: lock.owner,
    // `lost` is let go of first: the watchdog, still running until the scope
    // closes, may see our own unlink as a lost lock. It then never settles.
    release: () =>
      releasing ??= runLogged(
        Fiber.interrupt(forwardLost).pipe(
          Effect.zipRight(lock.release),
          Effect.ensuring(Scope.close(scope, Exit.void)),
          Effect.ensuring(Effect.sync(() => {
            forgetOnExit(lock.entry)
            stopKeepingAlive()
          }))
        )
      ),
    verify: () => runLogged(lock.verify),
    lost: lost.promise
  }
}

/** @internal */
export const acquire = (options: Promised.Options): Promise<Promised.Lock> => acquireLock(options, { keepAlive: true })

/** @internal */
export const inspect = (
  options: { readonly name: string; readonly dir?: string | undefined }
): Promise<PidLock.Status | undefined> => run(Effect.map(PidLock.inspect(options), Option.getOrUndefined))

/** @internal */
export const send = (options: PidLock.SendOptions): Promise<unknown> => run(PidLock.send(options))

/** @internal */
export const withLock = async <A>(
  options: Promised.Options,
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
    (error: PidLock.PidLockError | PlatformError) => process.nextTick(() => callback(error, undefined, notAcquired))
  )
}
