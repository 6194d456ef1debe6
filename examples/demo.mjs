// A tour of effect-pidlock with real processes: `npm run demo`.
//
// Each "instance" is test/fixtures/holder.mjs, a small Effect program that
// takes the lock through the package's public API (PidLock.layer under
// NodeRuntime.runMain, or PidLock.acquire). Everything happens in a fresh
// temporary directory, removed at the end.
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const HOLDER = fileURLToPath(new URL("../test/fixtures/holder.mjs", import.meta.url))
const NAME = "demo"
const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "pidlock-demo-"))
const lockDir = Path.join(dir, NAME, "lock")
const children = new Set()

// Starts an instance; its stdout lines (`<word> <json>`) are collected.
const start = (mode, ...extra) => {
  const child = ChildProcess.spawn(process.execPath, [HOLDER, mode, "--dir", dir, "--name", NAME, ...extra], {
    stdio: ["pipe", "pipe", "inherit"]
  })
  const instance = { child, pid: child.pid, lines: [], listeners: new Set() }
  let partial = ""
  child.stdout.setEncoding("utf8").on("data", (chunk) => {
    const parts = (partial + chunk).split("\n")
    partial = parts.pop()
    for (const line of parts) {
      instance.lines.push(line)
      for (const listener of instance.listeners) listener()
    }
  })
  instance.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })))
  children.add(instance)
  return instance
}

// The JSON of the instance's first line `<word> …`; fails if it exits first or takes over 20 s.
const line = (instance, word) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${word}" from pid ${instance.pid} within 20 s`)), 20_000)
    const check = () => {
      const found = instance.lines.find((text) => text.startsWith(`${word} `))
      if (found === undefined) return
      clearTimeout(timer)
      instance.listeners.delete(check)
      resolve(JSON.parse(found.slice(word.length + 1)))
    }
    instance.listeners.add(check)
    instance.exited.then(() => {
      check()
      clearTimeout(timer)
      reject(new Error(`pid ${instance.pid} exited without "${word}": ${instance.lines.join(" | ")}`))
    })
    check()
  })

const step = (number, title) => console.log(`\n${number}. ${title}`)
const say = (text) => console.log(`   ${text}`)
const lockContents = () => (Fs.existsSync(lockDir) ? Fs.readdirSync(lockDir) : [])

const main = async () => {
  console.log(`effect-pidlock demo: lock "${NAME}" in ${dir}`)

  step(1, "First instance starts and takes the lock")
  const first = start("hold")
  const held = await line(first, "ready")
  say(`pid ${first.pid} holds it; the owner entry is ${Path.relative(dir, held.entry)}`)

  step(2, "Second instance starts while the first runs: refused")
  const second = start("try")
  const refused = await line(second, "error")
  say(`${refused._tag}: ${refused.message}`)
  await second.exited

  step(3, "First instance is killed with SIGKILL: no clean-up code runs")
  // The third instance is started and loaded beforehand, waiting for a line
  // on stdin, so that the time below is the lock's, not Node's start-up.
  const third = start("hold", "--wait-stdin")
  await line(third, "waiting")
  const killedAt = Date.now()
  first.child.kill("SIGKILL")
  await first.exited
  say(`pid ${first.pid} is gone; its owner entry is still there: ${lockContents().join(", ")}`)

  step(4, "Third instance asks for the lock: it takes the dead holder's lock over at once")
  third.child.stdin.end("go\n")
  const acquired = await line(third, "ready")
  for (const text of third.lines.filter((text) => text.startsWith("log "))) {
    const { level, message } = JSON.parse(text.slice(4))
    say(`[${level}] ${message}`)
  }
  say(`pid ${third.pid} holds it, ${acquired.at - killedAt} ms after the kill (no timeout to wait out)`)

  step(5, "Clean-up")
  third.child.kill("SIGTERM")
  const { code } = await third.exited
  say(
    `pid ${third.pid} stopped by SIGTERM (exit code ${code}); the lock is released: ${
      lockContents().length === 0 ? "lock directory empty" : `still holds ${lockContents().join(", ")}`
    }`
  )
}

const cleanUp = async () => {
  for (const { child, exited } of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    await exited
  }
  Fs.rmSync(dir, { recursive: true, force: true })
}

// Ctrl-C: the instances get SIGINT too (and release); remove the directory.
process.once("SIGINT", () => cleanUp().finally(() => process.exit(130)))

main().then(
  async () => {
    await cleanUp()
    say(`removed ${dir}`)
  },
  async (error) => {
    await cleanUp()
    console.error(`\ndemo failed: ${error.message}`)
    process.exitCode = 1
  }
)
