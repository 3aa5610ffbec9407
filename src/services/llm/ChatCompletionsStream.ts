import { AiError } from "@effect/ai"
import type { Response } from "@effect/ai"
import type { HttpClientError } from "@effect/platform"
import { Cause, Channel, Chunk as Chunks, DateTime, Either, Option, Schema } from "effect"
import { SseDecoder } from "./SseDecoder.ts"

/**
 * The Chat Completions streaming protocol, read: the response body's bytes into the stream parts
 * of `@effect/ai` (response metadata, text start, deltas and end, the finish with its reason and
 * usage). Used by the `openai` provider (`OpenAiChatModel.ts`).
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

/** What the provider's response body goes through: bytes in, parts out. */
type Decoding = Channel.Channel<
  Chunks.Chunk<Response.StreamPartEncoded>,
  Chunks.Chunk<Uint8Array>,
  AiError.AiError,
  HttpClientError.HttpClientError,
  unknown,
  unknown
>

const malformed = (cause: unknown) =>
  new AiError.MalformedOutput({ module, method: "streamText", description: "a stream event is not a Chat Completions chunk", cause })

/**
 * The response body, as it arrives, into the parts `@effect/ai` expects: each network read is
 * decoded (text, SSE events, JSON, chunk schema) in one synchronous pass and leaves as one chunk of
 * parts, so a token costs no stream stage of its own. The answer ends at `[DONE]` (the request is
 * then closed) or with the body; either way the text closes and the finish part follows.
 */
export const decodeStream = (
  fromClientError: (error: HttpClientError.HttpClientError) => AiError.AiError,
  scrub: (text: string) => string
): Decoding =>
  Channel.suspend(() => {
    const text = new TextDecoder()
    const events = new SseDecoder()
    let state = initial
    let done = false
    const endParts = () => step(state, Option.none())[1]
    const read = (bytes: Chunks.Chunk<Uint8Array>): Either.Either<Array<Response.StreamPartEncoded>, AiError.AiError> => {
      const parts: Array<Response.StreamPartEncoded> = []
      for (const piece of bytes) {
        for (const data of events.push(text.decode(piece, { stream: true }))) {
          if (data.trim() === "[DONE]") {
            done = true
            parts.push(...endParts())
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
    const loop: Decoding = Channel.readWithCause({
      onInput: (bytes: Chunks.Chunk<Uint8Array>) => {
        const parts = read(bytes)
        if (Either.isLeft(parts)) return Channel.fail(parts.left)
        const written = parts.right.length === 0 ? Channel.void : Channel.write(Chunks.unsafeFromArray(parts.right))
        return done ? written : Channel.zipRight(written, loop)
      },
      onFailure: (cause: Cause.Cause<HttpClientError.HttpClientError>) => Channel.failCause(Cause.map(cause, fromClientError)),
      onDone: () => Channel.write(Chunks.unsafeFromArray(endParts()))
    })
    return loop
  })

