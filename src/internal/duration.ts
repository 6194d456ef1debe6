import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Option from "effect/Option"

const MILLIS_PER_UNIT: Readonly<Record<string, number>> = {
  ms: 1,
  millis: 1,
  millisecond: 1,
  milliseconds: 1,
  s: 1_000,
  sec: 1_000,
  second: 1_000,
  seconds: 1_000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  minutes: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
  hours: 3_600_000
}

const DURATION_TEXT = /^(\d+(?:\.\d+)?)\s*([a-z]+)$/

/**
 * A duration as people write it: `30s`, `500ms`, `2m`, `1.5h`, `30 seconds`.
 * Effect's own string form (`30 seconds`) alone would refuse `30s`, which is
 * what the CLI, the Promise adapter and the Effect API all take.
 *
 * @internal
 */
export const parseDuration = (text: string): Option.Option<Duration.Duration> => {
  const match = DURATION_TEXT.exec(text.trim())
  const millis = match === null ? undefined : MILLIS_PER_UNIT[match[2]!]
  return millis === undefined ? Option.none() : Option.some(Duration.millis(Number(match![1]) * millis))
}

/**
 * Any `Duration.DurationInput`, or a string {@link parseDuration} reads.
 *
 * @internal
 */
export const decodeDuration = (input: unknown): Option.Option<Duration.Duration> =>
  typeof input === "string" ? parseDuration(input) : Duration.decodeUnknown(input)

/** How the messages say what a duration may be written as. @internal */
export const DURATION_EXAMPLES = "e.g. 30s, 500ms, 2m, \"30 seconds\" or a Duration"

/** @internal */
export const durationConfig = (name?: string): Config.Config<Duration.Duration> =>
  Config.mapOrFail(
    name === undefined ? Config.string() : Config.string(name),
    (text) =>
      Option.match(parseDuration(text), {
        onNone: () =>
          Either.left(
            ConfigError.InvalidData(
              [],
              `Expected a duration such as 30s, 500ms, 2m, 1.5h or "30 seconds", but received ${JSON.stringify(text)}`
            )
          ),
        onSome: Either.right
      })
  )
