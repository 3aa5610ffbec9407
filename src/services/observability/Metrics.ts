import { Metric, MetricBoundaries, MetricLabel } from "effect"

/**
 * The service's metrics (spec 95), as Effect `Metric`s: the process's one registry, which
 * `GET /metrics` renders for Prometheus and an embedding program reads as it reads its own. Labels
 * are bounded sets, never ids. Counters are `incremental` (Prometheus counters, not gauges).
 *
 * The hot path updates them from synchronous code (`unsafeUpdate`/`unsafeModify`); per-token
 * figures are added once per generation, not once per token.
 */

const seconds = (...bounds: ReadonlyArray<number>) => MetricBoundaries.fromIterable(bounds)

export const runsStarted = Metric.counter("turn_runner_runs_started_total", { description: "Runs started, by trigger", incremental: true })

export const runsFinished = Metric.counter("turn_runner_runs_finished_total", {
  description: "Runs finished, by status and reason (the abort reason or error code; none when done)",
  incremental: true
})

export const runsLive = Metric.gauge("turn_runner_runs_live", { description: "Runs executing in this process" })

export const runDuration = Metric.histogram(
  "turn_runner_run_duration_seconds",
  seconds(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
  "Run duration in seconds, by status"
)

export const timeToFirstToken = Metric.histogram(
  "turn_runner_time_to_first_token_seconds",
  seconds(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
  "From a run's start to its first delta, in seconds, by provider"
)

export const streamDeltas = Metric.counter("turn_runner_stream_deltas_total", {
  description: "Deltas streamed, by provider (counted as each generation ends)",
  incremental: true
})

export const usageTokens = Metric.counter("turn_runner_usage_tokens_total", {
  description: "Tokens the providers reported, by provider and type (input, output)",
  incremental: true
})

export const turnRequests = Metric.counter("turn_runner_turn_requests_total", {
  description: "Turn requests, by trigger and outcome",
  incremental: true
})

export const sseClients = Metric.gauge("turn_runner_sse_clients", { description: "Open event streams" })

export const runsSwept = Metric.counter("turn_runner_runs_swept_total", {
  description: "Runs of dead processes closed by the sweeper",
  incremental: true
})

export const journalWrite = Metric.histogram(
  "turn_runner_journal_write_seconds",
  seconds(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
  "Write-behind statements that carried journal rows, in seconds"
)

export const upstreamErrors = Metric.counter("turn_runner_upstream_errors_total", {
  description: "Generations the provider failed, by error code",
  incremental: true
})

/**
 * The labels of `pairs`, one array for each distinct set: Effect finds a metric's series by that
 * array's identity (a new array per update would look the series up by hashing every time). The
 * sets are few: every label value is one of a known list (a trigger, a status, an error code).
 */
const labelSets = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
const labels = (pairs: Record<string, string>) => {
  let key = ""
  for (const name in pairs) key += `${name}\u0000${pairs[name]}\u0001`
  let set = labelSets.get(key)
  if (set === undefined) {
    set = Object.entries(pairs).map(([name, value]) => MetricLabel.make(name, value))
    labelSets.set(key, set)
  }
  return set
}

/** `metric` with these labels, updated from synchronous code. */
export const count = (metric: Metric.Metric.Counter<number>, by: number, pairs: Record<string, string> = {}) =>
  metric.unsafeUpdate(by, labels(pairs))

export const observe = (metric: Metric.Metric.Histogram<number>, value: number, pairs: Record<string, string> = {}) =>
  metric.unsafeUpdate(value, labels(pairs))

export const move = (metric: Metric.Metric.Gauge<number>, by: number) => metric.unsafeModify(by, [])

export const set = (metric: Metric.Metric.Gauge<number>, value: number) => metric.unsafeUpdate(value, [])
