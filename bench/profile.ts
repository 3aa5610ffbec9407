/**
 * `npm run bench:profile -- <paced|short> [streams]`: the service under one of the benchmark's loads with
 * V8's CPU profiler on, for finding where its time goes. `paced`: 50 streams (or `streams`) at 50 tokens/s;
 * `short`: 10-token turns back to back from 16 clients. The service runs on `BENCH_DATABASE_URL`
 * as it is (use a scratch database) or on a fresh PGlite directory; the profile lands in
 * `bench/profiles/<load>/` (open it in Chrome DevTools or speedscope). `--no-profile` runs the same load
 * without the profiler, for its figures alone.
 */
import { mkdtempSync } from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { service, serviceEnv } from "./Arms.ts"
import { startClients } from "./Clients.ts"
import { startListener, startService } from "./Processes.ts"
import * as Scenarios from "./Scenarios.ts"

const load = process.argv[2] === "short" ? "short" : "paced"
const streams = Number(process.argv.slice(3).find((arg) => /^\d+$/.test(arg)) ?? 50)
/** `--no-profile`: the same load without the profiler, for its figures alone. */
const profiling = !process.argv.includes("--no-profile")
const dir = Path.resolve("bench/profiles", load)
const upstream = await startListener("upstream", "bench/upstream.ts")
const database = process.env.BENCH_DATABASE_URL === undefined
  ? { DATA_DIR: mkdtempSync(Path.join(Os.tmpdir(), "turn-runner-profile-")) }
  : { DATABASE_URL: process.env.BENCH_DATABASE_URL }
const child = await startService("C", { ...serviceEnv(upstream), ...database }, profiling ? ["--cpu-prof", `--cpu-prof-dir=${dir}`] : [])
const clients = await startClients()
const arm = service("C", child, clients)
const bench = { clients, upstream }
try {
  const figures = load === "paced"
    ? await Scenarios.concurrencyLevel(arm, bench, { streams, tps: 50, steadyMs: 8000, startsPerSecond: 100 })
    : await Scenarios.shortTurns(arm, bench, { concurrency: 16, durationMs: 8000, slots: 400, plan: { tokens: 10, ttftMs: 0, tps: 0 } })
  console.log(JSON.stringify(figures))
} finally {
  await child.stop()
  await clients.stop()
  await upstream.stop()
}
if (profiling) console.log(`profile written to ${dir}`)
