import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * `pipeline_runs.abort_requested_at` and `abort_requested_reason` (spec 50, 80): an abort request
 * is stored on the run before it is signalled, so an instance that missed the signal still finds
 * it on its next lease renewal. A run finished after an abort request keeps them.
 */
export default Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql`ALTER TABLE pipeline_runs ADD COLUMN abort_requested_at timestamptz, ADD COLUMN abort_requested_reason text`)
