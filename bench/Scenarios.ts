/**
 * What the benchmark measures, one function per figure. Each takes the arms it compares and
 * returns plain numbers (milliseconds unless named otherwise); `main.ts` runs them and writes
 * the report.
 */
import type { Arm, Plan } from "./Arms.ts"
import type { Child } from "./Processes.ts"
import { cpuMicros, rssBytes } from "./Processes.ts"
import { json, micros, type OpenStream, type StreamResult } from "./FrameClient.ts"
import * as Http from "node:http"

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** The value at quantile `q` of values sorted in ascending order. */
const at = (sorted: ReadonlyArray<number>, q: number): number =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!

const quantile = (values: ReadonlyArray<number>, q: number): number => at([...values].sort((a, b) => a - b), q)

const round = (value: number, digits = 3) => Number.isFinite(value) ? Number(value.toFixed(digits)) : null

export interface Spread {
  readonly p50: number | null
  readonly p99: number | null
  readonly max: number | null
  readonly n: number
}

export const spread = (values: ReadonlyArray<number>): Spread => {
  const sorted = [...values].sort((a, b) => a - b)
  return { p50: round(at(sorted, 0.5)), p99: round(at(sorted, 0.99)), max: round(at(sorted, 1)), n: sorted.length }
}

const gapsOf = (result: StreamResult) => result.tokens.slice(1).map((at, i) => (at - result.tokens[i]!) / 1000)

/** Problems with one stream: an error, a missing end, fewer token frames than tokens sent. */
const lostOf = (result: StreamResult, plan: Plan) =>
  result.error !== undefined || !result.ended ? Math.max(1, plan.tokens - result.tokens.length) : plan.tokens - result.tokens.length

const agent = new Http.Agent({ keepAlive: true })

/** Waits until the upstream has no open answer (the previous scenario's streams are all closed). */
export const upstreamIdle = async (upstream: Child, timeoutMs = 60_000) => {
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    const { body } = await json(agent, new URL("/open", upstream.url), "GET")
    if (body.open === 0) return
    await sleep(100)
  }
  throw new Error("the upstream still has open streams")
}

// ---------------------------------------------------------------------------------------------

export interface SingleStreamFigures {
  readonly ttft: Spread
  readonly gap: Spread
  readonly stalls: number
  readonly lost: number
  readonly errors: ReadonlyArray<string>
}

/**
 * One stream at a time, the arms interleaved turn by turn (their order rotating), so drift on the
 * machine touches every arm alike. The first `warmup` turns of each arm are not counted.
 */
export const singleStream = async (
  arms: ReadonlyArray<Arm>,
  options: { readonly turns: number; readonly warmup: number; readonly plan: Plan }
): Promise<Record<string, SingleStreamFigures>> => {
  const { plan } = options
  const total = options.turns + options.warmup
  for (const arm of arms) await arm.prepare(total)
  const ttft = new Map(arms.map((arm) => [arm.name, [] as Array<number>]))
  const gaps = new Map(arms.map((arm) => [arm.name, [] as Array<number>]))
  const lost = new Map(arms.map((arm) => [arm.name, 0]))
  const errors = new Map(arms.map((arm) => [arm.name, [] as Array<string>]))
  for (let turn = 0; turn < total; turn++) {
    for (let k = 0; k < arms.length; k++) {
      const arm = arms[(turn + k) % arms.length]!
      const result = await arm.stream(turn, plan).result
      if (turn < options.warmup) continue
      if (result.error !== undefined) errors.get(arm.name)!.push(result.error)
      lost.set(arm.name, lost.get(arm.name)! + lostOf(result, plan))
      if (result.tokens.length > 0) ttft.get(arm.name)!.push((result.tokens[0]! - result.sentAt) / 1000)
      gaps.get(arm.name)!.push(...gapsOf(result))
    }
  }
  const stallMs = (2 * 1000) / plan.tps
  return Object.fromEntries(arms.map((arm) => [arm.name, {
    ttft: spread(ttft.get(arm.name)!),
    gap: spread(gaps.get(arm.name)!),
    stalls: gaps.get(arm.name)!.filter((gap) => gap > stallMs).length,
    lost: lost.get(arm.name)!,
    errors: [...new Set(errors.get(arm.name)!)].slice(0, 3)
  }]))
}

