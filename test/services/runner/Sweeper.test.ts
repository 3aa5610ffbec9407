import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Context, Effect, Layer, Stream, TestClock } from "effect"
import { BuiltinStepsLive, servicesWith } from "../../../src/AppLayer.ts"
import type { MessageId, RunId } from "../../../src/domain/Ids.ts"
import { Chats } from "../../../src/services/Chats.ts"
import { Instance } from "../../../src/services/Instance.ts"
import { LanguageModelLive } from "../../../src/services/llm/LanguageModelLive.ts"
import { Runs } from "../../../src/services/runner/Runs.ts"
import { Sweeper } from "../../../src/services/runner/Sweeper.ts"
import { Turns } from "../../../src/services/runner/Turns.ts"
import { uuidv7At } from "../../../src/services/Uuid.ts"
import { journalOf } from "../../support/Journal.ts"
import { seedChat } from "../../support/Fixtures.ts"
import { checkInvariants } from "../../support/Invariants.ts"
import { testConfig } from "../../support/TestConfig.ts"
import { testDatabases } from "../../support/TestDatabase.ts"

const id = () => uuidv7At(Date.now())

/**
 * The rows a process leaves behind when it dies in the middle of streaming: `pre` done, `llm`
 * running, the generation streaming, four events journaled, and a lease that ran out.
 */
const deadRun = (leaseExpiresAt: Date) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const chat = yield* seedChat
    const runId = id()
    const preId = id()
    const llmId = id()
    const generationId = id()
    const t = (ms: number) => new Date(Date.now() - 60_000 + ms)
    yield* sql`INSERT INTO pipeline_runs (id, chat_id, pipeline_id, pipeline_name, trigger, status, idempotency_key,
                 request_fingerprint, user_message_id, assistant_message_id, assistant_variant_id, owner_instance,
                 lease_expires_at, started_at)
               VALUES (${runId}, ${chat.chatId}, 'builtin:default', 'default', 'user_message', 'running', ${`user_message:${chat.userMessageId}`},
                 'fp', ${chat.userMessageId}, ${chat.assistantMessageId}, ${chat.assistantVariantId}, 'a-dead-process',
                 ${leaseExpiresAt}, ${t(0)})`
    yield* sql`INSERT INTO pipeline_step_runs (id, run_id, step_type, position, status, label, started_at, finished_at)
               VALUES (${preId}, ${runId}, 'pre', 0, 'done', 'Preparing context', ${t(1)}, ${t(2)}),
                      (${llmId}, ${runId}, 'llm', 1, 'running', 'Generating answer', ${t(3)}, NULL)`
    yield* sql`INSERT INTO llm_generations (id, run_id, step_run_id, chat_id, assistant_message_id, variant_id, status,
                 provider, model, prompt_hash, started_at)
               VALUES (${generationId}, ${runId}, ${llmId}, ${chat.chatId}, ${chat.assistantMessageId},
                 ${chat.assistantVariantId}, 'streaming', 'local', 'local-echo', 'hash', ${t(4)})`
    yield* sql`UPDATE pipeline_runs SET generation_id = ${generationId} WHERE id = ${runId}`
    yield* sql`UPDATE message_variants SET content = 'partial ', generation_id = ${generationId} WHERE id = ${chat.assistantVariantId}`
    const types = ["pipeline.run.started", "pipeline.step.started", "pipeline.step.done", "pipeline.step.started"]
    yield* sql`INSERT INTO pipeline_run_events ${sql.insert(types.map((type, i) => ({
      run_id: runId, seq: i + 1, type, at: t(i), data: `"status":"running"`
    })))}`
    return { chat, runId, generationId }
  })

const services = (database: (typeof testDatabases)[number]) =>
  servicesWith(BuiltinStepsLive).pipe(
    Layer.provide(LanguageModelLive),
    Layer.provide(testConfig()),
    Layer.provideMerge(database.layer)
  )

