import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Crypto from "node:crypto"
import type * as Testing from "./index.js"

/** @internal */
export const TypeId: Testing.ProcessTableTypeId = Symbol.for(
  "effect-pidlock/testing/ProcessTable"
) as Testing.ProcessTableTypeId

/** @internal */
export const tag = Context.GenericTag<Testing.ProcessTable>("effect-pidlock/testing/ProcessTable")

/** One process life. A reused PID gets a new record, so nothing of the old life leaks into the new one. */
interface ProcessRecord {
  readonly pid: number
  readonly startTime: number
  comm: string
  cmdline: ReadonlyArray<string>
  state: "S" | "Z"
  readDenied: boolean
  vanishOnNextRead: boolean
}

/**
 * What `/proc` and `/etc/machine-id` show, read by the memory file system on
 * every lookup so changes are seen at once.
 */
export interface ProcView {
  readonly bootId: string
  readonly hostname: string
  readonly pidNamespace: string
  /** Absent: no `/etc/machine-id`. */
  readonly machineId: string | undefined
  readonly records: () => Iterable<ProcessRecordView>
  readonly isCurrent: (record: ProcessRecordView) => boolean
  /** `/proc/<pid>/stat`; fails at open with `EPERM` (denied) or at read with `ESRCH` (the process exits meanwhile). */
  readonly openStat: (record: ProcessRecordView) => "EPERM" | undefined
  readonly readStat: (record: ProcessRecordView) => string | "ESRCH"
  readonly cmdline: (record: ProcessRecordView) => string
  /**
   * Tells whether the process now at `pid` still runs: false once it exits
   * (as a zombie too: its descriptors are closed), and for ever after, even
   * when its PID is handed out again. `undefined` when there is no process
   * `pid`.
   */
  readonly lifeOf: (pid: number) => (() => boolean) | undefined
  /**
   * Completes once the process now at `pid` no longer runs (as `lifeOf`
   * turns false): what closes the connections it has open. `undefined` when
   * there is no process `pid`.
   */
  readonly endOf: (pid: number) => Effect.Effect<void> | undefined
  /** The wall-clock time of this boot, whole seconds since 1970, as `kern.boottime` shows it. */
  readonly bootTime: number
  /** What `ps` shows of the process now at `pid`; `undefined` when there is none. */
  readonly psOf: (pid: number) => PsView | undefined
}

/** A process as `ps` shows it: state letter, start time in seconds since 1970, command. */
export interface PsView {
  readonly state: "S" | "Z"
  readonly startSeconds: number
  readonly comm: string
  readonly cmdline: ReadonlyArray<string>
}

/** A process record as `/proc` sees it; opaque except for its PID. */
export interface ProcessRecordView {
  readonly pid: number
}

// The kernel keeps 15 bytes of the command name (TASK_COMM_LEN is 16 with the NUL).
const COMM_LENGTH = 15

const commOf = (cmdline: ReadonlyArray<string>): string => {
  const first = cmdline[0] ?? ""
  return first.slice(first.lastIndexOf("/") + 1).slice(0, COMM_LENGTH)
}

// Fields 4 to 52 of /proc/<pid>/stat after state; start time (field 22) is filled in.
const statLine = (record: ProcessRecord): string => {
  const fields: Array<string | number> = [
    record.pid === 1 ? 0 : 1, // 4 ppid
    record.pid, // 5 pgrp
    record.pid, // 6 session
    0, // 7 tty_nr
    -1, // 8 tpgid
    4194560, // 9 flags
    0,
    0,
    0,
    0, // 10-13 faults
    0,
    0,
    0,
    0, // 14-17 times
    20, // 18 priority
    0, // 19 nice
    1, // 20 num_threads
    0, // 21 itrealvalue
    record.startTime, // 22 starttime
    0, // 23 vsize
    0, // 24 rss
    "18446744073709551615", // 25 rsslim
    0,
    0,
    0,
    0,
    0, // 26-30
    0,
    0,
    0,
    0, // 31-34 signals
    0,
    0,
    0, // 35-37
    17, // 38 exit_signal
    0,
    0,
    0,
    0,
    0,
    0, // 39-44
    0,
    0,
    0,
    0,
    0,
    0,
    0, // 45-51
    0 // 52 exit_code
  ]
  return `${record.pid} (${record.comm}) ${record.state} ${fields.join(" ")}\n`
}

const FIRST_START_TIME = 100

