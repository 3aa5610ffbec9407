import type { Tracer } from "effect"
import type { ErrorInfo, Usage } from "../../domain/Generation.ts"
import type { PromptDraft } from "../../domain/Prompt.ts"

/**
 * The attributes of a generation's span (spec 95), in OpenTelemetry's GenAI semantic conventions:
 * `chat {gen_ai.request.model}`, kind CLIENT. Text (the prompt's messages and the answer) is
 * recorded only when the service stores prompt snapshots anyway (`STORE_PROMPT_SNAPSHOTS`).
 */

/** The request parameters the conventions name, from the settings sent to the provider. */
const requestParameters: ReadonlyArray<readonly [setting: string, attribute: string]> = [
  ["temperature", "gen_ai.request.temperature"],
  ["max_tokens", "gen_ai.request.max_tokens"],
  ["max_completion_tokens", "gen_ai.request.max_tokens"],
  ["top_p", "gen_ai.request.top_p"],
  ["top_k", "gen_ai.request.top_k"],
  ["frequency_penalty", "gen_ai.request.frequency_penalty"],
  ["presence_penalty", "gen_ai.request.presence_penalty"],
  ["seed", "gen_ai.request.seed"],
  ["n", "gen_ai.request.choice.count"],
  ["stop", "gen_ai.request.stop_sequences"]
]

export interface GenAiRequest {
  readonly provider: string
  readonly model: string
  readonly chatId: string
  readonly settings: Readonly<Record<string, unknown>>
  readonly server: { readonly address: string; readonly port: number } | undefined
  /** The prompt, when its text may be recorded. */
  readonly prompt: PromptDraft | undefined
}

export const spanName = (model: string) => `chat ${model}`

export const requestAttributes = (request: GenAiRequest): Record<string, unknown> => {
  const attributes: Record<string, unknown> = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": request.provider,
    "gen_ai.request.model": request.model,
    "gen_ai.conversation.id": request.chatId
  }
  for (const [setting, attribute] of requestParameters) {
    const value = request.settings[setting]
    if (typeof value === "number" || typeof value === "string") attributes[attribute] = setting === "stop" ? [value] : value
    else if (Array.isArray(value) && value.every((item) => typeof item === "string")) attributes[attribute] = value
  }
  if (request.server !== undefined) {
    attributes["server.address"] = request.server.address
    attributes["server.port"] = request.server.port
  }
  if (request.prompt !== undefined) {
    attributes["gen_ai.input.messages"] = JSON.stringify(request.prompt.messages.map((message) => ({
      role: message.role,
      parts: [{ type: "text", content: message.content }]
    })))
  }
  return attributes
}

export interface GenAiResponse {
  /** The model and response id the provider named, when it did. */
  readonly model?: string | undefined
  readonly id?: string | undefined
  readonly finishReason: string | null
  readonly usage: Usage | null
  readonly error: ErrorInfo | null
  /** The answer, when its text may be recorded. */
  readonly answer: string | undefined
}

export const recordResponse = (span: Tracer.Span, response: GenAiResponse) => {
  if (response.model !== undefined) span.attribute("gen_ai.response.model", response.model)
  if (response.id !== undefined) span.attribute("gen_ai.response.id", response.id)
  if (response.finishReason !== null) span.attribute("gen_ai.response.finish_reasons", [response.finishReason])
  if (response.usage !== null) {
    span.attribute("gen_ai.usage.input_tokens", response.usage.promptTokens)
    span.attribute("gen_ai.usage.output_tokens", response.usage.completionTokens)
  }
  if (response.error !== null) span.attribute("error.type", response.error.code)
  if (response.answer !== undefined) {
    span.attribute("gen_ai.output.messages", JSON.stringify([{
      role: "assistant",
      parts: [{ type: "text", content: response.answer }],
      ...(response.finishReason === null ? {} : { finish_reason: response.finishReason })
    }]))
  }
}
