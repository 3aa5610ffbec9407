import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Chunk, Effect, Layer, TestClock } from "effect"
import { servicesWith } from "../../../src/AppLayer.ts"
import type { ChatId, MessageId, RunId } from "../../../src/domain/Ids.ts"
import { LanguageModelLive } from "../../../src/services/llm/LanguageModelLive.ts"
import { PostStepLive } from "../../../src/services/runner/PostStep.ts"
import { PreStep, PreStepLive } from "../../../src/services/runner/PreStep.ts"
import { Turns } from "../../../src/services/runner/Turns.ts"
import { uuidv7At } from "../../../src/services/Uuid.ts"
import { seedChat } from "../../support/Fixtures.ts"
import { journalOf } from "../../support/Journal.ts"
import { testConfig } from "../../support/TestConfig.ts"
import { pglite } from "../../support/TestDatabase.ts"

/** A `pre` that takes 40 ms of (virtual) time, around the built-in one. */
const slowPre = Layer.effect(
  PreStep,
  Effect.map(PreStep, (builtin) => ({ ...builtin, run: (context) => Effect.zipRight(Effect.sleep(40), builtin.run(context)) }))
).pipe(Layer.provide(PreStepLive))

const steps = Layer.merge(slowPre, PostStepLive)

const services = servicesWith(steps).pipe(
  Layer.provide(LanguageModelLive),
  Layer.provide(testConfig({ flushIntervalMs: 250 })),
  Layer.provideMerge(pglite.layer)
)

/**
 * Waits until some fiber sleeps until `at` (virtual ms), then moves the clock there. The run does
 * real database I/O between its sleeps, so the clock may only move once it is waiting again.
 */
const advanceTo = (at: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < 100_000; i++) {
      if (Chunk.toReadonlyArray(yield* TestClock.sleeps()).includes(at)) return yield* TestClock.setTime(at)
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
    }
    throw new Error(`nothing ever slept until ${at}`)
  })

const row = (table: string, where: string, id: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(sql<Record<string, unknown>>`SELECT * FROM ${sql(table)} WHERE ${sql(where)} = ${id}`, (rows) => rows))

const at = (value: unknown) => (value as Date).getTime()

layer(services, { timeout: 60_000 })("the runner under TestClock", (it) => {
  it.effect("records each step's timings exactly as the Clock saw them, and flushes on the interval", () =>
    Effect.gen(function*() {
      const chat = yield* seedChat
      const sql = yield* SqlClient.SqlClient
      // The fixture's assistant answer is the latest message: start a new user turn after it.
      const turns = yield* Turns
      const started = yield* turns.sendMessage(chat.chatId as ChatId, {
        userMessageId: uuidv7At(Date.now()) as MessageId,
        content: "Tell me about otters",
        // chunks at 40+50 = 90, 170 and 250 ms
        settings: { max_tokens: 3, local: { firstTokenDelayMs: 50, tokenDelayMs: 80 } },
        onBusy: "reject",
        abortOnDisconnect: false
      })
      const runId: RunId = started.run.runId
      yield* advanceTo(40) // pre's own 40 ms
      yield* advanceTo(90)
      yield* advanceTo(170)
      yield* advanceTo(250) // the last chunk, and the journal's first interval
      for (let i = 0; i < 100_000; i++) {
        const [run] = yield* row("pipeline_runs", "id", runId)
        if (run?.status !== "running") break
        yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      }
      const [run] = yield* row("pipeline_runs", "id", runId)
      const steps = yield* sql<Record<string, unknown>>`SELECT * FROM pipeline_step_runs WHERE run_id = ${runId} ORDER BY position`
      const [generation] = yield* row("llm_generations", "run_id", runId)
      expect(run).toMatchObject({ status: "done" })
      expect(at(run!.started_at)).toBe(0)
      expect(steps.map((step) => [step.step_type, step.status, at(step.started_at), at(step.finished_at)])).toEqual([
        ["pre", "done", 0, 40],
        ["llm", "done", 40, 250],
        ["post", "done", 250, 250]
      ])
      expect([at(generation!.started_at), at(generation!.finished_at)]).toEqual([40, 250])
      expect(at(run!.finished_at)).toBe(250)
      const events = yield* sql<{ readonly seq: number; readonly at: Date; readonly type: string }>`
        SELECT seq, at, type FROM pipeline_run_events WHERE run_id = ${runId} ORDER BY seq`
      expect(events.map((event) => [event.type, event.at.getTime()])).toEqual([
        ["pipeline.run.started", 0],
        ["pipeline.step.started", 0],
        ["pipeline.step.done", 40],
        ["pipeline.step.started", 40],
        ["llm.stream.meta", 40],
        ["llm.stream.delta", 90],
        ["llm.stream.delta", 170],
        ["llm.stream.delta", 250],
        ["llm.stream.done", 250],
        ["pipeline.step.done", 250],
        ["pipeline.step.started", 250],
        ["pipeline.step.done", 250],
        ["pipeline.run.done", 250]
      ])
      // Rows written by one statement share a transaction id: the run lived from 0 to 250 ms, so the
      // journal took at most the write-behind's tick at 250, the write before post and the run's
      // last write, not one per event.
      const [journal] = yield* sql<{ readonly writes: number }>`
        SELECT count(DISTINCT xmin::text)::int AS writes FROM pipeline_run_events WHERE run_id = ${runId}`
      expect(journal!.writes).toBeGreaterThanOrEqual(1)
      expect(journal!.writes).toBeLessThanOrEqual(3)
    }))
})

