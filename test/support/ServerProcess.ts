import { Effect } from "effect"
import type { Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { createServer } from "node:net"

/** A free loopback port: bound, read, released. */
export const freePort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

export interface ServerProcess {
  readonly baseUrl: string
  readonly child: ChildProcess
  readonly output: () => string
  /** Resolves with the exit code (or the signal's name). */
  readonly exited: Promise<number | string>
}

const healthy = (baseUrl: string) =>
  Effect.tryPromise(() => fetch(`${baseUrl}/health`, { signal: AbortSignal.timeout(2000) })).pipe(
    Effect.map((response) => response.ok),
    Effect.orElseSucceed(() => false)
  )

/**
 * The real server (`src/main.ts`) as a child process, as `npm start` runs it, with the given
 * environment; ready once `/health` answers 200. Killed (SIGKILL) when the scope closes, if
 * still alive.
 */
export const startServer = (env: Record<string, string>): Effect.Effect<ServerProcess, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const port = yield* freePort
    const baseUrl = `http://127.0.0.1:${port}`
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
          // Limits no test of anything else reaches (spec 85's defaults allow 4 live runs an owner).
          env: {
            ...process.env,
            PORT: String(port),
            LOG_LEVEL: "Warn",
            MAX_LIVE_RUNS_PER_OWNER: "100000",
            TURN_RATE_PER_OWNER: "1000000",
            ...env
          },
          stdio: ["ignore", "pipe", "pipe"]
        })
      ),
      (child) => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"))
    )
    let output = ""
    child.stdout?.on("data", (chunk) => (output += chunk))
    child.stderr?.on("data", (chunk) => (output += chunk))
    const exited = new Promise<number | string>((resolve) =>
      child.on("exit", (code, signal) => resolve(code ?? signal ?? "unknown")))
    for (let i = 0; i < 600; i++) {
      if (child.exitCode !== null) return yield* Effect.fail(new Error(`the server exited at start-up:\n${output}`))
      if (yield* healthy(baseUrl)) return { baseUrl, child, output: () => output, exited }
      if (process.env.DEBUG_START) process.stderr.write(`not healthy yet: ${baseUrl} ${i}\n`)
      yield* Effect.sleep("50 millis")
    }
    return yield* Effect.fail(new Error(`the server did not become healthy in 30 s:\n${output}`))
  })
