import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"

/**
 * Access (spec 85): every chat has an owner (existing chats belong to the anonymous owner of
 * `AUTH=none`), and so has every run; API keys are stored only as hashes; and one secret shared by every instance on the
 * database signs the short-lived tokens that let a browser `EventSource` follow one run.
 */
const statements = () => [
  `ALTER TABLE chats ADD COLUMN owner text NOT NULL DEFAULT 'anonymous'`,
  `CREATE INDEX chats_owner_idx ON chats (owner)`,
  // A run's owner is its chat's, copied so that the owner's live runs are counted from one index.
  `ALTER TABLE pipeline_runs ADD COLUMN owner text NOT NULL DEFAULT 'anonymous'`,
  `CREATE INDEX pipeline_runs_live_owner_idx ON pipeline_runs (owner) WHERE status = 'running'`,
  `CREATE TABLE api_keys (
     id uuid PRIMARY KEY,
     owner text NOT NULL,
     key_hash text NOT NULL UNIQUE,
     created_at timestamptz NOT NULL,
     revoked_at timestamptz
   )`,
  `CREATE TABLE service_secrets (name text PRIMARY KEY, value text NOT NULL)`,
  `INSERT INTO service_secrets (name, value) VALUES ('event_tokens', '${randomBytes(32).toString("base64url")}')`
]

export default Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.forEach(statements(), (statement) => sql.unsafe(statement), { discard: true }))
