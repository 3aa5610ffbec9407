/**
 * The benchmark's processes: the upstream, the proxy, the client processes and the service each
 * run as processes of their own, so each one's CPU time and resident memory can be read from
 * `/proc`. The service runs as `npm start` runs it (a process group: npm, its shell, any launcher
 * and the service), from `BENCH_SERVICE_DIR` (default: the current directory), and counts as the
 * whole tree of processes that `npm start` creates.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import { createServer } from "node:net"
import * as Path from "node:path"

/** Where the service is started from: a checkout of this repository with its `node_modules`. */
export const serviceDir = Path.resolve(process.env.BENCH_SERVICE_DIR ?? process.cwd())

export interface Child {
  readonly name: string
  readonly process: ChildProcess
  readonly url: URL
  readonly output: () => string
  readonly stop: () => Promise<void>
  /** The process and every process under it, now. */
  readonly pids: () => Array<number>
  /** CPU time (user + system) of `pids()` so far, in microseconds. */
  readonly cpuMicros: () => number
  /** Resident memory of `pids()`, summed, in bytes. */
  readonly rssBytes: () => number
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

// ---------------------------------------------------------------------------------------------
// /proc

const ticksPerSecond = 100 // USER_HZ on Linux

/** The fields of `/proc/<pid>/stat` after the command name (which is in parentheses and may hold spaces). */
const statFields = (pid: number): Array<string> | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  } catch {
    return undefined // the process is gone
  }
}

/** CPU time (user + system) of a process so far, in microseconds; 0 once it is gone. */
export const cpuMicros = (pid: number): number => {
  const fields = statFields(pid)
  return fields === undefined ? 0 : ((Number(fields[11]) + Number(fields[12])) * 1_000_000) / ticksPerSecond
}

/** Resident memory of a process, in bytes; 0 once it is gone. */
export const rssBytes = (pid: number): number => {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    return match ? Number(match[1]) * 1024 : 0
  } catch {
    return 0
  }
}

/** CPU time the whole machine spent busy so far (every CPU, every process, the kernel), in microseconds. */
export const machineBusyMicros = (): number => {
  const fields = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number)
  // user nice system idle iowait irq softirq steal …: all but idle and iowait.
  const busy = fields.slice(0, 8).reduce((sum, value, i) => (i === 3 || i === 4 ? sum : sum + value), 0)
  return (busy * 1_000_000) / ticksPerSecond
}

/** `pid` and its descendants, from the parent of every process in `/proc`. Zombies are left out. */
export const processTree = (pid: number): Array<number> => {
  const children = new Map<number, Array<number>>()
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const fields = statFields(Number(entry))
    if (fields === undefined || fields[0] === "Z") continue
    const parent = Number(fields[1])
    const list = children.get(parent)
    if (list === undefined) children.set(parent, [Number(entry)])
    else list.push(Number(entry))
  }
  const tree: Array<number> = []
  const pending = [pid]
  while (pending.length > 0) {
    const next = pending.pop()!
    if (statFields(next) === undefined) continue
    tree.push(next)
    pending.push(...(children.get(next) ?? []))
  }
  return tree
}

/** The command line of a process, for the report (`node …/tsx src/main.ts`). */
export const commandOf = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((part) => part !== "").join(" ")
  } catch {
    return "?"
  }
}

const sum = (values: ReadonlyArray<number>) => values.reduce((total, value) => total + value, 0)

const isAlive = (pid: number) => {
  const fields = statFields(pid)
  return fields !== undefined && fields[0] !== "Z"
}

// ---------------------------------------------------------------------------------------------

/** The start of a child's output (the service logs every run) and its last few lines. */
const collect = (child: ChildProcess) => {
  let output = ""
  let tail = ""
  const keep = (chunk: Buffer) => {
    const text = chunk.toString()
    if (output.length < 20_000) output += text
    else tail = (tail + text).slice(-4000)
  }
  child.stdout?.on("data", keep)
  child.stderr?.on("data", keep)
  return () => (tail === "" ? output : `${output}\n…\n${tail}`)
}

const exitOf = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve()
    else child.on("exit", () => resolve())
  })

const launch = (script: string, env: Record<string, string>, nodeArgs: ReadonlyArray<string> = [], cwd = process.cwd()) => {
  const child = spawn(process.execPath, [...nodeArgs, "--import", "tsx", script], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const output = collect(child)
  const exited = exitOf(child)
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill("SIGTERM")
    const timeout = sleep(15_000).then(() => child.kill("SIGKILL"))
    await Promise.race([exited, timeout])
  }
  return { child, output, stop }
}

