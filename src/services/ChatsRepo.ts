import { SqlClient } from "@effect/sql"
import { Array as Arr, Effect, Option } from "effect"
import { Chat, ChatSummary } from "../domain/Chat.ts"
import type { ChatCursor, UpdateChat } from "../domain/Chat.ts"
import type { ChatId, RunId } from "../domain/Ids.ts"

interface ChatRow {
  readonly id: ChatId
  readonly title: string | null
  readonly systemPrompt: string | null
  readonly createdAt: Date
  readonly activeRunId: RunId | null
  readonly lastMessageAt: Date | null
  readonly lastActivityAt: Date
}

/** A chat list row: the summary, and its place in the list (its activity in microseconds). */
type SummaryRow = Omit<ChatRow, "systemPrompt"> & { readonly activityMicros: string }

/**
 * The chats of `source` (a table or CTE aliased `c` with the `chats` columns) with what is derived
 * from their messages and runs: the running run, the latest message, the latest activity.
 */
const withActivity = (source: string) => `${source}
  LEFT JOIN LATERAL (SELECT r.id AS active_run_id FROM pipeline_runs r
                     WHERE r.chat_id = c.id AND r.status = 'running') ar ON true
  LEFT JOIN LATERAL (SELECT m.created_at AS last_message_at FROM chat_messages m
                     WHERE m.chat_id = c.id ORDER BY m.position DESC LIMIT 1) lm ON true
  LEFT JOIN LATERAL (SELECT r.started_at AS last_run_at FROM pipeline_runs r
                     WHERE r.chat_id = c.id ORDER BY r.started_at DESC LIMIT 1) lr ON true`

const summaryColumns = `c.id, c.title, c.created_at AS "createdAt", ar.active_run_id AS "activeRunId",
  lm.last_message_at AS "lastMessageAt", GREATEST(c.created_at, lm.last_message_at, lr.last_run_at) AS "lastActivityAt"`

const chatColumns = `${summaryColumns}, c.system_prompt AS "systemPrompt"`

/**
 * Chat rows, with what the API shows of their messages and runs. Database failures are defects
 * here: the callers deal in chats, not in SQL. Every read names its chats in one place (`FROM`),
 * where an owner's filter will go (spec 85).
 */
export class ChatsRepo extends Effect.Service<ChatsRepo>()("turn-runner/ChatsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const insertChat = (chat: Chat) =>
      sql`INSERT INTO chats (id, title, system_prompt, created_at)
          VALUES (${chat.id}, ${chat.title}, ${chat.systemPrompt}, ${chat.createdAt})`.pipe(Effect.asVoid, Effect.orDie)

    const findChat = (id: ChatId) =>
      sql<ChatRow>`SELECT ${sql.literal(chatColumns)} FROM ${sql.literal(withActivity("chats c"))} WHERE c.id = ${id}`.pipe(
        Effect.map((rows) => Option.map(Arr.head(rows), (row) => new Chat(row))),
        Effect.orDie
      )

    /**
     * Chats, most recently active first (ties by id, so the order is total), from after `after`;
     * `limit + 1` are read to tell whether another page follows.
     */
    const listChats = (options: { readonly limit: number; readonly after: ChatCursor | undefined }) =>
      sql<SummaryRow>`SELECT x.*, x.activity::text AS "activityMicros" FROM (
            SELECT ${sql.literal(summaryColumns)},
                   (EXTRACT(EPOCH FROM GREATEST(c.created_at, lm.last_message_at, lr.last_run_at)) * 1000000)::bigint AS activity
            FROM ${sql.literal(withActivity("chats c"))}) x
          ${options.after === undefined ? sql`` : sql`WHERE (x.activity, x.id) < (${options.after[0]}::bigint, ${options.after[1]}::uuid)`}
          ORDER BY x.activity DESC, x.id DESC LIMIT ${options.limit + 1}`.pipe(
        Effect.map((rows) => {
          const page = rows.slice(0, options.limit).map(({ activityMicros, ...row }) => ({
            activityMicros,
            chat: new ChatSummary({ id: row.id, title: row.title, createdAt: row.createdAt, activeRunId: row.activeRunId,
              lastMessageAt: row.lastMessageAt, lastActivityAt: row.lastActivityAt })
          }))
          const last = page.at(-1)
          const next: ChatCursor | undefined = rows.length > options.limit && last !== undefined ? [last.activityMicros, last.chat.id] : undefined
          return { chats: page.map(({ chat }) => chat), next }
        }),
        Effect.orDie
      )

    /** Changes the fields given (null clears one); none when the chat does not exist. */
    const updateChat = (id: ChatId, changes: UpdateChat) =>
      sql<ChatRow>`WITH c AS (
            UPDATE chats SET
              title = CASE WHEN ${changes.title !== undefined} THEN ${changes.title ?? null}::text ELSE title END,
              system_prompt = CASE WHEN ${changes.systemPrompt !== undefined} THEN ${changes.systemPrompt ?? null}::text ELSE system_prompt END
            WHERE id = ${id} RETURNING *)
          SELECT ${sql.literal(chatColumns)} FROM ${sql.literal(withActivity("c"))}`.pipe(
        Effect.map((rows) => Option.map(Arr.head(rows), (row) => new Chat(row))),
        Effect.orDie
      )

    /**
     * Locks the chat's row until the transaction ends: a turn cannot start in it meanwhile (its
     * rows' foreign keys wait for the lock), and one that started before has committed by then.
     * Whether the chat exists.
     */
    const lockChat = (id: ChatId) =>
      sql`SELECT 1 FROM chats WHERE id = ${id} FOR UPDATE`.pipe(Effect.map((rows) => rows.length > 0), Effect.orDie)

    /** The chat's running run, if any. */
    const activeRun = (id: ChatId) =>
      sql<{ readonly id: RunId }>`SELECT id FROM pipeline_runs WHERE chat_id = ${id} AND status = 'running'`.pipe(
        Effect.map((rows) => Option.map(Arr.head(rows), (row) => row.id)),
        Effect.orDie
      )

    /** The chat and everything of it: its rows in every table point to it with ON DELETE CASCADE. */
    const deleteChat = (id: ChatId) => sql`DELETE FROM chats WHERE id = ${id}`.pipe(Effect.asVoid, Effect.orDie)

    return { insertChat, findChat, listChats, updateChat, lockChat, activeRun, deleteChat } as const
  })
}) {}
