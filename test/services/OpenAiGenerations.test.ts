import { expect, layer } from "@effect/vitest"
import { Chunk, Context, Deferred, Effect, Fiber, Layer, Queue, Stream } from "effect"
import type { ChatId, MessageId, VariantId } from "../../src/domain/Ids.ts"
import { Generations } from "../../src/services/Generations.ts"
import type { GenerationEvent } from "../../src/services/Generations.ts"
import * as Fake from "../support/FakeChatCompletions.ts"
import { seedChat } from "../support/Fixtures.ts"
import { pglite } from "../support/TestDatabase.ts"
import { generationsLayer, openAiModel, rowOf, variantOf } from "../support/TestGenerations.ts"

/**
 * The generation service over the `openai` provider against a fake Chat Completions server on
 * loopback: what the row says after each way a provider call can end.
 */
const generateAgainst = (baseUrl: string, settings: Record<string, unknown> = {}) =>
  Effect.gen(function*() {
    const chat = yield* seedChat
    // Built in the test's scope: the HTTP client must outlive this function, as long as the stream.
    const context = yield* Layer.build(generationsLayer(openAiModel(baseUrl, { apiKey: "sk-secret" }), { llmIdleTimeoutMs: 300 }))
    const generations = Context.get(context, Generations)
    const stream = generations.generate({
      chatId: chat.chatId as ChatId,
      assistantMessageId: chat.assistantMessageId as MessageId,
      variantId: chat.assistantVariantId as VariantId,
      prompt: { messages: [{ role: "user", content: "Say hello" }] },
      settings
    })
    return { chat, stream }
  })

const collect = (stream: Stream.Stream<GenerationEvent, unknown>) =>
  Effect.gen(function*() {
    const seen: Array<GenerationEvent> = []
    const exit = yield* Stream.runForEach(stream, (event) => Effect.sync(() => seen.push(event))).pipe(Effect.exit)
    const started = seen[0]
    return { seen, exit, generationId: started?._tag === "Started" ? started.generationId : "" }
  })

const textOf = (events: ReadonlyArray<GenerationEvent>) =>
  events.flatMap((event) => (event._tag === "Delta" ? [event.content] : [])).join("")

layer(pglite.layer, { timeout: 60_000, excludeTestServices: true })("an openai generation", (it) => {
  it.scoped("streams the server's exact text and closes the row done with usage and finish reason", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.start(Fake.stream(
        Fake.textChunks(["Hel", "lo, ", "world"], { usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 }, usageIn: "separate" }),
        { delayMs: 5 }
      ))
      const { chat, stream } = yield* generateAgainst(fake.baseUrl, { temperature: 0.2, model: "chosen-model" })
      const { exit, generationId, seen } = yield* collect(stream)
      expect(exit._tag).toBe("Success")
      expect(textOf(seen)).toBe("Hello, world")
      expect(seen[0]).toMatchObject({ _tag: "Started", provider: "openai", model: "chosen-model" })
      expect(yield* rowOf(generationId)).toMatchObject({
        status: "done",
        provider: "openai",
        model: "chosen-model",
        params: { temperature: 0.2, model: "chosen-model" },
        finish_reason: "stop",
        prompt_tokens: 5,
        completion_tokens: 3
      })
      expect((yield* variantOf(chat.assistantVariantId)).content).toBe("Hello, world")
      const [request] = yield* fake.requests
      expect(request?.body).toMatchObject({ model: "chosen-model", stream: true, temperature: 0.2 })
      expect(request?.headers.authorization).toBe("Bearer sk-secret")
    }))

  it.scoped("a provider 500 ends the row error llm_error with the status, and no secret", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.start(Fake.status(500, { error: { message: "model crashed for sk-secret" } }))
      const { stream } = yield* generateAgainst(fake.baseUrl)
      const { generationId } = yield* collect(stream)
      const row = yield* rowOf(generationId)
      expect(row).toMatchObject({ status: "error", error_code: "llm_error" })
      expect(row.error_message).toContain("500")
      expect(row.error_message).toContain("model crashed")
      expect(row.error_message).not.toContain("sk-secret")
    }))

  it.scoped("a refused connection ends the row error upstream_unavailable", () =>
    Effect.gen(function*() {
      const { stream } = yield* generateAgainst(yield* Fake.closedPortUrl)
      const { exit, generationId } = yield* collect(stream)
      expect(exit._tag).toBe("Failure")
      expect(yield* rowOf(generationId)).toMatchObject({ status: "error", error_code: "upstream_unavailable" })
    }))

  it.scoped("a silent provider ends the row error upstream_timeout and the request is closed", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.start(Fake.stream(Fake.textChunks(["a", "b", "c"]), { delayMs: 1, stallAfter: 3 }))
      const { chat, stream } = yield* generateAgainst(fake.baseUrl)
      const { generationId, seen } = yield* collect(stream)
      expect(yield* rowOf(generationId)).toMatchObject({ status: "error", error_code: "upstream_timeout" })
      expect((yield* variantOf(chat.assistantVariantId)).content).toBe(textOf(seen))
      yield* Deferred.await(fake.socketClosed).pipe(Effect.timeout("5 seconds"))
      expect(yield* fake.openSockets).toBe(0)
    }))

  it.scoped("interrupting the generation closes the upstream socket and ends the row aborted", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.start(Fake.stream(Fake.textChunks(Array.from({ length: 200 }, (_, i) => `w${i} `)), { delayMs: 10 }))
      const { chat, stream } = yield* generateAgainst(fake.baseUrl)
      const events = yield* Queue.unbounded<GenerationEvent>()
      const fiber = yield* Effect.fork(Stream.runForEach(stream, (event) => Queue.offer(events, event)))
      const firstFour = yield* Effect.all(Array.from({ length: 4 }, () => Queue.take(events)))
      yield* Fiber.interrupt(fiber)
      yield* Deferred.await(fake.socketClosed).pipe(Effect.timeout("5 seconds"))
      expect(yield* fake.openSockets).toBe(0)
      const seen = [...firstFour, ...Chunk.toArray(yield* Queue.takeAll(events))]
      const started = seen[0]
      if (started?._tag !== "Started") throw new Error("no Started event")
      expect(yield* rowOf(started.generationId)).toMatchObject({ status: "aborted", error_code: "aborted" })
      expect((yield* variantOf(chat.assistantVariantId)).content).toBe(textOf(seen))
    }))
})
