/**
 * The help: what each command does, its options and its exit codes, in a
 * screen or less.
 *
 * @internal
 */
import type { CommandName } from "./args.js"
import { EX_IOERR, EX_PROTOCOL, EX_TEMPFAIL, EX_UNAVAILABLE, FAILURE_EXIT_CODES } from "./exitCodes.js"

const LOCK_OPTIONS = `  --name <name>        the lock: 1 to 100 characters of A-Z a-z 0-9 . _ -, not starting with "."
  --dir <dir>          the file lock's directory (<dir>/<name>/lock); default $PIDLOCK_DIR, else
                       /run/lock/effect-pidlock-<euid> (or /tmp/effect-pidlock-<euid>)
  --postgres <url>     the lock over PostgreSQL (postgresql://user:password@host:port/database), one
                       for every host that reaches the server; default $PIDLOCK_DATABASE_URL unless
                       --dir is given. Never printed; ps shows it to other users: prefer the variable`

const COMMON_OPTIONS = `  --log-level <level>  all, trace, debug, info (default), warning, error, fatal or none
  -q, --quiet          errors only; a held lock is told by the exit code alone
  -h, --help           this help`

const SEND_EXIT_CODES =
  `${EX_UNAVAILABLE} nobody holds the lock; ${EX_TEMPFAIL} no reply in time, or the holder is busy; ${EX_PROTOCOL} the
holder refused the message (it reads none, e.g. it is effect-pidlock run, or its handler declined)`

const FAILURES = FAILURE_EXIT_CODES.map(([code, meaning]) => `  ${code}  ${meaning}`).join("\n")

const USAGE: Readonly<Record<CommandName, string>> = {
  run:
    "effect-pidlock run --name <name> [--dir <dir> | --postgres <url>] [--wait <duration> | --forward [--timeout <duration>]] -- <command> [<arg>...]",
  send: "effect-pidlock send --name <name> [--dir <dir>] [--timeout <duration>] -- [<arg>...]",
  status: "effect-pidlock status --name <name> [--dir <dir> | --postgres <url>] [--json]",
  break: "effect-pidlock break --name <name> [--dir <dir> | --postgres <url>] [--force]"
}

const TOP = `effect-pidlock: a single-instance lock for shell commands and scripts

usage:
  ${USAGE.run}
  ${USAGE.send}
  ${USAGE.status}
  ${USAGE.break}

  run     run a command while holding the lock, like flock -n
  send    hand words to the program that holds a file lock, and print its reply
  status  say who holds the lock, without touching it
  break   remove the lock of a holder that is gone

A command's options: effect-pidlock <command> --help. Options go before or after the command, never after --.

${COMMON_OPTIONS}

Exit codes on failure:
${FAILURES}`

const COMMAND_HELP: Readonly<Record<CommandName, string>> = {
  run: `usage: ${USAGE.run}

Runs the command while holding the lock and exits with its exit code (128 + the signal number if a
signal ended it). When the lock is held, says who holds it and exits ${EX_TEMPFAIL}.

The command gets the lock's generation, which grows with every acquisition, as $PIDLOCK_GENERATION.
On a file lock it inherits the lock's socket as fd 3: should this wrapper be killed, the lock stays
held while the command runs. Over PostgreSQL the lock is this wrapper's database session.
SIGHUP, SIGINT, SIGQUIT and SIGTERM are forwarded to the command (not a terminal's Ctrl-C, which
reached it already); while waiting for the lock, they end the wait with 128 + the signal number.
If the lock is lost while the command runs, the command gets SIGTERM (SIGKILL 10 s later).
Messages sent to the lock (effect-pidlock send, PidLock.send) are refused at once: this wrapper hands
none to its command. With --forward, a held lock is not a failure: the command line is sent to the
holder (a program that takes the lock itself), as send does, and its reply printed.

${LOCK_OPTIONS}
  --wait <duration>    wait at most this long for the holder (e.g. 30s, 500ms, 2m, "30 seconds")
  --forward            when the lock is held, send {"argv":[<command>, <arg>...]} to its holder, print
                       its reply (JSON) and exit 0; a file lock only
  --timeout <duration> how long --forward waits for the reply (default 5s)
  --conflict-exit-code <code>
                       the exit code when the lock is held (default ${EX_TEMPFAIL})
${COMMON_OPTIONS}

Exit codes: the command's; ${EX_TEMPFAIL} the lock is held; ${EX_IOERR} the lock was lost while the command ran;
126 the command cannot be run, 127 it is not found; 128 + n a signal n ended the wait. With --forward:
0 the holder replied; ${SEND_EXIT_CODES}. On failure:
${FAILURES}`,
  send: `usage: ${USAGE.send}

Sends {"argv":[<arg>...]}, the words after --, to the process that holds the file lock, with this
process's working directory, and prints the holder's reply on stdout as one line of JSON. The holder
reads it with PidLock's lock.messages or onMessage; one message and one reply, 64 KiB each at most.

  --name <name>        the lock, as its holder took it
  --dir <dir>          the file lock's directory, as its holder took it; default $PIDLOCK_DIR, else
                       /run/lock/effect-pidlock-<euid> (or /tmp/effect-pidlock-<euid>)
  --timeout <duration> how long to wait for the reply (default 5s)
${COMMON_OPTIONS}

Exit codes: 0 the reply is printed; ${SEND_EXIT_CODES}. On failure:
${FAILURES}`,
  status: `usage: ${USAGE.status}

Says who holds the lock and whether they are alive, without touching it.

${LOCK_OPTIONS}
  --json               print a JSON object (name, state, location, holder, verdict; error on failure)
${COMMON_OPTIONS}

Exit codes: 0 free, 1 held, 2 the holder is gone (never over PostgreSQL). On failure:
${FAILURES}`,
  break: `usage: ${USAGE.break}

Removes the lock of a holder that is gone. Refuses a live holder on this machine, and a holder on
another host or in another pid namespace unless --force. Over PostgreSQL, where every holder's
session is alive, --force ends that session, which frees the lock; its wrapper stops its command.

${LOCK_OPTIONS}
  --force              also break a holder that cannot be seen from here, or over PostgreSQL
${COMMON_OPTIONS}

Exit codes: 0 broken, or free already; 1 refused. On failure:
${FAILURES}`
}

/** The help of `command`, or of the whole CLI. @internal */
export const helpOf = (command: CommandName | undefined): string => command === undefined ? TOP : COMMAND_HELP[command]

/** The usage lines shown with a mistake in the command line. @internal */
export const usageOf = (command: CommandName | undefined): string =>
  command === undefined
    ? `usage:\n  ${USAGE.run}\n  ${USAGE.send}\n  ${USAGE.status}\n  ${USAGE.break}\nMore: effect-pidlock --help`
    : `usage: ${USAGE[command]}\nMore: effect-pidlock ${command} --help`
