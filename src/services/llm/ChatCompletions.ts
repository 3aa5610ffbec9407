import { AiError } from "@effect/ai"
import type { Response } from "@effect/ai"
import { Effect, Option, Random, Redacted } from "effect"
import * as Http from "node:http"
import * as Https from "node:https"
import * as Tracing from "../observability/Tracing.ts"
import { providerMessageOf } from "./LlmFailure.ts"
import { SseDecoder } from "./SseDecoder.ts"

/**
 * The Chat Completions streaming protocol (`POST {baseUrl}/chat/completions`, `stream: true`),
 * which OpenAI, vLLM, llama.cpp, Ollama and OpenRouter share: the request, and the answer read
 * straight from the socket's `data` events into a sink, each network read decoded (text, SSE
 * events, JSON, the chunk's shape checked by hand) in one synchronous pass. No Effect stage, fiber
 * or `Schema` runs per token; Effect owns the request's lifetime (interrupting it destroys the
 * request, which closes the socket).
 *
 * Every misbehaviour of a provider has one outcome (spec 90, "Providers", the table): an answer
 * ends well only when the provider said it finished (a `finish_reason`, or `[DONE]`); a chunk that
 * does not decode, an `error` inside the stream, a body that is no event stream and a stream that
 * stops short all fail, keeping the text so far. Until the first token, 429, 5xx, a refused and a
 * reset connection are asked again (`maxRetries`, `Retry-After` honoured up to 10 s).
 */

const module = "OpenAiChatModel"

export interface ChatCompletionsConfig {
  readonly baseUrl: string
  readonly apiKey: Redacted.Redacted | undefined
  /** Attempts more after a retryable failure before the first token (`LLM_MAX_RETRIES`). */
  readonly maxRetries: number
}

export interface ChatMessage {
  readonly role: "system" | "user" | "assistant"
  readonly content: string
}

export interface CompletionUsage {
  readonly prompt_tokens: number
  readonly completion_tokens: number
  readonly total_tokens?: number | undefined
}

/** Where the answer goes, synchronously, as it arrives. */
export interface ChunkSink {
  /** The first chunk: the response's id, model and creation time, when given. */
  readonly metadata: (chunk: { readonly id?: string; readonly model?: string; readonly created?: number }) => void
  readonly delta: (text: string) => void
  /** The end of the answer: the last finish reason seen (Chat Completions' own words) and the usage. */
  readonly finish: (reason: string | null, usage: CompletionUsage | null) => void
  /** The attempt failed before any text; the next request leaves after `afterMs`. */
  readonly waiting: (afterMs: number) => void
  /** The next request left: one more attempt. */
  readonly retried: () => void
}

const finishReasons = new Map<string, Response.FinishReason>([
  ["stop", "stop"],
  ["length", "length"],
  ["content_filter", "content-filter"],
  ["tool_calls", "tool-calls"],
  ["function_call", "tool-calls"]
])

/** Chat Completions' finish reason in `@effect/ai`'s words. */
export const finishReasonOf = (reason: string | null): Response.FinishReason =>
  reason === null ? "unknown" : finishReasons.get(reason) ?? "other"

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null

const isUsage = (value: unknown): value is CompletionUsage =>
  isRecord(value) && typeof value.prompt_tokens === "number" && typeof value.completion_tokens === "number"

const malformed = (description: string, cause?: unknown) =>
  new AiError.MalformedOutput({ module, method: "streamText", description, cause })

/**
 * Decodes the body as it arrives. `push` returns `true` once `[DONE]` was read; a chunk that is not
 * JSON, or not the shape of a chunk, or an `error` event, throws the `AiError` to fail with.
 */
class Decoder {
  /** Some event was read: the body is an event stream. */
  heard = false
  private readonly text = new TextDecoder()
  private readonly events = new SseDecoder()
  private started = false
  private reason: string | null = null
  private usage: CompletionUsage | null = null

  constructor(private readonly sink: ChunkSink, private readonly scrub: (text: string) => string) {}

  push(bytes: Uint8Array | string): boolean {
    for (const data of this.events.push(typeof bytes === "string" ? bytes : this.text.decode(bytes, { stream: true }))) {
      this.heard = true
      if (data === "[DONE]" || data.trim() === "[DONE]") return true
      this.chunk(data)
    }
    return false
  }

