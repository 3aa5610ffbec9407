import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * `turn_stops` (spec 75, "Stop before the run id is known"): a stop asked for by the client's own
 * id (the turn's idempotency key) before the turn's run existed. The turn request that arrives
 * later with that key, within the stop's lifetime, creates its run already aborted and removes the
 * stop. Keyed like `pipeline_runs`' unique key; gone with its chat.
 */
export default Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql`CREATE TABLE turn_stops (
    chat_id uuid NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    idempotency_key text NOT NULL,
    requested_at timestamptz NOT NULL,
    PRIMARY KEY (chat_id, idempotency_key)
  )`)
