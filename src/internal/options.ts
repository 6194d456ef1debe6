import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as PidLock from "../PidLock.js"
import { decodeDuration, DURATION_EXAMPLES } from "./duration.js"
import { show } from "./text.js"

// The options both backends share, checked before anything is touched.

const NAME_MAX_LENGTH = 100
const NAME_CHARACTER = /[A-Za-z0-9._-]/

/** @internal */
export const validateObject = (options: unknown): Either.Either<Record<string, unknown>, PidLock.InvalidOptions> =>
  typeof options === "object" && options !== null
    ? Either.right(options as Record<string, unknown>)
    : Either.left(
      new PidLock.InvalidOptions({
        option: "options",
        value: options,
        reason: "must be an object such as { name: \"app\" }"
      })
    )

/** @internal */
export const validateName = (name: unknown): Either.Either<string, PidLock.InvalidOptions> => {
  const invalid = (reason: string) => Either.left(new PidLock.InvalidOptions({ option: "name", value: name, reason }))
  if (typeof name !== "string") return invalid("must be a string")
  if (name.length === 0) return invalid("must not be empty")
  if (name.length > NAME_MAX_LENGTH) return invalid(`is ${name.length} characters long`)
  for (let index = 0; index < name.length; index++) {
    const character = name[index]!
    if (!NAME_CHARACTER.test(character)) {
      return invalid(`character ${show(character)} at index ${index} is not allowed`)
    }
  }
  if (name.startsWith(".")) return invalid(`must not start with "."`)
  return Either.right(name)
}

/** @internal */
export type Wait = Duration.Duration | Schedule.Schedule<unknown, PidLock.LockHeld>

/** @internal */
export const validateWait = (wait: unknown): Either.Either<Wait | undefined, PidLock.InvalidOptions> => {
  if (wait === undefined || Schedule.isSchedule(wait)) {
    return Either.right(wait as Schedule.Schedule<unknown, PidLock.LockHeld> | undefined)
  }
  return Option.match(decodeDuration(wait), {
    onNone: () =>
      Either.left(
        new PidLock.InvalidOptions({
          option: "wait",
          value: wait,
          reason: `must be a duration (${DURATION_EXAMPLES}) or a Schedule`
        })
      ),
    onSome: Either.right
  })
}

const DEFAULT_CHECK_INTERVAL = Duration.seconds(5)

/** @internal */
export const validateCheckInterval = (
  interval: unknown
): Either.Either<Duration.Duration | false, PidLock.InvalidOptions> => {
  if (interval === false) return Either.right(false)
  if (interval === undefined) return Either.right(DEFAULT_CHECK_INTERVAL)
  return Option.match(
    Option.filter(decodeDuration(interval), (duration) => Duration.greaterThan(duration, Duration.zero)),
    {
      onNone: () =>
        Either.left(
          new PidLock.InvalidOptions({
            option: "checkInterval",
            value: interval,
            reason: `must be a positive duration (${DURATION_EXAMPLES}), or false`
          })
        ),
      onSome: Either.right
    }
  )
}
