import * as Crypto from "node:crypto"
import * as Schema from "effect/Schema"
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

// The holder's socket, `<pid>.<token>.sock` in the lock home: a bare name,
// so that a planted record cannot send a contender to connect elsewhere.
/** @internal */
export const SOCKET_NAME = /^\d+\.[0-9a-f]+\.sock$/

// Release 0.1 wrote records without `machineId` and `socket`; they still
// decode, and are judged without them.
const OwnerRecordSchema = Schema.Struct({
  v: Schema.Literal(1),
  pid: Schema.Int.pipe(Schema.positive()),
  startTime: Schema.String.pipe(Schema.pattern(/^\d+$/)),
  bootId: Schema.String,
  pidNamespace: Schema.String,
  hostname: Schema.String,
  machineId: Schema.optional(Schema.String),
  cmdline: Schema.Array(Schema.String),
  acquiredAt: Schema.String,
  token: Schema.String.pipe(Schema.pattern(/^[0-9a-f]+$/)),
  socket: Schema.optional(Schema.String.pipe(Schema.pattern(SOCKET_NAME)))
})

/** @internal */
export const decodeRecord = Schema.decodeUnknownEither(Schema.parseJson(OwnerRecordSchema))

// A symlink target is at most PATH_MAX - 1 (4095) bytes on Linux; a long
// command line is cut to the arguments that fit, measured once each.
const RECORD_MAX_BYTES = 3072

/** @internal */
export const encodeRecord = (record: PidLock.OwnerRecord): string => {
  let budget = RECORD_MAX_BYTES - Buffer.byteLength(JSON.stringify({ ...record, cmdline: [] }))
  let kept = 0
  for (const arg of record.cmdline) {
    budget -= Buffer.byteLength(JSON.stringify(arg)) + 1
    if (budget < 0) break
    kept++
  }
  return JSON.stringify(kept === record.cmdline.length ? record : { ...record, cmdline: record.cmdline.slice(0, kept) })
}

/** @internal */
export const newToken = () => Crypto.randomBytes(8).toString("hex")
