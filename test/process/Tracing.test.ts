import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fake from "../support/FakeChatCompletions.ts"
import { eventually, get, post } from "../support/Instances.ts"
import * as Otlp from "../support/OtlpReceiver.ts"
import type { ReceivedSpan } from "../support/OtlpReceiver.ts"
import { startServer } from "../support/ServerProcess.ts"

/**
 * Traces (spec 95): the real server, started as `npm start` starts it, exports its spans over
 * OTLP/HTTP to a receiver in the test when `OTEL_EXPORTER_OTLP_ENDPOINT` is set: the run, its steps
 * and the GenAI client span, continuing the caller's `traceparent` and passing it upstream.
 */

const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
const callerSpan = "00f067aa0ba902b7"
const secretText = "the launch code is 0000"

/** A started turn, answered 202, with the caller's trace context. */
const startTurn = (baseUrl: string, chatId: string, body: object, traceparent?: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${baseUrl}/chats/${chatId}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(traceparent === undefined ? {} : { traceparent }) },
      body: JSON.stringify({ userMessageId: crypto.randomUUID(), ...body })
    })
    return (await response.json()) as { run: { id: string; traceId: string | null } }
  })

const terminal = (baseUrl: string, runId: string) =>
  eventually(get(baseUrl, `/runs/${runId}`), ({ body }) => body.run.status !== "running")

/**
 * The spans of one run once it ended (a span is exported when it ends, and the run's ends last):
 * the run, the steps it reached (a skipped step never ran, so it has none) and the model call.
 */
const treeOf = (receiver: Otlp.OtlpReceiver, runId: string) =>
  receiver.until((spans) => {
    const run = spans.find((span) => span.name === "turn.run" && span.attributes["turn.run_id"] === runId)
    if (run === undefined) return undefined
    const steps = spans.filter((span) => span.parentSpanId === run.spanId && span.name.startsWith("turn.step "))
    const llm = steps.find((span) => span.name === "turn.step llm")
    const chat = llm === undefined ? undefined : spans.find((span) => span.parentSpanId === llm.spanId && span.name.startsWith("chat "))
    return chat === undefined ? undefined : { run, steps, chat, all: spans }
  }).pipe(Effect.timeout("20 seconds"))

const textIn = (spans: ReadonlyArray<ReceivedSpan>) => JSON.stringify(spans.map((span) => span.attributes))

