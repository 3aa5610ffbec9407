/**
 * What the benchmark measures, one function per figure. Each takes the arm (or arms) it measures
 * and the client processes that open the streams (`Clients.ts`), and returns plain numbers
 * (milliseconds unless named otherwise); `main.ts` runs them and writes the report. Every time
 * is `process.hrtime` in microseconds, read by whichever process saw the event: the machine's
 * one monotonic clock.
 */
import type { Arm, Plan } from "./Arms.ts"
import type { Clients } from "./Clients.ts"
import { json, micros, type StreamResult } from "./FrameClient.ts"
import type { Child } from "./Processes.ts"
import { commandOf, machineBusyMicros, rssBytes } from "./Processes.ts"
import * as Http from "node:http"

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** The value at quantile `q` of values sorted in ascending order. */
const at = (sorted: ReadonlyArray<number>, q: number): number =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!

const quantile = (values: ReadonlyArray<number>, q: number): number => at([...values].sort((a, b) => a - b), q)

const round = (value: number, digits = 3) => Number.isFinite(value) ? Number(value.toFixed(digits)) : null

const mib = (bytes: number) => round(bytes / 2 ** 20, 1)

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

const ttftOf = (result: StreamResult) => (result.tokens[0]! - result.sentAt) / 1000

/** Problems with one stream: an error, a missing end, fewer token frames than tokens sent. */
const lostOf = (result: StreamResult, plan: Plan) =>
  result.error !== undefined || !result.ended ? Math.max(1, plan.tokens - result.tokens.length) : plan.tokens - result.tokens.length

const errorsOf = (results: ReadonlyArray<StreamResult>) =>
  [...new Set(results.flatMap((result) => result.error === undefined ? [] : [result.error]))].slice(0, 3)

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

/** What a scenario needs besides its arm: the client processes and the upstream. */
export interface Bench {
  readonly clients: Clients
  readonly upstream: Child
}

type CpuReader = "arm" | "upstream" | "clients" | "machine"

/**
 * Reads CPU time every `everyMs` from the orchestrator, which opens no stream itself: the arm's
 * processes, the upstream, the client processes and the whole machine. `between(from, to)` gives the readings
 * taken within `[from, to]` (µs on the monotonic clock): the first and last instants and the CPU
 * each used in between.
 */
const cpuSampler = (readers: Record<CpuReader, () => number>, everyMs = 100) => {
  const samples: Array<{ readonly at: number; readonly cpu: Record<string, number> }> = []
  const take = () => samples.push({ at: micros(), cpu: Object.fromEntries(Object.entries(readers).map(([name, read]) => [name, read()])) })
  take()
  const timer = setInterval(take, everyMs)
  return {
    stop: () => {
      clearInterval(timer)
      take()
    },
    between: (from: number, to: number) => {
      const inside = samples.filter((sample) => sample.at >= from && sample.at <= to)
      if (inside.length < 2) return undefined
      const first = inside[0]!
      const last = inside[inside.length - 1]!
      return {
        from: first.at,
        to: last.at,
        micros: Object.fromEntries(Object.keys(readers).map((name) => [name, last.cpu[name]! - first.cpu[name]!])) as Record<CpuReader, number>
      }
    }
  }
}

const cpuReaders = (arm: Arm, bench: Bench) => ({
  arm: () => arm.process?.cpuMicros() ?? Number.NaN,
  upstream: () => bench.upstream.cpuMicros(),
  clients: () => bench.clients.cpuMicros(),
  machine: machineBusyMicros
})

// ---------------------------------------------------------------------------------------------

export interface SingleStreamFigures {
  readonly ttft: Spread
  readonly gap: Spread
  readonly stalls: number
  readonly lost: number
  readonly errors: ReadonlyArray<string>
}

/**
 * One stream at a time from the probe process, the arms interleaved turn by turn (their order
 * rotating), so drift on the machine touches every arm alike. The first `warmup` turns of each
 * arm are not counted. A stall is a gap over twice the pace.
 */