  /** The provider said the answer is complete: a finish reason (the `[DONE]` may never come). */
  get finished(): boolean {
    return this.reason !== null
  }

  end() {
    this.sink.finish(this.reason, this.usage)
  }

  private chunk(data: string) {
    let json: unknown
    try {
      json = JSON.parse(data)
    } catch (cause) {
      throw malformed("a stream event is not JSON", cause)
    }
    if (!isRecord(json)) throw malformed("a stream event is not a Chat Completions chunk")
    // vLLM, llama.cpp and OpenRouter report a failure after the 200 as an `error` event.
    if ("error" in json) {
      const message = providerMessageOf(JSON.stringify(json)) ?? "no details"
      throw new AiError.UnknownError({ module, method: "streamText", description: `provider reported an error: ${this.scrub(message)}` })
    }
    const { choices, usage } = json
    if (!Array.isArray(choices)) throw malformed("a stream event is not a Chat Completions chunk")
    if (usage !== undefined && usage !== null && !isUsage(usage)) throw malformed("a stream event's usage is not token counts")
    if (!this.started) {
      this.started = true
      this.sink.metadata({
        ...(typeof json.id === "string" ? { id: json.id } : {}),
        ...(typeof json.model === "string" ? { model: json.model } : {}),
        ...(typeof json.created === "number" ? { created: json.created } : {})
      })
    }
    // Usage comes on the last choice chunk or on a final chunk with `choices: []`.
    if (isUsage(usage)) this.usage = usage
    // Only the first choice is the answer; `n > 1` is not supported.
    for (const choice of choices) {
      if (!isRecord(choice) || (choice.index ?? 0) !== 0) continue
      const { delta, finish_reason } = choice
      if (delta !== undefined && delta !== null) {
        if (!isRecord(delta)) throw malformed("a chunk's delta is not an object")
        const content = delta.content
        if (typeof content === "string") {
          if (content !== "") this.sink.delta(content)
        } else if (content !== undefined && content !== null) {
          throw malformed("a chunk's delta content is not text")
        }
      }
      if (typeof finish_reason === "string") this.reason = finish_reason
      return
    }
  }
}

/** Node reports a refused "localhost" as an AggregateError with a code and an empty message. */
const describe = (cause: unknown): string => {
  if (!(cause instanceof Error)) return "transport error"
  const code = "code" in cause && typeof cause.code === "string" ? cause.code : undefined
  return [code, cause.message].filter((s) => s !== undefined && s !== "").join(": ") || cause.name
}

/** A Chat Completion answered whole (`stream: true` ignored): its first choice's text and finish. */
const completionOf = (json: unknown) => {
  if (!isRecord(json) || !Array.isArray(json.choices)) return undefined
  const choice: unknown = json.choices.find((choice) => isRecord(choice) && (choice.index ?? 0) === 0)
  if (!isRecord(choice) || !isRecord(choice.message)) return undefined
  const { content } = choice.message
  if (content !== undefined && content !== null && typeof content !== "string") return undefined
  return {
    metadata: {
      ...(typeof json.id === "string" ? { id: json.id } : {}),
      ...(typeof json.model === "string" ? { model: json.model } : {}),
      ...(typeof json.created === "number" ? { created: json.created } : {})
    },
    content: content ?? "",
    reason: typeof choice.finish_reason === "string" ? choice.finish_reason : null,
    usage: isUsage(json.usage) ? json.usage : null
  }
}