// The first boot's wall-clock time, 2026-01-01T00:00:00Z; every reboot is a
// day later. For `ps`, a process starts `startTime` seconds after its boot
// (one clock tick is one second), so that every spawn has a start time of
// its own at ps's one-second resolution too.
const FIRST_BOOT_TIME = 1767225600
const SECONDS_PER_REBOOT = 86400

// A valid machine id (32 lowercase hex digits, as systemd writes it), fixed so
// that tests can name it.
const DEFAULT_MACHINE_ID = "d6f1e4a0c2b84e5f9a7c3b1d0e2f4a6b"

/** @internal */
export class ProcessTableImpl implements Testing.ProcessTable, ProcView {
  readonly [TypeId]: Testing.ProcessTableTypeId = TypeId
  private readonly processes = new Map<number, ProcessRecord>()
  // Who waits for a process to end, told after every change to the table.
  private readonly endWaiters = new Map<ProcessRecord, Set<() => void>>()
  // Random, as the kernel's: two tables are two machines.
  bootId = Crypto.randomUUID()
  // Clock ticks since boot: every spawn advances them, so start times strictly increase within a boot.
  private ticks = FIRST_START_TIME
  bootTime = FIRST_BOOT_TIME
  private lastPid: number
  hostname: string
  pidNamespace: string
  // Per installation, not per boot: a reboot keeps it.
  machineId: string | undefined

  constructor(private readonly options: Testing.ProcessTableOptions = {}) {
    this.hostname = options.hostname ?? "memory"
    this.pidNamespace = options.pidNamespace ?? "pid:[4026531836]"
    this.machineId = options.machineId ?? DEFAULT_MACHINE_ID
    this.lastPid = this.firstPid - 1
  }

  private get firstPid(): number {
    return this.options.firstPid ?? 100
  }

  // -- ProcView

  records(): Iterable<ProcessRecordView> {
    return this.processes.values()
  }

  isCurrent(record: ProcessRecordView): boolean {
    return this.processes.get(record.pid) === record
  }

  // hidepid=1 refuses another user's /proc/<pid>/stat with EPERM, not EACCES.
  openStat(record: ProcessRecordView): "EPERM" | undefined {
    return (record as ProcessRecord).readDenied ? "EPERM" : undefined
  }

  readStat(record: ProcessRecordView): string | "ESRCH" {
    const process = record as ProcessRecord
    if (!this.isCurrent(process)) return "ESRCH"
    if (process.vanishOnNextRead) {
      this.processes.delete(process.pid)
      this.tellEnds()
      return "ESRCH"
    }
    return statLine(process)
  }

  cmdline(record: ProcessRecordView): string {
    const process = record as ProcessRecord
    // A zombie has no memory left to read its arguments from.
    return process.state === "Z" ? "" : process.cmdline.map((arg) => `${arg}\0`).join("")
  }

  lifeOf(pid: number): (() => boolean) | undefined {
    const record = this.processes.get(pid)
    return record === undefined ? undefined : () => this.runs(record)
  }

  endOf(pid: number): Effect.Effect<void> | undefined {
    const record = this.processes.get(pid)
    return record === undefined ? undefined : Effect.async<void>((resume) => {
      if (!this.runs(record)) return resume(Effect.void)
      const waiters = this.endWaiters.get(record) ?? new Set()
      const waiter = () => resume(Effect.void)
      waiters.add(waiter)
      this.endWaiters.set(record, waiters)
      return Effect.sync(() => {
        waiters.delete(waiter)
      })
    })
  }

  private runs(record: ProcessRecord): boolean {
    return this.isCurrent(record) && record.state === "S"
  }

  private tellEnds(): void {
    for (const [record, waiters] of this.endWaiters) {
      if (this.runs(record)) continue
      this.endWaiters.delete(record)
      for (const waiter of waiters) waiter()
    }
  }

  psOf(pid: number): PsView | undefined {
    const record = this.processes.get(pid)
    return record === undefined ? undefined : {
      state: record.state,
      startSeconds: this.bootTime + record.startTime,
      comm: record.comm,
      cmdline: record.cmdline
    }
  }

  // -- ProcessTable

