import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // One PostgreSQL server for the run: see test/support/postgres.ts.
    globalSetup: ["test/support/postgresSetup.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
