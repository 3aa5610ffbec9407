import { LanguageModel } from "@effect/ai"
import type { AiError, Response } from "@effect/ai"
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Fiber, Layer, Redacted, Stream } from "effect"
import type { HttpClient } from "@effect/platform"
import { GenerationSettings } from "../../../src/services/llm/GenerationSettings.ts"
import { failureOf } from "../../../src/services/llm/LlmFailure.ts"
import * as OpenAiChatModel from "../../../src/services/llm/OpenAiChatModel.ts"
import * as Fake from "../../support/FakeChatCompletions.ts"

const apiKey = "sk-test-very-secret"

const modelAt = (baseUrl: string, client: Layer.Layer<HttpClient.HttpClient> = NodeHttpClient.layerUndici) =>
  OpenAiChatModel.languageModel({ baseUrl, apiKey: Redacted.make(apiKey), model: "configured-model" }).pipe(
    Layer.provide(client)
  )

const prompt = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "Say hello" }
] as const

/** Runs one streamed generation against `baseUrl` and collects its parts. */
const streamParts = (baseUrl: string) =>
  LanguageModel.streamText({ prompt }).pipe(
    Stream.runCollect,
    Effect.map(Chunk.toReadonlyArray),
    Effect.provide(modelAt(baseUrl))
  )

const textOf = (parts: ReadonlyArray<Response.StreamPart<{}>>) =>
  parts.flatMap((part) => part.type === "text-delta" ? [part.delta] : []).join("")

const finishOf = (parts: ReadonlyArray<Response.StreamPart<{}>>) => {
  const finish = parts.find((part) => part.type === "finish")
  return finish === undefined ? undefined : { reason: finish.reason, usage: { ...finish.usage } }
}

const usage = { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 }

