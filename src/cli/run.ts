/**
 * `effect-pidlock run`: a command run while the lock is held, as `flock -n`
 * runs one.
 *
 * @internal
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import * as ChildProcess from "node:child_process"
import * as Os from "node:os"
import * as Path from "node:path"
import { refuseUnserved } from "../internal/channel.js"
import { describeHolder } from "../internal/ownerRecord.js"
import type * as PidLock from "../PidLock.js"
import * as Posix from "../Posix.js"
import type { RunArgs, Verbosity } from "./args.js"
import { type Backend, ConflictingOptions, type HeldLock, makeBackend } from "./backend.js"
import { EX_IOERR, exitWith, failWith } from "./exitCodes.js"
import { send } from "./send.js"

// A status as a shell reports it: the exit code, or 128 + the number of the
// signal that ended the process.
/** @internal */
export const signalStatus = (signal: NodeJS.Signals): number => 128 + Os.constants.signals[signal]

const statusOf = (code: number | null, signal: NodeJS.Signals | null): number =>
  code ?? (signal === null ? 0 : signalStatus(signal))

// The signals that end `run`. `runMain` turns SIGINT and SIGTERM into an
// interruption, but leaves SIGHUP and SIGQUIT to their default action, which
// ends this process at once: no finalizer runs, the lock stays behind and the
// command runs on.
const RUN_SIGNALS = ["SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM"] as const

// Every one of RUN_SIGNALS that arrives while the scope is open, in order of
// arrival. One listener for the whole of `run` (wait, command, release)
// keeps them from their default action throughout.
const trapSignals = Effect.gen(function*() {
  const signals = yield* Queue.unbounded<NodeJS.Signals>()
  const onSignal = (signal: NodeJS.Signals) => void signals.unsafeOffer(signal)
  yield* Effect.acquireRelease(
    Effect.sync(() => RUN_SIGNALS.forEach((signal) => process.on(signal, onSignal))),
    () => Effect.sync(() => RUN_SIGNALS.forEach((signal) => process.off(signal, onSignal)))
  )
  return signals
})

// A signal before the command runs ends `run` as it would end a shell: with
// 128 + its number, interrupted, so that a wait for the lock stops and leaves
// nothing behind.
const endBy = (signal: NodeJS.Signals) => Effect.zipRight(exitWith(signalStatus(signal)), Effect.interrupt)

// Whether this process is in its terminal's foreground process group. A
// SIGINT or SIGQUIT typed there (Ctrl-C, Ctrl-\) went to the whole group, the
// command included. Fields 5 (pgrp) and 8 (tpgid, -1 without a terminal) of
// /proc/self/stat, counted after the last ")": the command name may hold
// spaces and ")".
const inForeground = (fs: FileSystem.FileSystem) =>
  Effect.map(fs.readFileString("/proc/self/stat"), (text) => {
    const fields = text.slice(text.lastIndexOf(")") + 1).trim().split(" ")
    return fields[2] !== undefined && fields[2] === fields[5]
  })

// SIGINT and SIGQUIT from the terminal have reached the command already: a
// second one would cut an Effect program's finalizers short. Where the group
// cannot be read, the signal is forwarded: a command that never hears of it
// would keep the wrapper waiting.
const forward = (fs: FileSystem.FileSystem, child: ChildProcess.ChildProcess) => (signal: NodeJS.Signals) =>
  (signal === "SIGINT" || signal === "SIGQUIT"
    ? Effect.orElseSucceed(inForeground(fs), () => false)
    : Effect.succeed(false)).pipe(
      Effect.map((fromTerminal) => {
        if (!fromTerminal) child.kill(signal)
      })
    )

// How long a command told to stop because the lock was lost has before it is
// killed: past that, it would run on unguarded.
const LOST_GRACE = Duration.seconds(10)

// The lock was lost while the command ran (its owner entry removed, its
// database session ended): the command is told to stop, since another holder
// may be running already, and killed if it has not within LOST_GRACE.
const stopOnLoss = (child: ChildProcess.ChildProcess, loss: Ref.Ref<boolean>) => (error: PidLock.LockCompromised) =>
  Effect.gen(function*() {
    yield* Ref.set(loss, true)
    yield* Effect.logError(`${error.message}; stopping the command (SIGTERM)`)
    yield* Effect.sync(() => child.kill("SIGTERM"))
    yield* Effect.sleep(LOST_GRACE)
    yield* Effect.logError(`the command still runs ${Duration.format(LOST_GRACE)} later: SIGKILL`)
    yield* Effect.sync(() => child.kill("SIGKILL"))
  })