// ---------------------------------------------------------------------------------------------

export interface ThroughputFigures {
  readonly turnsPerSecond: number | null
  readonly turns: number
  readonly failed: number
  readonly cpuMsPerTurn: number | null
  readonly errors: ReadonlyArray<string>
}

/** Short turns back to back from `concurrency` clients for `durationMs`. */
export const shortTurns = async (
  arm: Arm,
  options: { readonly concurrency: number; readonly durationMs: number; readonly plan: Plan; readonly slots: number }
): Promise<ThroughputFigures> => {
  await arm.prepare(options.slots)
  let next = 0
  let turns = 0
  let failed = 0
  const errors = new Set<string>()
  const cpuBefore = arm.process ? cpuMicros(arm.process.process.pid!) : 0
  const started = micros()
  const until = started + options.durationMs * 1000
  const client = async () => {
    while (micros() < until) {
      const result = await arm.stream(next++, options.plan).result
      if (result.error === undefined && result.ended && result.tokens.length === options.plan.tokens) turns++
      else {
        failed++
        if (result.error !== undefined) errors.add(result.error)
      }
    }
  }
  await Promise.all(Array.from({ length: options.concurrency }, client))
  const elapsed = (micros() - started) / 1_000_000
  const cpu = arm.process ? cpuMicros(arm.process.process.pid!) - cpuBefore : Number.NaN
  return {
    turnsPerSecond: round(turns / elapsed, 1),
    turns,
    failed,
    cpuMsPerTurn: round(cpu / 1000 / turns),
    errors: [...errors].slice(0, 3)
  }
}

// ---------------------------------------------------------------------------------------------

export interface LevelFigures {
  readonly streams: number
  readonly passed: boolean
  readonly stalls: number
  readonly lost: number
  readonly failedStreams: number
  readonly gap: Spread
  readonly cpuMicrosPerToken: number | null
  readonly errors: ReadonlyArray<string>
}

/**
 * Waits until every stream has its first token (or has ended), for at most `timeoutMs`; returns
 * how many are streaming. An overloaded arm reaches fewer than asked, and the figure says so.
 */
const streaming = async (streams: ReadonlyArray<OpenStream>, timeoutMs: number) => {
  let count = 0
  const each = streams.map((stream) => Promise.race([stream.firstToken.then(() => count++), stream.result]))
  await Promise.race([Promise.all(each), sleep(timeoutMs)])
  return count
}

/** Starts `count` streams at `startsPerSecond`; resolves with each once it ended. */
const openMany = async (arm: Arm, count: number, startsPerSecond: number, planOf: (i: number) => Plan, firstSlot = 0) => {
  const streams: Array<OpenStream> = []
  const started = Date.now()
  for (let i = 0; i < count; i++) {
    const due = started + (i * 1000) / startsPerSecond
    if (due > Date.now()) await sleep(due - Date.now())
    streams.push(arm.stream(firstSlot + i, planOf(i)))
  }
  return streams
}

/**
 * `streams` concurrent streams at `tps`, started at `startsPerSecond` and all open together for
 * `steadyMs`. A stall is a gap between two tokens of more than twice the pace, counted while every
 * stream is open (from half a second after the last first token until the first stream ends); a
 * lost frame is a token the client never saw.
 */
