/**
 * @since 0.1.0
 */

/**
 * A single-instance lock: at most one live holder per lock name on a machine.
 *
 * @since 0.1.0
 */
export * as PidLock from "./PidLock.js"

/**
 * Who this process is, and whether a lock's holder is still alive.
 *
 * @since 0.1.0
 */
export * as ProcessInfo from "./ProcessInfo.js"

/**
 * What the lock needs from the system beyond the platform `FileSystem`:
 * `lstat`, and the holder's socket.
 *
 * @since 0.2.0
 */
export * as Posix from "./Posix.js"

/**
 * Running a system command (`ps`, `sysctl`) and reading its output with its
 * exit code: what the portable `ProcessInfo` asks the system through.
 *
 * @since 0.2.0
 */
export * as SystemCommand from "./SystemCommand.js"

// `PgLock` is imported as `effect-pidlock/PgLock` only: its optional peer
// dependencies (`@effect/sql`, `@effect/sql-pg`) must not load with the rest.
