import { AiError, LanguageModel } from "@effect/ai"
import type { Prompt, Response } from "@effect/ai"
import { DateTime, Effect, Layer, Mailbox, Option, Stream } from "effect"
import type { Redacted } from "effect"
import * as ChatCompletions from "./ChatCompletions.ts"
import type { ChatMessage } from "./ChatCompletions.ts"
import { ChatModel, generationFailed } from "./ChatModel.ts"
import { GenerationSettings } from "./GenerationSettings.ts"

/**
 * The `openai` provider (spec 90): the Chat Completions streaming protocol that vLLM, llama.cpp,
 * Ollama, OpenRouter and OpenAI share (`@effect/ai-openai` only speaks the Responses API). `layer`
 * is the generation's `ChatModel`, reading the socket straight into the run; `languageModel` is
 * the same protocol as an `@effect/ai` `LanguageModel`, for programs that want one.
 */

const module = "OpenAiChatModel"

export interface Options {
  readonly baseUrl: string
  readonly apiKey: Redacted.Redacted | undefined
  readonly model: string
  /** Attempts more before the first token after a 429, a 5xx or a lost connection (`LLM_MAX_RETRIES`; default 2). */
  readonly maxRetries?: number | undefined
}

const clientOf = (options: Options) => ChatCompletions.make({ ...options, maxRetries: options.maxRetries ?? 2 })

/** Only text is supported: other parts fail loudly instead of vanishing from the prompt. */
const toMessages = (prompt: Prompt.Prompt): Effect.Effect<Array<ChatMessage>, AiError.MalformedInput> =>
  Effect.forEach(prompt.content, (message): Effect.Effect<ChatMessage, AiError.MalformedInput> => {
    if (message.role === "system") return Effect.succeed({ role: message.role, content: message.content })
    if (message.role === "tool") return Effect.fail(unsupported("tool messages"))
    const text: Array<string> = []
    for (const part of message.content) {
      if (part.type === "text") text.push(part.text)
      else if (part.type !== "reasoning") return Effect.fail(unsupported(`${part.type} parts`))
    }
    return Effect.succeed({ role: message.role, content: text.join("") })
  })

const unsupported = (what: string) =>
  new AiError.MalformedInput({ module, method: "toMessages", description: `${what} are not supported by the Chat Completions text adapter` })

/** The request body: `settings` passed through, `model` from settings or configuration, usage asked for. */
const bodyOf = (options: Options, settings: Readonly<Record<string, unknown>>, messages: ReadonlyArray<ChatMessage>) => {
  const { stream_options, ...rest } = settings
  return {
    ...rest,
    model: typeof settings.model === "string" ? settings.model : options.model,
    // Usage arrives only on request; `stream_options: null` drops it for servers that reject it.
    ...(stream_options === null ? {} : { stream_options: stream_options ?? { include_usage: true } }),
    messages,
    stream: true
  }
}

/** The generation's model over Chat Completions. */
export const layer = (options: Options): Layer.Layer<ChatModel> =>
  Layer.sync(ChatModel, () => {
    const client = clientOf(options)
    const url = new URL(options.baseUrl)
    return ChatModel.of({
      provider: "openai",
      model: options.model,
      server: { address: url.hostname, port: url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port) },
      // The prompt's messages are Chat Completions messages as they are: no conversion before the request.
      stream: (prompt, settings, sink) =>
        client.stream(bodyOf(options, settings, prompt.messages), {
          metadata: sink.heard,
          delta: sink.delta,
          waiting: sink.waiting,
          retried: sink.retried,
          finish: (reason, usage) =>
            sink.finish(
              ChatCompletions.finishReasonOf(reason),
              usage === null ? null : { promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens }
            )
        }).pipe(Effect.mapError(generationFailed))
    })
  })

/** Chat Completions has one text channel per choice, so one fixed text part id suffices. */
const textId = "0"

/** The same protocol as an `@effect/ai` `LanguageModel`; `GenerationSettings` are passed through. */
export const languageModel = (options: Options): Layer.Layer<LanguageModel.LanguageModel> =>
  Layer.effect(
    LanguageModel.LanguageModel,
    Effect.suspend(() => {
      const client = clientOf(options)

      const streamText = (providerOptions: LanguageModel.ProviderOptions) =>
        Effect.gen(function*() {
          const settings = yield* GenerationSettings
          const messages = yield* toMessages(providerOptions.prompt)
          const parts = yield* Mailbox.make<Response.StreamPartEncoded, AiError.AiError>()
          let textOpen = false
          yield* client.stream(bodyOf(options, settings, messages), {
            metadata: (chunk) =>
              parts.unsafeOffer({
                type: "response-metadata",
                id: chunk.id,
                modelId: chunk.model,
                timestamp: chunk.created === undefined
                  ? undefined
                  : Option.getOrUndefined(Option.map(DateTime.make(chunk.created * 1000), DateTime.formatIso))
              }),
            delta: (delta) => {
              if (!textOpen) parts.unsafeOffer({ type: "text-start", id: textId })
              textOpen = true
              parts.unsafeOffer({ type: "text-delta", id: textId, delta })
            },
            waiting: () => {},
            retried: () => {},
            finish: (reason, usage) => {
              if (textOpen) parts.unsafeOffer({ type: "text-end", id: textId })
              parts.unsafeOffer({
                type: "finish",
                reason: ChatCompletions.finishReasonOf(reason),
                usage: {
                  inputTokens: usage?.prompt_tokens,
                  outputTokens: usage?.completion_tokens,
                  totalTokens: usage === null ? undefined : usage.total_tokens ?? usage.prompt_tokens + usage.completion_tokens
                }
              })
            }
          }).pipe(Mailbox.into(parts), Effect.forkScoped)
          return Mailbox.toStream(parts)
        }).pipe(Stream.unwrapScoped)

      // One protocol path: the whole answer is the folded stream.
      const generateText = (providerOptions: LanguageModel.ProviderOptions) =>
        Stream.runCollect(streamText(providerOptions)).pipe(Effect.map((parts) => {
          const content: Array<Response.PartEncoded> = []
          let text: string | undefined
          for (const part of parts) {
            if (part.type === "text-delta") text = (text ?? "") + part.delta
            else if (part.type === "response-metadata") content.push(part)
            else if (part.type === "finish") {
              if (text !== undefined) content.push({ type: "text", text })
              content.push(part)
            }
          }
          return content
        }))

      return LanguageModel.make({ streamText, generateText })
    })
  )