for (const database of testDatabases) {
  layer(services(database), { timeout: 60_000, excludeTestServices: true })(`the sweeper on ${database.name}`, (it) => {
    it.effect("closes a run whose lease expired: run_interrupted, running step error, later steps skipped, generation error", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { chat, generationId, runId } = yield* deadRun(new Date(Date.now() - 1000))
        expect(yield* (yield* Sweeper).sweep).toBe(1)
        const [run] = yield* sql<Record<string, unknown>>`SELECT * FROM pipeline_runs WHERE id = ${runId}`
        expect(run).toMatchObject({ status: "error", error_code: "run_interrupted", lease_expires_at: null })
        const steps = yield* sql<Record<string, unknown>>`SELECT step_type, status, error_code FROM pipeline_step_runs WHERE run_id = ${runId} ORDER BY position`
        expect(steps).toEqual([
          { step_type: "pre", status: "done", error_code: null },
          { step_type: "llm", status: "error", error_code: "run_interrupted" },
          { step_type: "post", status: "skipped", error_code: null }
        ])
        const [generation] = yield* sql<Record<string, unknown>>`SELECT status, error_code FROM llm_generations WHERE id = ${generationId}`
        expect(generation).toEqual({ status: "error", error_code: "run_interrupted" })
        const [variant] = yield* sql<{ readonly content: string }>`SELECT content FROM message_variants WHERE id = ${chat.assistantVariantId}`
        expect(variant?.content).toBe("partial ")
        const events: ReadonlyArray<Record<string, unknown>> = yield* journalOf(runId)
        expect(events.slice(4).map((event) => [event.seq, event.type, event.status, event.stepType])).toEqual([
          [5, "llm.stream.done", "error", "llm"],
          [6, "pipeline.step.done", "error", "llm"],
          [7, "pipeline.step.done", "skipped", "post"],
          [8, "pipeline.run.error", "error", undefined]
        ])
        expect(events[7]).toMatchObject({ runId, chatId: chat.chatId, generationId, error: { code: "run_interrupted" } })
        // Its report says where it stopped and why, without reading the rows.
        const { ending } = yield* (yield* Runs).report(runId as RunId)
        expect(ending).toMatchObject({ status: "error", step: "llm", reason: "run_interrupted" })
        expect(ending?.summary).toMatch(/^failed in the llm step with run_interrupted \(.+\), [\d.]+ s after the start, after 0 deltas$/)
      }))

    it.effect("leaves a run whose lease has not expired", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { runId } = yield* deadRun(new Date(Date.now() + 60_000))
        expect(yield* (yield* Sweeper).sweep).toBe(0)
        const [run] = yield* sql<{ readonly status: string }>`SELECT status FROM pipeline_runs WHERE id = ${runId}`
        expect(run?.status).toBe("running")
        yield* sql`UPDATE pipeline_runs SET lease_expires_at = ${new Date(Date.now() - 1)} WHERE id = ${runId}`
        expect(yield* (yield* Sweeper).sweep).toBe(1)
      }))

    it.scoped("several sweepers at once close each run exactly once", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const dead = yield* Effect.all(Array.from({ length: 3 }, () => deadRun(new Date(Date.now() - 1000))))
        // Three more instances' sweepers beside this one's, all sweeping at the same moment.
        const others = yield* Effect.all(Array.from({ length: 3 }, () =>
          Effect.map(Layer.build(Sweeper.Default.pipe(Layer.provide(Instance.Default))), (context) => Context.get(context, Sweeper))))
        const closed = yield* Effect.all([yield* Sweeper, ...others].map((sweeper) => sweeper.sweep), { concurrency: "unbounded" })
        expect(closed.reduce((a, b) => a + b, 0)).toBe(3)
        for (const { runId } of dead) {
          const terminal = yield* sql`SELECT seq FROM pipeline_run_events WHERE run_id = ${runId} AND type LIKE 'pipeline.run.%' AND type <> 'pipeline.run.started'`
          expect(terminal).toHaveLength(1)
        }
      }))

    it.effect("the database satisfies every invariant of the spec", () => checkInvariants)
  })
}

const shortLeases = servicesWith(BuiltinStepsLive).pipe(
  Layer.provide(LanguageModelLive),
  Layer.provide(testConfig({ leaseTtlMs: 300 })),
  Layer.provideMerge(testDatabases[0]!.layer)
)