/** The readings of a single process. */
const single = (child: ChildProcess) => ({
  pids: () => (child.pid !== undefined && isAlive(child.pid) ? [child.pid] : []),
  cpuMicros: () => (child.pid === undefined ? 0 : cpuMicros(child.pid)),
  rssBytes: () => (child.pid === undefined ? 0 : rssBytes(child.pid))
})

/**
 * The readings of a process and everything under it. The tree is walked again at most once a
 * second (a walk reads every process's `/proc/<pid>/stat`, and CPU is read ten times a second).
 */
const tree = (child: ChildProcess) => {
  let walked = { at: 0, pids: [] as Array<number> }
  const pids = () => {
    if (child.pid === undefined) return []
    if (Date.now() - walked.at > 1000) walked = { at: Date.now(), pids: processTree(child.pid) }
    return walked.pids.filter(isAlive)
  }
  return {
    pids,
    cpuMicros: () => sum(pids().map(cpuMicros)),
    rssBytes: () => sum(pids().map(rssBytes))
  }
}

/** A plain-Node child that prints `listening <port>` once it listens. */
export const startListener = async (
  name: string,
  script: string,
  env: Record<string, string> = {},
  nodeArgs: ReadonlyArray<string> = []
): Promise<Child> => {
  const { child, output, stop } = launch(script, env, nodeArgs)
  for (let i = 0; i < 600; i++) {
    const match = /listening (\d+)/.exec(output())
    if (match) return { name, process: child, url: new URL(`http://127.0.0.1:${match[1]}`), output, stop, ...single(child) }
    if (child.exitCode !== null) throw new Error(`${name} exited at start-up:\n${output()}`)
    await sleep(50)
  }
  await stop()
  throw new Error(`${name} did not start in 30 s:\n${output()}`)
}

const healthy = async (name: string, child: ChildProcess, url: URL, output: () => string, stop: () => Promise<void>) => {
  const started = Date.now()
  while (Date.now() - started < 120_000) {
    if (child.exitCode !== null) throw new Error(`${name} exited at start-up:\n${output()}`)
    const ok = await fetch(new URL("/health", url)).then((response) => response.ok, () => false)
    if (ok) return
    await sleep(100)
  }
  await stop()
  throw new Error(`${name} did not become healthy in 120 s:\n${output()}`)
}

/**
 * The service as `npm start` runs it, in `serviceDir`, in a process group of its own: ready once
 * `/health` answers 200; stopped with SIGTERM to the whole group (SIGKILL after 15 s).
 */
export const startNpmService = async (name: string, env: Record<string, string>): Promise<Child> => {
  const port = await freePort()
  const url = new URL(`http://127.0.0.1:${port}`)
  const child = spawn("npm", ["start"], {
    cwd: serviceDir,
    env: { ...process.env, ...env, PORT: String(port), HOST: "127.0.0.1" },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true
  })
  const output = collect(child)
  const exited = exitOf(child)
  const readings = tree(child)
  let stopping = false
  child.on("exit", (code, signal) => {
    if (!stopping) console.error(`${name}: \`npm start\` exited unexpectedly (${code ?? signal}):\n${output().slice(-4000)}`)
  })
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal)
    } catch {
      // the group is gone
    }
  }
  const stop = async () => {
    if (child.pid === undefined) return
    stopping = true
    const members = processTree(child.pid)
    signalGroup("SIGTERM")
    const deadline = Date.now() + 15_000
    await Promise.race([exited, sleep(15_000)])
    while (members.some(isAlive) && Date.now() < deadline) await sleep(100)
    if (members.some(isAlive)) {
      signalGroup("SIGKILL")
      for (const pid of members.filter(isAlive)) process.kill(pid, "SIGKILL")
    }
  }
  await healthy(name, child, url, output, stop)
  return { name, process: child, url, output, stop, ...readings }
}

/**
 * The service's entry (`src/main.ts` in `serviceDir`) run directly by Node with `nodeArgs` (a
 * profiler, for example); ready once `/health` answers 200.
 */
export const startService = async (
  name: string,
  env: Record<string, string>,
  nodeArgs: ReadonlyArray<string> = []
): Promise<Child> => {
  const port = await freePort()
  const url = new URL(`http://127.0.0.1:${port}`)
  const { child, output, stop } = launch("src/main.ts", { PORT: String(port), ...env }, nodeArgs, serviceDir)
  await healthy(name, child, url, output, stop)
  return { name, process: child, url, output, stop, ...single(child) }
}
