import { SqlClient } from "@effect/sql"
import { Array as Arr, Effect, Option } from "effect"
import { Chat, Message, Variant } from "../domain/Chat.ts"
import type { Role } from "../domain/Chat.ts"
import type { ChatId, GenerationId, MessageId, VariantId } from "../domain/Ids.ts"

interface ChatRow {
  readonly id: ChatId
  readonly title: string | null
  readonly systemPrompt: string | null
  readonly createdAt: Date
}

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

/**
 * Chats, their messages and the messages' variants. Database failures are defects here: the
 * callers deal in chats, not in SQL.
 */
export class ChatsRepo extends Effect.Service<ChatsRepo>()("turn-runner/ChatsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const insertChat = (chat: Chat) =>
      sql`INSERT INTO chats (id, title, system_prompt, created_at)
          VALUES (${chat.id}, ${chat.title}, ${chat.systemPrompt}, ${chat.createdAt})`.pipe(Effect.asVoid, Effect.orDie)

    const findChat = (id: ChatId) =>
      sql<ChatRow>`SELECT id, title, system_prompt AS "systemPrompt", created_at AS "createdAt"
                   FROM chats WHERE id = ${id}`.pipe(
        Effect.map((rows) => Option.map(Arr.head(rows), (row) => new Chat(row))),
        Effect.orDie
      )

    /** The history, oldest first, each message with all its variants. */
    const listMessages = (chatId: ChatId) =>
      Effect.all([
        sql<MessageRow>`SELECT id, chat_id AS "chatId", role, position, selected_variant_id AS "selectedVariantId",
                               created_at AS "createdAt"
                        FROM chat_messages WHERE chat_id = ${chatId} ORDER BY position`,
        sql<VariantRow>`SELECT v.id, v.message_id AS "messageId", v.content, v.generation_id AS "generationId",
                               v.created_at AS "createdAt"
                        FROM message_variants v JOIN chat_messages m ON m.id = v.message_id
                        WHERE m.chat_id = ${chatId} ORDER BY v.created_at, v.id`
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

    return {
      insertChat,
      findChat,
      listMessages
    } as const
  })
}) {}
