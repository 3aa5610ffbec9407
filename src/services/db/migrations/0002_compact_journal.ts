import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The journal stores per event only what varies (spec 80): `seq`, `type`, `at` and `data` (the
 * JSON members after the envelope, or a delta's bare text, see `domain/RunEventJson.ts`); the
 * envelope is the run's row, plus `generation_seq`, the first event that names the generation.
 * `type` stays text: an enum would save 13–17 bytes a row, but SQL written against the contract's
 * text column (`LIKE`, `IN`, text functions) would no longer work on it. Existing rows are
 * converted in place.
 */
const envelopeKeys = ["type", "seq", "at", "chatId", "runId", "pipelineId", "pipelineName", "trigger", "userMessageId",
  "assistantMessageId", "assistantVariantId", "generationId"]

const statements = [
  `ALTER TABLE pipeline_runs ADD COLUMN generation_seq integer`,
  `UPDATE pipeline_runs r SET generation_seq = (
     SELECT min(seq) FROM pipeline_run_events e WHERE e.run_id = r.id AND e.payload->>'generationId' IS NOT NULL)`,
  `ALTER TABLE pipeline_run_events ADD COLUMN data text`,
  `UPDATE pipeline_run_events SET data = CASE WHEN type = 'llm.stream.delta' THEN payload->>'content'
     ELSE substring((payload - ARRAY[${envelopeKeys.map((key) => `'${key}'`).join(", ")}])::text FROM '^\\{(.*)\\}$') END`,
  `ALTER TABLE pipeline_run_events DROP COLUMN payload`,
  `ALTER TABLE pipeline_run_events ALTER COLUMN data SET NOT NULL`
]

export default Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.forEach(statements, (statement) => sql.unsafe(statement), { discard: true }))