// Runs the command with `options`, forwards it the signals that arrive
// meanwhile, in order, stops it if the lock is lost, and sets its status as
// our exit code (EX_IOERR after a loss, whatever its status).
// Uninterruptible: `runMain` interrupts the program on SIGINT and SIGTERM,
// and the lock must stay held until the command has exited.
const runChild = (
  command: readonly [string, ...Array<string>],
  options: ChildProcess.SpawnOptions,
  signals: Queue.Dequeue<NodeJS.Signals>,
  lock: PidLock.PidLock<unknown>
) =>
  Effect.uninterruptible(Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const exited = yield* Deferred.make<number>()
    const loss = yield* Ref.make(false)
    // The listeners are added in the same step as the spawn: its events must
    // not be missed. A command that cannot be started at all: 127 and 126, as
    // a shell says.
    const child = yield* Effect.sync(() => {
      const child = ChildProcess.spawn(command[0], command.slice(1), options)
      child.once("error", (error: NodeJS.ErrnoException) =>
        Deferred.unsafeDone(
          exited,
          Effect.as(
            Effect.logError(`cannot run ${command[0]}: ${error.message}`),
            error.code === "ENOENT" ? 127 : 126
          )
        ))
      child.once("exit", (code, signal) => Deferred.unsafeDone(exited, Effect.succeed(statusOf(code, signal))))
      return child
    })
    // In the scope, not children of this fiber: `runMain`'s interruption on
    // SIGINT or SIGTERM reaches a fiber's children at once, and the very
    // signal must still be forwarded, and a loss still acted upon.
    yield* Effect.forkScoped(
      Effect.interruptible(Effect.forever(Effect.flatMap(Queue.take(signals), forward(fs, child))))
    )
    yield* Effect.forkScoped(Effect.interruptible(Effect.catchAll(lock.lost, stopOnLoss(child, loss))))
    const status = yield* Deferred.await(exited)
    if (yield* Ref.get(loss)) {
      // Given back at once, so that the scope's release does not warn of
      // the loss a second time.
      yield* Effect.ignore(lock.release)
      return yield* exitWith(EX_IOERR)
    }
    yield* exitWith(status)
  }))

// With --wait, a first attempt that fails fast tells whom the wait is for,
// once, before the backend waits.
const acquire = (backend: Backend, name: string, wait: Option.Option<Duration.Duration>) =>
  Option.match(wait, {
    onNone: () => backend.acquire({ name, wait: undefined }),
    onSome: (wait) =>
      Effect.catchTag(backend.acquire({ name, wait: undefined }), "LockHeld", (held) =>
        Effect.zipRight(
          Effect.logInfo(
            `waiting for ${describeHolder(held.holder)} to release ${held.location} (at most ${Duration.format(wait)})`
          ),
          backend.acquire({ name, wait })
        ))
  })

// The wrapper holds the lock, but its command is what a sender means to
// reach, and it knows nothing of the socket: each message is refused at
// once, rather than left to time out.
const refuseMessages = (lock: HeldLock) =>
  Effect.forkScoped(Stream.runForEach(lock.messages ?? Stream.empty, (message) =>
    refuseUnserved(
      message,
      `it is effect-pidlock run (pid ${process.pid}), which hands no messages to its command; ` +
        "a program that takes the lock itself reads them"
    )))

/** The lock is held, and --forward asks to hand the command line to its holder: its reply, exit 0. */
const forwardTo = (args: RunArgs) => send({ name: args.name, dir: args.dir, timeout: args.timeout, argv: args.command })

/** @internal */
export const run = (args: RunArgs, verbosity: Verbosity) =>
  Effect.scoped(Effect.gen(function*() {
    const { command, name, wait } = args
    const signals = yield* trapSignals
    const { backend, lock } = yield* Effect.gen(function*() {
      const backend = yield* makeBackend(args)
      if (args.forward && backend._tag !== "File") {
        return yield* new ConflictingOptions({
          message: "--forward needs a file lock: a lock over PostgreSQL carries no messages to its holder"
        })
      }
      return { backend, lock: yield* acquire(backend, name, wait) }
    }).pipe(Effect.raceFirst(Effect.flatMap(Queue.take(signals), endBy)))
    yield* refuseMessages(lock)
    // The file lock's holder socket, named in the owner record, is the
    // command's fd 3, as flock's command inherits its lock: a contender that
    // finds this process dead still finds the lock held while the command
    // lives. A lock over PostgreSQL is this process's database session, which
    // no child can inherit.
    const posix = yield* Posix.Posix
    const socket = backend._tag === "File" && lock.owner.socket !== undefined
      ? (yield* posix.listen(Path.dirname(lock.location))).descriptor
      : Option.none<number>()
    const stdio: ChildProcess.StdioOptions = Option.match(socket, {
      onNone: () => "inherit",
      onSome: (fd) => ["inherit", "inherit", "inherit", fd]
    })
    // The generation, for the command to stamp its writes with: a store that
    // has seen a higher one refuses them (a fencing token).
    const env = { ...process.env, PIDLOCK_GENERATION: String(lock.generation) }
    yield* runChild(command, { stdio, env }, signals, lock)
  })).pipe(
    // A held lock is the expected outcome of a second copy: with --quiet, its
    // exit code alone tells it; with --forward, the first copy gets the work.
    Effect.catchTag("LockHeld", (error) =>
      args.forward ? forwardTo(args) : verbosity.quiet ? exitWith(args.conflictExitCode) : failWith(
        Option.match(args.wait, {
          onNone: () =>
            error.message,
          onSome: (wait) => `still held after waiting ${Duration.format(wait)}: ${error.message}`
        }),
        args.conflictExitCode
      ))
  )