export const concurrencyLevel = async (
  arm: Arm,
  options: { readonly streams: number; readonly tps: number; readonly steadyMs: number; readonly startsPerSecond: number }
): Promise<LevelFigures> => {
  const rampMs = (options.streams * 1000) / options.startsPerSecond
  const plan: Plan = { tokens: Math.ceil((options.tps * (rampMs + options.steadyMs + 1000)) / 1000), ttftMs: 0, tps: options.tps }
  await arm.prepare(options.streams)
  const cpuBefore = arm.process ? cpuMicros(arm.process.process.pid!) : 0
  const streams = await openMany(arm, options.streams, options.startsPerSecond, () => plan)
  const results = await Promise.all(streams.map((stream) => stream.result))
  const cpu = arm.process ? cpuMicros(arm.process.process.pid!) - cpuBefore : Number.NaN
  const complete = results.filter((result) => result.tokens.length > 0)
  const windowStart = Math.max(...complete.map((result) => result.tokens[0]!)) + 500_000
  const windowEnd = Math.min(...complete.map((result) => result.tokens[result.tokens.length - 1]!))
  const gaps: Array<number> = []
  for (const result of complete) {
    for (let i = 1; i < result.tokens.length; i++) {
      const at = result.tokens[i]!
      if (at >= windowStart && at <= windowEnd) gaps.push((at - result.tokens[i - 1]!) / 1000)
    }
  }
  const stalls = gaps.filter((gap) => gap > (2 * 1000) / options.tps).length
  const lost = results.reduce((sum, result) => sum + lostOf(result, plan), 0)
  const failedStreams = results.filter((result) => result.error !== undefined || !result.ended).length
  const tokens = results.reduce((sum, result) => sum + result.tokens.length, 0)
  return {
    streams: options.streams,
    passed: stalls === 0 && lost === 0 && failedStreams === 0 && windowEnd > windowStart,
    stalls,
    lost,
    failedStreams,
    gap: spread(gaps),
    cpuMicrosPerToken: round(cpu / tokens, 1),
    errors: [...new Set(results.flatMap((result) => result.error === undefined ? [] : [result.error]))].slice(0, 3)
  }
}

/** Levels in order until the first that fails: the highest that passed is the arm's figure. */
export const concurrency = async (
  arm: Arm,
  upstream: Child,
  options: { readonly levels: ReadonlyArray<number>; readonly tps: number; readonly steadyMs: number; readonly startsPerSecond: number }
) => {
  const levels: Array<LevelFigures> = []
  for (const streams of options.levels) {
    const level = await concurrencyLevel(arm, { ...options, streams })
    levels.push(level)
    console.log(`  ${arm.name} ${streams} streams: ${level.passed ? "ok" : "failed"} (stalls ${level.stalls}, lost ${level.lost}, gap p99 ${level.gap.p99} ms, max ${level.gap.max} ms, ${level.cpuMicrosPerToken} µs CPU/token)`)
    await upstreamIdle(upstream)
    if (!level.passed) break
  }
  const passed = levels.filter((level) => level.passed)
  const highest = passed.length === 0 ? 0 : passed[passed.length - 1]!.streams
  return { highest, testedUpTo: options.levels[options.levels.length - 1]!, allPassed: passed.length === options.levels.length, levels }
}

// ---------------------------------------------------------------------------------------------

export interface AbortFigures {
  readonly live: number
  readonly aborts: number
  /** Abort request until its answer, which comes once the run, its steps and generation are closed. */
  readonly latency: Spread
  /** Upstream connection closed, relative to the abort's answer (negative: before it). */
  readonly upstreamClosedAfterAnswer: Spread
  readonly notTerminal: number
  readonly upstreamNotClosed: number
}

const isClosed = (status: unknown) => status !== "running" && status !== "pending"

/**
 * `live` streams stay open at `tps` while `aborts` more, opened beside them, are aborted one at a
 * time; each abort's answer is checked (run, steps and generation all closed) and the upstream
 * says when that request's connection closed.
 */
