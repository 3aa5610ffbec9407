import { describe, expect, it, layer } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Either } from "effect"
import { migrate } from "../../../src/services/db/Migrations.ts"
import { count, insertRun, seedChat } from "../../support/Fixtures.ts"
import { testDatabases } from "../../support/TestDatabase.ts"

const sqlState = (error: SqlError) => (error.cause as { readonly code?: string } | undefined)?.code

const columns: Record<string, ReadonlyArray<string>> = {
  chats: ["id", "title", "system_prompt", "created_at"],
  chat_messages: ["id", "chat_id", "role", "position", "selected_variant_id", "created_at"],
  message_variants: ["id", "message_id", "content", "generation_id", "created_at"],
  pipeline_runs: [
    "id", "chat_id", "pipeline_id", "pipeline_name", "trigger", "status", "idempotency_key", "request_fingerprint",
    "user_message_id", "assistant_message_id", "assistant_variant_id", "generation_id", "settings", "abort_reason",
    "error_code", "error_message", "owner_instance", "lease_expires_at", "started_at", "finished_at"
  ],
  pipeline_step_runs: [
    "id", "run_id", "step_type", "position", "status", "label", "output", "error_code", "error_message", "started_at",
    "finished_at"
  ],
  llm_generations: [
    "id", "run_id", "step_run_id", "chat_id", "assistant_message_id", "variant_id", "status", "provider", "model",
    "params", "prompt_hash", "prompt_snapshot", "prompt_tokens", "completion_tokens", "finish_reason", "error_code",
    "error_message", "started_at", "finished_at"
  ],
  pipeline_run_events: ["run_id", "seq", "type", "at", "data"]
}

