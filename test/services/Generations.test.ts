import { LanguageModel } from "@effect/ai"
import { expect, layer } from "@effect/vitest"
import { Chunk, Effect, Fiber, Layer, Queue, Stream, TestClock } from "effect"
import type { GenerationFailed } from "../../src/domain/Generation.ts"
import type { ChatId, MessageId, VariantId } from "../../src/domain/Ids.ts"
import { BatchRepo } from "../../src/services/BatchRepo.ts"
import { Generations } from "../../src/services/Generations.ts"
import type { GenerateRequest, GenerationEvent } from "../../src/services/Generations.ts"
import { seedChat } from "../support/Fixtures.ts"
import type { SeededChat } from "../support/Fixtures.ts"
import { pglite, testDatabases } from "../support/TestDatabase.ts"
import { provide } from "../../src/services/llm/LanguageModelLive.ts"
import { generationsLayer, localModel, rowOf, variantOf } from "../support/TestGenerations.ts"

const requestFor = (chat: SeededChat, settings: Record<string, unknown>): GenerateRequest => ({
  chatId: chat.chatId as ChatId,
  assistantMessageId: chat.assistantMessageId as MessageId,
  variantId: chat.assistantVariantId as VariantId,
  prompt: { messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hello there" }] },
  settings
})

const generate = (settings: Record<string, unknown>) =>
  Effect.gen(function*() {
    const chat = yield* seedChat
    const generations = yield* Generations
    return { chat, stream: generations.generate(requestFor(chat, settings)) }
  })

const deltas = (events: ReadonlyArray<GenerationEvent>) =>
  events.flatMap((event) => (event._tag === "Delta" ? [event.content] : []))

const startedId = (events: ReadonlyArray<GenerationEvent>) => {
  const started = events[0]
  if (started?._tag !== "Started") throw new Error("the first event is not Started")
  return started.generationId
}

/** Records every write of the text (its virtual time and text) instead of writing it, so time is all virtual. */
class Flushes extends Effect.Service<Flushes>()("test/Flushes", {
  effect: Effect.map(Queue.unbounded<{ readonly at: number; readonly content: string }>(), (queue) => ({ queue }))
}) {}

const recordingBatch = Layer.effect(
  BatchRepo,
  Effect.gen(function*() {
    const real = yield* BatchRepo
    const { queue } = yield* Flushes
    return BatchRepo.make({
      write: (batch) =>
        Effect.flatMap(Effect.clockWith((clock) => clock.currentTimeMillis), (at) =>
          Effect.zipRight(
            Effect.forEach(batch.variants.values(), ({ content }) => content === undefined ? Effect.void : Queue.offer(queue, { at, content }), { discard: true }),
            real.write(batch)
          ))
    })
  })
).pipe(Layer.provide(BatchRepo.Default))

layer(Layer.provideMerge(generationsLayer(localModel, { flushIntervalMs: 250 }, recordingBatch), Layer.merge(Flushes.Default, pglite.layer)), { timeout: 60_000 })(
  "the generation's flush cadence",
  (it) => {
    it.effect("writes the text at most once per FLUSH_INTERVAL_MS, and once at the end", () =>
      Effect.gen(function*() {
        const { queue } = yield* Flushes
        const { stream } = yield* generate({ max_tokens: 10, local: { tokenDelayMs: 90 } })
        const events = yield* Queue.unbounded<GenerationEvent>()
        const fiber = yield* Effect.fork(Stream.runForEach(stream, (event) => Queue.offer(events, event)))
        yield* Queue.take(events) // Started: the row exists, the model is about to speak
        for (let t = 0; t < 1000; t += 10) yield* TestClock.adjust(10)
        yield* Fiber.join(fiber)
        const all = Chunk.toArray(yield* Queue.takeAll(events))
        const flushes = Chunk.toArray(yield* Queue.takeAll(queue))
        // Chunks at 0, 90, …, 810 ms: ticks at 250, 500, 750, then the final flush when it ends at 810.
        expect(flushes.map(({ at }) => at)).toEqual([250, 500, 750, 810])
        expect(flushes.map(({ content }) => content.split(" ").length - 1)).toEqual([3, 6, 9, 10])
        expect(flushes.at(-1)!.content).toBe(deltas(all).join(""))
      }))
  }
)

for (const database of testDatabases) {
  layer(Layer.provideMerge(generationsLayer(localModel, { llmIdleTimeoutMs: 200 }), database.layer), { timeout: 60_000, excludeTestServices: true })(
    `a local generation on ${database.name}`,
    (it) => {
      it.effect("streams the answer, fills the variant and closes the row done with usage and finish reason", () =>
        Effect.gen(function*() {
          const { chat, stream } = yield* generate({ max_tokens: 12, local: { tokenDelayMs: 0 } })
          const events = Chunk.toArray(yield* Stream.runCollect(stream))
          expect(events[0]).toMatchObject({ _tag: "Started", provider: "local", model: "local-echo" })
          expect(events.at(-1)).toEqual({ _tag: "Finished", finishReason: "stop", usage: { promptTokens: 4, completionTokens: 12 } })
          const text = deltas(events).join("")
          expect(deltas(events)).toHaveLength(12)
          const id = startedId(events)
          expect(yield* variantOf(chat.assistantVariantId)).toEqual({ content: text, generation_id: id })
          expect(yield* rowOf(id)).toMatchObject({
            status: "done",
            provider: "local",
            model: "local-echo",
            run_id: null,
            finish_reason: "stop",
            prompt_tokens: 4,
            completion_tokens: 12,
            error_code: null,
            params: { max_tokens: 12, local: { tokenDelayMs: 0 } },
            prompt_snapshot: null
          })
          const row = yield* rowOf(id)
          expect(row.prompt_hash).toMatch(/^[0-9a-f]{64}$/)
          expect((row.finished_at as Date).getTime()).toBeGreaterThanOrEqual((row.started_at as Date).getTime())
        }))

      it.effect("a model failure ends the row error llm_error and keeps the partial text", () =>
        Effect.gen(function*() {
          const { chat, stream } = yield* generate({ local: { tokenDelayMs: 0, failAfterTokens: 3 } })
          const seen: Array<GenerationEvent> = []
          const error: GenerationFailed = yield* Stream.runForEach(stream, (event) => Effect.sync(() => seen.push(event))).pipe(Effect.flip)
          expect(error.code).toBe("llm_error")
          const row = yield* rowOf(startedId(seen))
          expect(row).toMatchObject({ status: "error", error_code: "llm_error", finish_reason: null })
          expect(row.error_message).toContain("failAfterTokens")
          expect((yield* variantOf(chat.assistantVariantId)).content).toBe(deltas(seen).join(""))
          expect(deltas(seen)).toHaveLength(3)
        }))

      it.effect("silence longer than LLM_IDLE_TIMEOUT_MS ends the row error upstream_timeout", () =>
        Effect.gen(function*() {
          const { chat, stream } = yield* generate({ local: { tokenDelayMs: 0, stallAfterTokens: 2 } })
          const seen: Array<GenerationEvent> = []
          const error = yield* Stream.runForEach(stream, (event) => Effect.sync(() => seen.push(event))).pipe(Effect.flip)
          expect(error.code).toBe("upstream_timeout")
          expect(yield* rowOf(startedId(seen))).toMatchObject({ status: "error", error_code: "upstream_timeout" })
          expect((yield* variantOf(chat.assistantVariantId)).content).toBe(deltas(seen).join(""))
        }))

      it.effect("interrupting the consumer ends the row aborted and keeps the partial text", () =>
        Effect.gen(function*() {
          const { chat, stream } = yield* generate({ local: { tokenDelayMs: 5 } })
          const events = yield* Queue.unbounded<GenerationEvent>()
          const fiber = yield* Effect.fork(Stream.runForEach(stream, (event) => Queue.offer(events, event)))
          const firstFour = yield* Effect.all(Array.from({ length: 4 }, () => Queue.take(events)))
          yield* Fiber.interrupt(fiber)
          const seen = [...firstFour, ...Chunk.toArray(yield* Queue.takeAll(events))]
          const row = yield* rowOf(startedId(seen))
          expect(row).toMatchObject({ status: "aborted", error_code: "aborted" })
          expect(row.finished_at).toBeInstanceOf(Date)
          expect((yield* variantOf(chat.assistantVariantId)).content).toBe(deltas(seen).join(""))
        }))

      it.effect("a consumer that stops reading early ends the row aborted", () =>
        Effect.gen(function*() {
          const { stream } = yield* generate({ local: { tokenDelayMs: 0 } })
          const events = Chunk.toArray(yield* Stream.runCollect(Stream.take(stream, 3)))
          expect(yield* rowOf(startedId(events))).toMatchObject({ status: "aborted" })
        }))
    }
  )
}


layer(Layer.provideMerge(generationsLayer(localModel, { deltaCoalesceMs: 100 }), pglite.layer), { timeout: 60_000 })(
  "DELTA_COALESCE_MS",
  (it) => {
    it.effect("merges the chunks that arrive within one window into one delta, losing no text", () =>
      Effect.gen(function*() {
        const { chat, stream } = yield* generate({ max_tokens: 10, local: { tokenDelayMs: 30 } })
        const events = yield* Queue.unbounded<GenerationEvent>()
        const fiber = yield* Effect.fork(Stream.runForEach(stream, (event) => Queue.offer(events, event)))
        const started = yield* Queue.take(events) // the row exists: from here on time is all virtual
        for (let t = 0; t < 1000; t += 10) yield* TestClock.adjust(10)
        yield* Fiber.join(fiber)
        const all = [started, ...Chunk.toArray(yield* Queue.takeAll(events))]
        // chunks at 0, 30, …, 270 ms in windows of 100 ms: far fewer deltas than chunks
        expect(deltas(all).length).toBeLessThan(10)
        expect(deltas(all).length).toBeGreaterThan(1)
        expect(deltas(all).join("").split(" ").length - 1).toBe(10)
        expect((yield* variantOf(chat.assistantVariantId)).content).toBe(deltas(all).join(""))
      }))
  }
)

/** An embedder's `@effect/ai` model whose stream ends without a `finish` part. */
const unfinishedModel = provide(
  { provider: "custom", model: "cut-short" },
  Layer.succeed(LanguageModel.LanguageModel, Effect.runSync(LanguageModel.make({
    generateText: () => Effect.succeed([]),
    streamText: () => Stream.make({ type: "text-start" as const, id: "0" }, { type: "text-delta" as const, id: "0", delta: "Half an ans" })
  })))
)

layer(Layer.provideMerge(generationsLayer(unfinishedModel), pglite.layer), { timeout: 60_000, excludeTestServices: true })(
  "a model that stops without finishing",
  (it) => {
    it.effect("ends the row error llm_error, not done, keeping the text it sent", () =>
      Effect.gen(function*() {
        const { chat, stream } = yield* generate({})
        const seen: Array<GenerationEvent> = []
        const error: GenerationFailed = yield* Stream.runForEach(stream, (event) => Effect.sync(() => seen.push(event))).pipe(Effect.flip)
        expect(error).toMatchObject({ code: "llm_error", message: "the provider ended the stream before finishing" })
        expect(yield* rowOf(startedId(seen))).toMatchObject({ status: "error", error_code: "llm_error", provider: "custom", attempts: 1 })
        expect((yield* variantOf(chat.assistantVariantId)).content).toBe("Half an ans")
      }))
  }
)