  spawn(options?: Testing.SpawnOptions): Effect.Effect<Testing.FakeProcess> {
    return Effect.suspend(() => {
      const pid = options?.pid ?? this.nextFreePid()
      if (this.processes.has(pid)) return Effect.dieMessage(`ProcessTable.spawn: pid ${pid} is in use`)
      const cmdline = options?.cmdline ?? ["node", "main.js"]
      const record: ProcessRecord = {
        pid,
        startTime: this.ticks++,
        comm: (options?.comm ?? commOf(cmdline)).slice(0, COMM_LENGTH),
        cmdline,
        state: "S",
        readDenied: false,
        vanishOnNextRead: false
      }
      this.processes.set(pid, record)
      if (options?.pid === undefined) this.lastPid = pid
      return Effect.succeed(snapshot(record))
    })
  }

  exit(pid: number, options?: { readonly zombie?: boolean | undefined }): Effect.Effect<void> {
    return this.update("exit", pid, (record) => {
      if (record.state === "Z") return `pid ${pid} has already exited`
      if (options?.zombie) record.state = "Z"
      else this.processes.delete(pid)
      return undefined
    })
  }

  reap(pid: number): Effect.Effect<void> {
    return this.update("reap", pid, (record) => {
      if (record.state !== "Z") return `pid ${pid} is running: exit it first`
      this.processes.delete(pid)
      return undefined
    })
  }

  setTitle(pid: number, title: string): Effect.Effect<void> {
    // As libuv does for process.title on Linux: the argument area holds the
    // title alone, and prctl(PR_SET_NAME) sets the command name.
    return this.update("setTitle", pid, (record) => {
      record.cmdline = [title]
      record.comm = title.slice(0, COMM_LENGTH)
    })
  }

  denyRead(pid: number): Effect.Effect<void> {
    return this.update("denyRead", pid, (record) => {
      record.readDenied = true
    })
  }

  vanishOnNextRead(pid: number): Effect.Effect<void> {
    return this.update("vanishOnNextRead", pid, (record) => {
      record.vanishOnNextRead = true
    })
  }

  get reboot(): Effect.Effect<void> {
    return Effect.sync(() => {
      this.bootId = Crypto.randomUUID()
      this.bootTime += SECONDS_PER_REBOOT
      this.processes.clear()
      this.tellEnds()
      this.ticks = FIRST_START_TIME
      this.lastPid = this.firstPid - 1
    })
  }

  setHostname(hostname: string): Effect.Effect<void> {
    return Effect.sync(() => {
      this.hostname = hostname
    })
  }

  setPidNamespace(pidNamespace: string): Effect.Effect<void> {
    return Effect.sync(() => {
      this.pidNamespace = pidNamespace
    })
  }

  setMachineId(machineId: string | undefined): Effect.Effect<void> {
    return Effect.sync(() => {
      this.machineId = machineId
    })
  }

  get(pid: number): Effect.Effect<Option.Option<Testing.FakeProcess>> {
    return Effect.sync(() => Option.map(Option.fromNullable(this.processes.get(pid)), snapshot))
  }

  isAlive(pid: number): Effect.Effect<boolean> {
    return Effect.sync(() => this.processes.get(pid)?.state === "S")
  }

  get list(): Effect.Effect<ReadonlyArray<Testing.FakeProcess>> {
    return Effect.sync(() => Array.from(this.processes.values(), snapshot).sort((a, b) => a.pid - b.pid))
  }

  // Linux hands out PIDs upwards from the last one, skipping those in use.
  private nextFreePid(): number {
    let pid = this.lastPid + 1
    while (this.processes.has(pid)) pid++
    return pid
  }

  private update(
    method: string,
    pid: number,
    // Returns why the change is refused, if it is.
    change: (record: ProcessRecord) => string | void
  ): Effect.Effect<void> {
    return Effect.suspend(() => {
      const record = this.processes.get(pid)
      const refusal = record === undefined ? `no process with pid ${pid}` : change(record)
      this.tellEnds()
      return refusal === undefined ? Effect.void : Effect.dieMessage(`ProcessTable.${method}: ${refusal}`)
    })
  }
}

const snapshot = (record: ProcessRecord): Testing.FakeProcess => ({
  pid: record.pid,
  startTime: String(record.startTime),
  comm: record.comm,
  cmdline: record.cmdline,
  state: record.state
})

/** @internal */
export const make = (options?: Testing.ProcessTableOptions): Effect.Effect<Testing.ProcessTable> =>
  Effect.sync(() => new ProcessTableImpl(options))

/** @internal */
export const viewOf = (table: Testing.ProcessTable): ProcView => {
  if (table instanceof ProcessTableImpl) return table
  throw new TypeError("effect-pidlock/testing: the process table was not made by makeProcessTable")
}