layer(shortLeases, { timeout: 60_000, excludeTestServices: true })("leases", (it) => {
  it.effect("the owner renews its live runs' leases, so a run outliving several leases is never swept", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const chat = yield* (yield* Chats).create({})
      const started = yield* (yield* Turns).sendMessage(chat.id, {
        userMessageId: id() as MessageId,
        content: "Take your time",
        // 30 chunks 50 ms apart: about five leases of 300 ms
        settings: { max_tokens: 30, local: { tokenDelayMs: 50 } },
        onBusy: "reject",
        abortOnDisconnect: false
      })
      const events = yield* (yield* Runs).events(started.run.runId, 0)
      let deltas = 0
      yield* Stream.runForEach(events, (event) =>
        Effect.gen(function*() {
          if (event.type !== "llm.stream.delta" || ++deltas % 10 !== 0) return
          // Every 500 ms or so: the lease lies ahead, and a sweep leaves the run alone.
          const [run] = yield* sql<{ readonly lease: Date; readonly status: string }>`
            SELECT lease_expires_at AS lease, status FROM pipeline_runs WHERE id = ${started.run.runId}`
          expect(run?.status).toBe("running")
          expect(run!.lease.getTime()).toBeGreaterThan(Date.now())
          expect(yield* (yield* Sweeper).sweep).toBe(0)
        }))
      expect(deltas).toBe(30)
      const [run] = yield* sql<{ readonly status: string; readonly lease: Date | null }>`
        SELECT status, lease_expires_at AS lease FROM pipeline_runs WHERE id = ${started.run.runId}`
      expect(run).toEqual({ status: "done", lease: null })
    }))
})

layer(services(testDatabases[0]!), { timeout: 60_000 })("the sweeper under TestClock", (it) => {
  it.effect("a lease expires exactly at its time: a sweep before leaves the run, a sweep after closes it at the sweep time", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      // The clock starts at 0: this lease runs out at 1 s.
      const { runId } = yield* deadRun(new Date(1000))
      const sweeper = yield* Sweeper
      yield* TestClock.setTime(999)
      expect(yield* sweeper.sweep).toBe(0)
      yield* TestClock.setTime(1001)
      expect(yield* sweeper.sweep).toBe(1)
      const [run] = yield* sql<{ readonly status: string; readonly finished: Date }>`
        SELECT status, finished_at AS finished FROM pipeline_runs WHERE id = ${runId}`
      expect(run).toEqual({ status: "error", finished: new Date(1001) })
      const steps = yield* sql<{ readonly finished: Date }>`
        SELECT finished_at AS finished FROM pipeline_step_runs WHERE run_id = ${runId} AND step_type <> 'pre'`
      expect(steps.map((step) => step.finished.getTime())).toEqual([1001, 1001])
    }))
})

const renewing = servicesWith(BuiltinStepsLive).pipe(
  Layer.provide(LanguageModelLive),
  Layer.provide(testConfig({ leaseTtlMs: 3000 })),
  Layer.provideMerge(testDatabases[0]!.layer)
)

/** Moves the virtual clock forward in small steps, letting the database work between them finish. */
const advance = (ms: number) =>
  Effect.gen(function*() {
    for (let t = 0; t < ms; t += 100) {
      yield* TestClock.adjust(100)
      for (let i = 0; i < 20; i++) yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
    }
  })

layer(renewing, { timeout: 60_000 })("leases under TestClock", (it) => {
  it.effect("the owner keeps its live run's lease ahead of the clock, so sweeps leave it; two sweepers at once close a dead run once", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const chat = yield* (yield* Chats).create({})
      const started = yield* (yield* Turns).sendMessage(chat.id, {
        userMessageId: id() as MessageId,
        content: "Slowly",
        settings: { max_tokens: 100, local: { tokenDelayMs: 1000 } },
        onBusy: "reject",
        abortOnDisconnect: false
      })
      const { runId: deadId } = yield* deadRun(new Date(2000))
      yield* advance(9000) // three leases of 3 s
      const now = yield* TestClock.currentTimeMillis
      const [live] = yield* sql<{ readonly status: string; readonly lease: Date }>`
        SELECT status, lease_expires_at AS lease FROM pipeline_runs WHERE id = ${started.run.runId}`
      expect(live?.status).toBe("running")
      expect(live!.lease.getTime()).toBeGreaterThan(now)
      const other = yield* Effect.map(Layer.build(Sweeper.Default.pipe(Layer.provide(Instance.Default))), (context) => Context.get(context, Sweeper))
      const closed = yield* Effect.all([(yield* Sweeper).sweep, other.sweep], { concurrency: 2 })
      expect(closed[0] + closed[1]).toBe(0) // the start-up/periodic sweeps already closed the dead run
      const [dead] = yield* sql<{ readonly status: string }>`SELECT status FROM pipeline_runs WHERE id = ${deadId}`
      expect(dead?.status).toBe("error")
      const terminal = yield* sql`SELECT seq FROM pipeline_run_events WHERE run_id = ${deadId} AND type = 'pipeline.run.error'`
      expect(terminal).toHaveLength(1)
      yield* (yield* Runs).abort(started.run.runId, "user")
    }).pipe(Effect.scoped))
})
