import { describe, expect, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as Fake from "../support/FakeChatCompletions.ts"
import { expectDone, expectFailed, providerServer, secret, turn } from "../support/ProviderTable.ts"
import { testDatabases } from "../support/TestDatabase.ts"
import type { TestDatabase } from "../support/TestDatabase.ts"
import type { SnapshotJson } from "../support/Turns.ts"
import { abortRun, finished, newChat, sendMessage } from "../support/Turns.ts"

/**
 * Spec 90, "Providers", the table: every way a real Chat Completions provider misbehaves, each
 * through the whole service (HTTP, runner, journal, database) against a fake provider *server* on
 * loopback. Each row asserts the run's, the steps' and the generation's statuses and codes, the
 * events, the upstream requests made, the text kept, and that the API key reaches no answer and no
 * log line. No row may end `done` with an answer the model did not finish.
 */

class Upstream extends Context.Tag("test/Upstream")<Upstream, Fake.FakeChatCompletions>() {}

const suiteLayer = (database: TestDatabase) =>
  Layer.unwrapScoped(Effect.map(Fake.start(Fake.stream(Fake.textChunks(["ok"]))), (fake) =>
    Layer.merge(Layer.succeed(Upstream, fake), providerServer(database, fake.baseUrl))))

const usage = { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 }
const base = { id: "chatcmpl-fault", object: "chat.completion.chunk", created: 1_700_000_000, model: "fake-model" }
const chunk = (content: string) => ({ ...base, choices: [{ index: 0, delta: { content }, finish_reason: null }] })
/** A role chunk and `texts`, with no finish reason. */
const unfinished = (texts: ReadonlyArray<string>) => [{ ...base, choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] }, ...texts.map(chunk)]
const finishedStream = Fake.stream(Fake.textChunks(["Hel", "lo"], { usage }))
const providerError = (message: string) => ({ error: { message, type: "server_error", code: null } })
const json = { "content-type": "application/json" }

/** One turn against the provider answering `scripts` in order. */
const turnAgainst = (...scripts: ReadonlyArray<Fake.Script>) =>
  Effect.gen(function*() {
    const upstream = yield* Upstream
    yield* upstream.answer(...scripts)
    return yield* turn(Effect.map(upstream.requests, (requests) => requests.length))
  })

