import { SqlClient } from "@effect/sql"
import { Array as Arr, Effect, Option } from "effect"
import { Message, Variant } from "../domain/Chat.ts"
import type { Role } from "../domain/Chat.ts"
import type { ChatId, GenerationId, MessageId, RunId, VariantId } from "../domain/Ids.ts"

interface MessageRow {
  readonly id: MessageId
  readonly chatId: ChatId
  readonly role: Role
  readonly position: number
  readonly selectedVariantId: VariantId
  readonly createdAt: Date
}

interface VariantRow {
  readonly id: VariantId
  readonly messageId: MessageId
  readonly content: string
  readonly generationId: GenerationId | null
  readonly createdAt: Date
}

/** Where a message is, and what it is. */
export interface MessagePlace {
  readonly role: Role
  readonly position: number
}

/**
 * A chat's messages and their variants: the history, choosing a variant, and rewinding. Database
 * failures are defects here.
 */
export class MessagesRepo extends Effect.Service<MessagesRepo>()("turn-runner/MessagesRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    /** The history (or only `messageId` of it), oldest first, each message with all its variants. */
    const listMessages = (chatId: ChatId, messageId?: MessageId) => {
      const only = messageId === undefined ? sql`` : sql`AND m.id = ${messageId}`
      return Effect.all([
        sql<MessageRow>`SELECT m.id, m.chat_id AS "chatId", m.role, m.position, m.selected_variant_id AS "selectedVariantId",
                               m.created_at AS "createdAt"
                        FROM chat_messages m WHERE m.chat_id = ${chatId} ${only} ORDER BY m.position`,
        sql<VariantRow>`SELECT v.id, v.message_id AS "messageId", v.content, v.generation_id AS "generationId",
                               v.created_at AS "createdAt"
                        FROM message_variants v JOIN chat_messages m ON m.id = v.message_id
                        WHERE m.chat_id = ${chatId} ${only} ORDER BY v.created_at, v.id`
      ]).pipe(
        Effect.map(([messages, variants]) => {
          const byMessage = Arr.groupBy(variants, (variant) => variant.messageId)
          return messages.map((message) => {
            const own = (byMessage[message.id] ?? []).map(({ messageId: _, ...variant }) => new Variant(variant))
            const selected = own.find((variant) => variant.id === message.selectedVariantId)
            return new Message({ ...message, content: selected?.content ?? "", variants: own })
          })
        }),
        Effect.orDie
      )
    }

    /**
     * The message of the chat, locked until the transaction ends: a regenerate of it waits, and one
     * that started before has committed by then.
     */
    const lockMessage = (chatId: ChatId, messageId: MessageId) =>
      sql<MessagePlace>`SELECT role, position FROM chat_messages WHERE id = ${messageId} AND chat_id = ${chatId} FOR UPDATE`.pipe(
        Effect.map(Arr.head),
        Effect.orDie
      )

    /** The message a variant belongs to. */
    const messageOfVariant = (variantId: VariantId) =>
      sql<{ readonly messageId: MessageId }>`SELECT message_id AS "messageId" FROM message_variants WHERE id = ${variantId}`.pipe(
        Effect.map((rows) => Option.map(Arr.head(rows), (row) => row.messageId)),
        Effect.orDie
      )

    /** The running run that writes an answer into this message, if any. */
    const writingRun = (messageId: MessageId) =>
      sql<{ readonly id: RunId }>`SELECT id FROM pipeline_runs WHERE assistant_message_id = ${messageId} AND status = 'running'`.pipe(
        Effect.map((rows) => Option.map(Arr.head(rows), (row) => row.id)),
        Effect.orDie
      )

    const selectVariant = (messageId: MessageId, variantId: VariantId) =>
      sql`UPDATE chat_messages SET selected_variant_id = ${variantId} WHERE id = ${messageId}`.pipe(Effect.asVoid, Effect.orDie)

    /**
     * Rewinds the chat to before `position`: its messages from there on go, with their variants
     * and the runs that wrote them (their steps, generations and journals with them), so nothing
     * is left pointing at a message that no longer exists, and a turn sent again with a removed
     * message's id starts anew.
     */
    const deleteFrom = (chatId: ChatId, position: number) =>
      sql`WITH doomed AS (SELECT id FROM chat_messages WHERE chat_id = ${chatId} AND position >= ${position}),
          runs AS (DELETE FROM pipeline_runs WHERE chat_id = ${chatId}
                   AND (assistant_message_id IN (SELECT id FROM doomed) OR user_message_id IN (SELECT id FROM doomed))),
          generations AS (DELETE FROM llm_generations WHERE chat_id = ${chatId} AND assistant_message_id IN (SELECT id FROM doomed))
          DELETE FROM chat_messages WHERE id IN (SELECT id FROM doomed)`.pipe(Effect.asVoid, Effect.orDie)

    return { listMessages, lockMessage, messageOfVariant, writingRun, selectVariant, deleteFrom } as const
  })
}) {}
