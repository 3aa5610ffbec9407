import { AiError, LanguageModel } from "@effect/ai"
import type { Prompt, Response } from "@effect/ai"
import { Headers, HttpClient, HttpClientRequest } from "@effect/platform"
import type { HttpClientError, HttpClientResponse } from "@effect/platform"
import { Effect, Layer, Option, Record as Rec, Redacted, Stream } from "effect"
import { decodeStream } from "./ChatCompletionsStream.ts"
import { GenerationSettings } from "./GenerationSettings.ts"
import { providerMessageOf } from "./LlmFailure.ts"

/**
 * The `openai` provider (spec 90): a `LanguageModel` over the Chat Completions streaming protocol
 * that vLLM, llama.cpp, Ollama, OpenRouter and OpenAI share. `@effect/ai-openai` only speaks the
 * Responses API, and its `streamRequest` skips events it cannot decode, which would turn a
 * protocol mismatch into an empty answer; hence a plain `HttpClient` and our own decoding.
 */

const module = "OpenAiChatModel"

const collect = (parts: Iterable<Response.StreamPartEncoded>): Array<Response.PartEncoded> => {
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
}

interface ChatMessage {
  readonly role: "system" | "user" | "assistant"
  readonly content: string
}

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

/** Error details never carry the key: credential headers are replaced, not just marked. */
const headerNames = ["authorization", "x-api-key", "cookie", "set-cookie"]
const safeHeaders = (headers: Headers.Headers) =>
  Rec.map(Headers.redact(headers, headerNames), (value) => Redacted.isRedacted(value) ? "<redacted>" : value)

const requestDetails = (request: HttpClientRequest.HttpClientRequest) => ({
  method: request.method,
  url: request.url,
  urlParams: [],
  hash: Option.none(),
  headers: safeHeaders(request.headers)
})

const describe = (cause: unknown): string | undefined => {
  if (!(cause instanceof Error)) return undefined
  const code = "code" in cause && typeof cause.code === "string" ? cause.code : undefined
  // Node reports a refused "localhost" as an AggregateError with a code and an empty message.
  return [code, cause.message].filter((s) => s !== undefined && s !== "").join(": ") || cause.name
}

export const layer = (options: {
  readonly baseUrl: string
  readonly apiKey: Redacted.Redacted | undefined
  readonly model: string
}): Layer.Layer<LanguageModel.LanguageModel, never, HttpClient.HttpClient> =>
  Layer.effect(
    LanguageModel.LanguageModel,
    Effect.gen(function*() {
      const apiKey = options.apiKey
      const client = (yield* HttpClient.HttpClient).pipe(
        HttpClient.mapRequest((request) =>
          request.pipe(
            HttpClientRequest.prependUrl(options.baseUrl),
            HttpClientRequest.setHeader("accept", "text/event-stream"),
            (request) => apiKey === undefined ? request : HttpClientRequest.bearerToken(request, apiKey)
          )
        )
      )

      /** Providers may echo what they received; the key must not travel on in an error. */
      const scrub = (text: string) =>
        apiKey === undefined || Redacted.value(apiKey) === "" ? text : text.replaceAll(Redacted.value(apiKey), "<redacted>")

      const fromClientError = (error: HttpClientError.HttpClientError): AiError.AiError =>
        error._tag === "RequestError"
          ? new AiError.HttpRequestError({
            module,
            method: "streamText",
            reason: error.reason,
            request: requestDetails(error.request),
            description: scrub(describe(error.cause) ?? "transport error")
          })
          : new AiError.HttpResponseError({
            module,
            method: "streamText",
            reason: error.reason,
            request: requestDetails(error.request),
            response: { status: error.response.status, headers: safeHeaders(error.response.headers) },
            description: `the response stream broke off: ${scrub(describe(error.cause) ?? error.reason)}`
          })

      const statusError = (response: HttpClientResponse.HttpClientResponse) =>
        response.text.pipe(
          // An unreadable error body still leaves the status to report.
          Effect.orElseSucceed(() => ""),
          Effect.flatMap((text) => {
            const body = scrub(text).slice(0, 4096)
            return new AiError.HttpResponseError({
              module,
              method: "streamText",
              reason: "StatusCode",
              request: requestDetails(response.request),
              response: { status: response.status, headers: safeHeaders(response.headers) },
              body,
              description: providerMessageOf(body) ?? (body.trim() === "" ? "no details" : body.trim())
            })
          })
        )

      const streamText = (providerOptions: LanguageModel.ProviderOptions) =>
        Effect.gen(function*() {
          const settings = yield* GenerationSettings
          const messages = yield* toMessages(providerOptions.prompt)
          const { stream_options, ...rest } = settings
          const body = {
            ...rest,
            model: typeof settings.model === "string" ? settings.model : options.model,
            // Usage arrives only on request; `stream_options: null` drops it for servers that reject it.
            ...(stream_options === null ? {} : { stream_options: stream_options ?? { include_usage: true } }),
            messages,
            stream: true
          }
          const request = HttpClientRequest.post("/chat/completions").pipe(HttpClientRequest.bodyUnsafeJson(body))
          const response = yield* Effect.mapError(client.execute(request), fromClientError)
          if (response.status >= 400) return yield* statusError(response)
          // Ending or interrupting this stream aborts the request, which closes the socket.
          return response.stream.pipe(Stream.pipeThroughChannel(decodeStream(fromClientError, scrub)))
        }).pipe(Stream.unwrap)

      // One protocol path: the whole answer is the folded stream.
      const generateText = (providerOptions: LanguageModel.ProviderOptions) =>
        Stream.runCollect(streamText(providerOptions)).pipe(Effect.map(collect))

      return yield* LanguageModel.make({ streamText, generateText })
    })
  )
