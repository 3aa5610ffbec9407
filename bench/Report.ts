/**
 * The benchmark's report: the table of `BENCHMARKS.md`, every figure beside its target, with arms
 * A and B from the same run. Only the part between the markers is rewritten, so the analysis
 * written around it stays.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import type { Results } from "./main.ts"
import type * as Scenarios from "./Scenarios.ts"

const begin = "<!-- bench:begin (written by npm run bench) -->"
const end = "<!-- bench:end -->"

const ms = (value: number | null | undefined) => (value === null || value === undefined ? "–" : `${value} ms`)
const diff = (c: number | null | undefined, a: number | null | undefined) =>
  c === null || c === undefined || a === null || a === undefined ? null : Number((c - a).toFixed(3))
const signed = (value: number | null) => (value === null ? "–" : `${value < 0 ? "−" : "+"}${Math.abs(value)} ms`)
const mark = (met: boolean | null) => (met === null ? "–" : met ? "✅ met" : "❌ missed")

export const table = (results: Results): string => {
  const { single, short, concurrency, abort, memory, writes } = results.figures
  const a = single.A!
  const arms = results.arms.filter((arm) => arm.startsWith("C"))
  const header = `| figure | target | A: upstream direct | B: bare Node proxy | ${arms.map((arm) => `${arm}`).join(" | ")} |`
  const rule = `|${" --- |".repeat(3 + arms.length + 1)}`
  const rows: Array<string> = []
  const row = (figure: string, target: string, aCell: string, bCell: string, cells: (arm: string) => string) =>
    rows.push(`| ${figure} | ${target} | ${aCell} | ${bCell} | ${arms.map(cells).join(" | ")} |`)

  const added = (pick: (figures: Scenarios.SingleStreamFigures) => number | null, limit: number) => (arm: string) => {
    const value = diff(pick(single[arm]!), pick(a))
    return value === null ? "–" : `${signed(value)} ${mark(value <= limit)}`
  }
  row("added time to first token, p50", "≤ 2 ms", ms(a.ttft.p50), signed(diff(single.B?.ttft.p50, a.ttft.p50)), added((f) => f.ttft.p50, 2))
  row("added time to first token, p99", "≤ 5 ms", ms(a.ttft.p99), signed(diff(single.B?.ttft.p99, a.ttft.p99)), added((f) => f.ttft.p99, 5))
  row("added gap between tokens, p50", "≤ 0.1 ms", ms(a.gap.p50), signed(diff(single.B?.gap.p50, a.gap.p50)), added((f) => f.gap.p50, 0.1))
  row("added gap between tokens, p99", "≤ 1 ms", ms(a.gap.p99), signed(diff(single.B?.gap.p99, a.gap.p99)), added((f) => f.gap.p99, 1))
  row(
    "stalls / lost frames, one stream",
    "0 / 0",
    `${a.stalls} / ${a.lost}`,
    `${single.B?.stalls} / ${single.B?.lost}`,
    (arm) => `${single[arm]!.stalls} / ${single[arm]!.lost}`
  )
  const b = concurrency.B
  const streams = (figures: { highest: number; allPassed: boolean; levels: ReadonlyArray<{ streams: number }> } | undefined) =>
    figures === undefined
      ? "–"
      : figures.highest === 0
      ? `< ${figures.levels[0]?.streams}`
      : `${figures.allPassed ? "≥ " : ""}${figures.highest}`
  row("concurrent streams at 50 tokens/s, no stall", "≥ 400 and ≥ 70 % of B", "–", streams(b), (arm) => {
    const c = concurrency[arm]
    if (c === undefined) return "–"
    const share = b === undefined || b.highest === 0 ? null : Math.round((100 * c.highest) / b.highest)
    return `${streams(c)} (${share ?? "–"} % of B) ${mark(c.highest >= 400 && (share === null || share >= 70))}`
  })
  row(
    "short turns (10 tokens) per second",
    "≥ 200",
    `${short.A?.turnsPerSecond ?? "–"}`,
    `${short.B?.turnsPerSecond ?? "–"}`,
    (arm) => `${short[arm]?.turnsPerSecond ?? "–"} ${mark((short[arm]?.turnsPerSecond ?? 0) >= 200)}`
  )
  row("database writes per turn: 16 → 1024 tokens, same duration", "the same", "–", "–", (arm) => {
    const [few, many] = writes[arm] ?? []
    if (few === undefined || many === undefined) return "–"
    return `${few.commitsPerTurn} → ${many.commitsPerTurn} commits; ${few.rowsWrittenPerTurn} → ${many.rowsWrittenPerTurn} rows ${
      mark(Math.abs((many.commitsPerTurn ?? 0) - (few.commitsPerTurn ?? 0)) <= 1)
    }`
  })
  row(
    `abort → all statuses terminal, p99 (${results.settings.abort.live} live streams at ${results.settings.abort.tps} tokens/s)`,
    "≤ 50 ms",
    "–",
    "–",
    (arm) => abort[arm] === undefined ? "–" : `${ms(abort[arm]!.latency.p99)} (p50 ${ms(abort[arm]!.latency.p50)}) ${mark((abort[arm]!.latency.p99 ?? Infinity) <= 50 && abort[arm]!.notTerminal === 0)}`
  )
  row(
    "upstream socket closed after the abort's answer, p99",
    "≤ 5 ms",
    "–",
    "–",
    (arm) => abort[arm] === undefined ? "–" : `${ms(abort[arm]!.upstreamClosedAfterAnswer.p99)} ${mark((abort[arm]!.upstreamClosedAfterAnswer.p99 ?? Infinity) <= 5 && abort[arm]!.upstreamNotClosed === 0)}`
  )
  row(
    `memory per open stream (RSS slope, ${results.settings.memory.low} → ${results.settings.memory.high} streams at ${results.settings.memory.tps} token/s)`,
    "≤ 64 KiB",
    "–",
    memory.B === undefined ? "–" : `${memory.B.kibPerStream} KiB`,
    (arm) => {
      const figures = memory[arm]
      if (figures === undefined) return "–"
      const reached = figures.high < results.settings.memory.high ? ` (only ${figures.high} streams opened in 2 min)` : ""
      return `${figures.kibPerStream} KiB${reached} ${mark((figures.kibPerStream ?? Infinity) <= 64)}`
    }
  )
  const cpu = (arm: string) => concurrency[arm]?.levels[0]?.cpuMicrosPerToken
  row(
    `CPU per token (${concurrency.B?.levels[0]?.streams ?? 100} streams at 50 tokens/s)`,
    "–",
    "–",
    cpu("B") === undefined ? "–" : `${cpu("B")} µs`,
    (arm) => cpu(arm) === undefined ? "–" : `${cpu(arm)} µs`
  )
  return [
    `Measured ${results.date} on ${results.machine.cpus}× ${results.machine.cpu}, ${results.machine.memoryGiB} GiB, Node ${results.machine.node}, ` +
    `with \`${results.command}\`; every process (client, upstream, proxy, service, Postgres) on this machine. ` +
    `All figures come from [\`bench/results.json\`](bench/results.json).`,
    "",
    header,
    rule,
    ...rows
  ].join("\n")
}

export const writeMarkdown = (path: string, results: Results) => {
  const section = `${begin}\n${table(results)}\n${end}`
  const current = existsSync(path) ? readFileSync(path, "utf8") : `# Benchmarks\n\n${begin}\n${end}\n`
  const from = current.indexOf(begin)
  const to = current.indexOf(end)
  const next = from === -1 || to === -1
    ? `${current.trimEnd()}\n\n${section}\n`
    : current.slice(0, from) + section + current.slice(to + end.length)
  writeFileSync(path, next)
}
