/**
 * The benchmark's processes: the upstream, the proxy and the service each run as a child process,
 * so each one's CPU time and resident memory can be read from `/proc`.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { createServer } from "node:net"

export interface Child {
  readonly name: string
  readonly process: ChildProcess
  readonly url: URL
  readonly output: () => string
  readonly stop: () => Promise<void>
}

export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const launch = (script: string, env: Record<string, string>, nodeArgs: ReadonlyArray<string> = []) => {
  const child = spawn(process.execPath, [...nodeArgs, "--import", "tsx", script], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  // Only the start is kept: the service logs every run.
  const keep = (chunk: Buffer) => {
    if (output.length < 20_000) output += chunk.toString()
  }
  child.stdout.on("data", keep)
  child.stderr.on("data", keep)
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()))
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill("SIGTERM")
    const timeout = sleep(15_000).then(() => child.kill("SIGKILL"))
    await Promise.race([exited, timeout])
  }
  return { child, output: () => output, stop }
}

/** A plain-Node child that prints `listening <port>` once it listens. */
export const startListener = async (name: string, script: string, env: Record<string, string> = {}): Promise<Child> => {
  const { child, output, stop } = launch(script, env)
  for (let i = 0; i < 600; i++) {
    const match = /listening (\d+)/.exec(output())
    if (match) return { name, process: child, url: new URL(`http://127.0.0.1:${match[1]}`), output, stop }
    if (child.exitCode !== null) throw new Error(`${name} exited at start-up:\n${output()}`)
    await sleep(50)
  }
  await stop()
  throw new Error(`${name} did not start in 30 s:\n${output()}`)
}

/** The service (`src/main.ts`, as `npm start` runs it), ready once `/health` answers 200. */
export const startService = async (
  name: string,
  env: Record<string, string>,
  nodeArgs: ReadonlyArray<string> = []
): Promise<Child> => {
  const port = await freePort()
  const url = new URL(`http://127.0.0.1:${port}`)
  const started = Date.now()
  const { child, output, stop } = launch("src/main.ts", { PORT: String(port), ...env }, nodeArgs)
  while (Date.now() - started < 120_000) {
    if (child.exitCode !== null) throw new Error(`${name} exited at start-up:\n${output()}`)
    const ok = await fetch(new URL("/health", url)).then((response) => response.ok, () => false)
    if (ok) return { name, process: child, url, output, stop }
    await sleep(100)
  }
  await stop()
  throw new Error(`${name} did not become healthy in 120 s:\n${output()}`)
}

const ticksPerSecond = 100 // USER_HZ on Linux

/** CPU time (user + system) of a process so far, in microseconds. */
export const cpuMicros = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return ((Number(fields[11]) + Number(fields[12])) * 1_000_000) / ticksPerSecond
}

/** Resident memory of a process, in bytes. */
export const rssBytes = (pid: number): number => {
  const status = readFileSync(`/proc/${pid}/status`, "utf8")
  const match = /VmRSS:\s+(\d+) kB/.exec(status)
  return match ? Number(match[1]) * 1024 : Number.NaN
}
