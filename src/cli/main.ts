/**
 * The `effect-pidlock` command: guard a shell command with a lock, as
 * `flock -n` does (`run`), hand words to a file lock's holder (`send`), see
 * who holds a lock (`status`), and remove a dead holder's lock by hand
 * (`break`); on a file lock, or over PostgreSQL.
 *
 * It starts like a shell tool: bundled into one file with its own small
 * argument parser, it loads only the modules the lock needs; the PostgreSQL
 * support is a chunk of its own, loaded when PostgreSQL is used.
 *
 * @internal
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import type { Teardown } from "@effect/platform/Runtime"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ProcessInfo from "../ProcessInfo.js"
import { asksForJson, DEFAULT_VERBOSITY, parseCommandLine, Request, type UsageError, type Verbosity } from "./args.js"
import { breakLock } from "./break.js"
import { EX_SOFTWARE, EX_USAGE, exitCodeOf, exitWith, failWith } from "./exitCodes.js"
import { helpOf, usageOf } from "./help.js"
import { printLine, printToStderr, withLogger } from "./output.js"
import { run, signalStatus } from "./run.js"
import { send } from "./send.js"
import { printJsonError, status } from "./status.js"

const services = ProcessInfo.layer.pipe(Layer.provideMerge(NodeFileSystem.layer))

// Every typed error becomes a message on stderr and an exit code, never a
// stack trace; a defect is logged with its cause, and exits EX_SOFTWARE.
const perform = (request: Request, verbosity: Verbosity) =>
  Request.$match(request, {
    Help: ({ command }) => printLine(helpOf(command)),
    Run: ({ args }) => run(args, verbosity),
    Send: ({ args }) => send(args),
    Status: ({ args }) => status(args),
    Break: ({ args }) => breakLock(args)
  }).pipe(
    Effect.provide(services),
    Effect.catchAll((error) => failWith(error.message, exitCodeOf(error))),
    Effect.tapErrorCause((cause) => Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError(cause)),
    withLogger(verbosity)
  )

// A line that cannot be read: what is wrong, then the usage. `status --json`
// answers in JSON even then.
const refuse = (argv: ReadonlyArray<string>) => (error: UsageError) =>
  (error.command === "status" && asksForJson(argv)
    ? printJsonError(null, error)
    : Effect.zipRight(
      Effect.logError(error.message),
      Effect.zipRight(printToStderr(usageOf(error.command)), exitWith(EX_USAGE))
    )).pipe(withLogger(DEFAULT_VERBOSITY))

const argv = process.argv.slice(2)

const program = Effect.matchEffect(parseCommandLine(argv), {
  onFailure: refuse(argv),
  onSuccess: ({ request, verbosity }) => perform(request, verbosity)
})

// `runMain` interrupts the program on SIGINT and SIGTERM. Ended by one before
// a command has a status of its own (e.g. while waiting for the lock), the
// program exits as a shell reports a signal; a child's status overrides it.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => void (process.exitCode ??= signalStatus(signal)))
}

// The default teardown exits 0 on interruption: here the status set above or
// by a command wins, and a defect exits with EX_SOFTWARE.
const teardown: Teardown = (exit, onExit) =>
  onExit(Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause) ? EX_SOFTWARE : Number(process.exitCode ?? 0))

NodeRuntime.runMain(program, { teardown, disableErrorReporting: true, disablePrettyLogger: true })
