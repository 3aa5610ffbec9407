import { Schema } from "effect"
import { ChatId, GenerationId, MessageId, VariantId } from "./Ids.ts"

export class Chat extends Schema.Class<Chat>("Chat")({
  id: ChatId,
  title: Schema.NullOr(Schema.String),
  systemPrompt: Schema.NullOr(Schema.String),
  createdAt: Schema.Date
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

export const CreateChat = Schema.Struct({
  title: Schema.optional(Schema.NullOr(Schema.String.pipe(Schema.maxLength(200)))),
  systemPrompt: Schema.optional(Schema.NullOr(Schema.String.pipe(Schema.maxLength(100_000))))
})
export type CreateChat = typeof CreateChat.Type
