import { AiError } from "@effect/ai"
import type { Response } from "@effect/ai"
import { Effect, Option, Redacted } from "effect"
import * as Http from "node:http"
import * as Https from "node:https"
import { providerMessageOf } from "./LlmFailure.ts"
import { SseDecoder } from "./SseDecoder.ts"

/**
 * The Chat Completions streaming protocol (`POST {baseUrl}/chat/completions`, `stream: true`),
 * which OpenAI, vLLM, llama.cpp, Ollama and OpenRouter share: the request, and the answer read
 * straight from the socket's `data` events into a sink, each network read decoded (text, SSE
 * events, JSON, the chunk's shape checked by hand) in one synchronous pass. No Effect stage, fiber
 * or `Schema` runs per token; Effect owns the request's lifetime (interrupting it destroys the
 * request, which closes the socket). A protocol mismatch fails loudly: a chunk that does not
 * decode is never skipped, so it cannot pass as an empty answer.
 */

const module = "OpenAiChatModel"

export interface ChatCompletionsConfig {
  readonly baseUrl: string
  readonly apiKey: Redacted.Redacted | undefined
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
  private readonly text = new TextDecoder()
  private readonly events = new SseDecoder()
  private started = false
  private reason: string | null = null
  private usage: CompletionUsage | null = null

  constructor(private readonly sink: ChunkSink, private readonly scrub: (text: string) => string) {}

  push(bytes: Uint8Array): boolean {
    for (const data of this.events.push(this.text.decode(bytes, { stream: true }))) {
      if (data === "[DONE]" || data.trim() === "[DONE]") return true
      this.chunk(data)
    }
    return false
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

  const transportError = (cause: unknown) =>
    new AiError.HttpRequestError({ module, method: "streamText", reason: "Transport", request, description: scrub(describe(cause)) })

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

  /** One streamed completion into `sink`; succeeds once the answer ended. */
  const stream = (body: object, sink: ChunkSink): Effect.Effect<void, AiError.AiError> =>
    Effect.async<void, AiError.AiError>((resume) => {
      let settled = false
      const settle = (effect: Effect.Effect<void, AiError.AiError>) => {
        if (settled) return
        settled = true
        resume(effect)
      }
      const payload = JSON.stringify(body)
      const outgoing = client.request(url, {
        method: "POST",
        agent,
        headers: {
          accept: "text/event-stream",
          "content-type": "application/json",
          "content-length": Buffer.byteLength(payload),
          ...(secret === "" ? {} : { authorization: `Bearer ${secret}` })
        }
      }, (response) => {
        const status = response.statusCode ?? 0
        if (status >= 400) {
          let text = ""
          response.setEncoding("utf8")
          response.on("data", (part: string) => {
            if (text.length < 65_536) text += part
          })
          response.on("end", () => {
            const clipped = scrub(text).slice(0, 4096)
            const detail = providerMessageOf(clipped) ?? (clipped.trim() === "" ? "no details" : clipped.trim())
            settle(Effect.fail(responseError(response, detail, clipped)))
          })
          response.on("error", () => settle(Effect.fail(responseError(response, "no details", ""))))
          return
        }
        const decoder = new Decoder(sink, scrub)
        response.on("data", (bytes: Buffer) => {
          if (settled) return
          try {
            if (decoder.push(bytes)) {
              // The server ends the response next; the socket then goes back to the pool.
              decoder.end()
              settle(Effect.void)
            }
          } catch (error) {
            settle(Effect.fail(error as AiError.AiError))
            outgoing.destroy()
          }
        })
        response.on("end", () => {
          if (settled) return
          decoder.end()
          settle(Effect.void)
        })
        response.on("error", (cause) => settle(Effect.fail(responseError(response, `the response stream broke off: ${scrub(describe(cause))}`))))
        response.on("close", () => {
          if (!response.complete) settle(Effect.fail(responseError(response, "the response stream broke off: the connection closed")))
        })
      })
      outgoing.on("error", (cause) => settle(Effect.fail(transportError(cause))))
      outgoing.end(payload)
      return Effect.sync(() => {
        settled = true
        outgoing.destroy()
      })
    })

  return { stream } as const
}
