import type { PlatformError } from "@effect/platform/Error"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as PidLock from "../PidLock.js"
import * as Posix from "../Posix.js"
import { decodeDuration, DURATION_EXAMPLES } from "./duration.js"

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
  Option.match(Option.filter(encodeJson(reply), (bytes) => bytes.length <= Posix.MAX_FRAME_BYTES), {
    onNone: () =>
      Option.getOrThrow(encodeJson(refusal(
        "Declined",
        reply.ok
          ? `the holder's reply is not JSON, or longer than ${Posix.MAX_FRAME_BYTES} bytes`
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
 * Serves the messages sent to this process's socket in `home` for the life
 * of the scope: each goes to `onMessage` when given, else to the stream
 * returned. Where no socket can be made, the stream stays empty, and
 * senders are told so by the lock's record (it names no socket).
 *
 * Each message is answered in a fiber of its own (see `Posix.serve`),
 * interrupted when its sender hangs up or the scope closes: the holder does
 * not work on, nor keep, a message that nobody waits for.
 *
 * @internal
 */
export const serveMessages = (
  posix: Posix.Posix,
  home: string,
  onMessage: PidLock.Options["onMessage"]
): Effect.Effect<Stream.Stream<PidLock.Message>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const queue = yield* Effect.acquireRelease(Queue.dropping<PidLock.Message>(CAPACITY), Queue.shutdown)
    const handling = yield* Effect.makeSemaphore(CAPACITY)
    // The first answer counts: `reply` or `decline` from the handler or the
    // reader, else the handler's result.
    const answer = (message: PidLock.Message, answered: Deferred.Deferred<Reply>): Effect.Effect<Reply> =>
      onMessage === undefined
        ? Effect.flatMap(
          Queue.offer(queue, message),
          (queued) => queued ? Deferred.await(answered) : Effect.succeed(busy("waiting for the holder to read them"))
        )
        : Effect.suspend(() => onMessage(message)).pipe(
          Effect.exit,
          Effect.flatMap((exit) =>
            Exit.isSuccess(exit) ? message.reply(exit.value) : message.decline(describeFailure(exit.cause))
          ),
          Effect.zipRight(Deferred.await(answered)),
          handling.withPermitsIfAvailable(1),
          Effect.map(Option.getOrElse(() => busy("being answered by the holder")))
        )
    const handler: Posix.Handler = (payload) =>
      Option.match(decodeRequest(payload), {
        onNone: () => Effect.succeedNone,
        onSome: (request) =>
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
      })
    const served = yield* Effect.either(posix.serve(home, handler))
    if (Either.isLeft(served)) {
      yield* Effect.logDebug(`PidLock: no messages in ${home}: ${served.left.message}`)
    }
    return onMessage === undefined ? Stream.fromQueue(queue) : Stream.empty
  })

/** The request frame of a message; fails on data that JSON cannot hold, or too long. @internal */
export const encodeRequest = (
  request: Request
): Either.Either<Uint8Array, "NotJson" | number> =>
  Option.match(encodeJson(request), {
    onNone: () => Either.left("NotJson" as const),
    onSome: (bytes) => bytes.length > Posix.MAX_FRAME_BYTES ? Either.left(bytes.length) : Either.right(bytes)
  })

/** Whether a request's failure means the socket is hung up on us. @internal */
export const isHungUp = (error: PlatformError): boolean =>
  (error.cause as NodeJS.ErrnoException | undefined)?.code === "ECONNRESET"
