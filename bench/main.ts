/**
 * `npm run bench`: this service's overhead against the raw stream, side by side, in one run.
 *
 * - A: the client reads the fake upstream directly (the limit);
 * - B: through a bare Node passthrough proxy (the cost of any Node hop);
 * - F: through `floor.ts`, the stack's floor: a relay built as the service is (Effect's HTTP
 *   server, a fiber per run, spec 95's spans, one framed event per chunk) that keeps nothing;
 * - C: through this service (`npm start`, `LLM_PROVIDER=openai` pointed at the upstream), on
 *   real Postgres when `BENCH_DATABASE_URL` is set (a server the benchmark may create databases
 *   on), and on the embedded PGlite.
 *
 * This process only orchestrates: the upstream, the proxy, the floor, the services and the clients
 * (`client.ts`: one probe process and `BENCH_CLIENTS` load processes) are processes of their own.
 *
 * Writes `bench/results.json` and the table in `BENCHMARKS.md`. `BENCH_QUICK=1` runs every
 * scenario small (a smoke test of the benchmark itself, not a measurement). `BENCH_SOAK_MS` sets
 * the soak's length (default 10 minutes, 20 s with `BENCH_QUICK=1`; 0 skips it).
 * `BENCH_SERVICE_DIR` starts the service from another checkout (default: the current directory).
 * `BENCH_ONLY=name,…` runs only those scenarios (`single`, `short`, `concurrency`, `cpu`, `tracing`, `auth`,
 * `ttftUnderLoad`, `abort`, `instances`, `memory`, `wire`, `writes`, `journal`, `idle`, `soak`)
 * and writes their figures to `bench/tmp/results.json` only.
 */
import { execFile } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import pg from "pg"
import { type Arm, direct, service, serviceEnv } from "./Arms.ts"
import { type Clients, startClients } from "./Clients.ts"
import { type Child, serviceDir, startListener, startNpmService } from "./Processes.ts"
import { writeMarkdown } from "./Report.ts"
import * as Scenarios from "./Scenarios.ts"

const quick = process.env.BENCH_QUICK === "1"
const databaseUrl = process.env.BENCH_DATABASE_URL
const soakMs = Number(process.env.BENCH_SOAK_MS ?? (quick ? 20_000 : 600_000))
/** `BENCH_ONLY=instances,abort`: only these scenarios (a look while working; nothing is written). */
const only = process.env.BENCH_ONLY?.split(",").map((name) => name.trim())

const settings = quick
  ? {
    single: { turns: 8, warmup: 2, plan: { tokens: 50, ttftMs: 20, tps: 200 } },
    short: { concurrency: 16, durationMs: 2000, slots: 400, plan: { tokens: 10, ttftMs: 0, tps: 0 } },
    concurrency: { levels: [25, 50], tps: 50, steadyMs: 2000, startsPerSecond: 100 },
    cpu: { streams: 50, tps: 50, steadyMs: 2000, startsPerSecond: 100 },
    ttftUnderLoad: { background: 40, tps: 50, probes: 10, pauseMs: 50, plan: { tokens: 5, ttftMs: 20, tps: 200 } },
    abort: { live: 16, aborts: 4, tps: 10 },
    instances: { streams: 10, tokens: 40, tps: 20, live: 16, aborts: 8 },
    memory: { low: 20, high: 100, tps: 1, settleMs: 1000 },
    writes: { tokens: [16, 1024], durationMs: 500, turns: 2 },
    wire: { tokens: 256, tps: 200 },
    journal: { turns: 2, tokens: 1024, tps: 4096 },
    idle: { warmupTurns: 50, concurrency: 8, idleMs: 6000 },
    soak: { durationMs: soakMs, concurrency: 8, idleMs: 3000 }
  }
  : {
    single: { turns: 60, warmup: 10, plan: { tokens: 50, ttftMs: 20, tps: 200 } },
    short: { concurrency: 32, durationMs: 8000, slots: 2000, plan: { tokens: 10, ttftMs: 0, tps: 0 } },
    concurrency: {
      // Steps of at most 50 up to 500, so "70 % of B" is not rounded to a whole level either way.
      levels: [25, 50, 100, 150, 200, 250, 300, 350, 400, 450, 500, 600, 700, 800, 1000, 1200, 1600, 2000],
      tps: 50,
      steadyMs: 4000,
      startsPerSecond: 100
    },
    cpu: { streams: 50, tps: 50, steadyMs: 6000, startsPerSecond: 100 },
    ttftUnderLoad: { background: 80, tps: 50, probes: 40, pauseMs: 100, plan: { tokens: 5, ttftMs: 20, tps: 200 } },
    abort: { live: 128, aborts: 32, tps: 10 },
    instances: { streams: 40, tokens: 100, tps: 20, live: 64, aborts: 32 },
    memory: { low: 100, high: 1000, tps: 1, settleMs: 3000 },
    writes: { tokens: [16, 1024], durationMs: 2000, turns: 4 },
    wire: { tokens: 1024, tps: 200 },
    journal: { turns: 8, tokens: 1024, tps: 4096 },
    idle: { warmupTurns: 200, concurrency: 8, idleMs: 15_000 },
    soak: { durationMs: soakMs, concurrency: 20, idleMs: 15_000 }
  }

