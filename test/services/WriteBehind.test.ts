import { expect, layer } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, TestClock } from "effect"
import type { RunId, VariantId } from "../../src/domain/Ids.ts"
import { BatchRepo } from "../../src/services/BatchRepo.ts"
import type { Batch } from "../../src/services/BatchRepo.ts"
import { WriteBehind } from "../../src/services/WriteBehind.ts"
import { insertRun, seedChat } from "../support/Fixtures.ts"
import { pglite } from "../support/TestDatabase.ts"
import { testConfig } from "../support/TestConfig.ts"

const writeBehind = WriteBehind.DefaultWithoutDependencies.pipe(
  Layer.provideMerge(BatchRepo.Default),
  Layer.provide(testConfig({ flushIntervalMs: 250 })),
  Layer.provideMerge(pglite.layer)
)

/** A generation's text as the write-behind sees it: what is new since the last write. */
const textOf = (variantId: string) => {
  const state = { text: "", written: 0 }
  const source = {
    closed: false,
    take: (batch: Batch, rowsOnly: boolean) => {
      const content = state.text
      if (rowsOnly || content.length === state.written) return undefined
      batch.variants.set(variantId as VariantId, { content })
      return () => {
        state.written = content.length
      }
    }
  }
  return { state, source }
}

const variants = (ids: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ readonly content: string; readonly tx: string }>`
      SELECT content, xmin::text AS tx FROM message_variants WHERE id IN ${sql.in(ids)} ORDER BY content`)

