// Vitest global setup: one PostgreSQL server for the whole run, its url given
// to the test files as `inject("postgresUrl")` (see ./postgres.ts).
import type { TestProject } from "vitest/node"
import { startPostgres } from "./postgresServer.js"

declare module "vitest" {
  export interface ProvidedContext {
    postgresUrl: string
  }
}

export default async function setup({ provide }: TestProject): Promise<() => Promise<void>> {
  const startedAt = performance.now()
  const server = await startPostgres()
  const seconds = (performance.now() - startedAt) / 1000
  process.stderr.write(`postgres: started in ${seconds.toFixed(1)} s on port ${server.port}\n`)
  provide("postgresUrl", server.url)
  return server.stop
}
