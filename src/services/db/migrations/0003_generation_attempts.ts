import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/** `llm_generations.attempts` (spec 80): upstream requests made, one plus each retry (spec 90). */
export default Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql`ALTER TABLE llm_generations ADD COLUMN attempts integer NOT NULL DEFAULT 1 CHECK (attempts >= 1)`)
