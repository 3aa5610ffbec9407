import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, TestClock } from "effect"
import * as ChatCompletions from "../../../src/services/llm/ChatCompletions.ts"
import * as Fake from "../../support/FakeChatCompletions.ts"

/**
 * The retry rules of spec 90 at the protocol's level, on the test clock: how long the client
 * waits between attempts, and when it does not ask again.
 */

const body = { model: "m", messages: [{ role: "user", content: "hi" }], stream: true }
const rateLimited = (headers: Record<string, string>) => Fake.raw(429, { "content-type": "application/json", ...headers }, "{}")

/** A sink that records the waits and the text. */
const recording = () => {
  const waits: Array<number> = []
  let text = ""
  let retried = 0
  const sink: ChatCompletions.ChunkSink = {
    metadata: () => {},
    delta: (content) => (text += content),
    finish: () => {},
    waiting: (afterMs) => waits.push(afterMs),
    retried: () => retried++
  }
  return { sink, waits, text: () => text, retried: () => retried }
}

/** Lets the client reach its wait: the sleep is registered with the test clock. */
const untilSleeping = Effect.gen(function*() {
  while ((yield* TestClock.sleeps()).length === 0) yield* Effect.yieldNow()
})

describe("ChatCompletions retries", () => {
  it.scoped("waits Retry-After, but never more than 10 s", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.start(rateLimited({ "retry-after": "60" }), Fake.stream(Fake.textChunks(["ok"])))
      const client = ChatCompletions.make({ baseUrl: fake.baseUrl, apiKey: undefined, maxRetries: 2 })
      const record = recording()
      const fiber = yield* Effect.fork(client.stream(body, record.sink))
      yield* fake.received(1)
      yield* untilSleeping
      expect(record.waits).toEqual([10_000])
      yield* TestClock.adjust("9999 millis")
      expect(yield* fake.requests).toHaveLength(1)
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(fiber)
      expect(yield* fake.requests).toHaveLength(2)
      expect(record.retried()).toBe(1)
      expect(record.text()).toBe("ok")
    }))

  it.scoped("reads Retry-After as an HTTP date, and OpenAI's retry-after-ms", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.start(
        rateLimited({ "retry-after": new Date(Date.now() + 60_000).toUTCString() }),
        rateLimited({ "retry-after-ms": "1500", "retry-after": "7" }),
        Fake.stream(Fake.textChunks(["ok"]))
      )
      const client = ChatCompletions.make({ baseUrl: fake.baseUrl, apiKey: undefined, maxRetries: 2 })
      const record = recording()
      const fiber = yield* Effect.fork(client.stream(body, record.sink))
      yield* fake.received(1)
      yield* untilSleeping
      yield* TestClock.adjust("10 seconds")
      yield* fake.received(2)
      yield* untilSleeping
      yield* TestClock.adjust("1500 millis")
      yield* Fiber.join(fiber)
      expect(record.waits).toEqual([10_000, 1_500])
    }))

  it.scoped("backs off exponentially from 250 ms, with at most half again in jitter, when no wait is named", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.start(Fake.status(503, { error: { message: "busy" } }))
      const client = ChatCompletions.make({ baseUrl: fake.baseUrl, apiKey: undefined, maxRetries: 2 })
      const record = recording()
      const fiber = yield* Effect.fork(client.stream(body, record.sink))
      for (const attempt of [1, 2]) {
        yield* fake.received(attempt)
        yield* untilSleeping
        // Exactly the wait: the next one is then registered, not run through.
        yield* TestClock.adjust(record.waits.at(-1)!)
      }
      const exit = yield* Fiber.await(fiber)
      expect(Exit.isFailure(exit)).toBe(true)
      expect(yield* fake.requests).toHaveLength(3)
      const [first, second] = record.waits
      expect(first).toBeGreaterThanOrEqual(250)
      expect(first).toBeLessThanOrEqual(375)
      expect(second).toBeGreaterThanOrEqual(500)
      expect(second).toBeLessThanOrEqual(750)
    }))

  it.scoped("with maxRetries 0 (LLM_MAX_RETRIES=0) a 429 is not asked again", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.start(rateLimited({ "retry-after": "0" }))
      const client = ChatCompletions.make({ baseUrl: fake.baseUrl, apiKey: undefined, maxRetries: 0 })
      const exit = yield* Effect.exit(client.stream(body, recording().sink))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(yield* fake.requests).toHaveLength(1)
    }))

  it.scoped("nothing is asked again once a token has arrived", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.start(Fake.stream(Fake.textChunks(["Hel", "lo"]), { dropAfter: 2 }))
      const client = ChatCompletions.make({ baseUrl: fake.baseUrl, apiKey: undefined, maxRetries: 2 })
      const record = recording()
      const exit = yield* Effect.exit(client.stream(body, record.sink))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(record.text()).toBe("Hel")
      expect(yield* fake.requests).toHaveLength(1)
      expect(record.waits).toEqual([])
    }))
})
