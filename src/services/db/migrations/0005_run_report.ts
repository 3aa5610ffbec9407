import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * What the run report (spec 95) reads beyond the rows the run already has: the run's trace id
 * (null while tracing is off), how many repeated requests it answered, and the prompt's messages
 * as roles, lengths and hashes (their text only in `prompt_snapshot`, when that is enabled).
 */
const statements = [
  `ALTER TABLE pipeline_runs ADD COLUMN trace_id text, ADD COLUMN duplicate_requests integer NOT NULL DEFAULT 0`,
  `ALTER TABLE llm_generations ADD COLUMN prompt_messages jsonb`
]

export default Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.forEach(statements, (statement) => sql.unsafe(statement), { discard: true }))
