import { Effect } from "effect"
import type { Scope } from "effect"
import { execFileSync } from "node:child_process"
import { chownSync, existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freePort } from "./ServerProcess.ts"

const bin = "/usr/lib/postgresql/15/bin"

/** Debian's PostgreSQL is installed and we may run it as its own user (as CI does). */
export const privatePostgresAvailable = existsSync(`${bin}/pg_ctl`) && process.getuid?.() === 0

const asPostgres = (command: string, args: ReadonlyArray<string>) =>
  execFileSync("runuser", ["-u", "postgres", "--", `${bin}/${command}`, ...args], { stdio: "pipe" })

/**
 * A Postgres server of the test's own, which it may stop and start again (the shared one of
 * TEST_DATABASE_URL must not be). Removed when the scope closes.
 */
export const privatePostgres: Effect.Effect<{ readonly url: string; readonly stop: Effect.Effect<void>; readonly start: Effect.Effect<void> }, never, Scope.Scope> =
  Effect.gen(function*() {
    const port = yield* freePort
    const dataDir = mkdtempSync(join(tmpdir(), "turn-runner-pg-"))
    chownSync(dataDir, Number(execFileSync("id", ["-u", "postgres"]).toString()), Number(execFileSync("id", ["-g", "postgres"]).toString()))
    asPostgres("initdb", ["-D", dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
    const start = Effect.sync(() =>
      asPostgres("pg_ctl", ["-D", dataDir, "-l", join(dataDir, "server.log"), "-w", "-t", "30", "-o", `-c listen_addresses=127.0.0.1 -p ${port} -k ${dataDir} -c fsync=off`, "start"])
    )
    const stop = Effect.sync(() => asPostgres("pg_ctl", ["-D", dataDir, "-m", "fast", "-w", "stop"]))
    yield* Effect.acquireRelease(start, () =>
      Effect.sync(() => {
        try {
          asPostgres("pg_ctl", ["-D", dataDir, "-m", "immediate", "-w", "stop"])
        } catch {
          // already stopped
        }
        rmSync(dataDir, { recursive: true, force: true })
      }))
    return { url: `postgres://postgres@127.0.0.1:${port}/postgres`, stop: Effect.asVoid(stop), start: Effect.asVoid(start) }
  })
