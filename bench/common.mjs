// Shared helpers for the benchmark children: plain `node` on the built package.
import * as Fs from "node:fs"

/** Wall-clock time in milliseconds, comparable between processes on one machine. */
export const now = () => performance.timeOrigin + performance.now()

/** Lines from stdin, one callback per line. */
export const onLines = (callback) => {
  let buffer = ""
  process.stdin.setEncoding("utf8")
  process.stdin.on("data", (chunk) => {
    buffer += chunk
    let index
    while ((index = buffer.indexOf("\n")) !== -1) {
      const line = buffer.slice(0, index)
      buffer = buffer.slice(index + 1)
      callback(line)
    }
  })
}

export const send = (message) => process.stdout.write(JSON.stringify(message) + "\n")

export const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0 ? NaN : sorted[Math.floor((sorted.length - 1) / 2)]
}

export const freshDir = (dir) => {
  Fs.rmSync(dir, { recursive: true, force: true })
  Fs.mkdirSync(dir, { recursive: true })
  return dir
}
