import { Schema, Struct } from "effect"
import { ChatId, GenerationId, MessageId, RunId, VariantId } from "./Ids.ts"

export class Chat extends Schema.Class<Chat>("Chat")({
  id: ChatId,
  title: Schema.NullOr(Schema.String),
  systemPrompt: Schema.NullOr(Schema.String),
  createdAt: Schema.Date,
  /** The chat's running run, or null: a reloaded page re-attaches to its events (spec 75). */
  activeRunId: Schema.NullOr(RunId),
  /** When the chat's latest message was written; null without messages. */
  lastMessageAt: Schema.NullOr(Schema.Date),
  /** The latest of its creation, its latest message and its latest turn: the chat list's order. */
  lastActivityAt: Schema.Date
}) {}

/** A chat as the chat list shows it: all but the system prompt, which may be long. */
export class ChatSummary extends Schema.Class<ChatSummary>("ChatSummary")(Struct.omit(Chat.fields, "systemPrompt")) {}

/**
 * Where the next page of the chat list starts: after this chat, in the list's order. Opaque to
 * clients (base64url); the activity is kept in microseconds, as the database holds it.
 */
export const ChatCursor = Schema.compose(
  Schema.StringFromBase64Url,
  Schema.parseJson(Schema.Tuple(Schema.String.pipe(Schema.pattern(/^\d{1,19}$/)), ChatId))
).pipe(Schema.annotations({ identifier: "ChatCursor", description: "an opaque cursor from an earlier page's nextCursor" }))
export type ChatCursor = typeof ChatCursor.Type

/** A page of the chat list; `nextCursor` is null on the last page. */
export class ChatPage extends Schema.Class<ChatPage>("ChatPage")({
  chats: Schema.Array(ChatSummary),
  nextCursor: Schema.NullOr(Schema.String)
}) {}

export const Role = Schema.Literal("user", "assistant")
export type Role = typeof Role.Type

/** One version of a message; an assistant message gets one per regenerate. */
export class Variant extends Schema.Class<Variant>("Variant")({
  id: VariantId,
  content: Schema.String,
  createdAt: Schema.Date,
  generationId: Schema.NullOr(GenerationId)
}) {}

/** A message of the history, with the selected variant's text as its `content`. */
export class Message extends Schema.Class<Message>("Message")({
  id: MessageId,
  chatId: ChatId,
  role: Role,
  position: Schema.Int,
  selectedVariantId: VariantId,
  content: Schema.String,
  createdAt: Schema.Date,
  variants: Schema.Array(Variant)
}) {}

const chatFields = {
  title: Schema.optional(Schema.NullOr(Schema.String.pipe(Schema.maxLength(200)))),
  systemPrompt: Schema.optional(Schema.NullOr(Schema.String.pipe(Schema.maxLength(100_000))))
}

export const CreateChat = Schema.Struct(chatFields)
export type CreateChat = typeof CreateChat.Type

/** A chat's changes: a field left out stays as it is, null clears it. */
export const UpdateChat = Schema.Struct(chatFields)
export type UpdateChat = typeof UpdateChat.Type

/** Which variant of an assistant message is in the history (a "swipe"). */
export const SelectVariant = Schema.Struct({ variantId: VariantId })
export type SelectVariant = typeof SelectVariant.Type
