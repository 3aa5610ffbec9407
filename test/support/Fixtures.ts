import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { uuidv7At } from "../../src/services/Uuid.ts"

const id = () => uuidv7At(Date.now())

/** A chat with a user message and an empty assistant answer, written as raw rows. */
export const seedChat = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const chatId = id()
  const userMessageId = id()
  const userVariantId = id()
  const assistantMessageId = id()
  const assistantVariantId = id()
  const now = new Date()
  yield* sql.withTransaction(Effect.all([
    sql`INSERT INTO chats (id, title, system_prompt, created_at) VALUES (${chatId}, 'fixture', 'Be brief.', ${now})`,
    sql`INSERT INTO chat_messages (id, chat_id, role, position, selected_variant_id, created_at)
        VALUES (${userMessageId}, ${chatId}, 'user', 0, ${userVariantId}, ${now})`,
    sql`INSERT INTO message_variants (id, message_id, content, created_at) VALUES (${userVariantId}, ${userMessageId}, 'Hello there', ${now})`,
    sql`INSERT INTO chat_messages (id, chat_id, role, position, selected_variant_id, created_at)
        VALUES (${assistantMessageId}, ${chatId}, 'assistant', 1, ${assistantVariantId}, ${now})`,
    sql`INSERT INTO message_variants (id, message_id, content, created_at) VALUES (${assistantVariantId}, ${assistantMessageId}, '', ${now})`
  ], { discard: true }))
  return { chatId, userMessageId, assistantMessageId, assistantVariantId }
})

export type SeededChat = Effect.Effect.Success<typeof seedChat>

/** A `pipeline_runs` row for the seeded chat. */
export const insertRun = (chat: SeededChat, options: { readonly key: string; readonly status?: string }) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => {
    const status = options.status ?? "running"
    return sql`INSERT INTO pipeline_runs (id, chat_id, pipeline_id, pipeline_name, trigger, status, idempotency_key,
                                          request_fingerprint, user_message_id, assistant_message_id,
                                          assistant_variant_id, started_at, finished_at)
               VALUES (${id()}, ${chat.chatId}, 'builtin:default', 'default', 'user_message', ${status}, ${options.key},
                       'fp', ${chat.userMessageId}, ${chat.assistantMessageId}, ${chat.assistantVariantId},
                       ${new Date()}, ${status === "running" ? null : new Date()})`
  })

export const count = (table: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM ${sql(table)}`, (rows) => rows[0]!.n))

/** How many rows of each table belong to the chat (through its messages and runs where a table has no chat column). */
export const chatRowCounts = (chatId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<Record<string, number>>`SELECT
        (SELECT count(*)::int FROM chats WHERE id = ${chatId}) AS chats,
        (SELECT count(*)::int FROM chat_messages WHERE chat_id = ${chatId}) AS "chatMessages",
        (SELECT count(*)::int FROM message_variants v JOIN chat_messages m ON m.id = v.message_id WHERE m.chat_id = ${chatId}) AS "messageVariants",
        (SELECT count(*)::int FROM pipeline_runs WHERE chat_id = ${chatId}) AS "pipelineRuns",
        (SELECT count(*)::int FROM pipeline_step_runs s JOIN pipeline_runs r ON r.id = s.run_id WHERE r.chat_id = ${chatId}) AS "stepRuns",
        (SELECT count(*)::int FROM llm_generations WHERE chat_id = ${chatId}) AS generations,
        (SELECT count(*)::int FROM pipeline_run_events e JOIN pipeline_runs r ON r.id = e.run_id WHERE r.chat_id = ${chatId}) AS events`,
      (rows) => rows[0]!
    ))

/** How many rows of each table name one of these runs. */
export const runRowCounts = (runIds: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<Record<string, number>>`SELECT
        (SELECT count(*)::int FROM pipeline_runs WHERE id IN ${sql.in(runIds)}) AS "pipelineRuns",
        (SELECT count(*)::int FROM pipeline_step_runs WHERE run_id IN ${sql.in(runIds)}) AS "stepRuns",
        (SELECT count(*)::int FROM llm_generations WHERE run_id IN ${sql.in(runIds)}) AS generations,
        (SELECT count(*)::int FROM pipeline_run_events WHERE run_id IN ${sql.in(runIds)}) AS events`,
      (rows) => rows[0]!
    ))
