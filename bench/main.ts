/**
 * `npm run bench`: this service's overhead against the raw stream, side by side, in one run.
 *
 * - A: the client reads the fake upstream directly (the limit);
 * - B: through a bare Node passthrough proxy (the cost of any Node hop);
 * - C: through this service (`LLM_PROVIDER=openai` pointed at the upstream), on real Postgres
 *   when `BENCH_DATABASE_URL` is set (a server the benchmark may create a database on), and on
 *   the embedded PGlite.
 *
 * Writes `bench/results.json` and the table in `BENCHMARKS.md`. `BENCH_QUICK=1` runs every
 * scenario small (a smoke test of the benchmark itself, not a measurement).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import pg from "pg"
import { type Arm, direct, service } from "./Arms.ts"
import { type Child, startListener, startService } from "./Processes.ts"
import { writeMarkdown } from "./Report.ts"
import * as Scenarios from "./Scenarios.ts"

const quick = process.env.BENCH_QUICK === "1"
const databaseUrl = process.env.BENCH_DATABASE_URL

const settings = quick
  ? {
    single: { turns: 10, warmup: 3, plan: { tokens: 50, ttftMs: 20, tps: 200 } },
    short: { concurrency: 16, durationMs: 2000, slots: 400, plan: { tokens: 10, ttftMs: 0, tps: 0 } },
    concurrency: { levels: [50, 100], tps: 50, steadyMs: 2000, startsPerSecond: 100 },
    abort: { live: 16, aborts: 4, tps: 10 },
    memory: { low: 20, high: 100, tps: 1 },
    writes: { tokens: [16, 1024], durationMs: 1000, turns: 2 }
  }
  : {
    single: { turns: 60, warmup: 10, plan: { tokens: 50, ttftMs: 20, tps: 200 } },
    short: { concurrency: 32, durationMs: 8000, slots: 2000, plan: { tokens: 10, ttftMs: 0, tps: 0 } },
    concurrency: { levels: [25, 50, 100, 200, 400, 600, 800, 1000, 1200], tps: 50, steadyMs: 4000, startsPerSecond: 100 },
    abort: { live: 128, aborts: 32, tps: 10 },
    memory: { low: 100, high: 1000, tps: 1 },
    writes: { tokens: [16, 1024], durationMs: 2000, turns: 4 }
  }

export interface Results {
  readonly date: string
  readonly command: string
  readonly machine: { readonly cpu: string; readonly cpus: number; readonly memoryGiB: number; readonly node: string; readonly os: string }
  readonly quick: boolean
  readonly settings: typeof settings
  readonly arms: ReadonlyArray<string>
  readonly figures: {
    readonly single: Record<string, Scenarios.SingleStreamFigures>
    readonly short: Record<string, Scenarios.ThroughputFigures>
    readonly concurrency: Record<string, Awaited<ReturnType<typeof Scenarios.concurrency>>>
    readonly abort: Record<string, Scenarios.AbortFigures>
    readonly memory: Record<string, Scenarios.MemoryFigures>
    readonly writes: Record<string, Array<Scenarios.WriteFigures>>
  }
}

const children: Array<Child> = []
const cleanups: Array<() => Promise<void>> = []

const serviceEnv = (upstream: Child) => ({
  LLM_PROVIDER: "openai",
  OPENAI_BASE_URL: new URL("/v1", upstream.url).href,
  LLM_MODEL: "bench",
  SHUTDOWN_GRACE_MS: "0"
})

/** A database of its own on the server `BENCH_DATABASE_URL` names, dropped at the end. */
const benchDatabase = async (url: string) => {
  const name = `turn_runner_bench_${process.pid}`
  const admin = new pg.Client({ connectionString: url })
  await admin.connect()
  await admin.query(`DROP DATABASE IF EXISTS ${name}`)
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  const own = new URL(url)
  own.pathname = `/${name}`
  cleanups.push(async () => {
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await client.end()
  })
  return own.href
}

