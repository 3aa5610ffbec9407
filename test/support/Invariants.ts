import { SqlClient } from "@effect/sql"
import { expect } from "@effect/vitest"
import { Effect } from "effect"

interface Row {
  readonly [column: string]: unknown
}

const ms = (value: unknown) => (value instanceof Date ? value.getTime() : Number.NaN)

/**
 * The invariants of the spec's README, checked over every row of the database: call it after a
 * suite (or a test) has let its runs finish. A violation fails the test with the offending run.
 */
export const checkInvariants = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const runs = yield* sql<Row>`SELECT * FROM pipeline_runs`
  const steps = yield* sql<Row>`SELECT * FROM pipeline_step_runs ORDER BY position`
  const generations = yield* sql<Row>`SELECT * FROM llm_generations`
  const events = yield* sql<Row>`SELECT run_id, seq, type, data FROM pipeline_run_events ORDER BY run_id, seq`
  const variants = yield* sql<Row>`SELECT id, content FROM message_variants`

  // 1 and 2: one run per (chat, key), one running run per chat.
  const keys = new Set<string>()
  const running = new Set<string>()
  for (const run of runs) {
    const key = `${run.chat_id}/${run.idempotency_key}`
    expect(keys.has(key), `two runs for ${key}`).toBe(false)
    keys.add(key)
    if (run.status === "running") {
      expect(running.has(String(run.chat_id)), `two running runs in chat ${run.chat_id}`).toBe(false)
      running.add(String(run.chat_id))
    }
  }

  for (const run of runs) {
    if (run.status === "running") continue
    const label = `run ${run.id} (${run.status})`
    const own = steps.filter((step) => step.run_id === run.id)
    const byType = Object.fromEntries(own.map((step) => [step.step_type, step]))
    const generation = generations.find((g) => g.run_id === run.id)
    // 3: terminal runs are closed all the way down.
    expect(run.finished_at, label).toBeInstanceOf(Date)
    expect(own.map((step) => step.step_type).sort(), label).toEqual(["llm", "post", "pre"])
    for (const step of own) expect(step.status, `${label}: ${step.step_type}`).not.toBe("running")
    if (generation) expect(generation.status, `${label}: generation`).not.toBe("streaming")

    // 4: statuses agree (spec 10, "Status agreement").
    const statuses = [byType.pre?.status, byType.llm?.status, byType.post?.status, generation?.status ?? null]
    const allowed: Record<string, ReadonlyArray<ReadonlyArray<unknown>>> = {
      done: [["done", "done", "done", "done"]],
      error: [
        ["error", "skipped", "skipped", null],
        ["done", "error", "skipped", "error"],
        ["done", "error", "skipped", null],
        ["done", "done", "error", "done"],
        // process died (lease expired): the running step → error, later ones → skipped
        ["error", "skipped", "skipped", "error"],
        ["done", "error", "skipped", "done"]
      ],
      aborted: [
        // stopped before it arrived (spec 75)
        ["skipped", "skipped", "skipped", null],
        ["aborted", "skipped", "skipped", null],
        ["done", "aborted", "skipped", "aborted"],
        ["done", "aborted", "skipped", null],
        ["done", "done", "aborted", "done"]
      ]
    }
    expect(allowed[String(run.status)], label).toContainEqual(statuses)
    if (run.status === "aborted") {
      expect(run.error_code, label).toBe("aborted")
      expect(["user", "client_disconnect", "superseded", "shutdown"], label).toContain(run.abort_reason)
    }
    if (run.status === "error") expect(run.error_code, label).toEqual(expect.any(String))

    // 5: timings are ordered, and the generation lies inside the llm step.
    const times = [
      run.started_at,
      byType.pre?.started_at, byType.pre?.finished_at,
      byType.llm?.started_at, byType.llm?.finished_at,
      byType.post?.started_at, byType.post?.finished_at,
      run.finished_at
    ].map(ms)
    for (let i = 1; i < times.length; i++) expect(times[i]!, `${label}: timing ${i}`).toBeGreaterThanOrEqual(times[i - 1]!)
    if (generation) {
      expect(ms(generation.started_at), `${label}: generation start`).toBeGreaterThanOrEqual(ms(byType.llm?.started_at))
      expect(ms(generation.finished_at), `${label}: generation end`).toBeLessThanOrEqual(ms(byType.llm?.finished_at))
    }

    // The journal: seq 1..n without a gap, one terminal event and it is the last.
    const journal = events.filter((event) => event.run_id === run.id)
    expect(journal.map((event) => event.seq), label).toEqual(journal.map((_, i) => i + 1))
    const terminal = journal.filter((event) => String(event.type).startsWith("pipeline.run.") && event.type !== "pipeline.run.started")
    expect(terminal, label).toHaveLength(1)
    expect(journal.at(-1)?.type, label).toBe(`pipeline.run.${run.status}`)

    // 7: the deltas are the generation's raw text; `post` may only normalize it. (A dead
    // process may have flushed text whose deltas it never journaled: spec 10, "Crash safety".)
    if (generation && run.error_code !== "run_interrupted") {
      const deltas = journal.filter((event) => event.type === "llm.stream.delta")
        .map((event) => String(event.data)).join("")
      const variant = variants.find((v) => v.id === generation.variant_id)
      const normalized = deltas.replace(/\r\n/g, "\n").trimEnd()
      expect([deltas, normalized], `${label}: variant text`).toContain(variant?.content)
    }
  }
})
