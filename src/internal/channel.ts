import type { PlatformError } from "@effect/platform/Error"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as PidLock from "../PidLock.js"
import type * as Posix from "../Posix.js"
import { decodeDuration, DURATION_EXAMPLES } from "./duration.js"
import { MAX_FRAME_BYTES } from "./posix.js"

// Messages to the holder, over its socket in the lock home: one request and
// one reply per connection, each a JSON document in one frame.

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

/** What a sender puts in its frame. @internal */
export interface Request {
  readonly v: 1
  readonly argv: ReadonlyArray<string>
  readonly cwd: string
  readonly pid: number
  readonly data: unknown
}

/** What the holder puts in its frame. @internal */
export type Reply =
  | { readonly v: 1; readonly ok: true; readonly data: unknown }
  | { readonly v: 1; readonly ok: false; readonly reason: PidLock.Refused["reason"]; readonly detail: string }

/** A JSON document as bytes; `None` for a value JSON cannot hold. @internal */
export const encodeJson = (value: unknown): Option.Option<Uint8Array> => {
  try {
    const text = JSON.stringify(value)
    return text === undefined ? Option.none() : Option.some(encoder.encode(text))
  } catch {
    return Option.none()
  }
}

const decodeJson = (bytes: Uint8Array): Option.Option<unknown> => {
  try {
    return Option.some(JSON.parse(decoder.decode(bytes)))
  } catch {
    return Option.none()
  }
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null

// A request from a client that is not ours (or is broken) is dropped: nothing
// it holds is trusted beyond its shape.
const decodeRequest = (bytes: Uint8Array): Option.Option<Request> =>
  Option.filter(
    decodeJson(bytes),
    (value): value is Request =>
      isRecord(value) && value.v === 1 && Array.isArray(value.argv) &&
      value.argv.every((arg) => typeof arg === "string") && typeof value.cwd === "string" &&
      Number.isSafeInteger(value.pid) && Object.hasOwn(value, "data")
  )

const REFUSAL_REASONS: ReadonlyArray<string> = ["Busy", "NotServed", "Declined"]

/** The holder's reply as the sender reads it; `None` when it is not one. @internal */
export const decodeReply = (bytes: Uint8Array): Option.Option<Reply> =>
  Option.filter(decodeJson(bytes), (value): value is Reply =>
    isRecord(value) && value.v === 1 &&
    (value.ok === true
      ? Object.hasOwn(value, "data")
      : value.ok === false && typeof value.detail === "string" && REFUSAL_REASONS.includes(String(value.reason))))

const refusal = (reason: PidLock.Refused["reason"], detail: string): Reply => ({ v: 1, ok: false, reason, detail })

// Always fits in a frame: a reply too long to send says so instead.
const encodeReply = (reply: Reply): Uint8Array =>
  Option.match(Option.filter(encodeJson(reply), (bytes) => bytes.length <= MAX_FRAME_BYTES), {
    onNone: () =>
      Option.getOrThrow(encodeJson(refusal(
        "Declined",
        reply.ok
          ? `the holder's reply is not JSON, or longer than ${MAX_FRAME_BYTES} bytes`
          : reply.detail.slice(0, 1024)
      ))),
    onSome: (bytes) => bytes
  })

/** @internal */
export const DEFAULT_SEND_TIMEOUT = Duration.seconds(5)

/** @internal */
export const validateTimeout = (timeout: unknown): Either.Either<Duration.Duration, PidLock.InvalidOptions> =>
  timeout === undefined
    ? Either.right(DEFAULT_SEND_TIMEOUT)
    : Option.match(Option.filter(decodeDuration(timeout), Duration.greaterThan(Duration.zero)), {
      onNone: () =>
        Either.left(
          new PidLock.InvalidOptions({
            option: "timeout",
            value: timeout,
            reason: `must be a positive duration (${DURATION_EXAMPLES})`
          })
        ),
      onSome: Either.right
    })

/** @internal */
export const validateOnMessage = (
  onMessage: unknown
): Either.Either<PidLock.Options["onMessage"], PidLock.InvalidOptions> =>
  onMessage === undefined || typeof onMessage === "function"
    ? Either.right(onMessage as PidLock.Options["onMessage"])
    : Either.left(new PidLock.InvalidOptions({ option: "onMessage", value: onMessage, reason: "must be a function" }))

// Each message's answer, for `refuseUnserved`: a refusal that the public
// `decline` does not offer.
const answers = new WeakMap<PidLock.Message, Deferred.Deferred<Reply>>()

/**
 * Refuses `message` as one the holder does not serve (`NotServed`), not as
 * declined by its handler: a holder that reads its messages only to say
 * that it takes none, as the wrapper of `effect-pidlock run` does.
 *
 * @internal
 */
export const refuseUnserved = (message: PidLock.Message, detail: string): Effect.Effect<void> =>
  Effect.suspend(() => {
    const answered = answers.get(message)
    return answered === undefined ? message.decline(detail) : Deferred.succeed(answered, refusal("NotServed", detail))
  }).pipe(Effect.asVoid)

// Messages wait for the holder to read them, or are answered by its
// `onMessage`, this many at once; beyond that, a sender is told at once that
// the holder is busy, so that a holder that never reads keeps no more.
const CAPACITY = 16

const busy = (waiting: string): Reply => refusal("Busy", `${CAPACITY} messages are ${waiting}`)

const describeFailure = (cause: Cause.Cause<unknown>): string =>
  Option.match(Cause.failureOption(cause), {
    onNone: () => "the holder's handler failed",
    onSome: (error) => isRecord(error) && typeof error.message === "string" ? error.message : String(error)
  })

/**
 * The messages of one held lock: `messages` reads them when no `onMessage`
 * answers them; `start` begins to serve them once the lock is ours, `stop`
 * ends that at its release.
 *
 * @internal
 */
export interface Serving {
  readonly messages: Stream.Stream<PidLock.Message>
  readonly start: Effect.Effect<void>
  readonly stop: Effect.Effect<void>
}

// The one handler installed on this process's socket in a lock home, for
// the life of the `Posix` service: it hands each message to the lock held
// there now, so that an acquisition only points it at itself, and installs
// nothing (a scope, a handler, a queue) that its release would take down.
interface Router {
  current: ((payload: Uint8Array) => Effect.Effect<Option.Option<Uint8Array>>) | undefined
}

const routers = new WeakMap<Posix.Posix, Map<string, Router>>()

// Made at the first acquisition in `home`; a failure (no socket can be made
// there) is not remembered, so a later one tries again.
const routerOf = (posix: Posix.Posix, home: string): Effect.Effect<Option.Option<Router>> =>
  Effect.suspend(() => {
    const homes = routers.get(posix) ?? new Map<string, Router>()
    const known = homes.get(home)
    if (known !== undefined) return Effect.succeedSome(known)
    const router: Router = { current: undefined }
    // Without a lock held, a message is hung up on unread, as on a socket that serves nothing.
    const route: Posix.Handler = (payload) =>
      Effect.suspend(() => router.current === undefined ? Effect.succeedNone : router.current(payload))
    // Never closed: the handler lives as long as the service's listener.
    return Effect.flatMap(Scope.make(), (scope) => posix.serve(home, route).pipe(Scope.extend(scope))).pipe(
      Effect.map(() => {
        routers.set(posix, homes.set(home, router))
        return Option.some(router)
      }),
      Effect.catchAll((error) =>
        Effect.as(Effect.logDebug(`PidLock: no messages in ${home}: ${error.message}`), Option.none())
      )
    )
  })

/**
 * Serves the messages sent to this process's socket in `home` from `start`
 * to `stop`: each goes to `onMessage` when given, else to `messages`. Where
 * no socket can be made, `messages` stays empty, and senders are told so by
 * the lock's record (it names no socket).
 *
 * Each message is answered in a fiber of its own, forked in `runtime` (the
 * acquiring fiber's: its services, logger and tracer), and
 * interrupted when its sender hangs up or at `stop`: the holder does not
 * work on, nor keep, a message that nobody waits for. The queue for
 * `messages` and the permits for `onMessage` are made only when a message
 * arrives.
 *
 * @internal
 */
export const serveMessages = (
  posix: Posix.Posix,
  home: string,
  onMessage: PidLock.Options["onMessage"],
  runtime: Runtime.Runtime<never>
): Serving => {
  let stopped = false
  let router: Router | undefined
  let queue: Queue.Queue<PidLock.Message> | undefined
  let handling: Effect.Semaphore | undefined
  const answering = new Set<Fiber.RuntimeFiber<Option.Option<Uint8Array>>>()
  const queueOf = Effect.suspend(() =>
    queue !== undefined ? Effect.succeed(queue) : Effect.map(Queue.dropping<PidLock.Message>(CAPACITY), (made) => {
      queue ??= made
      return queue
    })
  )
  // The first answer counts: `reply` or `decline` from the handler or the
  // reader, else the handler's result.
  const answer = (message: PidLock.Message, answered: Deferred.Deferred<Reply>): Effect.Effect<Reply> =>
    onMessage === undefined
      ? queueOf.pipe(
        Effect.flatMap((queue) => Queue.offer(queue, message)),
        Effect.flatMap((queued) =>
          queued ? Deferred.await(answered) : Effect.succeed(busy("waiting for the holder to read them"))
        )
      )
      : Effect.suspend(() => onMessage(message)).pipe(
        Effect.exit,
        Effect.flatMap((exit) =>
          Exit.isSuccess(exit) ? message.reply(exit.value) : message.decline(describeFailure(exit.cause))
        ),
        Effect.zipRight(Deferred.await(answered)),
        (answering) =>
          Effect.suspend(() =>
            (handling ??= Effect.unsafeMakeSemaphore(CAPACITY)).withPermitsIfAvailable(1)(answering)
          ),
        Effect.map(Option.getOrElse(() => busy("being answered by the holder")))
      )
  const handle = (request: Request): Effect.Effect<Option.Option<Uint8Array>> =>
    Effect.gen(function*() {
      const answered = yield* Deferred.make<Reply>()
      const message: PidLock.Message = {
        argv: request.argv,
        cwd: request.cwd,
        pid: request.pid,
        data: request.data,
        // A handler that returns nothing (`Effect.void`) answers null.
        reply: (data) => Effect.asVoid(Deferred.succeed(answered, { v: 1, ok: true, data: data ?? null })),
        decline: (reason) => Effect.asVoid(Deferred.succeed(answered, refusal("Declined", reason)))
      }
      answers.set(message, answered)
      return Option.some(encodeReply(yield* answer(message, answered)))
    })
  // Runs in the fiber that the socket's handler forked; the answer is made
  // in one of this lock's runtime, which a hang-up or `stop` interrupts.
  const serve = (payload: Uint8Array): Effect.Effect<Option.Option<Uint8Array>> =>
    Option.match(decodeRequest(payload), {
      onNone: () => Effect.succeedNone,
      onSome: (request) =>
        Effect.suspend(() => {
          const fiber = Runtime.runFork(runtime)(handle(request))
          answering.add(fiber)
          fiber.addObserver(() => answering.delete(fiber))
          return Effect.onInterrupt(Fiber.join(fiber), () => Fiber.interrupt(fiber))
        })
    })
  const start = Effect.flatMap(routerOf(posix, home), (found) =>
    Effect.sync(() => {
      if (stopped || Option.isNone(found)) return
      router = found.value
      router.current = serve
    }))
  const stop = Effect.suspend(() => {
    stopped = true
    if (router?.current === serve) router.current = undefined
    const shutdown = queue === undefined ? Effect.void : Queue.shutdown(queue)
    return answering.size === 0 ? shutdown : Effect.zipRight(Fiber.interruptAll([...answering]), shutdown)
  })
  return {
    // Made when read; read after `stop` with no message ever queued, it ends at once.
    get messages() {
      return onMessage !== undefined ? Stream.empty : Stream.unwrap(
        Effect.suspend(() =>
          stopped && queue === undefined ? Effect.succeed(Stream.empty) : Effect.map(queueOf, Stream.fromQueue)
        )
      )
    },
    start,
    stop
  }
}

/** The request frame of a message; fails on data that JSON cannot hold, or too long. @internal */
export const encodeRequest = (
  request: Request
): Either.Either<Uint8Array, "NotJson" | number> =>
  Option.match(encodeJson(request), {
    onNone: () => Either.left("NotJson" as const),
    onSome: (bytes) => bytes.length > MAX_FRAME_BYTES ? Either.left(bytes.length) : Either.right(bytes)
  })

/** Whether a request's failure means the socket is hung up on us. @internal */
export const isHungUp = (error: PlatformError): boolean =>
  (error.cause as NodeJS.ErrnoException | undefined)?.code === "ECONNRESET"