export const abortLatency = async (
  arm: Arm,
  upstream: Child,
  options: { readonly live: number; readonly aborts: number; readonly tps: number }
): Promise<AbortFigures> => {
  const count = options.live + options.aborts
  const tag = `abort-${Date.now()}`
  await arm.prepare(count)
  const streams = await openMany(arm, count, 100, (i) => ({ tokens: 1_000_000, ttftMs: 0, tps: options.tps, id: `${tag}-${i}` }))
  const live = await streaming(streams, 120_000)
  await sleep(1000)
  const latencies: Array<number> = []
  const closedAfter: Array<number> = []
  let notTerminal = 0
  let upstreamNotClosed = 0
  for (let i = 0; i < options.aborts; i++) {
    const first = await Promise.race([streams[i]!.first, streams[i]!.result.then(() => "{}")])
    const runId = JSON.parse(first).runId as string | undefined
    if (runId === undefined) {
      notTerminal++
      continue
    }
    const sentAt = micros()
    const answer = await arm.abort!(runId)
    const answeredAt = micros()
    latencies.push((answeredAt - sentAt) / 1000)
    const { run, steps, generation } = answer.body ?? {}
    if (answer.status !== 200 || !isClosed(run?.status) || !steps?.every((step: any) => isClosed(step.status)) || !isClosed(generation?.status)) {
      notTerminal++
    }
    await sleep(20)
    const { body } = await json(agent, new URL(`/closed/${tag}-${i}`, upstream.url), "GET")
    if (body.closedAt === null) upstreamNotClosed++
    else closedAfter.push((body.closedAt - answeredAt) / 1000)
    await sleep(30)
  }
  for (const stream of streams) stream.destroy()
  await upstreamIdle(upstream)
  return {
    live: live - options.aborts,
    aborts: options.aborts,
    latency: spread(latencies),
    upstreamClosedAfterAnswer: spread(closedAfter),
    notTerminal,
    upstreamNotClosed
  }
}

// ---------------------------------------------------------------------------------------------

export interface MemoryFigures {
  readonly rssAtLowMiB: number | null
  readonly rssAtHighMiB: number | null
  /** Streams open (their first token arrived) at each reading: fewer than asked when the arm could not start them in 2 minutes. */
  readonly low: number
  readonly high: number
  /** (RSS at `high` − RSS at `low`) / (high − low). */
  readonly kibPerStream: number | null
}

const settledRss = async (pid: number) => {
  await sleep(3000)
  const samples: Array<number> = []
  for (let i = 0; i < 5; i++) {
    samples.push(rssBytes(pid))
    await sleep(200)
  }
  return quantile(samples, 0.5)
}

/** Resident memory of the arm's process with `low` and then `high` slow streams open. */
export const memoryPerStream = async (
  arm: Arm,
  upstream: Child,
  options: { readonly low: number; readonly high: number; readonly tps: number }
): Promise<MemoryFigures> => {
  const pid = arm.process!.process.pid!
  await arm.prepare(options.high)
  const plan: Plan = { tokens: 1_000_000, ttftMs: 0, tps: options.tps }
  const first = await openMany(arm, options.low, 100, () => plan)
  const lowCount = await streaming(first, 120_000)
  const low = await settledRss(pid)
  const rest = await openMany(arm, options.high - options.low, 100, () => plan, options.low)
  const highCount = lowCount + await streaming(rest, 120_000)
  const high = await settledRss(pid)
  for (const stream of [...first, ...rest]) stream.destroy()
  await upstreamIdle(upstream)
  return {
    rssAtLowMiB: round(low / 2 ** 20, 1),
    rssAtHighMiB: round(high / 2 ** 20, 1),
    low: lowCount,
    high: highCount,
    kibPerStream: round((high - low) / (highCount - lowCount) / 1024, 1)
  }
}

// ---------------------------------------------------------------------------------------------

