import { SqlClient } from "@effect/sql"
import { Clock, Duration, Effect, Layer, Schedule } from "effect"
import type { GenerationId, RunId, StepRunId } from "../../domain/Ids.ts"
import { stepOrder } from "../../domain/Run.ts"
import type { StepType } from "../../domain/Run.ts"
import type { RunEventBody, StepRef } from "../../domain/RunEvent.ts"
import type { EventRecord } from "../../domain/RunEventJson.ts"
import { dataOf } from "../../domain/RunEventJson.ts"
import { BatchRepo, emptyBatch } from "../BatchRepo.ts"
import { Journal } from "../journal/Journal.ts"
import { AppConfig } from "../AppConfig.ts"
import { Instance } from "../Instance.ts"
import * as Metrics from "../observability/Metrics.ts"
import { makeId } from "../Uuid.ts"
import { Runner } from "./Runner.ts"

const interrupted = { code: "run_interrupted", message: "the process running this turn stopped before it ended" }

interface ExpiredRun {
  readonly generationId: GenerationId | null
  readonly ownerInstance: string | null
}

/**
 * The sweeper (spec 10, "Crash safety"): closes runs whose lease expired because their process
 * died. Each run is claimed by a conditional update, so several instances may sweep at once and
 * every run is closed exactly once: run → error `run_interrupted`, the running step → error, the
 * steps never reached → skipped, a streaming generation → error, all at the sweep time, and the
 * closing events appended to the journal after its last `seq`. Partial text stays.
 */
export class Sweeper extends Effect.Service<Sweeper>()("turn-runner/Sweeper", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const runner = yield* Runner
    const instance = yield* Instance
    const journal = yield* Journal
    const batches = yield* BatchRepo

    const closeOne = (runId: RunId, sweptAt: Date) =>
      sql.withTransaction(Effect.gen(function*() {
        const [run] = yield* sql<ExpiredRun>`
          UPDATE pipeline_runs
          SET status = 'error', error_code = ${interrupted.code}, error_message = ${interrupted.message},
              finished_at = ${sweptAt}, lease_expires_at = NULL
          WHERE id = ${runId} AND status = 'running' AND lease_expires_at < ${sweptAt}
          RETURNING generation_id AS "generationId", owner_instance AS "ownerInstance"`
        if (run === undefined) return false // another sweeper was first, or the owner renewed it
        const openSteps = yield* sql<{ readonly id: StepRunId; readonly stepType: StepType; readonly startedAt: Date }>`
          UPDATE pipeline_step_runs SET status = 'error', error_code = ${interrupted.code},
                 error_message = ${interrupted.message}, finished_at = ${sweptAt}
          WHERE run_id = ${runId} AND status = 'running'
          RETURNING id, step_type AS "stepType", started_at AS "startedAt"`
        const present = yield* sql<{ readonly stepType: StepType }>`
          SELECT step_type AS "stepType" FROM pipeline_step_runs WHERE run_id = ${runId}`
        const missing = stepOrder.filter((type) => !present.some((step) => step.stepType === type))
        const skipped: Array<StepRef> = []
        for (const stepType of missing) {
          const ref: StepRef = { stepRunId: yield* makeId<StepRunId>(), stepType }
          skipped.push(ref)
          yield* sql`INSERT INTO pipeline_step_runs (id, run_id, step_type, position, status, label, started_at, finished_at)
                     VALUES (${ref.stepRunId}, ${runId}, ${stepType}, ${stepOrder.indexOf(stepType)}, 'skipped', ${stepType},
                             ${sweptAt}, ${sweptAt})`
        }
        const generations = yield* sql<{ readonly id: GenerationId }>`
          UPDATE llm_generations SET status = 'error', error_code = ${interrupted.code},
                 error_message = ${interrupted.message}, finished_at = ${sweptAt}
          WHERE run_id = ${runId} AND status = 'streaming' RETURNING id`

        // The journal ends with exactly one terminal event, after whatever the dead process wrote.
        let seq = yield* journal.lastSeq(runId)
        const closing: Array<EventRecord> = []
        const event = (body: RunEventBody, step?: StepRef) =>
          closing.push({ seq: ++seq, type: body.type, at: sweptAt.getTime(), data: dataOf(body, step) })
        const at = sweptAt.toISOString()
        for (const step of openSteps) {
          const ref = { stepRunId: step.id, stepType: step.stepType }
          if (step.stepType === "llm" && generations.length > 0) event({ type: "llm.stream.done", status: "error" }, ref)
          event({ type: "pipeline.step.done", status: "error", durationMs: sweptAt.getTime() - step.startedAt.getTime(), error: interrupted }, ref)
        }
        for (const ref of skipped) event({ type: "pipeline.step.done", status: "skipped", durationMs: 0 }, ref)
        event({ type: "pipeline.run.error", status: "error", finishedAt: at, error: interrupted })
        // Closing events name the generation if the run has one, even if its first event was never journaled.
        if (run.generationId !== null) {
          yield* sql`UPDATE pipeline_runs SET generation_seq = ${closing[0]!.seq}
                     WHERE id = ${runId} AND generation_seq IS NULL AND NOT EXISTS (
                       SELECT 1 FROM pipeline_run_events WHERE run_id = ${runId} AND type = 'llm.stream.meta')`
        }
        yield* batches.write({ ...emptyBatch(), events: closing.map((record) => ({ runId, record })) })
        yield* Effect.logWarning("swept an interrupted run").pipe(
          Effect.annotateLogs({ runId, owner: run.ownerInstance ?? "unknown" })
        )
        return true
      }))

    /** One pass over the expired leases; the count of runs this pass closed. */
    const sweep = Effect.gen(function*() {
      const sweptAt = new Date(yield* Clock.currentTimeMillis)
      const expired = yield* sql<{ readonly id: RunId; readonly owner: string | null }>`
        SELECT id, owner_instance AS owner FROM pipeline_runs
        WHERE status = 'running' AND lease_expires_at < ${sweptAt}`
      let closed = 0
      for (const run of expired) {
        // A run of ours that is still live only missed a renewal: its own finalizers will close it.
        if (run.owner === instance.id && runner.isLive(run.id)) continue
        if (yield* closeOne(run.id, sweptAt)) {
          closed++
          Metrics.count(Metrics.runsSwept, 1)
        }
      }
      return closed
    }).pipe(Effect.withSpan("Sweeper.sweep"))

    return { sweep } as const
  })
}) {}

/** Sweeps at start-up and every `LEASE_TTL_MS / 3`, for as long as the service runs. */
export const SweeperLoop = Layer.scopedDiscard(Effect.gen(function*() {
  const sweeper = yield* Sweeper
  const config = yield* AppConfig
  yield* sweeper.sweep.pipe(
    Effect.catchAllCause((cause) => Effect.as(Effect.logWarning("sweep failed", cause), 0)),
    Effect.repeat(Schedule.spaced(Duration.millis(config.leaseTtlMs / 3))),
    // A trace every few seconds per instance would bury the turns' own; a sweep is logged.
    Effect.withTracerEnabled(false),
    Effect.forkScoped
  )
}))
