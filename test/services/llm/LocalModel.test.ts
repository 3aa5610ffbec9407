import { LanguageModel, Prompt } from "@effect/ai"
import type { AiError, Response } from "@effect/ai"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Option, Queue, Stream, TestClock } from "effect"
import { GenerationSettings } from "../../../src/services/llm/GenerationSettings.ts"
import { failureOf } from "../../../src/services/llm/LlmFailure.ts"
import * as LocalModel from "../../../src/services/llm/LocalModel.ts"

const prompt = Prompt.make([
  { role: "system", content: "Be brief." },
  { role: "user", content: [{ type: "text", text: "Tell me about otters please" }] }
])

const parts = (settings: Record<string, unknown>) =>
  Stream.unwrap(Effect.map(LanguageModel.LanguageModel, (model) => model.streamText({ prompt }))).pipe(
    Stream.provideService(GenerationSettings, settings),
    Stream.provideLayer(LocalModel.layer({ model: "local-echo" }))
  )

const deltasOf = (all: Chunk.Chunk<Response.StreamPart<{}>>) =>
  Chunk.toArray(all).flatMap((part) => (part.type === "text-delta" ? [part.delta] : []))

const instant = { local: { tokenDelayMs: 0 } }

describe("the local model", () => {
  it.effect("answers deterministically: the same prompt and settings give the same text", () =>
    Effect.gen(function*() {
      const first = deltasOf(yield* Stream.runCollect(parts(instant)))
      const second = deltasOf(yield* Stream.runCollect(parts(instant)))
      expect(first).toEqual(second)
      const other = deltasOf(yield* Stream.runCollect(parts({ ...instant, temperature: 0.3 })))
      expect(other).not.toEqual(first)
    }))

  it.effect("streams max_tokens chunks, each a word and a space, quoting the last user message", () =>
    Effect.gen(function*() {
      const all = yield* Stream.runCollect(parts({ ...instant, max_tokens: 10 }))
      const deltas = deltasOf(all)
      expect(deltas).toHaveLength(10)
      for (const delta of deltas) expect(delta).toMatch(/^\S+ $/)
      expect(deltas.join("")).toBe("You said: \u201cTell me about otters please\u201d. " + deltas.slice(7).join(""))
      const finish = Chunk.toArray(all).find((part) => part.type === "finish")
      expect(finish).toMatchObject({ reason: "stop", usage: { inputTokens: 7, outputTokens: 10 } })
    }))

  it.effect("defaults to 48 chunks", () =>
    Effect.gen(function*() {
      expect(deltasOf(yield* Stream.runCollect(parts(instant)))).toHaveLength(48)
    }))

  it.effect("paces chunks by firstTokenDelayMs, then tokenDelayMs", () =>
    Effect.gen(function*() {
      const received = yield* Queue.unbounded<string>()
      const fiber = yield* parts({ max_tokens: 3, local: { firstTokenDelayMs: 100, tokenDelayMs: 20 } }).pipe(
        Stream.runForEach((part) => part.type === "text-delta" ? Queue.offer(received, part.delta) : Effect.void),
        Effect.fork
      )
      yield* TestClock.adjust(99)
      expect(yield* Queue.size(received)).toBe(0)
      yield* TestClock.adjust(1)
      expect(yield* Queue.size(received)).toBe(1)
      yield* TestClock.adjust(19)
      expect(yield* Queue.size(received)).toBe(1)
      yield* TestClock.adjust(1)
      expect(yield* Queue.size(received)).toBe(2)
      yield* TestClock.adjust(20)
      yield* Fiber.join(fiber)
      expect(yield* Queue.size(received)).toBe(3)
    }))

  it.effect("failAfterTokens fails the generation with llm_error after n chunks", () =>
    Effect.gen(function*() {
      const received: Array<string> = []
      const error = yield* parts({ ...instant, local: { tokenDelayMs: 0, failAfterTokens: 3 } }).pipe(
        Stream.runForEach((part) => Effect.sync(() => part.type === "text-delta" && received.push(part.delta))),
        Effect.flip
      )
      expect(received).toHaveLength(3)
      expect(failureOf(error as AiError.AiError)).toMatchObject({ code: "llm_error", message: expect.stringContaining("failAfterTokens") })
    }))

  it.effect("stallAfterTokens goes silent after n chunks and never finishes", () =>
    Effect.gen(function*() {
      const received = yield* Queue.unbounded<string>()
      const fiber = yield* parts({ local: { tokenDelayMs: 10, stallAfterTokens: 2 } }).pipe(
        Stream.runForEach((part) => part.type === "text-delta" ? Queue.offer(received, part.delta) : Effect.void),
        Effect.fork
      )
      yield* TestClock.adjust("1 hour")
      expect(yield* Queue.size(received)).toBe(2)
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("refuses knobs that are not non-negative integers", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Stream.runDrain(parts({ max_tokens: -1 })))
      expect(error._tag).toBe("MalformedInput")
    }))
})
