import { Effect } from "effect"
import type { Scope } from "effect"
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process"
import { readdirSync, statSync } from "node:fs"
import { createServer } from "node:net"
import { join } from "node:path"

const root = join(import.meta.dirname, "..", "..")

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

/** The pids of `pid`'s children, their children and so on (`ps`). */
export const descendants = (pid: number): ReadonlyArray<number> => {
  // `ps` exits 1 when it lists nothing.
  const { stdout } = spawnSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" })
  const children = stdout.split("\n").flatMap((line) => line.trim() === "" ? [] : [Number(line)])
  return children.flatMap((child) => [child, ...descendants(child)])
}

/** `command` in the repository with the given environment; ready once `/health` answers 200. */
const start = (command: string, args: ReadonlyArray<string>, env: Record<string, string>) =>
  Effect.gen(function*() {
    const port = yield* freePort
    const baseUrl = `http://127.0.0.1:${port}`
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(command, args, {
          cwd: root,
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
      // The whole tree: `npm start`'s server too.
      (child) =>
        Effect.sync(() => {
          if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
          for (const pid of [...descendants(child.pid), child.pid]) {
            try {
              process.kill(pid, "SIGKILL")
            } catch {
              // already gone
            }
          }
        })
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

/**
 * The real server (`src/main.ts`) as a child process, as `npm start` runs it, with the given
 * environment; ready once `/health` answers 200. Killed (SIGKILL) when the scope closes, if
 * still alive.
 */
export const startServer = (env: Record<string, string>): Effect.Effect<ServerProcess, Error, Scope.Scope> =>
  start(process.execPath, ["--import", "tsx", "src/main.ts"], env)

const newest = (dir: string): number =>
  Math.max(...readdirSync(dir, { recursive: true, encoding: "utf8" }).map((file) => statSync(join(dir, file)).mtimeMs))

/** `npm run build`, unless `build/` (which `npm install` made) is newer than every source file. */
const built = Effect.suspend(() => {
  const builtAt = Effect.try(() => statSync(join(root, "build", "server.js")).mtimeMs).pipe(Effect.orElseSucceed(() => 0))
  return Effect.flatMap(builtAt, (at) =>
    at > newest(join(root, "src"))
      ? Effect.void
      : Effect.async<void, Error>((resume) => {
        execFile("npm", ["run", "build"], { cwd: root }, (error, _, stderr) =>
          resume(error ? Effect.fail(new Error(`npm run build failed: ${stderr}`)) : Effect.void))
      }))
})

/** `npm start` itself (npm, then the built server), otherwise as `startServer`. */
export const startNpmStart = (env: Record<string, string>): Effect.Effect<ServerProcess, Error, Scope.Scope> =>
  Effect.zipRight(built, start("npm", ["start"], env))
