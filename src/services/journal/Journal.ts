import { SqlClient } from "@effect/sql"
import { Effect, Option, Schema } from "effect"
import { StepRunId } from "../../domain/Ids.ts"
import type { RunId } from "../../domain/Ids.ts"
import { Envelope, RunEventType } from "../../domain/RunEvent.ts"
import { RunEventJson } from "../../domain/RunEventJson.ts"

/** One event as every consumer receives it: its `seq`, its type and its JSON text. */
export interface JournalEntry {
  readonly seq: number
  readonly type: RunEventType
  readonly json: string
}

const EventRow = Schema.Struct({
  seq: Schema.Int,
  type: RunEventType,
  at: Schema.DateFromSelf,
  data: Schema.String
})

const EnvelopeRow = Schema.Struct({
  ...Envelope.fields,
  generationSeq: Schema.NullOr(Schema.Int),
  llmStepRunId: Schema.NullOr(StepRunId)
})

const decodeEvents = Schema.decodeUnknown(Schema.Array(EventRow))
const decodeEnvelope = Schema.decodeUnknown(Schema.Array(EnvelopeRow))

/**
 * Reading the event journal `pipeline_run_events` (spec 60, "Journal and resume"; `BatchRepo` writes
 * it): rows hold what varies per event; reading puts the run's envelope back, so every consumer gets the bytes that were sent.
 * The generation is named from the run's `llm.stream.meta` on (or from `generation_seq`, which the
 * sweeper sets when it closes a run whose first generation event was never journaled).
 */
export class Journal extends Effect.Service<Journal>()("turn-runner/Journal", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const envelopeOf = (runId: RunId) =>
      sql`SELECT r.chat_id AS "chatId", r.id AS "runId", r.pipeline_id AS "pipelineId", r.pipeline_name AS "pipelineName",
                 r.trigger, r.user_message_id AS "userMessageId", r.assistant_message_id AS "assistantMessageId",
                 r.assistant_variant_id AS "assistantVariantId", r.generation_id AS "generationId",
                 COALESCE(r.generation_seq, (SELECT e.seq FROM pipeline_run_events e
                                             WHERE e.run_id = r.id AND e.type = 'llm.stream.meta')) AS "generationSeq",
                 (SELECT s.id FROM pipeline_step_runs s WHERE s.run_id = r.id AND s.step_type = 'llm') AS "llmStepRunId"
          FROM pipeline_runs r WHERE r.id = ${runId}`.pipe(Effect.flatMap(decodeEnvelope), Effect.map((rows) => rows[0]))

    /** The journaled events with `after < seq ≤ upTo`, in order, as they were sent. */
    const read = (runId: RunId, after: number, upTo = 2_147_483_647) =>
      Effect.gen(function*() {
        // The events first, then the envelope: a run row at least as new as the events, never
        // older (a run row read before the events' batch committed lacks the generation they name).
        const events = yield* sql`SELECT seq, type, at, data FROM pipeline_run_events
            WHERE run_id = ${runId} AND seq > ${after} AND seq <= ${upTo} ORDER BY seq`.pipe(Effect.flatMap(decodeEvents))
        if (events.length === 0) return []
        const envelope = yield* envelopeOf(runId)
        if (envelope === undefined) return []
        const { generationSeq, llmStepRunId, ...fields } = envelope
        const json = new RunEventJson({ ...fields, generationId: null })
        // The run may already name its generation while the event that first names it is not yet
        // journaled: then no journaled event names it.
        if (fields.generationId !== null && generationSeq !== null) json.setGeneration(fields.generationId, generationSeq)
        if (llmStepRunId !== null) json.setDeltaStep({ stepRunId: llmStepRunId, stepType: "llm" })
        return events.map((row): JournalEntry => ({
          seq: row.seq,
          type: row.type,
          json: json.encode({ seq: row.seq, type: row.type, at: row.at.getTime(), data: row.data })
        }))
      }).pipe(Effect.orDie)

    /** The `seq` of the run's journaled terminal event, once there is one. */
    const terminalSeq = (runId: RunId) =>
      sql<{ readonly seq: number }>`SELECT seq FROM pipeline_run_events
          WHERE run_id = ${runId} AND type IN ('pipeline.run.done', 'pipeline.run.aborted', 'pipeline.run.error')`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0]?.seq)),
        Effect.orDie
      )

    /** The last journaled `seq` of a run (0 for none). */
    const lastSeq = (runId: RunId) =>
      sql<{ readonly seq: number }>`SELECT COALESCE(MAX(seq), 0)::int AS seq FROM pipeline_run_events WHERE run_id = ${runId}`.pipe(
        Effect.map((rows) => rows[0]?.seq ?? 0),
        Effect.orDie
      )

    return { read, terminalSeq, lastSeq } as const
  })
}) {}
