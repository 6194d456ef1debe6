import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Crypto from "node:crypto"
import type * as PidLock from "../PidLock.js"
import { escapeText, show } from "./text.js"

// The owner record, the same for both backends: the file lock keeps it in
// its owner entry, the PostgreSQL lock in its registry row.

/** @internal */
export const describeHolder = (holder: PidLock.OwnerRecord): string => {
  const command = holder.cmdline.join(" ")
  return `pid ${holder.pid} on ${escapeText(holder.hostname)} since ${escapeText(holder.acquiredAt)}` +
    (command === "" ? "" : ` (${show(command).slice(1, -1)})`)
}

/**
 * Who holds the lock at `status.location`, without a next step: the first
 * sentence of `LockHeld`'s message, and what `effect-pidlock status` says.
 *
 * @internal
 */
export const describeHeld = (status: Omit<PidLock.Status, "heldByThisProcess">): string => {
  const who = describeHolder(status.holder)
  if (status.verdict._tag !== "Foreign") return `${status.location} is held by ${who}`
  const where = status.verdict.scope === "host" ? "on another host" : "in another pid namespace"
  return `${status.location} is held by ${who} (${where}: it cannot be checked, so it counts as alive)`
}

/**
 * A dead holder's lock, without a next step: the first sentence of
 * `StaleLock`'s message.
 *
 * @internal
 */
export const describeStale = (path: string, holder: PidLock.OwnerRecord, reason: string): string =>
  `${path} is stale (${reason}): it was held by ${describeHolder(holder)}`

// The holder's socket, `<pid>.<token>.sock` in the lock home: a bare name,
// so that a planted record cannot send a contender to connect elsewhere.
/** @internal */
export const SOCKET_NAME = /^\d+\.[0-9a-f]+\.sock$/

// Release 0.1 wrote records without `machineId`, `socket` and `startClock`;
// they still decode, and are judged without them (a start time without a
// clock is in clock ticks since boot).
const makeOwnerRecordSchema = () =>
  Schema.Struct({
    v: Schema.Literal(1),
    pid: Schema.Int.pipe(Schema.positive()),
    startTime: Schema.String.pipe(Schema.pattern(/^\d+$/)),
    startClock: Schema.optional(Schema.Literal("unix-seconds")),
    bootId: Schema.String,
    pidNamespace: Schema.String,
    hostname: Schema.String,
    machineId: Schema.optional(Schema.String),
    cmdline: Schema.Array(Schema.String),
    acquiredAt: Schema.String,
    token: Schema.String.pipe(Schema.pattern(/^[0-9a-f]+$/)),
    socket: Schema.optional(Schema.String.pipe(Schema.pattern(SOCKET_NAME)))
  })

type FieldsDecoder = (fields: unknown) => Either.Either<PidLock.OwnerRecord, ParseResult.ParseError>

// Made on first use, not on import: importing the package is on every
// process's start-up path, reading a record only on an acquisition's.
let fieldsDecoder: FieldsDecoder | undefined

const decodeFields: FieldsDecoder = (fields) =>
  (fieldsDecoder ??= Schema.decodeUnknownEither(makeOwnerRecordSchema(), { errors: "first" }))(fields)

// What each field must be, said to a person whose record does not decode;
// `[]` stands for any element of a list.
const FIELD_MUST_BE: Readonly<Record<string, string>> = {
  v: "1, the only version there is",
  pid: "a positive whole number",
  startTime: "a string of digits",
  startClock: "\"unix-seconds\" or absent",
  cmdline: "a list of strings",
  "cmdline[]": "a string",
  token: "a string of lowercase hexadecimal digits",
  socket: "a name <pid>.<token>.sock"
}

// A value as a message shows it: a scalar as it is, anything else by its kind.
const describeValue = (value: unknown): string =>
  value === null || typeof value !== "object" ? show(value) : Array.isArray(value) ? "a list" : "an object"

/**
 * The owner record in `text`, or what is wrong with it in a few words
 * (`not JSON`, `field pid is missing`), for a person to read.
 *
 * @internal
 */
export const decodeRecord = (text: string): Either.Either<PidLock.OwnerRecord, string> => {
  const json = Either.try(() => JSON.parse(text) as unknown)
  if (Either.isLeft(json)) return Either.left("not JSON")
  const fields = json.right
  if (fields === null || typeof fields !== "object" || Array.isArray(fields)) {
    return Either.left(`JSON of ${describeValue(fields)}, not of an object`)
  }
  return Either.mapLeft(decodeFields(fields), (error) => {
    const path = ParseResult.ArrayFormatter.formatErrorSync(error)[0]?.path ?? []
    const field = path.map((key) => typeof key === "number" ? `[${key}]` : String(key)).join("")
    const value = path.reduce<unknown>((parent, key) => (parent as Record<PropertyKey, unknown>)[key], fields)
    return value === undefined
      ? `field ${field} is missing`
      : `field ${field} is ${describeValue(value)}, not ${FIELD_MUST_BE[field.replace(/\[\d+\]/g, "[]")] ?? "a string"}`
  })
}

// A symlink target is at most PATH_MAX - 1 (4095) bytes on Linux; a long
// command line is cut to the arguments that fit, measured once each.
const RECORD_MAX_BYTES = 3072

// Whether this process has decoded a record yet.
let decoderWarm = false

/**
 * The record as its owner entry's target. The first record a process encodes
 * is also decoded once, its result unused: the decoder's code then runs, and
 * is compiled, in the process's first acquisition, rather than in the first
 * takeover of a dead holder's lock, where the time counts.
 *
 * @internal
 */
export const encodeRecord = (record: PidLock.OwnerRecord): string => {
  const text = encodeFitting(record)
  if (!decoderWarm) {
    decoderWarm = true
    decodeRecord(text)
  }
  return text
}

const encodeFitting = (record: PidLock.OwnerRecord): string => {
  const whole = JSON.stringify(record)
  // Every character takes at most 3 bytes in UTF-8.
  if (whole.length * 3 <= RECORD_MAX_BYTES || Buffer.byteLength(whole) <= RECORD_MAX_BYTES) return whole
  let budget = RECORD_MAX_BYTES - Buffer.byteLength(JSON.stringify({ ...record, cmdline: [] }))
  let kept = 0
  for (const arg of record.cmdline) {
    budget -= Buffer.byteLength(JSON.stringify(arg)) + 1
    if (budget < 0) break
    kept++
  }
  return JSON.stringify({ ...record, cmdline: record.cmdline.slice(0, kept) })
}

// Random bytes drawn a few hundred tokens at a time: one draw each costs
// more than the rest of making a record.
const TOKEN_BYTES = 8
const randomPool = Buffer.alloc(TOKEN_BYTES * 256)
let randomUsed = randomPool.length

/** @internal */
export const newToken = (): string => {
  if (randomUsed === randomPool.length) {
    Crypto.randomFillSync(randomPool)
    randomUsed = 0
  }
  randomUsed += TOKEN_BYTES
  return randomPool.toString("hex", randomUsed - TOKEN_BYTES, randomUsed)
}
