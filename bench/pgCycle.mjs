// Uncontended PgLock acquire + release cycles against a PostgreSQL server, and
// the same statements sent without the lock, in one process, the variants
// interleaved batch by batch so that they share the machine's noise.
// Usage: node pgCycle.mjs <database url> <rounds> <batch> <impl,impl,…>
// Prints one JSON line: per variant, the per-cycle times in µs, each cycle's
// sends, replies and end in µs from its start, the CPU time per cycle in µs
// and the statements sent per cycle; and the statements of one PgLock cycle,
// which the other variants send.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as PgLock from "effect-pidlock/PgLock"
import * as ProcessInfo from "effect-pidlock/ProcessInfo"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Redacted from "effect/Redacted"
import pg from "pg"
import { send } from "./common.mjs"

const [url, rounds, batch, implList] = [
  process.argv[2],
  Number(process.argv[3]),
  Number(process.argv[4]),
  process.argv[5]
]
const impls = implList.split(",")
const NAME = "pg-cycle"

// Every statement any client in this process sends passes here, the pool's
// clients included: the round trips of a cycle are counted, those of one
// PgLock cycle recorded, to be sent again without the lock, and the times of
// each send and reply noted, to see where a cycle's time goes.
const sent = []
let recording = false
let statementCount = 0
let marks
const mark = () => marks?.push(performance.now())
const query = pg.Client.prototype.query
pg.Client.prototype.query = function(config, values, callback) {
  statementCount++
  if (recording) {
    sent.push({
      text: typeof config === "string" ? config : config.text,
      values: Array.isArray(values) ? [...values] : []
    })
  }
  mark()
  if (typeof callback === "function") {
    return query.call(this, config, values, (error, result) => {
      mark()
      callback(error, result)
    })
  }
  const reply = query.call(this, config, values)
  return reply.then((result) => {
    mark()
    return result
  })
}

// A cycle's times: `begin()` at its start, `finish()` at its end, which
// records its length and its sends, replies and end as offsets in µs.
const begin = () => {
  marks = [performance.now()]
}
const finish = (samples, phases) => {
  const [start, ...rest] = marks
  const end = performance.now()
  marks = undefined
  samples.push((end - start) * 1000)
  phases.push([...rest, end].map((t) => (t - start) * 1000))
}

const runtime = ManagedRuntime.make(
  Layer.mergeAll(
    ProcessInfo.layer.pipe(Layer.provide(NodeFileSystem.layer)),
    PgClient.layer({ url: Redacted.make(url) })
  )
)

// PgLock: `Effect.scoped(PgLock.acquire(…))`, the scope's close releases.
const lockCycle = (options) => Effect.scoped(PgLock.acquire({ name: NAME, ...options }))
const lockBatch = (options) => {
  const cycle = lockCycle(options)
  return (samples, phases) =>
    runtime.runPromise(Effect.gen(function*() {
      for (let i = 0; i < batch; i++) {
        begin()
        yield* cycle
        finish(samples, phases)
      }
    }))
}

// The statements of one steady-state cycle (the table made and the name
// registered by the cycle before), with the values PgLock sent.
await runtime.runPromise(lockCycle({ checkInterval: false }))
recording = true
await runtime.runPromise(lockCycle({ checkInterval: false }))
recording = false
const lockStatements = sent.splice(0)
if (
  lockStatements.length !== 2 || !lockStatements[0].text.includes("pg_try_advisory_lock") ||
  !lockStatements[1].text.includes("pg_advisory_unlock")
) {
  throw new Error(
    `a PgLock cycle sent other statements than the lock and the unlock: ${JSON.stringify(lockStatements)}`
  )
}
const sendStatements = async (client) => {
  for (const { text, values } of lockStatements) await client.query(text, values)
}

// The floor: the same statement texts and values through one `pg.Client`,
// connected once and kept, as a session that holds its lock is.
const rawClient = new pg.Client({ connectionString: url })
await rawClient.connect()
const rawBatch = () => async (samples, phases) => {
  for (let i = 0; i < batch; i++) {
    begin()
    await sendStatements(rawClient)
    finish(samples, phases)
  }
}

// The same with a client taken from a pool and given back on every cycle, as
// PgLock reserves a connection of the pool per acquisition.
const rawPool = new pg.Pool({ connectionString: url, max: 1 })
const rawPoolBatch = () => async (samples, phases) => {
  for (let i = 0; i < batch; i++) {
    begin()
    const client = await rawPool.connect()
    await sendStatements(client)
    client.release()
    finish(samples, phases)
  }
}

// The same statements through @effect/sql-pg in a plain `Effect.gen`: a
// connection reserved in a scope, as PgLock does, without the lock's logic.
const effectSqlBatch = () => {
  const cycle = Effect.scoped(Effect.gen(function*() {
    const sql = yield* PgClient.PgClient
    const connection = yield* sql.reserve
    for (const { text, values } of lockStatements) yield* connection.execute(text, values, undefined)
  }))
  return (samples, phases) =>
    runtime.runPromise(Effect.gen(function*() {
      for (let i = 0; i < batch; i++) {
        begin()
        yield* cycle
        finish(samples, phases)
      }
    }))
}

const makers = {
  "effect-pidlock": () => lockBatch({ checkInterval: false }),
  "effect-pidlock-watchdog": () => lockBatch({}),
  "raw-pg": rawBatch,
  "raw-pg-pool": rawPoolBatch,
  "effect-sql": effectSqlBatch
}
const runners = impls.map((impl) => [impl, makers[impl]()])
const samples = Object.fromEntries(impls.map((impl) => [impl, []]))
const phases = Object.fromEntries(impls.map((impl) => [impl, []]))
const cpu = Object.fromEntries(impls.map((impl) => [impl, 0]))
const statementsSent = Object.fromEntries(impls.map((impl) => [impl, 0]))

// One warm-up round, not recorded.
for (const [, run] of runners) await run([], [])
for (let round = 0; round < rounds; round++) {
  // Rotate the order, so that no variant always follows the same one.
  for (let k = 0; k < runners.length; k++) {
    const [impl, run] = runners[(k + round) % runners.length]
    const sentBefore = statementCount
    const before = process.cpuUsage()
    await run(samples[impl], phases[impl])
    const used = process.cpuUsage(before)
    cpu[impl] += used.user + used.system
    statementsSent[impl] += statementCount - sentBefore
  }
}
await rawClient.end()
await rawPool.end()
await runtime.dispose()
const perCycle = (totals) => Object.fromEntries(impls.map((impl) => [impl, totals[impl] / (rounds * batch)]))
send({
  samples,
  phases,
  cpu: perCycle(cpu),
  statementsPerCycle: perCycle(statementsSent),
  statements: lockStatements.map(({ text, values }) => ({ text, values: values.length }))
})
