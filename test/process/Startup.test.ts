import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { freePort } from "../support/ServerProcess.ts"
import { freshDatabaseUrl } from "../support/TestDatabase.ts"

const adminUrl = process.env.TEST_DATABASE_URL

/**
 * Start-up: the port opens only once the app is ready to answer. A request that reaches the
 * server while it is starting is refused (and retried by its client) or answered, never left
 * waiting on a socket nobody reads.
 */
describe("start-up", () => {
  it.live("requests sent while the server starts are answered or refused, none left hanging", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      // On Postgres the services take longest to build (the listening connection among them).
      const database = adminUrl === undefined ? { DATA_DIR: "memory" } : { DATABASE_URL: yield* freshDatabaseUrl(adminUrl) }
      const child = yield* Effect.acquireRelease(
        Effect.sync(() =>
          spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
            env: { ...process.env, PORT: String(port), LOG_LEVEL: "Warn", ...database },
            stdio: "ignore"
          })
        ),
        (child) => Effect.sync(() => child.kill("SIGKILL"))
      )
      const outcomes = { answered: 0, refused: 0, hung: 0 }
      const deadline = Date.now() + 60_000
      while (outcomes.answered < 20 && Date.now() < deadline && child.exitCode === null) {
        yield* Effect.promise(() =>
          Promise.all(Array.from({ length: 5 }, () =>
            fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(5000) }).then(
              () => void outcomes.answered++,
              (error: Error) => void (error.name === "TimeoutError" ? outcomes.hung++ : outcomes.refused++)
            )))
        )
      }
      expect(outcomes.hung).toBe(0)
      expect(outcomes.answered).toBeGreaterThanOrEqual(20)
    }).pipe(Effect.scoped), 90_000)
})
