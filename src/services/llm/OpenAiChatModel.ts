import { AiError, LanguageModel } from "@effect/ai"
import type { Prompt, Response } from "@effect/ai"
import { Headers, HttpClient, HttpClientRequest } from "@effect/platform"
import type { HttpClientError, HttpClientResponse } from "@effect/platform"
import { Cause, Channel, Chunk as Chunks, DateTime, Effect, Either, Layer, Option, Record as Rec, Redacted, Schema, Stream } from "effect"
import { GenerationSettings } from "./GenerationSettings.ts"
import { providerMessageOf } from "./LlmFailure.ts"
import { SseDecoder } from "./SseDecoder.ts"

/**
 * The `openai` provider (spec 90): a `LanguageModel` over the Chat Completions streaming protocol
 * that vLLM, llama.cpp, Ollama, OpenRouter and OpenAI share. `@effect/ai-openai` only speaks the
 * Responses API, and its `streamRequest` skips events it cannot decode, which would turn a
 * protocol mismatch into an empty answer; hence a plain `HttpClient` and our own decoding.
 */

const module = "OpenAiChatModel"

const ChunkUsage = Schema.Struct({
  prompt_tokens: Schema.Number,
  completion_tokens: Schema.Number,
  total_tokens: Schema.optional(Schema.Number)
})

/** One `data:` event; only what a text answer needs (unknown fields are ignored). */
const Chunk = Schema.Struct({
  id: Schema.optional(Schema.String),
  model: Schema.optional(Schema.String),
  created: Schema.optional(Schema.Number),
  choices: Schema.Array(Schema.Struct({
    index: Schema.optional(Schema.Number),
    delta: Schema.optional(Schema.NullOr(Schema.Struct({ content: Schema.optional(Schema.NullOr(Schema.String)) }))),
    finish_reason: Schema.optional(Schema.NullOr(Schema.String))
  })),
  usage: Schema.optional(Schema.NullOr(ChunkUsage))
})
type Chunk = typeof Chunk.Type

/** vLLM, llama.cpp and OpenRouter report a failure after the 200 as an `error` event. */
const ErrorEvent = Schema.Struct({ error: Schema.Struct({ message: Schema.String }) })

const decodeEvent = Schema.decodeUnknownEither(Schema.Union(ErrorEvent, Chunk))

const finishReasons = new Map<string, Response.FinishReason>([
  ["stop", "stop"],
  ["length", "length"],
  ["content_filter", "content-filter"],
  ["tool_calls", "tool-calls"],
  ["function_call", "tool-calls"]
])

/** Chat Completions has one text channel per choice, so one fixed text part id suffices. */
const textId = "0"

interface State {
  readonly started: boolean
  readonly textOpen: boolean
  readonly reason: Response.FinishReason
  readonly usage: typeof ChunkUsage.Type | undefined
}

const initial: State = { started: false, textOpen: false, reason: "unknown", usage: undefined }

/** Turns one chunk (or the end of the stream, `None`) into the parts `@effect/ai` expects. */
const step = (
  state: State,
  chunk: Option.Option<Chunk>
): readonly [State, ReadonlyArray<Response.StreamPartEncoded>] => {
  if (Option.isNone(chunk)) {
    const { usage } = state
    return [state, [
      ...(state.textOpen ? [{ type: "text-end", id: textId } as const] : []),
      {
        type: "finish",
        reason: state.reason,
        usage: {
          inputTokens: usage?.prompt_tokens,
          outputTokens: usage?.completion_tokens,
          totalTokens: usage === undefined ? undefined : usage.total_tokens ?? usage.prompt_tokens + usage.completion_tokens
        }
      }
    ]]
  }
  // Only the first choice is the answer; `n > 1` is not supported.
  const choice = chunk.value.choices.find((choice) => (choice.index ?? 0) === 0)
  const delta = choice?.delta?.content ?? ""
  const finish = choice?.finish_reason
  const parts: Array<Response.StreamPartEncoded> = state.started ? [] : [metadataOf(chunk.value)]
  if (delta !== "") {
    if (!state.textOpen) parts.push({ type: "text-start", id: textId })
    parts.push({ type: "text-delta", id: textId, delta })
  }
  return [{
    started: true,
    textOpen: state.textOpen || delta !== "",
    reason: finish === undefined || finish === null ? state.reason : finishReasons.get(finish) ?? "other",
    // Usage comes on the last choice chunk or on a final chunk with `choices: []`.
    usage: chunk.value.usage ?? state.usage
  }, parts]
}

