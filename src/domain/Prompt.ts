import { Schema } from "effect"

/** What the `pre` step hands to the model: an optional system prompt, then the history. */
export const PromptMessage = Schema.Struct({
  role: Schema.Literal("system", "user", "assistant"),
  content: Schema.String
})
export type PromptMessage = typeof PromptMessage.Type

export const PromptDraft = Schema.Struct({ messages: Schema.Array(PromptMessage) })
export type PromptDraft = typeof PromptDraft.Type