const run = async () => {
  const started = Date.now()
  const log = (message: string) => console.log(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${message}`)

  const upstream = await startListener("upstream", "bench/upstream.ts")
  children.push(upstream)
  const proxy = await startListener("proxy", "bench/proxy.ts", { UPSTREAM_URL: upstream.url.href })
  children.push(proxy)
  const arms: Array<Arm> = [
    direct("A", upstream.url, undefined),
    direct("B", proxy.url, proxy)
  ]
  let stats: pg.Client | undefined
  if (databaseUrl !== undefined) {
    const url = await benchDatabase(databaseUrl)
    const child = await startService("C: Postgres", { ...serviceEnv(upstream), DATABASE_URL: url })
    children.push(child)
    arms.push(service("C: Postgres", child))
    stats = new pg.Client({ connectionString: url })
    await stats.connect()
  } else {
    log("BENCH_DATABASE_URL is not set: the Postgres arm is skipped (see the README)")
  }
  const dataDir = mkdtempSync(Path.join(Os.tmpdir(), "turn-runner-bench-"))
  cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }))
  const pglite = await startService("C: PGlite", { ...serviceEnv(upstream), DATA_DIR: dataDir })
  children.push(pglite)
  arms.push(service("C: PGlite", pglite))
  const services = arms.filter((arm) => arm.name.startsWith("C"))
  const hops = arms.filter((arm) => arm.name !== "A")
  log(`arms: ${arms.map((arm) => arm.name).join(", ")}`)

  log("one stream at a time, arms interleaved")
  const single = await Scenarios.singleStream(arms, settings.single)

  log("short turns per second")
  const short: Record<string, Scenarios.ThroughputFigures> = {}
  for (const arm of arms) {
    short[arm.name] = await Scenarios.shortTurns(arm, settings.short)
    log(`  ${arm.name}: ${short[arm.name]!.turnsPerSecond} turns/s`)
    await Scenarios.upstreamIdle(upstream)
  }

  log("concurrent streams at 50 tokens/s")
  const concurrency: Results["figures"]["concurrency"] = {}
  for (const arm of hops) concurrency[arm.name] = await Scenarios.concurrency(arm, upstream, settings.concurrency)

  log(`abort latency with ${settings.abort.live} live streams`)
  const abort: Record<string, Scenarios.AbortFigures> = {}
  for (const arm of services) {
    abort[arm.name] = await Scenarios.abortLatency(arm, upstream, settings.abort)
    log(`  ${arm.name}: p50 ${abort[arm.name]!.latency.p50} ms, p99 ${abort[arm.name]!.latency.p99} ms`)
  }

  log(`memory per open stream (${settings.memory.low} → ${settings.memory.high} streams)`)
  const memory: Record<string, Scenarios.MemoryFigures> = {}
  for (const arm of hops) {
    memory[arm.name] = await Scenarios.memoryPerStream(arm, upstream, settings.memory)
    log(`  ${arm.name}: ${memory[arm.name]!.kibPerStream} KiB per stream`)
  }

  const writes: Record<string, Array<Scenarios.WriteFigures>> = {}
  const postgres = services.find((arm) => arm.name === "C: Postgres")
  if (postgres !== undefined && stats !== undefined) {
    log("database writes per turn (waits for Postgres to publish its statistics)")
    writes[postgres.name] = await Scenarios.writesPerTurn(postgres, stats, settings.writes)
    await stats.end()
  }

  const results: Results = {
    date: new Date().toISOString(),
    command: `${databaseUrl === undefined ? "" : "BENCH_DATABASE_URL=… "}${quick ? "BENCH_QUICK=1 " : ""}npm run bench`,
    machine: {
      cpu: Os.cpus()[0]?.model ?? "unknown",
      cpus: Os.cpus().length,
      memoryGiB: Math.round(Os.totalmem() / 2 ** 30),
      node: process.version,
      os: `${Os.type()} ${Os.release()}`
    },
    quick,
    settings,
    arms: arms.map((arm) => arm.name),
    figures: { single, short, concurrency, abort, memory, writes }
  }
  writeFileSync("bench/results.json", `${JSON.stringify(results, null, 2)}\n`)
  writeMarkdown("BENCHMARKS.md", results)
  log("wrote bench/results.json and the table in BENCHMARKS.md")
}

const stopAll = async () => {
  await Promise.all(children.map((child) => child.stop()))
  for (const cleanup of cleanups) await cleanup().catch((error) => console.error(`cleanup: ${error}`))
}

for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => void stopAll().then(() => process.exit(130)))

run().then(
  () => stopAll().then(() => process.exit(0)),
  (error) => {
    console.error(error)
    return stopAll().then(() => process.exit(1))
  }
)
