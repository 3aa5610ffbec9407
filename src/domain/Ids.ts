import { Schema } from "effect"

/** Every id is a UUID; the server makes time-ordered UUIDv7 for its own (see `services/Uuid.ts`). */
export const ChatId = Schema.UUID.pipe(Schema.brand("ChatId"))
export type ChatId = typeof ChatId.Type

export const MessageId = Schema.UUID.pipe(Schema.brand("MessageId"))
export type MessageId = typeof MessageId.Type

export const VariantId = Schema.UUID.pipe(Schema.brand("VariantId"))
export type VariantId = typeof VariantId.Type

export const RunId = Schema.UUID.pipe(Schema.brand("RunId"))
export type RunId = typeof RunId.Type

export const StepRunId = Schema.UUID.pipe(Schema.brand("StepRunId"))
export type StepRunId = typeof StepRunId.Type

export const GenerationId = Schema.UUID.pipe(Schema.brand("GenerationId"))
export type GenerationId = typeof GenerationId.Type
