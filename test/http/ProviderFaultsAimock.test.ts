import { LLMock } from "@copilotkit/aimock"
import { expect, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { expectDone, expectFailed, providerServer, secret, turn } from "../support/ProviderTable.ts"
import { testDatabases } from "../support/TestDatabase.ts"
import type { TestDatabase } from "../support/TestDatabase.ts"

/**
 * Rows of the provider table (spec 90) against `@copilotkit/aimock`, a maintained
 * OpenAI-compatible mock server that is not ours: its streaming, sequenced errors and fault
 * injection (chaos), through the whole service. The rows it cannot produce (an error inside the
 * stream, a clean end without a finish, a whole completion to a streamed request, an HTML page)
 * are in `ProviderFaults.test.ts`, against the fake written here.
 */

class Aimock extends Context.Tag("test/Aimock")<Aimock, LLMock>() {}

const suiteLayer = (database: TestDatabase) =>
  Layer.unwrapScoped(Effect.gen(function*() {
    // Only our key is accepted: a request without it would be answered 401.
    const mock = new LLMock({ auth: { apiKeys: [secret] } })
    const url = yield* Effect.acquireRelease(Effect.promise(() => mock.start()), () => Effect.promise(() => mock.stop()))
    return Layer.merge(Layer.succeed(Aimock, mock), providerServer(database, `${url}/v1`))
  }))

/** One turn against the mock once `setup` has given it its fixtures. */
const turnWith = (setup: (mock: LLMock) => void) =>
  Effect.gen(function*() {
    const mock = yield* Aimock
    mock.reset()
    setup(mock)
    return yield* turn(Effect.sync(() => mock.getRequests().length))
  })

const usage = { prompt_tokens: 9, completion_tokens: 4 }
const hello = { content: "Hello there, friend", usage }
const rateLimited = { error: { message: "Rate limit reached", type: "requests", code: "rate_limit_exceeded" }, status: 429 }

for (const database of testDatabases) {
  layer(suiteLayer(database), { timeout: 60_000, excludeTestServices: true })(`the provider table against aimock on ${database.name}`, (it) => {
    it.effect("a paced stream arrives whole and ends done with its usage", () =>
      Effect.gen(function*() {
        const outcome = yield* turnWith((mock) => mock.on({}, hello, { chunkSize: 4, latency: 5 }))
        expectDone(outcome, "Hello there, friend", 1)
        expect(outcome.snapshot.generation).toMatchObject({ finishReason: "stop", usage: { promptTokens: 9, completionTokens: 4 } })
      }))

    it.effect("a 429 with Retry-After, then the answer: done after two requests", () =>
      Effect.gen(function*() {
        const outcome = yield* turnWith((mock) =>
          mock
            .on({ sequenceIndex: 0 }, { ...rateLimited, retryAfter: 0 })
            .on({ sequenceIndex: 1 }, hello)
        )
        expectDone(outcome, "Hello there, friend", 2)
      }))

    it.effect("a provider that keeps rate-limiting ends rate_limited after 1 + LLM_MAX_RETRIES requests", () =>
      Effect.gen(function*() {
        const outcome = yield* turnWith((mock) => mock.on({}, hello, { chaos: { rateLimitRate: 1 } }))
        expectFailed(outcome, { code: "rate_limited", text: "", attempts: 3 })
      }))

    it.effect("a 503, then the answer: done after two requests", () =>
      Effect.gen(function*() {
        const outcome = yield* turnWith((mock) =>
          mock
            .on({ sequenceIndex: 0 }, { error: { message: "overloaded", type: "server_error" }, status: 503 })
            .on({ sequenceIndex: 1 }, hello)
        )
        expectDone(outcome, "Hello there, friend", 2)
      }))

    it.effect("a 401 ends llm_error \"the provider refused the credentials\" after one request", () =>
      Effect.gen(function*() {
        const outcome = yield* turnWith((mock) =>
          mock.on({}, { error: { message: "Incorrect API key provided", type: "invalid_request_error", code: "invalid_api_key" }, status: 401 })
        )
        expectFailed(outcome, { code: "llm_error", message: "the provider refused the credentials", text: "", attempts: 1 })
      }))

    it.effect("a malformed 200 JSON body (the case from the issue) ends llm_error, not an empty done answer", () =>
      Effect.gen(function*() {
        const outcome = yield* turnWith((mock) => mock.on({}, hello, { chaos: { malformedRate: 1 } }))
        expectFailed(outcome, { code: "llm_error", message: "not an event stream", text: "", attempts: 1 })
      }))

    it.effect("connections dropped before any answer are asked again, then upstream_unavailable", () =>
      Effect.gen(function*() {
        const outcome = yield* turnWith((mock) => mock.on({}, hello, { chaos: { disconnectRate: 1 } }))
        expectFailed(outcome, { code: "upstream_unavailable", text: "", attempts: 3 })
      }))

    it.effect("a stream cut off after its first tokens ends llm_error, keeping the text that arrived", () =>
      Effect.gen(function*() {
        // aimock destroys the socket after the 4th chunk (the role chunk, then 4-character pieces).
        const outcome = yield* turnWith((mock) => mock.on({}, hello, { chunkSize: 4, latency: 20, truncateAfterChunks: 4 }))
        expect(outcome.answer).toMatch(/^Hel/)
        expect("Hello there, friend".startsWith(outcome.answer)).toBe(true)
        expectFailed(outcome, { code: "llm_error", message: "ended the stream before finishing", text: outcome.answer, attempts: 1 })
      }))

    it.effect("a provider that goes silent mid-stream ends upstream_timeout, keeping the text so far", () =>
      Effect.gen(function*() {
        const outcome = yield* turnWith((mock) => mock.on({}, hello, { chunkSize: 6, streamingProfile: { ttft: 0, tps: 0.01 } }))
        expect("Hello there, friend".startsWith(outcome.answer)).toBe(true)
        expectFailed(outcome, { code: "upstream_timeout", text: outcome.answer, attempts: 1 })
      }))
  })
}