const metadataOf = (chunk: Chunk): Response.ResponseMetadataPartEncoded => ({
  type: "response-metadata",
  id: chunk.id,
  modelId: chunk.model,
  timestamp: chunk.created === undefined
    ? undefined
    : Option.getOrUndefined(Option.map(DateTime.make(chunk.created * 1000), DateTime.formatIso))
})

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

const malformed = (cause: unknown) =>
  new AiError.MalformedOutput({ module, method: "streamText", description: "a stream event is not a Chat Completions chunk", cause })

/**
 * The response body, as it arrives, into the parts `@effect/ai` expects: each network read is
 * decoded (text, SSE events, JSON, chunk schema) in one synchronous pass and leaves as one chunk of
 * parts, so a token costs no stream stage of its own. The answer ends at `[DONE]` (the request is
 * then closed) or with the body; either way the text closes and the finish part follows.
 */
const decodeStream = (
  fromClientError: (error: HttpClientError.HttpClientError) => AiError.AiError,
  scrub: (text: string) => string
): Channel.Channel<
  Chunks.Chunk<Response.StreamPartEncoded>,
  Chunks.Chunk<Uint8Array>,
  AiError.AiError,
  HttpClientError.HttpClientError,
  unknown,
  unknown
> =>
  Channel.suspend(() => {
    const text = new TextDecoder()
    const events = new SseDecoder()
    let state = initial
    let done = false
    const read = (bytes: Chunks.Chunk<Uint8Array>): Either.Either<Array<Response.StreamPartEncoded>, AiError.AiError> => {
      const parts: Array<Response.StreamPartEncoded> = []
      for (const piece of bytes) {
        for (const data of events.push(text.decode(piece, { stream: true }))) {
          if (data.trim() === "[DONE]") {
            done = true
            parts.push(...step(state, Option.none())[1])
            return Either.right(parts)
          }
          let json: unknown
          try {
            json = JSON.parse(data)
          } catch (cause) {
            return Either.left(malformed(cause))
          }
          const decoded = decodeEvent(json)
          if (Either.isLeft(decoded)) return Either.left(malformed(decoded.left))
          if ("error" in decoded.right) {
            return Either.left(new AiError.UnknownError({ module, method: "streamText", description: `provider reported an error: ${scrub(decoded.right.error.message)}` }))
          }
          const [next, out] = step(state, Option.some(decoded.right))
          state = next
          for (const part of out) parts.push(part)
        }
      }
      return Either.right(parts)
    }
    const loop: Channel.Channel<
      Chunks.Chunk<Response.StreamPartEncoded>,
      Chunks.Chunk<Uint8Array>,
      AiError.AiError,
      HttpClientError.HttpClientError,
      unknown,
      unknown
    > = Channel.readWithCause({
      onInput: (bytes: Chunks.Chunk<Uint8Array>) => {
        const parts = read(bytes)
        if (Either.isLeft(parts)) return Channel.fail(parts.left)
        const written = parts.right.length === 0 ? Channel.void : Channel.write(Chunks.unsafeFromArray(parts.right))
        return done ? written : Channel.zipRight(written, loop)
      },
      onFailure: (cause: Cause.Cause<HttpClientError.HttpClientError>) => Channel.failCause(Cause.map(cause, fromClientError)),
      onDone: () => Channel.write(Chunks.unsafeFromArray(step(state, Option.none())[1]))
    })
    return loop
  })

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