const timeoutServices = servicesWith(steps).pipe(
  Layer.provide(LanguageModelLive),
  Layer.provide(testConfig({ runTimeoutMs: 1000 })),
  Layer.provideMerge(pglite.layer)
)

layer(timeoutServices, { timeout: 60_000 })("RUN_TIMEOUT_MS under TestClock", (it) => {
  it.effect("a run still going after RUN_TIMEOUT_MS ends error run_timeout, its step and generation too", () =>
    Effect.gen(function*() {
      const chat = yield* seedChat
      const sql = yield* SqlClient.SqlClient
      const started = yield* (yield* Turns).sendMessage(chat.chatId as ChatId, {
        userMessageId: uuidv7At(Date.now()) as MessageId,
        content: "Say two words, then nothing",
        settings: { max_tokens: 10, local: { tokenDelayMs: 100, stallAfterTokens: 2 } },
        onBusy: "reject",
        abortOnDisconnect: false
      })
      yield* advanceTo(40) // pre
      yield* advanceTo(140) // the second chunk; then silence
      yield* advanceTo(1000) // the deadline
      for (let i = 0; i < 100_000; i++) {
        const [run] = yield* row("pipeline_runs", "id", started.run.runId)
        if (run?.status !== "running") break
        yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      }
      const [run] = yield* row("pipeline_runs", "id", started.run.runId)
      expect(run).toMatchObject({ status: "error", error_code: "run_timeout", abort_reason: null })
      expect(at(run!.finished_at)).toBe(1000)
      const steps = yield* sql<Record<string, unknown>>`SELECT step_type, status, error_code FROM pipeline_step_runs WHERE run_id = ${started.run.runId} ORDER BY position`
      expect(steps).toEqual([
        { step_type: "pre", status: "done", error_code: null },
        { step_type: "llm", status: "error", error_code: "run_timeout" },
        { step_type: "post", status: "skipped", error_code: null }
      ])
      const [generation] = yield* row("llm_generations", "run_id", started.run.runId)
      expect(generation).toMatchObject({ status: "error", error_code: "run_timeout" })
      const events: ReadonlyArray<Record<string, unknown>> = yield* journalOf(started.run.runId)
      expect(events.slice(-5).map((event) => [event.type, event.status ?? null, (event.error as { code?: string } | undefined)?.code ?? null])).toEqual([
        ["llm.stream.error", null, "run_timeout"],
        ["llm.stream.done", "error", null],
        ["pipeline.step.done", "error", "run_timeout"],
        ["pipeline.step.done", "skipped", null],
        ["pipeline.run.error", "error", "run_timeout"]
      ])
    }))
})