for (const database of testDatabases) {
  layer(database.layer, { timeout: 60_000 })(`the data model on ${database.name}`, (it) => {
    it.effect("has every table and column of spec 80", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<{ readonly table: string; readonly column: string }>`
          SELECT table_name AS "table", column_name AS "column" FROM information_schema.columns
          WHERE table_schema = current_schema()`
        for (const [table, expected] of Object.entries(columns)) {
          const actual = rows.filter((row) => row.table === table).map((row) => row.column)
          expect(actual, table).toEqual(expect.arrayContaining([...expected]))
        }
      }))

    it.effect("a journal row's type is stored in four bytes and still reads and filters as text", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const chat = yield* seedChat
        yield* insertRun(chat, { key: "user_message:journal", status: "done" })
        const [run] = yield* sql<{ readonly id: string }>`SELECT id FROM pipeline_runs WHERE chat_id = ${chat.chatId}`
        const runId = run!.id
        const types = ["pipeline.run.started", "llm.stream.delta", "pipeline.run.done"]
        yield* sql`INSERT INTO pipeline_run_events ${sql.insert(types.map((type, i) => ({
          run_id: runId, seq: i + 1, type, at: new Date(), data: "Hi"
        })))}`
        const rows = yield* sql<{ readonly type: string; readonly bytes: number; readonly prefix: string }>`
          SELECT type, pg_column_size(type) AS bytes, left(type, 3) AS prefix FROM pipeline_run_events
          WHERE run_id = ${runId} AND type LIKE 'pipeline.%' AND type IN ('pipeline.run.started', 'pipeline.run.done')
          ORDER BY type`
        expect(rows).toEqual([
          { type: "pipeline.run.done", bytes: 4, prefix: "pip" },
          { type: "pipeline.run.started", bytes: 4, prefix: "pip" }
        ])
        const [delta] = yield* sql<{ readonly bytes: number }>`
          SELECT pg_column_size(e.*) AS bytes FROM pipeline_run_events e WHERE run_id = ${runId} AND type = 'llm.stream.delta'`
        expect(delta!.bytes).toBeLessThanOrEqual(64)
      }))

    it.effect("a run's journal goes with the run: deleted with it, or with its chat", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const journal = (runId: string) =>
          Effect.gen(function*() {
            yield* sql`INSERT INTO pipeline_run_events ${sql.insert([1, 2].map((seq) => ({
              run_id: runId, seq, type: "llm.stream.delta", at: new Date(), data: "Hi"
            })))}`
          })
        const rowsOf = (runId: string) =>
          sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM pipeline_run_events WHERE run_id = ${runId}`.pipe(
            Effect.map((rows) => rows[0]!.n)
          )
        const chat = yield* seedChat
        yield* insertRun(chat, { key: "user_message:one", status: "done" })
        yield* insertRun(chat, { key: "user_message:two", status: "done" })
        const [one, two] = (yield* sql<{ readonly id: string }>`
          SELECT id FROM pipeline_runs WHERE chat_id = ${chat.chatId} ORDER BY idempotency_key`).map((row) => row.id)
        yield* journal(one!)
        yield* journal(two!)
        yield* sql`DELETE FROM pipeline_runs WHERE id = ${one!}`
        expect([yield* rowsOf(one!), yield* rowsOf(two!)]).toEqual([0, 2])
        yield* sql`DELETE FROM chats WHERE id = ${chat.chatId}`
        expect(yield* rowsOf(two!)).toBe(0)
      }))

    it.effect("migrating again applies nothing", () =>
      Effect.gen(function*() {
        expect(yield* migrate).toEqual([])
      }))

    it.effect("racing inserts of one idempotency key leave one run; the others hit the unique constraint", () =>
      Effect.gen(function*() {
        const chat = yield* seedChat
        const results = yield* Effect.all(
          Array.from({ length: 10 }, () => Effect.either(insertRun(chat, { key: "user_message:race", status: "done" }))),
          { concurrency: "unbounded" }
        )
        const failures = results.filter(Either.isLeft).map((result) => sqlState(result.left))
        expect(results.filter(Either.isRight)).toHaveLength(1)
        expect(failures).toEqual(Array(9).fill("23505"))
        const sql = yield* SqlClient.SqlClient
        const runs = yield* sql`SELECT id FROM pipeline_runs WHERE chat_id = ${chat.chatId}`
        expect(runs).toHaveLength(1)
      }))

    it.effect("a chat has at most one running run", () =>
      Effect.gen(function*() {
        const chat = yield* seedChat
        yield* insertRun(chat, { key: "user_message:a" })
        const second = yield* Effect.flip(insertRun(chat, { key: "user_message:b" }))
        expect(sqlState(second)).toBe("23505")
        yield* insertRun(chat, { key: "user_message:c", status: "done" })
      }))

    it.effect("a failed transaction leaves none of its rows", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const before = yield* count("chats")
        const result = yield* Effect.either(sql.withTransaction(Effect.gen(function*() {
          yield* seedChat
          yield* sql`INSERT INTO chats (id, created_at) VALUES ('not-a-uuid', now())`
        })))
        expect(Either.isLeft(result)).toBe(true)
        expect(yield* count("chats")).toBe(before)
      }))

    it.effect("statuses outside the spec's values are refused", () =>
      Effect.gen(function*() {
        const chat = yield* seedChat
        const error = yield* Effect.flip(insertRun(chat, { key: "user_message:bad", status: "paused" }))
        expect(sqlState(error)).toBe("23514")
      }))

    it.effect("a terminal run must have finished_at, a running one must not", () =>
      Effect.gen(function*() {
        const chat = yield* seedChat
        const sql = yield* SqlClient.SqlClient
        yield* insertRun(chat, { key: "user_message:x" })
        const error = yield* Effect.flip(sql`UPDATE pipeline_runs SET status = 'done' WHERE chat_id = ${chat.chatId}`)
        expect(sqlState(error)).toBe("23514")
      }))
  })
}

describe("test databases", () => {
  it("include real Postgres when TEST_DATABASE_URL is set", () => {
    expect(testDatabases.map((db) => db.name)).toEqual(process.env.TEST_DATABASE_URL ? ["pglite", "postgres"] : ["pglite"])
  })
})
