import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The whole data model of spec 80. Statuses are text with CHECK constraints (not enums) so a new
 * value is a one-line migration; step types are free text so `rag`/`tool` steps can come later.
 */
const statements = [
  `CREATE TABLE chats (
    id uuid PRIMARY KEY,
    title text,
    system_prompt text,
    created_at timestamptz NOT NULL
  )`,
  `CREATE TABLE chat_messages (
    id uuid PRIMARY KEY,
    chat_id uuid NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('user', 'assistant')),
    position integer NOT NULL CHECK (position >= 0),
    selected_variant_id uuid,
    created_at timestamptz NOT NULL,
    CONSTRAINT chat_messages_chat_position_key UNIQUE (chat_id, position)
  )`,
  `CREATE TABLE message_variants (
    id uuid PRIMARY KEY,
    message_id uuid NOT NULL REFERENCES chat_messages (id) ON DELETE CASCADE,
    content text NOT NULL,
    generation_id uuid,
    created_at timestamptz NOT NULL
  )`,
  `CREATE INDEX message_variants_message_idx ON message_variants (message_id, created_at)`,
  // A message and its first variant are written in one transaction: the check waits for the commit.
  `ALTER TABLE chat_messages ADD CONSTRAINT chat_messages_selected_variant_fkey
    FOREIGN KEY (selected_variant_id) REFERENCES message_variants (id) DEFERRABLE INITIALLY DEFERRED`,
  `CREATE TABLE pipeline_runs (
    id uuid PRIMARY KEY,
    chat_id uuid NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    pipeline_id text NOT NULL,
    pipeline_name text NOT NULL,
    trigger text NOT NULL CHECK (trigger IN ('user_message', 'regenerate', 'manual', 'api')),
    status text NOT NULL CHECK (status IN ('running', 'done', 'aborted', 'error')),
    idempotency_key text NOT NULL,
    request_fingerprint text NOT NULL,
    user_message_id uuid REFERENCES chat_messages (id),
    assistant_message_id uuid NOT NULL REFERENCES chat_messages (id),
    assistant_variant_id uuid NOT NULL REFERENCES message_variants (id),
    generation_id uuid,
    settings jsonb NOT NULL DEFAULT '{}'::jsonb,
    abort_reason text CHECK (abort_reason IN ('user', 'client_disconnect', 'superseded', 'shutdown')),
    error_code text,
    error_message text,
    owner_instance text,
    lease_expires_at timestamptz,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    CONSTRAINT pipeline_runs_chat_idempotency_key UNIQUE (chat_id, idempotency_key),
    CONSTRAINT pipeline_runs_finished_iff_terminal CHECK ((status = 'running') = (finished_at IS NULL))
  )`,
  `CREATE UNIQUE INDEX pipeline_runs_one_running_per_chat ON pipeline_runs (chat_id) WHERE status = 'running'`,
  `CREATE INDEX pipeline_runs_lease_idx ON pipeline_runs (lease_expires_at) WHERE status = 'running'`,
  `CREATE INDEX pipeline_runs_chat_started_idx ON pipeline_runs (chat_id, started_at DESC)`,
  `CREATE TABLE pipeline_step_runs (
    id uuid PRIMARY KEY,
    run_id uuid NOT NULL REFERENCES pipeline_runs (id) ON DELETE CASCADE,
    step_type text NOT NULL,
    position integer NOT NULL CHECK (position >= 0),
    status text NOT NULL CHECK (status IN ('running', 'done', 'aborted', 'error', 'skipped')),
    label text,
    output jsonb CHECK (output IS NULL OR octet_length(output::text) <= 8192),
    error_code text,
    error_message text,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    CONSTRAINT pipeline_step_runs_run_step_type_key UNIQUE (run_id, step_type),
    CONSTRAINT pipeline_step_runs_finished_iff_closed CHECK ((status = 'running') = (finished_at IS NULL))
  )`,
  `CREATE TABLE llm_generations (
    id uuid PRIMARY KEY,
    run_id uuid UNIQUE REFERENCES pipeline_runs (id) ON DELETE CASCADE,
    step_run_id uuid REFERENCES pipeline_step_runs (id) ON DELETE CASCADE,
    chat_id uuid NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    assistant_message_id uuid NOT NULL REFERENCES chat_messages (id),
    variant_id uuid NOT NULL REFERENCES message_variants (id),
    status text NOT NULL CHECK (status IN ('streaming', 'done', 'aborted', 'error')),
    provider text NOT NULL,
    model text NOT NULL,
    params jsonb NOT NULL DEFAULT '{}'::jsonb,
    prompt_hash text NOT NULL,
    prompt_snapshot jsonb,
    prompt_tokens integer,
    completion_tokens integer,
    finish_reason text,
    error_code text,
    error_message text,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    CONSTRAINT llm_generations_finished_iff_closed CHECK ((status = 'streaming') = (finished_at IS NULL))
  )`,
  `CREATE INDEX llm_generations_streaming_idx ON llm_generations (started_at) WHERE status = 'streaming'`,
  `ALTER TABLE message_variants ADD CONSTRAINT message_variants_generation_fkey
    FOREIGN KEY (generation_id) REFERENCES llm_generations (id) DEFERRABLE INITIALLY DEFERRED`,
  `ALTER TABLE pipeline_runs ADD CONSTRAINT pipeline_runs_generation_fkey
    FOREIGN KEY (generation_id) REFERENCES llm_generations (id) DEFERRABLE INITIALLY DEFERRED`,
  `CREATE TABLE pipeline_run_events (
    run_id uuid NOT NULL REFERENCES pipeline_runs (id) ON DELETE CASCADE,
    seq integer NOT NULL CHECK (seq >= 1),
    type text NOT NULL,
    at timestamptz NOT NULL,
    payload jsonb NOT NULL,
    PRIMARY KEY (run_id, seq)
  )`
]

export default Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.forEach(statements, (statement) => sql.unsafe(statement), { discard: true }))