layer(writeBehind, { timeout: 60_000 })("the write-behind", (it) => {
  it.effect("writes what every source has pending in one statement per interval, nothing twice, and drops a closed source after its last write", () =>
    Effect.gen(function*() {
      const writer = yield* WriteBehind
      const [a, b] = [yield* seedChat, yield* seedChat]
      const first = textOf(a.assistantVariantId)
      const second = textOf(b.assistantVariantId)
      yield* writer.add(first.source)
      yield* writer.add(second.source)
      first.state.text = "one"
      second.state.text = "two"
      // A kick writes rows only: the text waits for the interval.
      writer.soon()
      yield* TestClock.adjust(1)
      expect((yield* variants([a.assistantVariantId])).map((row) => row.content)).toEqual([""])
      yield* TestClock.adjust(249)
      const written = yield* variants([a.assistantVariantId, b.assistantVariantId])
      expect(written.map((row) => row.content)).toEqual(["one", "two"])
      // One statement for both sources: both rows carry its transaction id.
      expect(new Set(written.map((row) => row.tx)).size).toBe(1)
      // Nothing new: the next interval writes nothing.
      yield* TestClock.adjust(250)
      expect((yield* variants([a.assistantVariantId])).map((row) => row.tx)).toEqual([written[0]!.tx])
      // A flush writes everything pending now; a closed source is dropped after it.
      first.state.text = "one more"
      first.source.closed = true
      yield* writer.flush
      expect((yield* variants([a.assistantVariantId]))[0]!.content).toBe("one more")
      first.state.text = "one more, never written"
      second.state.text = "two more"
      yield* TestClock.adjust(250)
      expect((yield* variants([a.assistantVariantId, b.assistantVariantId])).map((row) => row.content)).toEqual(["one more", "two more"])
    }))

  it.effect("a source the database refuses is dropped and logged, and holds no other source back", () =>
    Effect.gen(function*() {
      const writer = yield* WriteBehind
      const chat = yield* seedChat
      const good = textOf(chat.assistantVariantId)
      // A step row of a run that does not exist: its foreign key refuses the whole batch.
      let refusedTakes = 0
      let pending = true
      const bad = {
        closed: false,
        take: (batch: Batch) => {
          if (!pending) return undefined
          refusedTakes++
          batch.steps.set(chat.assistantVariantId as never, {
            id: chat.assistantVariantId as never,
            runId: chat.userMessageId as never,
            stepType: "pre",
            position: 0,
            status: "done",
            label: "pre",
            output: null,
            error: null,
            startedAt: new Date(0),
            finishedAt: new Date(0)
          })
          return () => {
            pending = false
          }
        }
      }
      yield* writer.add(bad)
      yield* writer.add(good.source)
      good.state.text = "written anyway"
      yield* writer.flush
      expect((yield* variants([chat.assistantVariantId]))[0]!.content).toBe("written anyway")
      // Tried in the batch, then alone, then dropped: the next writes do not try it again.
      expect(refusedTakes).toBe(2)
      yield* writer.flush
      yield* writer.flush
      expect(refusedTakes).toBe(2)
    }))

  it.effect("a large journal is written in slices, the events of a run whose row changes in the last statement with that row", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const repo = yield* BatchRepo
      const runOf = (key: string) =>
        Effect.gen(function*() {
          yield* insertRun(yield* seedChat, { key })
          return (yield* sql<{ readonly id: RunId }>`SELECT id FROM pipeline_runs WHERE idempotency_key = ${key}`)[0]!.id
        })
      const [streaming, closing] = [yield* runOf("slices-streaming"), yield* runOf("slices-closing")]
      const events = (runId: RunId, count: number) =>
        Array.from({ length: count }, (_, i) => ({ runId, record: { seq: i + 1, type: "llm.stream.delta" as const, at: 1_700_000_000_000 + i, data: `t${i}` } }))
      const batch: Batch = {
        steps: new Map(),
        generations: new Map(),
        variants: new Map(),
        runs: new Map([[closing, { outcome: { status: "done", abortReason: null, error: null, finishedAt: new Date(), abortRequested: null } }]]),
        events: [...events(streaming, 600), ...events(closing, 10)]
      }
      yield* repo.write(batch)
      const rows = yield* sql<{ readonly run_id: RunId; readonly seq: number; readonly tx: string }>`
        SELECT run_id, seq, xmin::text AS tx FROM pipeline_run_events WHERE run_id IN (${streaming}, ${closing}) ORDER BY run_id, seq`
      const streamed = rows.filter((row) => row.run_id === streaming)
      const closed = rows.filter((row) => row.run_id === closing)
      expect(streamed.map((row) => row.seq)).toEqual(Array.from({ length: 600 }, (_, i) => i + 1))
      expect(closed).toHaveLength(10)
      // Three statements: 256 events, 256 more, then the last 88 with the closing run's events and row.
      expect([...new Set(streamed.map((row) => row.tx))]).toHaveLength(3)
      expect(streamed.filter((row) => row.tx === streamed[0]!.tx)).toHaveLength(256)
      const last = streamed[599]!.tx
      expect(new Set(closed.map((row) => row.tx))).toEqual(new Set([last]))
      const [run] = yield* sql<{ readonly status: string; readonly tx: string }>`SELECT status, xmin::text AS tx FROM pipeline_runs WHERE id = ${closing}`
      expect(run).toEqual({ status: "done", tx: last })
      // Written again (a retry after a failure), it changes nothing.
      yield* repo.write(batch)
      expect((yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM pipeline_run_events WHERE run_id IN (${streaming}, ${closing})`)[0]!.n).toBe(610)
    }))
})

layer(writeBehind, { timeout: 60_000 })("the journal's writes", (it) => {
  it.effect("a late journal of a run deleted meanwhile holds no other run's events back; times are kept to the millisecond", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const repo = yield* BatchRepo
      const chat = yield* seedChat
      yield* insertRun(chat, { key: "late-kept", status: "done" })
      yield* insertRun(chat, { key: "late-deleted", status: "done" })
      const idOf = (key: string) =>
        Effect.map(sql<{ readonly id: RunId }>`SELECT id FROM pipeline_runs WHERE idempotency_key = ${key}`, (rows) => rows[0]!.id)
      const [kept, deleted] = [yield* idOf("late-kept"), yield* idOf("late-deleted")]
      yield* sql`DELETE FROM pipeline_runs WHERE id = ${deleted}`
      const at = 1_700_000_000_123
      const event = (runId: RunId, seq: number) => ({ runId, record: { seq, type: "llm.stream.delta" as const, at: at + seq, data: `t${seq}` } })
      yield* repo.write({ steps: new Map(), generations: new Map(), variants: new Map(), runs: new Map(), events: [event(deleted, 1), event(kept, 1), event(kept, 2)] })
      const rows = yield* sql<{ readonly run_id: RunId; readonly seq: number; readonly at: Date }>`
        SELECT run_id, seq, at FROM pipeline_run_events WHERE run_id = ${kept} ORDER BY seq`
      expect(rows.map((row) => [row.run_id, row.seq, row.at.getTime()])).toEqual([[kept, 1, at + 1], [kept, 2, at + 2]])
    }))
})
