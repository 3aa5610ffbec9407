/**
 * The benchmark's report: the table of `BENCHMARKS.md`, every figure beside its target, with arms
 * A and B from the same run. Only the part between the markers is rewritten, so the analysis
 * written around it stays. The rows under "informational" have no target of their own.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import type { Results } from "./main.ts"
import type * as Scenarios from "./Scenarios.ts"

const begin = "<!-- bench:begin (written by npm run bench) -->"
const end = "<!-- bench:end -->"

type Value = number | null | undefined

const ms = (value: Value) => (value === null || value === undefined ? "–" : `${value} ms`)
const diff = (c: Value, a: Value) => c === null || c === undefined || a === null || a === undefined ? null : Number((c - a).toFixed(3))
const signed = (value: number | null) => (value === null ? "–" : `${value < 0 ? "−" : "+"}${Math.abs(value)} ms`)
const mark = (met: boolean | null) => (met === null ? "–" : met ? "✅ met" : "❌ missed")
const isPostgres = (arm: string) => arm === "C: Postgres"

export const table = (results: Results): string => {
  const { single, short, concurrency, cpu, ttftUnderLoad, abort, instances, tracing, authentication, memory, writes, wire, journal, idle, soak } = results.figures
  const s = results.settings
  const a: Scenarios.SingleStreamFigures = single.A ?? {
    ttft: { p50: null, p99: null, max: null, n: 0 },
    gap: { p50: null, p99: null, max: null, n: 0 },
    stalls: 0,
    lost: 0,
    errors: []
  }
  const arms = results.arms.filter((arm) => arm.startsWith("C"))
  const header = `| figure | target | A: upstream direct | B: bare Node proxy | F: the stack's floor | ${arms.join(" | ")} |`
  const rule = `|${" --- |".repeat(5 + arms.length)}`
  const rows: Array<string> = []
  /** A row: arm A's cell, the cells of the two reference arms (B and F, no target of their own), then the service's. */
  const row = (figure: string, target: string, aCell: string, reference: (arm: "B" | "F") => string, cells: (arm: string) => string) =>
    rows.push(`| ${figure} | ${target} | ${aCell} | ${reference("B")} | ${reference("F")} | ${arms.map(cells).join(" | ")} |`)
  const none = () => "–"
  const section = (title: string) => rows.push(`| **${title}** | | | | | ${arms.map(() => "").join(" | ")} |`)

  // -- CPU per delivered token
  const cpuOf = (arm: string) => cpu[arm]?.cpuMicrosPerToken ?? null
  const cpuB = cpuOf("B")
  row(
    `CPU per delivered token (${s.cpu.streams} streams × ${s.cpu.tps} tokens/s)`,
    "≤ 3 × B",
    "–",
    (ref) => {
      const value = cpuOf(ref)
      if (value === null) return "–"
      return ref === "B" || cpuB === null || cpuB === 0 ? `${value} µs` : `${value} µs (${(value / cpuB).toFixed(1)} × B)`
    },
    (arm) => {
      const value = cpuOf(arm)
      if (value === null) return "–"
      const times = cpuB === null || cpuB === 0 ? null : value / cpuB
      return `${value} µs (${times === null ? "–" : times.toFixed(1)} × B) ${mark(times === null ? null : times <= 3)}`
    }
  )

  // -- Concurrent streams
  const streams = (figures: Scenarios.ConcurrencyFigures | undefined) =>
    figures === undefined
      ? "–"
      : figures.highest === 0
      ? `< ${figures.levels[0]?.streams}`
      : `${figures.allPassed ? "≥ " : ""}${figures.highest}`
  const b = concurrency.B
  const pace = 1000 / s.concurrency.tps
  row(
    `concurrent streams at ${s.concurrency.tps} tokens/s, p99 gap ≤ ${2 * pace} ms, nothing lost`,
    "≥ 70 % of B, on both databases",
    `${streams(concurrency.A)} (the harness's ceiling)`,
    (ref) => {
      const figures = concurrency[ref]
      if (ref === "B" || figures === undefined || b === undefined || b.highest === 0) return streams(figures)
      return `${streams(figures)} (${Math.round((100 * figures.highest) / b.highest)} % of B)`
    },
    (arm) => {
      const c = concurrency[arm]
      if (c === undefined) return "–"
      const share = b === undefined || b.highest === 0 ? null : Math.round((100 * c.highest) / b.highest)
      // When B passed every level, its figure is only a lower bound, and C's share an upper one.
      const bound = b?.allPassed === true && !c.allPassed ? "≤ " : ""
      return `${streams(c)} (${bound}${share ?? "–"} % of B) ${mark(share === null ? null : share >= 70)}`
    }
  )

  // -- Time to first token, one stream
  const ttftLimits = { p50: { postgres: 2, pglite: 5 }, p99: { postgres: 5, pglite: 10 } }
  for (const q of ["p50", "p99"] as const) {
    row(
      `added time to first token, one stream, ${q}`,
      `≤ ${ttftLimits[q].postgres} ms on Postgres, ≤ ${ttftLimits[q].pglite} ms on PGlite`,
      ms(a.ttft[q]),
      (ref) => signed(diff(single[ref]?.ttft[q], a.ttft[q])),
      (arm) => {
        const value = diff(single[arm]?.ttft[q], a.ttft[q])
        const limit = isPostgres(arm) ? ttftLimits[q].postgres : ttftLimits[q].pglite
        return value === null ? "–" : `${signed(value)} ${mark(value <= limit)}`
      }
    )
  }

  // -- Short turns
  row(
    "short turns (10 tokens) per second",
    "≥ 200 on Postgres, ≥ 100 on PGlite",
    `${short.A?.turnsPerSecond ?? "–"}`,
    (ref) => `${short[ref]?.turnsPerSecond ?? "–"}`,
    (arm) => {
      const value = short[arm]?.turnsPerSecond
      return value === undefined || value === null ? "–" : `${value} ${mark(value >= (isPostgres(arm) ? 200 : 100))}`
    }
  )

  // -- Memory per open stream
  row(
    `memory per open stream (RSS slope, ${s.memory.low} → ${s.memory.high} streams at ${s.memory.tps} token/s)`,
    "≤ 64 KiB",
    "–",
    (ref) => memory[ref] === undefined ? "–" : `${memory[ref]!.kibPerStream} KiB`,
    (arm) => {
      const figures = memory[arm]
      if (figures === undefined) return "–"
      const reached = figures.high < s.memory.high ? ` (only ${figures.high} streams opened in 2 min)` : ""
      return `${figures.kibPerStream} KiB${reached} ${mark((figures.kibPerStream ?? Infinity) <= 64)}`
    }
  )

  // -- Idle memory of `npm start`
  row(
    `resident memory of everything \`npm start\` runs, idle ${s.idle.idleMs / 1000} s after ${s.idle.warmupTurns} turns (5 s after them, in brackets)`,
    "≤ 150 MiB on Postgres",
    "–",
    none,
    (arm) => {
      const figures = idle[arm]
      if (figures === undefined) return "–"
      const value = `${figures.rssMiB} MiB in ${figures.processes.length} processes (${figures.coolingMiB ?? "–"})`
      return isPostgres(arm) ? `${value} ${mark((figures.rssMiB ?? Infinity) <= 150)}` : `${value} (no target)`
    }
  )

  // -- Time to first token under load
  const loaded = (arm: string) => {
    const figures = ttftUnderLoad[arm]
    const alone = single[arm]?.ttft.p99
    if (figures === undefined || alone === undefined || alone === null || figures.ttft.p99 === null) return null
    return { p99: figures.ttft.p99, alone, times: figures.ttft.p99 / alone, failed: figures.failedProbes }
  }
  const loadedCell = (arm: string, withMark: boolean) => {
    const figures = loaded(arm)
    if (figures === null) return "–"
    const text = `${ms(figures.p99)} vs ${ms(figures.alone)} (${figures.times.toFixed(2)} ×)`
    return withMark ? `${text} ${mark(figures.times <= 2 && figures.failed === 0)}` : text
  }
  row(
    `time to first token, p99, with ${s.ttftUnderLoad.background} streams at ${s.ttftUnderLoad.tps} tokens/s open, vs one stream`,
    "≤ 2 × its p99 with one stream",
    loadedCell("A", false),
    (ref) => loadedCell(ref, false),
    (arm) => loadedCell(arm, true)
  )

  // -- Soak
  row(
    `resident memory after a ${Math.round(s.soak.durationMs / 1000)} s soak of mixed turns (${s.soak.concurrency} clients), idle again`,
    "within 10 % of the idle figure before it",
    "–",
    none,
    (arm) => {
      if (results.soakArm === undefined) return "skipped"
      const figures = soak[arm]
      if (figures === undefined) return `– (the soak ran on ${results.soakArm})`
      const change = figures.ratio === null ? null : Math.round((figures.ratio - 1) * 1000) / 10
      return `${figures.beforeMiB} → ${figures.afterMiB} MiB (${change === null ? "–" : `${change < 0 ? "−" : "+"}${Math.abs(change)} %`}) ${
        mark(figures.ratio === null ? null : figures.ratio <= 1.1)
      }`
    }
  )

  // -- Abort
  row(
    `abort → every status terminal, p99 (${s.abort.live} live streams at ${s.abort.tps} tokens/s)`,
    "≤ 50 ms",
    "–",
    none,
    (arm) =>
      abort[arm] === undefined
        ? "–"
        : `${ms(abort[arm]!.latency.p99)} (p50 ${ms(abort[arm]!.latency.p50)}) ${
          mark((abort[arm]!.latency.p99 ?? Infinity) <= 50 && abort[arm]!.notTerminal === 0)
        }`
  )

  // -- Two instances (spec 50)
  const twoInstances = (arm: string, cell: (figures: Scenarios.InstancesFigures) => string) => {
    if (!isPostgres(arm)) return "– (one process)"
    const figures = instances?.[arm]
    return figures === undefined ? "–" : cell(figures)
  }
  row(
    `abort from the other instance → every status terminal, p99 (two instances, ${s.instances?.live} live streams; beside: through the owner)`,
    "≤ 100 ms",
    "–",
    none,
    (arm) =>
      twoInstances(arm, (figures) =>
        `${ms(figures.abortElsewhere.p99)} (p50 ${ms(figures.abortElsewhere.p50)}; owner p99 ${ms(figures.abortHere.p99)}) ${
          mark((figures.abortElsewhere.p99 ?? Infinity) <= 100 && figures.notTerminal === 0)
        }`)
  )
  row(
    `a live delta at a follower on the other instance, later than at the turn's own client: p50 / max (${s.instances?.streams} streams; beside: a follower on the owner)`,
    "p50 ≤ 50 ms, max ≤ 250 ms",
    "–",
    none,
    (arm) =>
      twoInstances(arm, (figures) =>
        `${ms(figures.followerElsewhere.p50)} / ${ms(figures.followerElsewhere.max)} (owner ${ms(figures.followerHere.p50)} / ${ms(figures.followerHere.max)}${
          figures.followersLost > 0 ? `; ${figures.followersLost} followers lost tokens` : ""
        }) ${mark((figures.followerElsewhere.p50 ?? Infinity) <= 50 && (figures.followerElsewhere.max ?? Infinity) <= 250 && figures.followersLost === 0)}`)
  )

  // -- Tracing (spec 95)
  row(
    `short turns with every span exported over OTLP/HTTP (protobuf, to a sink): turns/s, CPU per turn, bytes exported per turn (beside: the same arm without an exporter, measured just before)`,
    "reported",
    "–",
    none,
    (arm) => {
      const figures = tracing?.[arm]
      if (figures === undefined) return "–"
      return `${figures.with.turnsPerSecond}/s, ${figures.with.cpuMsPerTurn} ms, ${figures.exportedBytesPerTurn} B (without: ${figures.without.turnsPerSecond}/s, ${figures.without.cpuMsPerTurn} ms)`
    }
  )

  // -- Authentication (spec 85)
  row(
    "short turns with `AUTH=api_key` (a key looked up per request): turns/s, CPU per turn (beside: the same arm with `AUTH=none`, measured just before)",
    "reported",
    "–",
    none,
    (arm) => {
      const figures = authentication?.[arm]
      if (figures === undefined) return "–"
      return `${figures.with.turnsPerSecond}/s, ${figures.with.cpuMsPerTurn} ms (without: ${figures.without.turnsPerSecond}/s, ${figures.without.cpuMsPerTurn} ms)`
    }
  )

  // -- Journal
  row(
    `journal bytes per \`llm.stream.delta\` (table + index size ÷ rows, ${s.journal.tokens}-token answers)`,
    "≤ 120 bytes",
    "–",
    none,
    (arm) => {
      const figures = journal[arm]
      if (figures === undefined) return "–"
      const failed = figures.failedTurns > 0 ? `, ${figures.failedTurns} of ${figures.turns} turns failed` : ""
      return `${figures.bytesPerRow} B (${figures.rows} rows${failed}) ${mark((figures.bytesPerRow ?? Infinity) <= 120)}`
    }
  )

  // -- Wire
  row(
    `bytes on the wire per delta, \`Accept-Encoding: gzip\` (${s.wire.tokens} tokens at ${s.wire.tps} tokens/s)`,
    "≤ 150",
    "–",
    none,
    (arm) => {
      const figures = wire[arm]
      if (figures === undefined) return "–"
      const { gzip, identity } = figures
      const gzipped = gzip.encoding === "gzip" && gzip.error === undefined
      const value = gzip.error !== undefined
        ? `failed: ${gzip.error}`
        : gzipped
        ? `${gzip.bytesPerDelta} B`
        : `${gzip.bytesPerDelta} B, not gzip-encoded`
      return `${value} (identity ${identity.bytesPerDelta} B) ${mark(gzipped && (gzip.bytesPerDelta ?? Infinity) <= 150)}`
    }
  )

  // -- Informational
  section("informational")
  for (const q of ["p50", "p99"] as const) {
    row(
      `added gap between tokens, one stream, ${q}`,
      "–",
      ms(a.gap[q]),
      (ref) => signed(diff(single[ref]?.gap[q], a.gap[q])),
      (arm) => signed(diff(single[arm]?.gap[q], a.gap[q]))
    )
  }
  row(
    "stalls / lost frames, one stream",
    "–",
    `${a.stalls} / ${a.lost}`,
    (ref) => single[ref] === undefined ? "–" : `${single[ref]!.stalls} / ${single[ref]!.lost}`,
    (arm) => single[arm] === undefined ? "–" : `${single[arm]!.stalls} / ${single[arm]!.lost}`
  )
  row(
    "upstream socket closed after the abort's answer, p99",
    "–",
    "–",
    none,
    (arm) => abort[arm] === undefined ? "–" : `${ms(abort[arm]!.upstreamClosedAfterAnswer.p99)} (${abort[arm]!.upstreamNotClosed} not closed)`
  )
  row("database writes per turn: 16 → 1024 tokens, same duration", "–", "–", none, (arm) => {
    const [few, many] = writes[arm] ?? []
    if (few === undefined || many === undefined) return "–"
    return `${few.commitsPerTurn} → ${many.commitsPerTurn} commits; ${few.rowsWrittenPerTurn} → ${many.rowsWrittenPerTurn} rows`
  })
  const highestLevel = (arm: string) => {
    const figures = concurrency[arm]
    return figures?.levels.find((level) => level.streams === figures.highest) ?? figures?.levels[0]
  }
  const cores = (arm: string) => {
    const level = highestLevel(arm)
    return level === undefined
      ? "–"
      : `${level.streams} streams: ${arm === "A" ? "" : `arm ${level.cores.arm}, `}upstream ${level.cores.upstream}, clients ${level.cores.clients}, others ${level.cores.others}`
  }
  row(
    `CPU in cores over the highest passing level's steady window (${results.clientProcesses} load client processes; others: the rest of the machine)`,
    "–",
    cores("A"),
    cores,
    cores
  )
  const failures = results.failures.map(({ scenario, arm, error }) => `- ${scenario} on ${arm}: ${error.split("\n")[0]}`)
  return [
    `Measured ${results.date} on ${results.machine.cpus}× ${results.machine.cpu}, ${results.machine.memoryGiB} GiB, Node ${results.machine.node}, ` +
    `with \`${results.command}\`; every process (clients, upstream, proxy, floor, services, Postgres) on this machine. ` +
    `All figures come from [\`bench/results.json\`](bench/results.json).`,
    "",
    header,
    rule,
    ...rows,
    ...(failures.length === 0 ? [] : ["", "Failed (their cells read “–”):", "", ...failures])
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