export interface WriteFigures {
  readonly tokens: number
  readonly turns: number
  readonly durationMs: number
  /** Per turn: committed transactions, and rows inserted, updated and deleted, from `pg_stat_database`, less the same time with no turns. */
  readonly commitsPerTurn: number | null
  readonly rowsWrittenPerTurn: number | null
  /** Per turn and table: rows inserted + updated + deleted, from `pg_stat_user_tables`. */
  readonly rowsPerTable: Record<string, number | null>
}

interface Counters {
  readonly commits: number
  readonly rows: number
  readonly tables: Record<string, number>
}

/** A backend publishes its statistics within `PGSTAT_IDLE_INTERVAL` (10 s) of going idle. */
const statsSettleMs = 11_000

/**
 * Turns of the same duration with a short and a long answer, on real Postgres, counted by the
 * server itself: `pg_stat_database` and `pg_stat_user_tables` of the service's own database.
 */
export const writesPerTurn = async (
  arm: Arm,
  stats: { query: (sql: string) => Promise<{ rows: Array<any> }> },
  options: { readonly tokens: ReadonlyArray<number>; readonly durationMs: number; readonly turns: number }
): Promise<Array<WriteFigures>> => {
  const read = async (): Promise<Counters> => {
    await stats.query("SELECT pg_stat_clear_snapshot()")
    const database = await stats.query(
      "SELECT xact_commit::float8 AS commits, (tup_inserted + tup_updated + tup_deleted)::float8 AS rows FROM pg_stat_database WHERE datname = current_database()"
    )
    const tables = await stats.query(
      "SELECT relname, (n_tup_ins + n_tup_upd + n_tup_del)::float8 AS rows FROM pg_stat_user_tables"
    )
    return {
      commits: database.rows[0].commits,
      rows: database.rows[0].rows,
      tables: Object.fromEntries(tables.rows.map((row) => [row.relname, row.rows]))
    }
  }
  /** The counters' change over a phase: `turns` turns of `tokens` tokens, then the settling. */
  const phase = async (tokens: number, turns: number) => {
    await arm.prepare(turns)
    await sleep(statsSettleMs)
    const before = await read()
    const plan: Plan = { tokens, ttftMs: 0, tps: (tokens * 1000) / options.durationMs }
    const started = Date.now()
    const results = await Promise.all(Array.from({ length: turns }, (_, slot) => arm.stream(slot, plan).result))
    const failed = results.filter((result) => result.error !== undefined || result.tokens.length !== tokens)
    if (failed.length > 0) throw new Error(`writesPerTurn: ${failed.length} turns failed: ${failed[0]!.error}`)
    await sleep(Math.max(0, options.durationMs - (Date.now() - started)) + statsSettleMs)
    const after = await read()
    return {
      commits: after.commits - before.commits,
      rows: after.rows - before.rows,
      tables: Object.fromEntries(Object.keys(after.tables).map((table) => [table, after.tables[table]! - (before.tables[table] ?? 0)]))
    }
  }
  // What the service writes with no turn at all (the sweeper's ticks) over a phase's length.
  const idle = await phase(0, 0)
  const figures: Array<WriteFigures> = []
  for (const tokens of options.tokens) {
    const counted = await phase(tokens, options.turns)
    const perTurn = (value: number) => round(value / options.turns, 1)
    const after = { commits: counted.commits - idle.commits, rows: counted.rows - idle.rows, tables: counted.tables }
    const before = { commits: 0, rows: 0, tables: idle.tables }
    figures.push({
      tokens,
      turns: options.turns,
      durationMs: options.durationMs,
      commitsPerTurn: perTurn(after.commits - before.commits),
      rowsWrittenPerTurn: perTurn(after.rows - before.rows),
      rowsPerTable: Object.fromEntries(Object.keys(after.tables).filter((table) => after.tables[table] !== (before.tables[table] ?? 0)).map((
        table
      ) => [table, perTurn(after.tables[table]! - (before.tables[table] ?? 0))]))
    })
  }
  return figures
}