export const singleStream = async (
  arms: ReadonlyArray<Arm>,
  { clients }: Bench,
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
      const result = await clients.stream(arm, turn, plan)
      if (turn < options.warmup) continue
      if (result.error !== undefined) errors.get(arm.name)!.push(result.error)
      lost.set(arm.name, lost.get(arm.name)! + lostOf(result, plan))
      if (result.tokens.length > 0) ttft.get(arm.name)!.push(ttftOf(result))
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

/** Short turns back to back from `concurrency` clients (spread over the load processes) for `durationMs`; arm C uses a fresh chat per turn. */
export const shortTurns = async (
  arm: Arm,
  { clients }: Bench,
  options: { readonly concurrency: number; readonly durationMs: number; readonly plan: Plan; readonly slots: number }
): Promise<ThroughputFigures> => {
  await arm.prepare(options.slots)
  const cpuBefore = arm.process?.cpuMicros() ?? Number.NaN
  const result = await clients.turns(arm, options)
  const cpu = (arm.process?.cpuMicros() ?? Number.NaN) - cpuBefore
  const elapsed = (result.endedAt - result.startedAt) / 1_000_000
  return {
    turnsPerSecond: round(result.turns / elapsed, 1),
    turns: result.turns,
    failed: result.failed,
    cpuMsPerTurn: round(cpu / 1000 / result.turns),
    errors: result.errors
  }
}

export interface TwinFigures {
  /** The same short turns on the arm as it runs everywhere else… */
  readonly without: ThroughputFigures
  /** …and on a twin of it with one thing on (an exporter, authentication). */
  readonly with: ThroughputFigures
  /** The twin's CPU per turn over the arm's, in ms. */
  readonly addedCpuMsPerTurn: number | null
}

/** Short turns on an arm, then on its twin, one after the other on the same machine. */
export const besideTwin = async (arm: Arm, twin: Arm, bench: Bench, options: Parameters<typeof shortTurns>[2]): Promise<TwinFigures> => {
  const without = await shortTurns(arm, bench, options)
  await upstreamIdle(bench.upstream)
  const withIt = await shortTurns(twin, bench, options)
  await upstreamIdle(bench.upstream)
  return {
    without,
    with: withIt,
    addedCpuMsPerTurn: withIt.cpuMsPerTurn === null || without.cpuMsPerTurn === null ? null : round(withIt.cpuMsPerTurn - without.cpuMsPerTurn)
  }
}

export interface TracingFigures extends TwinFigures {
  /** Bytes the exporter sent per turn (protobuf), and in how many requests. */
  readonly exportedBytesPerTurn: number | null
  readonly exportRequests: number
}

/**
 * The cost of tracing (spec 95): short turns on an arm without an exporter, then on a twin that
 * exports its spans to `sink` (`bench/otlp-sink.ts`).
 */
export const tracingCost = async (arm: Arm, traced: Arm, bench: Bench, sink: Child, options: Parameters<typeof shortTurns>[2]): Promise<TracingFigures> => {
  const stats = async () => (await json(new Http.Agent(), new URL("/stats", sink.url), "GET")).body as { requests: number; bytes: number }
  const before = await stats()
  const figures = await besideTwin(arm, traced, bench, options)
  // What the exporter still holds leaves within its interval (OTEL_BSP_SCHEDULE_DELAY=1000).
  await sleep(1500)
  const after = await stats()
  return { ...figures, exportedBytesPerTurn: round((after.bytes - before.bytes) / figures.with.turns, 0), exportRequests: after.requests - before.requests }
}

// ---------------------------------------------------------------------------------------------

export interface LevelFigures {
  readonly streams: number
  readonly passed: boolean
  /** Why it failed. */
  readonly failure: string | undefined
  /** Gaps between tokens while every stream was open. */
  readonly gap: Spread
  /** Gaps over twice the pace, in that window. */
  readonly stalls: number
  readonly lost: number
  readonly failedStreams: number
  /** How long every stream was open together (the steady window). */
  readonly windowMs: number
  /** Tokens delivered to the client in the steady window, over which CPU time is read. */
  readonly tokensInWindow: number
  /** The arm's CPU time over the steady window per token delivered in it. */
  readonly cpuMicrosPerToken: number | null
  /**
   * CPU use over the steady window, in cores: the arm, the upstream, the client processes, and
   * everything else on the machine (the orchestrator, Postgres, any other load).
   */
  readonly cores: { readonly arm: number | null; readonly upstream: number | null; readonly clients: number | null; readonly others: number | null }
  readonly errors: ReadonlyArray<string>
}

/**
 * `streams` concurrent streams at `tps`, started at `startsPerSecond` by the load processes. The
 * steady window runs from half a second after the last first token until the first stream ends;
 * every stream is open in it, and the gaps between tokens are read in it. CPU time is read every
 * 100 ms, so the arm's CPU per token is its CPU time over the window divided by the tokens the
 * client received in that same window.
 *
 * The level passes when the gaps' p99 is at most twice the pace, no frame is lost, every stream
 * ends properly and the window lasts at least half of `steadyMs`.
 */
export const concurrencyLevel = async (
  arm: Arm,
  bench: Bench,
  options: { readonly streams: number; readonly tps: number; readonly steadyMs: number; readonly startsPerSecond: number }
): Promise<LevelFigures> => {
  const rampMs = (options.streams * 1000) / options.startsPerSecond
  const plan: Plan = { tokens: Math.ceil((options.tps * (rampMs + options.steadyMs + 1500)) / 1000), ttftMs: 0, tps: options.tps }
  await arm.prepare(options.streams)
  const sampler = cpuSampler(cpuReaders(arm, bench))
  const streams = await bench.clients.open(arm, { count: options.streams, startsPerSecond: options.startsPerSecond, plan })
  const results = await streams.results()
  sampler.stop()
  const complete = results.filter((result) => result.tokens.length > 0)
  const windowStart = complete.reduce((latest, result) => Math.max(latest, result.tokens[0]!), -Infinity) + 500_000
  const windowEnd = complete.reduce((earliest, result) => Math.min(earliest, result.tokens[result.tokens.length - 1]!), Infinity)
  const gaps: Array<number> = []
  for (const result of complete) {
    for (let i = 1; i < result.tokens.length; i++) {
      const at = result.tokens[i]!
      if (at >= windowStart && at <= windowEnd) gaps.push((at - result.tokens[i - 1]!) / 1000)
    }
  }
  const cpu = sampler.between(windowStart, windowEnd)
  let tokensInWindow = 0
  if (cpu !== undefined) {
    for (const result of complete) for (const at of result.tokens) if (at >= cpu.from && at <= cpu.to) tokensInWindow++
  }
  const cores = (micros: number | undefined) => micros === undefined ? null : round(micros / (cpu!.to - cpu!.from), 2)
  const pace = 1000 / options.tps
  const gap = spread(gaps)
  const lost = results.reduce((sum, result) => sum + lostOf(result, plan), 0)
  const failedStreams = results.filter((result) => result.error !== undefined || !result.ended).length
  const windowMs = Math.max(0, (windowEnd - windowStart) / 1000)
  const failure = complete.length < results.length || windowMs < options.steadyMs / 2
    ? `the streams were open together for ${Math.round(windowMs)} ms`
    : failedStreams > 0
    ? `${failedStreams} streams failed`
    : lost > 0
    ? `${lost} frames lost`
    : (gap.p99 ?? Infinity) > 2 * pace
    ? `gap p99 ${gap.p99} ms`
    : undefined
  return {
    streams: options.streams,
    passed: failure === undefined,
    failure,
    gap,
    stalls: gaps.filter((gap) => gap > 2 * pace).length,
    lost,
    failedStreams,
    windowMs: Math.round(windowMs),
    tokensInWindow,
    cpuMicrosPerToken: cpu === undefined ? null : round(cpu.micros.arm / tokensInWindow, 1),
    cores: {
      arm: cores(cpu?.micros.arm),
      upstream: cores(cpu?.micros.upstream),
      clients: cores(cpu?.micros.clients),
      others: cores(cpu === undefined ? undefined : cpu.micros.machine - (cpu.micros.arm || 0) - cpu.micros.upstream - cpu.micros.clients)
    },
    errors: errorsOf(results)
  }
}

export interface ConcurrencyFigures {
  /** The highest level that passed (0: none did). */
  readonly highest: number
  readonly allPassed: boolean
  readonly levels: ReadonlyArray<LevelFigures>
}

/** Levels in order until the first that fails: the highest that passed is the arm's figure. */
export const concurrency = async (
  arm: Arm,
  bench: Bench,
  options: { readonly levels: ReadonlyArray<number>; readonly tps: number; readonly steadyMs: number; readonly startsPerSecond: number }
): Promise<ConcurrencyFigures> => {
  const levels: Array<LevelFigures> = []
  for (const streams of options.levels) {
    const level = await concurrencyLevel(arm, bench, { ...options, streams })
    levels.push(level)
    console.log(
      `  ${arm.name} ${streams} streams: ${level.passed ? "ok" : `failed (${level.failure})`}: gap p99 ${level.gap.p99} ms, max ${level.gap.max} ms, ` +
        `${level.stalls} stalls, ${level.lost} lost; cores: arm ${level.cores.arm}, upstream ${level.cores.upstream}, clients ${level.cores.clients}, others ${level.cores.others}`
    )
    await upstreamIdle(bench.upstream)
    if (!level.passed) break
  }
  const passed = levels.filter((level) => level.passed)
  return {
    highest: passed.length === 0 ? 0 : passed[passed.length - 1]!.streams,
    allPassed: passed.length === options.levels.length,
    levels
  }
}

/** CPU per delivered token: one level of `streams` streams at `tps` (`concurrencyLevel`). */
export const cpuPerToken = async (
  arm: Arm,
  bench: Bench,
  options: { readonly streams: number; readonly tps: number; readonly steadyMs: number; readonly startsPerSecond: number }
): Promise<LevelFigures> => {
  const level = await concurrencyLevel(arm, bench, options)
  await upstreamIdle(bench.upstream)
  return level
}

// ---------------------------------------------------------------------------------------------

export interface LoadedTtftFigures {
  /** Background streams that had their first token before the probes began. */
  readonly background: number
  /** The probes' time to first token, measured from the probe process. */
  readonly ttft: Spread
  readonly failedProbes: number
  readonly errors: ReadonlyArray<string>
}

/**
 * Time to first token under load: `background` streams at `tps` stay open (load processes) while
 * `probes` streams are opened one at a time (probe process), `pauseMs` apart.
 */
export const ttftUnderLoad = async (
  arm: Arm,
  bench: Bench,
  options: { readonly background: number; readonly tps: number; readonly probes: number; readonly plan: Plan; readonly pauseMs: number }
): Promise<LoadedTtftFigures> => {
  await arm.prepare(options.background + options.probes)
  const load = await bench.clients.open(arm, { count: options.background, startsPerSecond: 100, plan: { tokens: 1_000_000, ttftMs: 0, tps: options.tps } })
  const background = await load.streaming(60_000)
  await sleep(1000)
  const ttfts: Array<number> = []
  const failed: Array<StreamResult> = []
  for (let k = 0; k < options.probes; k++) {
    const result = await bench.clients.stream(arm, options.background + k, options.plan)
    if (result.tokens.length > 0 && result.error === undefined) ttfts.push(ttftOf(result))
    else failed.push(result)
    await sleep(options.pauseMs)
  }
  await load.destroy()
  await upstreamIdle(bench.upstream)
  return { background, ttft: spread(ttfts), failedProbes: failed.length, errors: errorsOf(failed) }
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
 * time by the orchestrator; each abort's answer is checked (run, steps and generation all
 * closed) and the upstream says when that request's connection closed.
 */
export const abortLatency = async (
  arm: Arm,
  bench: Bench,
  options: { readonly live: number; readonly aborts: number; readonly tps: number }
): Promise<AbortFigures> => {
  const count = options.live + options.aborts
  const tag = `abort-${Date.now()}`
  await arm.prepare(count)
  const streams = await bench.clients.open(arm, { count, startsPerSecond: 100, plan: { tokens: 1_000_000, ttftMs: 0, tps: options.tps }, idPrefix: tag })
  const live = await streams.streaming(120_000)
  await sleep(1000)
  const latencies: Array<number> = []
  const closedAfter: Array<number> = []
  let notTerminal = 0
  let upstreamNotClosed = 0
  for (let i = 0; i < options.aborts; i++) {
    const runId = JSON.parse(await streams.first(i)).runId as string | undefined
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
    const { body } = await json(agent, new URL(`/closed/${tag}-${i}`, bench.upstream.url), "GET")
    if (body.closedAt === null) upstreamNotClosed++
    else closedAfter.push((body.closedAt - answeredAt) / 1000)
    await sleep(30)
  }
  await streams.destroy()
  await upstreamIdle(bench.upstream)
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

export interface InstancesFigures {
  /** Streams started on the owner, each followed on the owner and on the other instance. */
  readonly streams: number
  /** How much later than the client that started the turn each delta reached a follower. */
  readonly followerHere: Spread
  readonly followerElsewhere: Spread
  /** Follower streams that lost a token or did not end. */
  readonly followersLost: number
  /** Abort → answer (every status terminal), sent to the owner and to the other instance. */
  readonly abortHere: Spread
  readonly abortElsewhere: Spread
  readonly notTerminal: number
}

/**
 * Two instances on one Postgres (spec 50): `streams` turns started on `owner`, each followed by a
 * client of `owner` and one of `other` (`GET /runs/{id}/events`, attached before the first token);
 * every delta's arrival at each follower is compared with its arrival at the client that started
 * the turn. Then `live` streams on `owner`, `aborts` of them aborted one at a time, alternately
 * through `owner` and through `other`.
 */
export const severalInstances = async (
  owner: Arm,
  other: Arm,
  bench: Bench,
  options: { readonly streams: number; readonly tokens: number; readonly tps: number; readonly live: number; readonly aborts: number }
): Promise<InstancesFigures> => {
  await owner.prepare(Math.max(options.streams, options.live))
  await other.prepare(0)
  const plan = { tokens: options.tokens, ttftMs: 1500, tps: options.tps }
  const started = await bench.clients.open(owner, { count: options.streams, startsPerSecond: 50, plan })
  const runIds = await Promise.all(Array.from({ length: options.streams }, async (_, i) => JSON.parse(await started.first(i)).runId as string))
  const [here, elsewhere] = await Promise.all([bench.clients.follow(owner, runIds), bench.clients.follow(other, runIds)])
  const [origin, hereResults, elsewhereResults] = await Promise.all([started.results(), here.results(), elsewhere.results()])
  const delays = (followers: ReadonlyArray<StreamResult>) =>
    followers.flatMap((follower, i) => {
      const tokens = origin[i]!.tokens
      // The follower's tokens are the last of the turn's (all of them, attached before the first).
      const offset = tokens.length - follower.tokens.length
      return follower.tokens.map((at, j) => (at - tokens[offset + j]!) / 1000)
    })
  const followersLost = [...hereResults, ...elsewhereResults].filter((result) => lostOf(result, plan) > 0).length
  await upstreamIdle(bench.upstream)

  const streams = await bench.clients.open(owner, { count: options.live, startsPerSecond: 100, plan: { tokens: 1_000_000, ttftMs: 0, tps: 10 } })
  await streams.streaming(120_000)
  await sleep(1000)
  const abortHere: Array<number> = []
  const abortElsewhere: Array<number> = []
  let notTerminal = 0
  for (let i = 0; i < options.aborts; i++) {
    const runId = JSON.parse(await streams.first(i)).runId as string
    const through = i % 2 === 0 ? owner : other
    const sentAt = micros()
    const answer = await through.abort!(runId)
    ;(through === owner ? abortHere : abortElsewhere).push((micros() - sentAt) / 1000)
    const { generation, run, steps } = answer.body ?? {}
    if (answer.status !== 200 || !isClosed(run?.status) || !steps?.every((step: any) => isClosed(step.status)) || !isClosed(generation?.status)) {
      notTerminal++
    }
    await sleep(50)
  }
  await streams.destroy()
  await upstreamIdle(bench.upstream)
  return {
    streams: options.streams,
    followerHere: spread(delays(hereResults)),
    followerElsewhere: spread(delays(elsewhereResults)),
    followersLost,
    abortHere: spread(abortHere),
    abortElsewhere: spread(abortElsewhere),
    notTerminal
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

/** Resident memory (summed over the arm's processes), the median of five readings after `settleMs`. */
const settledRss = async (child: Child, settleMs = 3000) => {
  await sleep(settleMs)
  const samples: Array<number> = []
  for (let i = 0; i < 5; i++) {
    samples.push(child.rssBytes())
    await sleep(200)
  }
  return quantile(samples, 0.5)
}

/** Resident memory of the arm's processes with `low` and then `high` slow streams open. */
export const memoryPerStream = async (
  arm: Arm,
  bench: Bench,
  options: { readonly low: number; readonly high: number; readonly tps: number; readonly settleMs: number }
): Promise<MemoryFigures> => {
  const child = arm.process!
  const plan: Plan = { tokens: 1_000_000, ttftMs: 0, tps: options.tps }
  await arm.prepare(options.high)
  const first = await bench.clients.open(arm, { count: options.low, startsPerSecond: 100, plan })
  const lowCount = await first.streaming(120_000)
  const low = await settledRss(child, options.settleMs)
  const rest = await bench.clients.open(arm, { count: options.high - options.low, startsPerSecond: 100, plan, firstSlot: options.low })
  const highCount = lowCount + await rest.streaming(120_000)
  const high = await settledRss(child, options.settleMs)
  await first.destroy()
  await rest.destroy()
  await upstreamIdle(bench.upstream)
  return {
    rssAtLowMiB: mib(low),
    rssAtHighMiB: mib(high),
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

export interface Sql {
  readonly query: (sql: string) => Promise<{ rows: Array<any> }>
}

/**
 * Turns of the same duration with a short and a long answer, on real Postgres, counted by the
 * server itself: `pg_stat_database` and `pg_stat_user_tables` of the service's own database.
 */
export const writesPerTurn = async (
  arm: Arm,
  bench: Bench,
  stats: Sql,
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
  // Each phase is `turns` turns of `tokens` tokens (none: what the service writes with no turn
  // at all, the sweeper's ticks), lasting `durationMs`, then the settling; the counters are read
  // after it, so the reading after one phase is the reading before the next.
  const phases = [0, ...options.tokens]
  const turns = (tokens: number) => (tokens === 0 ? 0 : options.turns)
  await arm.prepare(options.turns * options.tokens.length)
  await sleep(statsSettleMs)
  const readings = [await read()]
  for (const [p, tokens] of phases.entries()) {
    const plan: Plan = { tokens, ttftMs: 0, tps: (tokens * 1000) / options.durationMs }
    const started = Date.now()
    if (turns(tokens) > 0) {
      // Slots of their own, as `prepare` made chats for every phase at once.
      const streams = await bench.clients.open(arm, { count: options.turns, startsPerSecond: 1000, plan, firstSlot: options.turns * (p - 1) })
      const results = await streams.results()
      const failed = results.filter((result) => result.error !== undefined || result.tokens.length !== tokens)
      if (failed.length > 0) throw new Error(`writesPerTurn: ${failed.length} turns failed: ${failed[0]!.error}`)
    }
    await sleep(Math.max(0, options.durationMs - (Date.now() - started)) + statsSettleMs)
    readings.push(await read())
  }
  const change = (p: number): Counters => {
    const [before, after] = [readings[p]!, readings[p + 1]!]
    return {
      commits: after.commits - before.commits,
      rows: after.rows - before.rows,
      tables: Object.fromEntries(Object.keys(after.tables).map((table) => [table, after.tables[table]! - (before.tables[table] ?? 0)]))
    }
  }
  const idle = change(0)
  const figures: Array<WriteFigures> = []
  for (const [p, tokens] of phases.entries()) {
    if (p === 0) continue
    const counted = change(p)
    const perTurn = (value: number) => round(value / options.turns, 1)
    figures.push({
      tokens,
      turns: options.turns,
      durationMs: options.durationMs,
      commitsPerTurn: perTurn(counted.commits - idle.commits),
      rowsWrittenPerTurn: perTurn(counted.rows - idle.rows),
      rowsPerTable: Object.fromEntries(
        Object.keys(counted.tables).filter((table) => counted.tables[table] !== (idle.tables[table] ?? 0)).map((table) => [
          table,
          perTurn(counted.tables[table]! - (idle.tables[table] ?? 0))
        ])
      )
    })
  }
  return figures
}

// ---------------------------------------------------------------------------------------------

export interface JournalFigures {
  readonly turns: number
  readonly tokens: number
  /** Rows the turns added to `pipeline_run_events`, and how many of them are `llm.stream.delta`. */
  readonly rows: number
  readonly deltaRows: number
  /** What `pg_total_relation_size('pipeline_run_events')` (table, indexes, TOAST) grew by. */
  readonly bytes: number
  readonly bytesPerRow: number | null
  readonly failedTurns: number
  readonly errors: ReadonlyArray<string>
}

/**
 * Journal bytes per event, on Postgres: `turns` turns of `tokens` tokens, one at a time; the
 * journal's total size (table, indexes, TOAST) and its rows are read before and after (once
 * they stop changing, as the journal is written behind), and the growth divided.
 */
export const journalBytes = async (
  arm: Arm,
  bench: Bench,
  sql: Sql,
  options: { readonly turns: number; readonly tokens: number; readonly tps: number }
): Promise<JournalFigures> => {
  const read = async () => {
    const { rows } = await sql.query(
      `SELECT pg_total_relation_size('pipeline_run_events')::float8 AS bytes,
              count(*)::float8 AS rows,
              count(*) FILTER (WHERE type = 'llm.stream.delta')::float8 AS deltas
         FROM pipeline_run_events`
    )
    return rows[0] as { bytes: number; rows: number; deltas: number }
  }
  const settled = async () => {
    let last = await read()
    for (let i = 0; i < 40; i++) {
      await sleep(500)
      const next = await read()
      if (next.rows === last.rows && next.bytes === last.bytes) return next
      last = next
    }
    return last
  }
  await arm.prepare(options.turns)
  const before = await settled()
  const plan: Plan = { tokens: options.tokens, ttftMs: 0, tps: options.tps }
  const failed: Array<StreamResult> = []
  for (let slot = 0; slot < options.turns; slot++) {
    const result = await bench.clients.stream(arm, slot, plan)
    if (result.error !== undefined || result.tokens.length !== options.tokens) failed.push(result)
  }
  const after = await settled()
  const rows = after.rows - before.rows
  return {
    turns: options.turns,
    tokens: options.tokens,
    rows,
    deltaRows: after.deltas - before.deltas,
    bytes: after.bytes - before.bytes,
    bytesPerRow: round((after.bytes - before.bytes) / rows, 1),
    failedTurns: failed.length,
    errors: errorsOf(failed)
  }
}

// ---------------------------------------------------------------------------------------------

export interface WireFigures {
  readonly tokens: number
  readonly gzip: { readonly encoding: string; readonly bytes: number; readonly deltas: number; readonly bytesPerDelta: number | null; readonly error: string | undefined }
  readonly identity: { readonly encoding: string; readonly bytes: number; readonly deltas: number; readonly bytesPerDelta: number | null; readonly error: string | undefined }
}

/**
 * Bytes on the wire per delta: one streamed turn of `tokens` tokens at `tps`, from the probe
 * process on a connection of its own, once with `Accept-Encoding: gzip` and once without; every
 * byte read from the socket counts (headers, chunk framing, the compressed body).
 */
export const wireBytes = async (
  arm: Arm,
  { clients }: Bench,
  options: { readonly tokens: number; readonly tps: number }
): Promise<WireFigures> => {
  await arm.prepare(2)
  const plan: Plan = { tokens: options.tokens, ttftMs: 0, tps: options.tps }
  const figures = async (slot: number, gzip: boolean) => {
    const result = await clients.wire(arm, slot, plan, gzip)
    return {
      encoding: result.encoding,
      bytes: result.bytes,
      deltas: result.tokens,
      bytesPerDelta: round(result.bytes / result.tokens, 1),
      error: result.error
    }
  }
  return { tokens: options.tokens, gzip: await figures(0, true), identity: await figures(1, false) }
}

// ---------------------------------------------------------------------------------------------

export interface IdleMemoryFigures {
  /** Resident memory summed over every process `npm start` created, idle after the warm-up. */
  readonly rssMiB: number | null
  /** The same 5 s after the warm-up: the runtime is still cooling down (V8 gives memory back once idle for some seconds). */
  readonly coolingMiB: number | null
  readonly processes: ReadonlyArray<{ readonly pid: number; readonly command: string; readonly rssMiB: number | null }>
  readonly warmupTurns: number
  readonly failedTurns: number
}

/** When the idle figure's early reading is taken, after the warm-up. */
const coolingMs = 5000

/**
 * Resident memory of everything `npm start` runs: the arm's process tree (npm, its shell, any
 * launcher, the service) after `warmupTurns` short turns and `idleMs` with nothing to do. V8 keeps
 * the heap the load grew until it has been idle for some seconds (its memory reducer), so
 * `idleMs` is long enough for that; the reading 5 s in is kept beside it.
 */
export const idleMemory = async (
  arm: Arm,
  { clients }: Bench,
  options: { readonly warmupTurns: number; readonly concurrency: number; readonly idleMs: number }
): Promise<IdleMemoryFigures> => {
  await arm.prepare(options.warmupTurns)
  const warmup = await clients.turns(arm, {
    concurrency: options.concurrency,
    durationMs: 300_000,
    maxTurns: options.warmupTurns,
    plan: { tokens: 10, ttftMs: 0, tps: 0 }
  })
  await sleep(coolingMs)
  const cooling = arm.process!.rssBytes()
  await sleep(options.idleMs - coolingMs)
  const total = await settledRss(arm.process!)
  return {
    rssMiB: mib(total),
    coolingMiB: mib(cooling),
    processes: arm.process!.pids().map((pid) => ({ pid, command: commandOf(pid).slice(0, 160), rssMiB: mib(rssBytes(pid)) })),
    warmupTurns: warmup.turns,
    failedTurns: warmup.failed
  }
}

// ---------------------------------------------------------------------------------------------

export interface SoakFigures {
  readonly durationMs: number
  readonly concurrency: number
  readonly beforeMiB: number | null
  readonly afterMiB: number | null
  /** The highest reading during the soak. */
  readonly peakMiB: number | null
  /** after ÷ before. */
  readonly ratio: number | null
  readonly turns: Record<string, { readonly ok: number; readonly failed: number }>
  readonly errors: ReadonlyArray<string>
}

/**
 * Resident memory (the arm's whole process tree) idle before and idle again `idleMs` after
 * `durationMs` of mixed turns from `concurrency` clients: short and long streamed turns,
 * regenerates, aborts and clients that go away (`client.ts`, `mixed`).
 */
export const soak = async (
  arm: Arm,
  bench: Bench,
  options: { readonly durationMs: number; readonly concurrency: number; readonly idleMs: number }
): Promise<SoakFigures> => {
  const child = arm.process!
  const before = await settledRss(child)
  let peak = before
  const timer = setInterval(() => (peak = Math.max(peak, child.rssBytes())), 1000)
  const mixed = await bench.clients.mixed(arm, options).finally(() => clearInterval(timer))
  await upstreamIdle(bench.upstream)
  await sleep(options.idleMs)
  const after = await settledRss(child)
  return {
    durationMs: options.durationMs,
    concurrency: options.concurrency,
    beforeMiB: mib(before),
    afterMiB: mib(after),
    peakMiB: mib(peak),
    ratio: round(after / before),
    turns: mixed.counts,
    errors: mixed.errors
  }
}