for (const database of testDatabases) {
  layer(suiteLayer(database), { timeout: 60_000, excludeTestServices: true })(`the provider table (spec 90) on ${database.name}`, (it) => {
    describe("429", () => {
      it.effect("is asked again after its Retry-After, and the answer that follows ends done", () =>
        Effect.gen(function*() {
          const outcome = yield* turnAgainst(Fake.raw(429, { ...json, "retry-after": "1" }, JSON.stringify(providerError("slow down"))), finishedStream)
          expectDone(outcome, "Hello", 2)
          const [first, second] = yield* (yield* Upstream).requests
          expect(second!.receivedAt - first!.receivedAt).toBeGreaterThanOrEqual(950)
        }))

      it.effect("kept up (no Retry-After) ends rate_limited after 1 + LLM_MAX_RETRIES requests", () =>
        Effect.gen(function*() {
          const outcome = yield* turnAgainst(Fake.status(429, providerError(`Rate limit reached for key ${secret}`)))
          expectFailed(outcome, { code: "rate_limited", message: "429", text: "", attempts: 3 })
        }))

      it.effect("kept up with Retry-After ends rate_limited too", () =>
        Effect.gen(function*() {
          const outcome = yield* turnAgainst(Fake.raw(429, { ...json, "retry-after": "0" }, JSON.stringify(providerError("slow down"))))
          expectFailed(outcome, { code: "rate_limited", text: "", attempts: 3 })
        }))

      it.effect("the wait between attempts is not silence: a Retry-After longer than LLM_IDLE_TIMEOUT_MS still ends done", () =>
        Effect.gen(function*() {
          const outcome = yield* turnAgainst(Fake.raw(429, { ...json, "retry-after": "2" }, "{}"), finishedStream)
          expectDone(outcome, "Hello", 2)
        }))
    })

    describe("5xx, refused and reset connections before the first token", () => {
      it.effect("a 503 then an answer ends done after two requests", () =>
        Effect.gen(function*() {
          expectDone(yield* turnAgainst(Fake.status(503, providerError("overloaded")), finishedStream), "Hello", 2)
        }))

      it.effect("a 500 that persists ends llm_error with the status and the provider's message, without the key", () =>
        Effect.gen(function*() {
          const outcome = yield* turnAgainst(Fake.status(500, providerError(`model crashed for ${secret}`)))
          expectFailed(outcome, { code: "llm_error", message: "500", text: "", attempts: 3 })
          expect(outcome.snapshot.generation?.error?.message).toContain("model crashed")
        }))

      it.effect("a connection reset before any answer is asked again", () =>
        Effect.gen(function*() {
          expectDone(yield* turnAgainst(Fake.hangUp, finishedStream), "Hello", 2)
        }))

      it.effect("a stream reset before its first token is asked again", () =>
        Effect.gen(function*() {
          expectDone(yield* turnAgainst(Fake.stream(unfinished([]), { dropAfter: 1 }), finishedStream), "Hello", 2)
        }))

      it.effect("connections that keep failing end upstream_unavailable", () =>
        Effect.gen(function*() {
          expectFailed(yield* turnAgainst(Fake.hangUp), { code: "upstream_unavailable", text: "", attempts: 3 })
        }))
    })

    describe("401 and 403", () => {
      for (const status of [401, 403]) {
        it.effect(`${status} ends llm_error "the provider refused the credentials" at once, quoting nothing of the key`, () =>
          Effect.gen(function*() {
            const outcome = yield* turnAgainst(Fake.status(status, providerError(`Incorrect API key provided: ${secret.slice(0, 6)}****${secret.slice(-4)}`)))
            expectFailed(outcome, { code: "llm_error", message: "the provider refused the credentials", text: "", attempts: 1 })
            expect(outcome.snapshot.generation?.error?.message).not.toContain(secret.slice(-4))
          }))
      }
    })

    describe("200 that is not an event stream", () => {
      it.effect("a whole Chat Completion (stream: true ignored) becomes one delta, with its usage and finish reason; done", () =>
        Effect.gen(function*() {
          const completion = {
            id: "chatcmpl-whole",
            object: "chat.completion",
            created: 1_700_000_000,
            model: "fake-model",
            choices: [{ index: 0, message: { role: "assistant", content: "Hello in one piece" }, finish_reason: "length" }],
            usage
          }
          const outcome = yield* turnAgainst(Fake.raw(200, json, JSON.stringify(completion)))
          expectDone(outcome, "Hello in one piece", 1)
          expect(outcome.events.filter((event) => event.type === "llm.stream.delta")).toHaveLength(1)
          expect(outcome.snapshot.generation).toMatchObject({ finishReason: "length", usage: { promptTokens: 9, completionTokens: 3 } })
        }))

      it.effect("a malformed JSON body ends llm_error, not an empty done answer, and is not asked again", () =>
        Effect.gen(function*() {
          const outcome = yield* turnAgainst(Fake.raw(200, json, "{\"choices\": [ this is not json"))
          expectFailed(outcome, { code: "llm_error", message: "not an event stream", text: "", attempts: 1 })
        }))

      it.effect("an HTML page ends llm_error \"the provider's answer was not an event stream\"", () =>
        Effect.gen(function*() {
          const outcome = yield* turnAgainst(Fake.raw(200, { "content-type": "text/html" }, "<html><body>Gateway login</body></html>"))
          expectFailed(outcome, { code: "llm_error", message: "the provider's answer was not an event stream", text: "", attempts: 1 })
        }))

      it.effect("a JSON error object with 200 ends llm_error with the provider's message", () =>
        Effect.gen(function*() {
          const outcome = yield* turnAgainst(Fake.raw(200, json, JSON.stringify(providerError("model not loaded"))))
          expectFailed(outcome, { code: "llm_error", message: "model not loaded", text: "", attempts: 1 })
        }))
    })

    describe("a stream that goes wrong after its first tokens (nothing is asked again)", () => {
      it.effect("a chunk that is not JSON ends llm_error, keeping the text so far", () =>
        Effect.gen(function*() {
          const outcome = yield* turnAgainst(Fake.stream([...unfinished(["Hel", "lo"]), "{not json"]))
          expectFailed(outcome, { code: "llm_error", message: "not JSON", text: "Hello", attempts: 1 })
        }))

      it.effect("an error object inside the stream ends llm_error with its message, keeping the text so far", () =>
        Effect.gen(function*() {
          const outcome = yield* turnAgainst(Fake.stream([...unfinished(["Hel", "lo"]), providerError("the model overheated")]))
          expectFailed(outcome, { code: "llm_error", message: "the model overheated", text: "Hello", attempts: 1 })
        }))

      it.effect("a stream closed without [DONE] and without a finish_reason ends llm_error, keeping the text so far", () =>
        Effect.gen(function*() {
          const outcome = yield* turnAgainst(Fake.stream(unfinished(["Hel", "lo"]), { done: false }))
          expectFailed(outcome, { code: "llm_error", message: "the provider ended the stream before finishing", text: "Hello", attempts: 1 })
        }))

      it.effect("a connection reset after the first tokens ends llm_error, keeping the text so far", () =>
        Effect.gen(function*() {
          const outcome = yield* turnAgainst(Fake.stream(unfinished(["Hel", "lo", " there"]), { dropAfter: 3 }))
          expectFailed(outcome, { code: "llm_error", message: "ended the stream before finishing", text: "Hello", attempts: 1 })
        }))

      it.effect("a finish_reason without [DONE] is a finished answer: done", () =>
        Effect.gen(function*() {
          expectDone(yield* turnAgainst(Fake.stream(Fake.textChunks(["Hel", "lo"]), { done: false })), "Hello", 1)
        }))
    })

    describe("silence", () => {
      it.effect("a provider that goes silent ends upstream_timeout after LLM_IDLE_TIMEOUT_MS, keeping the text so far", () =>
        Effect.gen(function*() {
          const outcome = yield* turnAgainst(Fake.stream(unfinished(["Hel", "lo"]), { stallAfter: 3 }))
          expectFailed(outcome, { code: "upstream_timeout", text: "Hello", attempts: 1 })
        }))
    })

    it.effect("an abort during the wait between attempts ends the run aborted at once, with the attempts made", () =>
      Effect.gen(function*() {
        const upstream = yield* Upstream
        yield* upstream.answer(Fake.raw(429, { ...json, "retry-after": "10" }, "{}"))
        const chatId = yield* newChat
        const started = yield* sendMessage(chatId, { userMessageId: crypto.randomUUID(), content: "Say hello", settings: {} })
        const runId = (started.body as SnapshotJson).run.id
        yield* upstream.received(1)
        const aborted = yield* abortRun(runId)
        expect(aborted.status).toBe(200)
        const snapshot = yield* finished(runId)
        expect(snapshot.run.status).toBe("aborted")
        expect(snapshot.generation).toMatchObject({ status: "aborted", attempts: 1 })
        expect(yield* upstream.requests).toHaveLength(1)
      }))
  })
}