describe("traces over OTLP/HTTP", () => {
  it.live("a turn's spans continue the caller's trace, with the GenAI conventions on the model call (protobuf)", () =>
    Effect.gen(function*() {
      const receiver = yield* Otlp.start
      const upstream = yield* Fake.start(Fake.stream(Fake.textChunks(["Hel", "lo"], {
        usage: { prompt_tokens: 11, completion_tokens: 2, total_tokens: 13 }
      })))
      const server = yield* startServer({
        DATA_DIR: "memory",
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY: "100",
        LLM_PROVIDER: "openai",
        OPENAI_BASE_URL: upstream.baseUrl,
        LLM_MODEL: "gpt-test"
      })
      const chatId = (yield* post(server.baseUrl, "/chats", {})).body.id as string
      const started = yield* startTurn(
        server.baseUrl,
        chatId,
        { content: secretText, settings: { temperature: 0.5, max_tokens: 40 } },
        `00-${callerTrace}-${callerSpan}-01`
      )
      expect(started.run.traceId).toBe(callerTrace)
      const finished = yield* terminal(server.baseUrl, started.run.id)
      expect(finished.body.run.status).toBe("done")
      expect(finished.body.run.traceId).toBe(callerTrace)

      const { all, chat, run, steps } = yield* treeOf(receiver, started.run.id)
      expect(receiver.paths()).toContain("/v1/traces")
      expect(run.contentType).toBe("application/x-protobuf")
      expect(run.resource["service.name"]).toBe("turn-runner")
      // One trace from the caller's span down to the model call.
      expect(all.filter((span) => span.traceId === callerTrace).length).toBeGreaterThanOrEqual(5)
      const server_ = all.find((span) => span.parentSpanId === callerSpan)
      expect(server_?.kind).toBe(Otlp.SpanKind.server)
      expect(run.traceId).toBe(callerTrace)
      expect(run.attributes).toMatchObject({
        "turn.run_id": started.run.id,
        "turn.chat_id": chatId,
        "turn.trigger": "user_message",
        "turn.status": "done"
      })
      expect(steps.map((span) => span.name).sort()).toEqual(["turn.step llm", "turn.step post", "turn.step pre"])
      expect(steps.every((span) => span.startNanos >= run.startNanos && span.endNanos <= run.endNanos)).toBe(true)

      expect(chat.name).toBe("chat gpt-test")
      expect(chat.kind).toBe(Otlp.SpanKind.client)
      expect(chat.attributes).toMatchObject({
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-test",
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.max_tokens": 40,
        "gen_ai.response.model": "fake-model",
        "gen_ai.response.id": "chatcmpl-fake",
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 2,
        "gen_ai.conversation.id": chatId,
        "server.address": "127.0.0.1",
        "server.port": Number(new URL(upstream.baseUrl).port)
      })
      expect(chat.attributes["error.type"]).toBeUndefined()

      // The upstream request carries the model call's own span as its parent.
      const [request] = yield* upstream.requests
      expect(request?.headers.traceparent).toBe(`00-${callerTrace}-${chat.spanId}-01`)
      // No prompt or answer text without STORE_PROMPT_SNAPSHOTS.
      expect(textIn(all)).not.toContain("launch code")
      expect(textIn(all)).not.toContain("Hello")
    }).pipe(Effect.scoped), 60_000)

  it.live("a failed and an aborted run say where they stopped and why; JSON, resource attributes, text when snapshots are stored", () =>
    Effect.gen(function*() {
      const receiver = yield* Otlp.start
      const upstream = yield* Fake.start(Fake.status(500, { error: { message: "the model is down" } }))
      const server = yield* startServer({
        DATA_DIR: "memory",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.endpoint}/custom/traces`,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_SERVICE_NAME: "chat-backend",
        OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=test,team=chat",
        OTEL_BSP_SCHEDULE_DELAY: "100",
        STORE_PROMPT_SNAPSHOTS: "true",
        LLM_PROVIDER: "openai",
        LLM_MAX_RETRIES: "0",
        OPENAI_BASE_URL: upstream.baseUrl,
        LLM_MODEL: "gpt-test"
      })
      const chatId = (yield* post(server.baseUrl, "/chats", {})).body.id as string
      const failed = yield* startTurn(server.baseUrl, chatId, { content: secretText })
      // Without a caller's trace the run starts its own, and names it.
      expect(failed.run.traceId).toMatch(/^[0-9a-f]{32}$/)
      expect((yield* terminal(server.baseUrl, failed.run.id)).body.run.status).toBe("error")
      const failedTree = yield* treeOf(receiver, failed.run.id)
      expect(failedTree.steps.map((span) => span.name).sort()).toEqual(["turn.step llm", "turn.step pre"])
      expect(receiver.paths()).toContain("/custom/traces")
      expect(failedTree.run.contentType).toBe("application/json")
      expect(failedTree.run.traceId).toBe(failed.run.traceId)
      expect(failedTree.run.resource).toMatchObject({ "service.name": "chat-backend", "deployment.environment": "test", team: "chat" })
      expect(failedTree.run.attributes).toMatchObject({ "turn.status": "error", "turn.error_code": "llm_error" })
      expect(failedTree.chat.attributes["error.type"]).toBe("llm_error")
      expect(failedTree.chat.statusCode).toBe(2)
      // Snapshots are stored, so the prompt may be in the span too.
      expect(String(failedTree.chat.attributes["gen_ai.input.messages"])).toContain("launch code")

      yield* upstream.answer(Fake.stream(Fake.textChunks(["a", "b", "c", "d", "e", "f"]), { delayMs: 300 }))
      const aborted = yield* startTurn(server.baseUrl, chatId, { content: "Slowly" })
      yield* upstream.received(1)
      expect((yield* post(server.baseUrl, `/runs/${aborted.run.id}/abort`, {})).body.run.status).toBe("aborted")
      const abortedTree = yield* treeOf(receiver, aborted.run.id)
      expect(abortedTree.run.attributes).toMatchObject({ "turn.status": "aborted", "turn.abort_reason": "user" })
      expect(abortedTree.run.attributes["turn.error_code"]).toBeUndefined()
      expect(abortedTree.chat.attributes["error.type"]).toBeUndefined()
    }).pipe(Effect.scoped), 60_000)

  it.live("with no exporter configured, no trace id is recorded and no traceparent is sent", () =>
    Effect.gen(function*() {
      const upstream = yield* Fake.start(Fake.stream(Fake.textChunks(["Hi"])))
      const server = yield* startServer({ DATA_DIR: "memory", LLM_PROVIDER: "openai", OPENAI_BASE_URL: upstream.baseUrl })
      const chatId = (yield* post(server.baseUrl, "/chats", {})).body.id as string
      const started = yield* startTurn(server.baseUrl, chatId, { content: "Hello" }, `00-${callerTrace}-${callerSpan}-01`)
      expect(started.run.traceId).toBeNull()
      expect((yield* terminal(server.baseUrl, started.run.id)).body.run.traceId).toBeNull()
      const [request] = yield* upstream.requests
      expect(request?.headers.traceparent).toBeUndefined()
    }).pipe(Effect.scoped), 60_000)
})