export interface Results {
  readonly date: string
  readonly command: string
  readonly machine: { readonly cpu: string; readonly cpus: number; readonly memoryGiB: number; readonly node: string; readonly os: string }
  readonly quick: boolean
  readonly settings: typeof settings
  readonly arms: ReadonlyArray<string>
  /** Load client processes (besides the probe process). */
  readonly clientProcesses: number
  /** The arm the soak ran on (none when `BENCH_SOAK_MS=0`). */
  readonly soakArm: string | undefined
  /** Scenarios that failed on an arm, with the error. */
  readonly failures: Array<{ readonly scenario: string; readonly arm: string; readonly error: string }>
  readonly figures: {
    readonly single: Record<string, Scenarios.SingleStreamFigures>
    readonly short: Record<string, Scenarios.ThroughputFigures>
    readonly concurrency: Record<string, Scenarios.ConcurrencyFigures>
    readonly cpu: Record<string, Scenarios.LevelFigures>
    readonly ttftUnderLoad: Record<string, Scenarios.LoadedTtftFigures>
    readonly abort: Record<string, Scenarios.AbortFigures>
    /** Two instances on one Postgres (the Postgres arm and a second `npm start` on its database). */
    readonly instances: Record<string, Scenarios.InstancesFigures>
    readonly tracing: Record<string, Scenarios.TracingFigures>
    readonly authentication: Record<string, Scenarios.TwinFigures>
    readonly memory: Record<string, Scenarios.MemoryFigures>
    readonly writes: Record<string, Array<Scenarios.WriteFigures>>
    readonly wire: Record<string, Scenarios.WireFigures>
    readonly journal: Record<string, Scenarios.JournalFigures>
    readonly idle: Record<string, Scenarios.IdleMemoryFigures>
    readonly soak: Record<string, Scenarios.SoakFigures>
  }
}

const children: Array<{ stop: () => Promise<void> }> = []
const cleanups: Array<() => Promise<void>> = []

/** A database of its own on the server `BENCH_DATABASE_URL` names, dropped at the end. */
const benchDatabase = async (url: string, suffix: string) => {
  const name = `turn_runner_bench_${process.pid}_${suffix}`
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

/** An empty PGlite directory, removed at the end. */
const pgliteDirectory = () => {
  const dataDir = mkdtempSync(Path.join(Os.tmpdir(), "turn-runner-bench-"))
  cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }))
  return dataDir
}

const connect = async (url: string) => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  cleanups.unshift(() => client.end())
  return client
}

/** An API key for the bench's owner on a database, made with `npm run keys` as a user makes one. */
const createKey = (databaseEnv: Record<string, string>) =>
  new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ["--import", "tsx", "src/keys.ts", "create", "--owner", "bench"], {
      cwd: serviceDir,
      env: { ...process.env, ...databaseEnv }
    }, (error, stdout, stderr) => {
      const key = /trk_[A-Za-z0-9_-]+/.exec(stdout)?.[0]
      if (error !== null || key === undefined) reject(new Error(`npm run keys failed: ${stderr || stdout}`))
      else resolve(key)
    })
  })

/** The service through `npm start`, on a fresh database of the arm's kind. */
const startServiceArm = async (name: "C: Postgres" | "C: PGlite", upstream: Child, clients: Clients, suffix: string) => {
  const databaseEnv = name === "C: Postgres"
    ? { DATABASE_URL: await benchDatabase(databaseUrl!, suffix) }
    : { DATA_DIR: pgliteDirectory() }
  const child = await startNpmService(name, { ...serviceEnv(upstream), ...databaseEnv })
  children.push(child)
  return { arm: service(name, child, clients), url: databaseEnv.DATABASE_URL }
}