/** The media type of a response, lower case, without parameters; `""` when none is given. */
const mediaTypeOf = (response: Http.IncomingMessage) =>
  (response.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase()

/** `Retry-After` (seconds or an HTTP date) or OpenAI's `retry-after-ms`, in milliseconds. */
const retryAfterOf = (headers: Http.IncomingHttpHeaders, now: number): number | undefined => {
  const millis = Number(headers["retry-after-ms"])
  if (headers["retry-after-ms"] !== undefined && Number.isFinite(millis) && millis >= 0) return millis
  const value = headers["retry-after"]?.trim()
  if (value === undefined || value === "") return undefined
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value) * 1000
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

/** The longest wait a `Retry-After` gets (spec 90). */
const maxRetryAfterMs = 10_000
/** The first backoff when the provider names no wait; doubled for each retry, plus up to half in jitter. */
const backoffMs = 250
/** A body that is not an event stream is read this far to tell what it is. */
const maxBodyBytes = 4 * 1024 * 1024

/** How one attempt failed: the error to report, and whether asking again may help. */
interface AttemptFailed {
  readonly error: AiError.AiError
  readonly retryable: boolean
  readonly retryAfterMs?: number | undefined
}

const agents = { http: new Http.Agent({ keepAlive: true }), https: new Https.Agent({ keepAlive: true }) }

export const make = (config: ChatCompletionsConfig) => {
  const url = new URL(`${config.baseUrl}/chat/completions`)
  const client = url.protocol === "https:" ? Https : Http
  const agent = url.protocol === "https:" ? agents.https : agents.http
  const secret = config.apiKey === undefined ? "" : Redacted.value(config.apiKey)

  /** Providers may echo what they received; the key must not travel on in an error. */
  const scrub = (text: string) => (secret === "" ? text : text.replaceAll(secret, "<redacted>"))

  /** What an error says about the request: never the key. */
  const request = {
    method: "POST" as const,
    url: url.href,
    urlParams: [],
    hash: Option.none(),
    headers: { accept: "text/event-stream", "content-type": "application/json", ...(secret === "" ? {} : { authorization: "<redacted>" }) }
  }

  const transportError = (description: string) =>
    new AiError.HttpRequestError({ module, method: "streamText", reason: "Transport", request, description: scrub(description) })

  const responseError = (response: Http.IncomingMessage, description: string, body?: string) =>
    new AiError.HttpResponseError({
      module,
      method: "streamText",
      reason: body === undefined ? "Decode" : "StatusCode",
      request,
      response: { status: response.statusCode ?? 0, headers: {} },
      ...(body === undefined ? {} : { body }),
      description
    })

  const notAStream = (response: Http.IncomingMessage, detail: string) =>
    responseError(response, `the provider's answer was not an event stream (${detail})`)

  /** One upstream request, its answer into `sink`; succeeds once the answer finished. */
  const attempt = (
    payload: string,
    traceparent: string | undefined,
    sink: ChunkSink,
    heardText: () => boolean
  ): Effect.Effect<void, AttemptFailed> =>
    Effect.async<void, AttemptFailed>((resume) => {
      let settled = false
      const succeed = () => {
        if (settled) return
        settled = true
        resume(Effect.void)
      }
      const fail = (error: AiError.AiError, retryable = false, retryAfterMs?: number) => {
        if (settled) return
        settled = true
        resume(Effect.fail({ error, retryable, retryAfterMs }))
        outgoing.destroy()
      }
      /** The connection ended before the answer did: before any text it is worth asking again. */
      const brokeOff = (response: Http.IncomingMessage | undefined, cause: unknown) =>
        response !== undefined && heardText()
          ? fail(responseError(response, `the provider ended the stream before finishing (${scrub(describe(cause))})`))
          : fail(transportError(response === undefined ? describe(cause) : `the connection closed before the first token (${describe(cause)})`), true)

      const outgoing = client.request(url, {
        method: "POST",
        agent,
        headers: {
          accept: "text/event-stream",
          "content-type": "application/json",
          "content-length": Buffer.byteLength(payload),
          ...(secret === "" ? {} : { authorization: `Bearer ${secret}` }),
          ...(traceparent === undefined ? {} : { traceparent })
        }
      }, (response) => {
        const status = response.statusCode ?? 0
        if (status < 200 || status >= 300) {
          let text = ""
          response.setEncoding("utf8")
          response.on("data", (part: string) => {
            if (text.length < 65_536) text += part
          })
          response.on("end", () => {
            const clipped = scrub(text).slice(0, 4096)
            const detail = providerMessageOf(clipped) ?? (clipped.trim() === "" ? "no details" : clipped.trim())
            fail(responseError(response, detail, clipped), status === 429 || status >= 500, retryAfterOf(response.headers, Date.now()))
          })
          response.on("error", () => fail(responseError(response, "no details", ""), status === 429 || status >= 500))
          return
        }
        const decoder = new Decoder(sink, scrub)
        const ended = () => {
          if (!decoder.finished) return fail(responseError(response, "the provider ended the stream before finishing"))
          decoder.end()
          succeed()
        }
        const decode = (bytes: Uint8Array | string) => {
          try {
            if (decoder.push(bytes)) {
              // `[DONE]`: the server ends the response next; the socket then goes back to the pool.
              decoder.end()
              succeed()
            }
          } catch (error) {
            fail(error as AiError.AiError)
          }
        }
        const type = mediaTypeOf(response)
        if (type === "text/event-stream" || type === "") {
          response.on("data", (bytes: Buffer) => {
            if (!settled) decode(bytes)
          })
          response.on("end", () => {
            if (!settled) ended()
          })
        } else {
          // Not announced as an event stream: a whole Chat Completion (the provider ignored
          // `stream: true`), an error, an HTML page, or events under the wrong type. Read it whole.
          const parts: Array<Buffer> = []
          let size = 0
          response.on("data", (bytes: Buffer) => {
            size += bytes.length
            if (size > maxBodyBytes) return fail(notAStream(response, `${type}, over ${maxBodyBytes} bytes`))
            parts.push(bytes)
          })
          response.on("end", () => {
            if (settled) return
            const text = Buffer.concat(parts).toString("utf8")
            let json: unknown
            try {
              json = JSON.parse(text)
            } catch {
              json = undefined
            }
            const completion = completionOf(json)
            if (completion !== undefined) {
              sink.metadata(completion.metadata)
              if (completion.content !== "") sink.delta(completion.content)
              sink.finish(completion.reason, completion.usage)
              return succeed()
            }
            if (json !== undefined) {
              const message = providerMessageOf(text)
              return fail(notAStream(response, message === undefined ? type : `${type}: ${scrub(message)}`))
            }
            decode(text)
            if (settled) return
            if (!decoder.heard) return fail(notAStream(response, type))
            ended()
          })
        }
        response.on("error", (cause) => brokeOff(response, cause))
        response.on("close", () => {
          if (!response.complete) brokeOff(response, new Error("the connection closed"))
        })
      })
      outgoing.on("error", (cause) => brokeOff(undefined, cause))
      outgoing.end(payload)
      return Effect.sync(() => {
        settled = true
        outgoing.destroy()
      })
    })

  /** How long to wait before retry number `retry` (0 = the first). */
  const waitBefore = (failed: AttemptFailed, retry: number) =>
    failed.retryAfterMs !== undefined
      ? Effect.succeed(Math.min(failed.retryAfterMs, maxRetryAfterMs))
      : Effect.map(Random.next, (jitter) => Math.round(backoffMs * 2 ** retry * (1 + jitter / 2)))

  /**
   * One streamed completion into `sink`, asked again after a retryable failure while no text has
   * arrived; succeeds once the answer finished.
   */
  const stream = (body: object, sink: ChunkSink): Effect.Effect<void, AiError.AiError> =>
    Effect.flatMap(Tracing.recordedSpan, (span) => {
      const payload = JSON.stringify(body)
      // An instrumented provider (vLLM, LiteLLM, a gateway) joins the trace (spec 95).
      const traceparent = Option.getOrUndefined(Option.map(span, Tracing.traceparentOf))
      let text = false
      const heardText = () => text
      const counted: ChunkSink = {
        ...sink,
        delta: (content) => {
          text = true
          sink.delta(content)
        }
      }
      const from = (retry: number): Effect.Effect<void, AiError.AiError> =>
        attempt(payload, traceparent, counted, heardText).pipe(
          Effect.catchAll((failed) =>
            !failed.retryable || text || retry >= config.maxRetries
              ? Effect.fail(failed.error)
              : Effect.flatMap(waitBefore(failed, retry), (afterMs) => {
                sink.waiting(afterMs)
                return Effect.sleep(afterMs).pipe(
                  Effect.zipRight(Effect.sync(sink.retried)),
                  Effect.zipRight(from(retry + 1))
                )
              })
          )
        )
      return from(0)
    })

  return { stream } as const
}