describe("OpenAiChatModel", () => {
  it.scopedLive("streams exactly the text the server sends, as start, deltas, end and finish", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.start(Fake.stream(Fake.textChunks(["Hel", "lo, ", "world"]), { delayMs: 5 }))
      const parts = yield* streamParts(fake.baseUrl)
      expect(textOf(parts)).toBe("Hello, world")
      expect(parts.map((part) => part.type)).toEqual([
        "response-metadata", "text-start", "text-delta", "text-delta", "text-delta", "text-end", "finish"
      ])
    }))

  it.scopedLive("sends the configured model, stream: true, the bearer key and the prompt as messages", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.start(Fake.stream(Fake.textChunks(["ok"])))
      yield* streamParts(fake.baseUrl)
      const [request] = yield* fake.requests
      expect(request?.url).toBe("/v1/chat/completions")
      expect(request?.headers.authorization).toBe(`Bearer ${apiKey}`)
      expect(request?.body).toEqual({
        model: "configured-model",
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Say hello" }]
      })
    }))

  it.scopedLive("passes settings through, lets settings.model win, and keeps messages and stream", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.start(Fake.stream(Fake.textChunks(["ok"])))
      yield* streamParts(fake.baseUrl).pipe(Effect.provideService(GenerationSettings, {
        temperature: 0.2,
        max_tokens: 5,
        model: "chosen-model",
        stream: false,
        messages: []
      }))
      const [request] = yield* fake.requests
      expect(request?.body).toMatchObject({ temperature: 0.2, max_tokens: 5, model: "chosen-model", stream: true })
      expect(request?.body).toHaveProperty("messages", [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Say hello" }
      ])
    }))

  it.scopedLive("reads usage and finish reason from the last choice chunk", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.start(Fake.stream(Fake.textChunks(["a", "b"], { finishReason: "length", usage })))
      const parts = yield* streamParts(fake.baseUrl)
      expect(finishOf(parts)).toEqual({ reason: "length", usage: { inputTokens: 7, outputTokens: 3, totalTokens: 10 } })
    }))

  it.scopedLive("reads usage from a separate final chunk with no choices", () =>
    Effect.gen(function*() {
      const chunks = Fake.textChunks(["a", "b"], { finishReason: "stop", usage, usageIn: "separate" })
      const fake = yield* Fake.start(Fake.stream(chunks))
      const parts = yield* streamParts(fake.baseUrl)
      expect(finishOf(parts)).toEqual({ reason: "stop", usage: { inputTokens: 7, outputTokens: 3, totalTokens: 10 } })
    }))

  it.scopedLive("generateText returns the whole answer with its finish reason and usage", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.start(Fake.stream(Fake.textChunks(["Hel", "lo"], { finishReason: "content_filter", usage })))
      const response = yield* LanguageModel.generateText({ prompt }).pipe(Effect.provide(modelAt(fake.baseUrl)))
      expect(response.text).toBe("Hello")
      expect(response.finishReason).toBe("content-filter")
      expect(response.usage.totalTokens).toBe(10)
    }))

  it.scopedLive("an HTTP 500 is an llm_error carrying the status and the provider's message, not the key", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.start(Fake.status(500, { error: { message: `model crashed (key ${apiKey})` } }))
      const error = yield* Effect.flip(streamParts(fake.baseUrl))
      const failure = failureOf(error)
      expect(failure.code).toBe("llm_error")
      expect(failure.message).toBe("provider answered 500: model crashed (key <redacted>)")
      expect(JSON.stringify(error)).not.toContain(apiKey)
      expect(String(error)).not.toContain(apiKey)
    }))

  it.scopedLive("a refused connection is upstream_unavailable", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(streamParts(yield* Fake.closedPortUrl))
      expect(error._tag).toBe("HttpRequestError")
      expect(failureOf(error).code).toBe("upstream_unavailable")
      expect(JSON.stringify(error)).not.toContain(apiKey)
    }))

  it.scopedLive("a connection dropped before any response is upstream_unavailable", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.start(Fake.hangUp)
      const error = yield* Effect.flip(streamParts(fake.baseUrl))
      expect(failureOf(error).code).toBe("upstream_unavailable")
    }))

  it.scopedLive("a connection dropped mid-stream is an llm_error, not upstream_unavailable", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.start(Fake.stream(Fake.textChunks(["Hel", "lo"]), { dropAfter: 2 }))
      const error = yield* Effect.flip(streamParts(fake.baseUrl))
      expect(error._tag).toBe("HttpResponseError")
      expect(failureOf(error).code).toBe("llm_error")
    }))

  it.scopedLive("an error event after the 200 fails with the provider's message", () =>
    Effect.gen(function*() {
      const [first] = Fake.textChunks([])
      const fake = yield* Fake.start(Fake.stream([first, { error: { message: "out of memory" } }]))
      const error = yield* Effect.flip(streamParts(fake.baseUrl))
      expect(failureOf(error)).toEqual({ code: "llm_error", message: "provider reported an error: out of memory" })
    }))

  for (const [name, event] of [["invalid JSON", "{not json"], ["JSON of another shape", { choices: "none" }]] as const) {
    it.scopedLive(`a chunk that is ${name} fails the generation instead of being skipped`, () =>
      Effect.gen(function*() {
        const [first, ...rest] = Fake.textChunks(["Hel", "lo"])
        const fake = yield* Fake.start(Fake.stream([first, event, ...rest]))
        const error: AiError.AiError = yield* Effect.flip(streamParts(fake.baseUrl))
        expect(error._tag).toBe("MalformedOutput")
        expect(failureOf(error).code).toBe("llm_error")
      }))
  }

  for (const [name, client] of [["undici", NodeHttpClient.layerUndici], ["node:http", NodeHttpClient.layer]] as const) {
    it.scopedLive(`interrupting the consumer closes the upstream socket (${name})`, () =>
      Effect.gen(function*() {
        const fake = yield* Fake.start(Fake.stream(Fake.textChunks(["Hel", "lo"]), { stallAfter: 2 }))
        const firstDelta = yield* Deferred.make<void>()
        const consumer = yield* LanguageModel.streamText({ prompt }).pipe(
          Stream.runForEach((part) => part.type === "text-delta" ? Deferred.succeed(firstDelta, undefined) : Effect.void),
          Effect.provide(modelAt(fake.baseUrl, client)),
          Effect.fork
        )
        yield* Deferred.await(firstDelta)
        expect(yield* fake.openSockets).toBe(1)
        yield* Fiber.interrupt(consumer)
        // The timeout only guards against a hang; the test waits for the event itself.
        yield* Deferred.await(fake.socketClosed).pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => "socket still open" }))
        expect(yield* fake.openSockets).toBe(0)
      }))
  }
})