const run = async () => {
  const started = Date.now()
  const log = (message: string) => console.log(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${message}`)
  /**
   * One scenario on one arm. A scenario that fails (a service that breaks, a stream that never
   * ends) is logged and recorded, and the run goes on: its cells read "–".
   */
  const failures: Results["failures"] = []
  const attempt = async <T>(scenario: string, arm: string, measure: () => Promise<T>): Promise<T | undefined> => {
    if (only !== undefined && !only.includes(scenario)) return undefined
    try {
      return await measure()
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error)
      log(`  ${arm}: ${scenario} failed: ${message.split("\n")[0]}`)
      failures.push({ scenario, arm, error: message.slice(0, 2000) })
      await Scenarios.upstreamIdle(upstream, 30_000).catch(() => log("  (the upstream still has open streams)"))
      return undefined
    }
  }
  const each = async <T>(scenario: string, arms: ReadonlyArray<Arm>, measure: (arm: Arm) => Promise<T>, show: (figures: T) => string) => {
    const figures: Record<string, T> = {}
    for (const arm of arms) {
      const measured = await attempt(scenario, arm.name, () => measure(arm))
      if (measured === undefined) continue
      figures[arm.name] = measured
      log(`  ${arm.name}: ${show(measured)}`)
    }
    return figures
  }

  const upstream = await startListener("upstream", "bench/upstream.ts")
  children.push(upstream)
  const clients = await startClients()
  children.push(clients)
  const proxy = await startListener("proxy", "bench/proxy.ts", { UPSTREAM_URL: upstream.url.href })
  children.push(proxy)
  // With the heap and allocator settings `npm start` gives the service.
  const floor = await startListener("floor", "bench/floor.ts", { UPSTREAM_URL: upstream.url.href, MALLOC_ARENA_MAX: "2" }, ["--max-semi-space-size=2"])
  children.push(floor)
  const bench: Scenarios.Bench = { clients, upstream }
  const kinds: Array<"C: Postgres" | "C: PGlite"> = databaseUrl === undefined ? ["C: PGlite"] : ["C: Postgres", "C: PGlite"]
  if (databaseUrl === undefined) log("BENCH_DATABASE_URL is not set: the Postgres arm is skipped (see the README)")
  log(`the service runs as \`npm start\` in ${serviceDir}`)
  const running = await Promise.all(kinds.map((kind) => startServiceArm(kind, upstream, clients, "main")))
  const services = running.map(({ arm }) => arm)
  const statsUrl = running.find(({ url }) => url !== undefined)?.url
  const stats = statsUrl === undefined ? undefined : await connect(statsUrl)
  const arms: Array<Arm> = [direct("A", upstream.url, undefined, clients), direct("B", proxy.url, proxy, clients), direct("F", floor.url, floor, clients), ...services]
  const hops = arms.filter((arm) => arm.name !== "A")
  const postgres = services.find((arm) => arm.name === "C: Postgres")
  log(`arms: ${arms.map((arm) => arm.name).join(", ")}; ${clients.load} load client processes and a probe client process`)

  log("one stream at a time, arms interleaved")
  const single = (await attempt("single", "all", () => Scenarios.singleStream(arms, bench, settings.single))) ?? {}

  log("short turns per second")
  const short = await each("short", arms, async (arm) => {
    const figures = await Scenarios.shortTurns(arm, bench, settings.short)
    await Scenarios.upstreamIdle(upstream)
    return figures
  }, (figures) => `${figures.turnsPerSecond} turns/s`)

  log(`concurrent streams at ${settings.concurrency.tps} tokens/s (A: the harness's own ceiling)`)
  const concurrency = await each("concurrency", arms, (arm) => Scenarios.concurrency(arm, bench, settings.concurrency), (figures) => `${figures.highest} streams`)

  log(`CPU per delivered token, ${settings.cpu.streams} streams at ${settings.cpu.tps} tokens/s`)
  const cpu = await each("cpu", hops, (arm) => Scenarios.cpuPerToken(arm, bench, settings.cpu), (figures) => `${figures.cpuMicrosPerToken} µs`)

  log(`time to first token with ${settings.ttftUnderLoad.background} streams at ${settings.ttftUnderLoad.tps} tokens/s open`)
  const ttftUnderLoad = await each(
    "ttftUnderLoad",
    arms,
    (arm) => Scenarios.ttftUnderLoad(arm, bench, settings.ttftUnderLoad),
    (figures) => `p50 ${figures.ttft.p50} ms, p99 ${figures.ttft.p99} ms (${figures.background} streams open)`
  )

  log(`abort latency with ${settings.abort.live} live streams`)
  const abort = await each(
    "abort",
    services,
    (arm) => Scenarios.abortLatency(arm, bench, settings.abort),
    (figures) => `p50 ${figures.latency.p50} ms, p99 ${figures.latency.p99} ms`
  )

  const instances: Record<string, Scenarios.InstancesFigures> = {}
  const postgresUrl = running.find(({ arm }) => arm.name === "C: Postgres")?.url
  if (postgres !== undefined && postgresUrl !== undefined) {
    log("two instances on one Postgres: a second `npm start` on the Postgres arm's database")
    const figures = await attempt("instances", postgres.name, async () => {
      const second = await startNpmService("C: Postgres, second instance", { ...serviceEnv(upstream), DATABASE_URL: postgresUrl })
      children.push(second)
      try {
        return await Scenarios.severalInstances(postgres, service("C: Postgres, second instance", second, clients), bench, settings.instances)
      } finally {
        await second.stop()
      }
    })
    if (figures !== undefined) {
      instances[postgres.name] = figures
      log(`  follower elsewhere ${JSON.stringify(figures.followerElsewhere)}, on the owner ${JSON.stringify(figures.followerHere)}; abort from elsewhere ${JSON.stringify(figures.abortElsewhere)}, on the owner ${JSON.stringify(figures.abortHere)}; ${figures.followersLost} followers lost tokens`)
    }
  }

  log(`memory per open stream (${settings.memory.low} → ${settings.memory.high} streams)`)
  const memory = await each("memory", hops, (arm) => Scenarios.memoryPerStream(arm, bench, settings.memory), (figures) => `${figures.kibPerStream} KiB per stream`)

  log(`bytes on the wire per delta (${settings.wire.tokens} tokens at ${settings.wire.tps} tokens/s)`)
  const wire = await each(
    "wire",
    services,
    (arm) => Scenarios.wireBytes(arm, bench, settings.wire),
    (figures) => `gzip: ${figures.gzip.bytesPerDelta} B (${figures.gzip.encoding}), identity: ${figures.identity.bytesPerDelta} B`
  )

  const writes: Record<string, Array<Scenarios.WriteFigures>> = {}
  if (postgres !== undefined && stats !== undefined) {
    log("database writes per turn (waits for Postgres to publish its statistics)")
    const figures = await attempt("writes", postgres.name, () => Scenarios.writesPerTurn(postgres, bench, stats, settings.writes))
    if (figures !== undefined) writes[postgres.name] = figures
  }

  const tracing: Record<string, Scenarios.TracingFigures> = {}
  const untraced = postgres ?? services[0]
  if (untraced !== undefined) {
    log("the cost of tracing: short turns beside a twin exporting its spans over OTLP/HTTP")
    const figures = await attempt("tracing", untraced.name, async () => {
      const sink = await startListener("otlp sink", "bench/otlp-sink.ts")
      children.push(sink)
      const databaseEnv = untraced.name === "C: Postgres"
        ? { DATABASE_URL: await benchDatabase(databaseUrl!, "traced") }
        : { DATA_DIR: pgliteDirectory() }
      const name = `${untraced.name}, traced`
      const twin = await startNpmService(name, {
        ...serviceEnv(upstream),
        ...databaseEnv,
        OTEL_EXPORTER_OTLP_ENDPOINT: sink.url.href,
        OTEL_BSP_SCHEDULE_DELAY: "1000"
      })
      children.push(twin)
      try {
        return await Scenarios.tracingCost(untraced, service(name, twin, clients), bench, sink, settings.short)
      } finally {
        await twin.stop()
        await sink.stop()
      }
    })
    if (figures !== undefined) {
      tracing[untraced.name] = figures
      log(`  traced ${figures.with.turnsPerSecond} turns/s, ${figures.with.cpuMsPerTurn} ms CPU per turn; untraced ${figures.without.turnsPerSecond} turns/s, ${figures.without.cpuMsPerTurn} ms; ${figures.exportedBytesPerTurn} B exported per turn`)
    }
  }

  const authentication: Record<string, Scenarios.TwinFigures> = {}
  for (const arm of services) {
    log(`the cost of authentication (${arm.name}): short turns beside a twin with AUTH=api_key`)
    const figures = await attempt("auth", arm.name, async () => {
      const databaseEnv = arm.name === "C: Postgres"
        ? { DATABASE_URL: await benchDatabase(databaseUrl!, "auth") }
        : { DATA_DIR: pgliteDirectory() }
      const key = await createKey(databaseEnv)
      const name = `${arm.name}, AUTH=api_key`
      const twin = await startNpmService(name, { ...serviceEnv(upstream), ...databaseEnv, AUTH: "api_key" })
      children.push(twin)
      try {
        return await Scenarios.besideTwin(arm, service(name, twin, clients, `Bearer ${key}`), bench, settings.short)
      } finally {
        await twin.stop()
      }
    })
    if (figures !== undefined) {
      authentication[arm.name] = figures
      log(`  AUTH=api_key ${figures.with.turnsPerSecond} turns/s, ${figures.with.cpuMsPerTurn} ms CPU per turn; AUTH=none ${figures.without.turnsPerSecond} turns/s, ${figures.without.cpuMsPerTurn} ms`)
    }
  }

  log("stopping the services; next, each on a fresh database: journal size, idle memory, soak")
  for (const arm of services) await arm.process!.stop()
  const journal: Record<string, Scenarios.JournalFigures> = {}
  const idle: Record<string, Scenarios.IdleMemoryFigures> = {}
  const soak: Record<string, Scenarios.SoakFigures> = {}
  const soakArm = soakMs <= 0 ? undefined : kinds[0]!
  const record = <T>(figures: Record<string, T>, kind: string, measured: T | undefined, show: (figures: T) => string) => {
    if (measured === undefined) return
    figures[kind] = measured
    log(`  ${kind}: ${show(measured)}`)
  }
  for (const kind of kinds) {
    const { arm, url } = await startServiceArm(kind, upstream, clients, "fresh")
    if (url !== undefined) {
      const sql = await connect(url)
      record(
        journal,
        kind,
        await attempt("journal", kind, () => Scenarios.journalBytes(arm, bench, sql, settings.journal)),
        (figures) => `journal: ${figures.bytesPerRow} bytes per row (${figures.rows} rows, ${figures.deltaRows} deltas, ${figures.failedTurns} turns failed)`
      )
    }
    record(
      idle,
      kind,
      await attempt("idle", kind, () => Scenarios.idleMemory(arm, bench, settings.idle)),
      (figures) => `\`npm start\` idle after ${figures.warmupTurns} turns: ${figures.rssMiB} MiB in ${figures.processes.length} processes`
    )
    if (kind === soakArm) {
      log(`  ${kind}: soak of ${settings.soak.durationMs / 1000} s, ${settings.soak.concurrency} clients`)
      record(
        soak,
        kind,
        await attempt("soak", kind, () => Scenarios.soak(arm, bench, settings.soak)),
        (figures) => `soak: ${figures.beforeMiB} → ${figures.afterMiB} MiB (peak ${figures.peakMiB} MiB)`
      )
    }
    await arm.process!.stop()
  }

  const results: Results = {
    date: new Date().toISOString(),
    command: `${databaseUrl === undefined ? "" : "BENCH_DATABASE_URL=… "}${quick ? "BENCH_QUICK=1 " : ""}${
      process.env.BENCH_SOAK_MS === undefined ? "" : `BENCH_SOAK_MS=${soakMs} `
    }npm run bench`,
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
    clientProcesses: clients.load,
    soakArm,
    failures,
    figures: { single, short, concurrency, cpu, ttftUnderLoad, abort, instances, tracing, authentication, memory, writes, wire, journal, idle, soak }
  }
  if (only !== undefined) {
    mkdirSync("bench/tmp", { recursive: true })
    writeFileSync("bench/tmp/results.json", `${JSON.stringify(results, null, 2)}\n`)
    return log(`BENCH_ONLY=${only.join(",")}: the figures are in bench/tmp/results.json (BENCHMARKS.md is not written)`)
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
