import { expect } from "@effect/vitest"
import { Effect, Layer, Logger, Redacted } from "effect"
import { checkInvariants } from "./Invariants.ts"
import type { TestDatabase } from "./TestDatabase.ts"
import { testServer } from "./TestServer.ts"
import type { EventJson, SnapshotJson } from "./Turns.ts"
import { deltaText, dataOf, messagesOf, newChat, outline, runEvents, sendMessage, snapshotOf, successOutline } from "./Turns.ts"

/**
 * The provider table of spec 90 through the whole service: the app pointed at a provider server
 * on loopback with an API key, every log line captured, and what each row asserts about a turn.
 */

export const secret = "sk-fault-table-7f3a9c1e5b"
export const idleTimeoutMs = 1_500

/** Every log line the service writes, as `logfmt` (the cause included). */
const logLines: Array<string> = []
const captureLogs = Logger.replace(Logger.defaultLogger, Logger.map(Logger.logfmtLogger, (line) => logLines.push(line)))

/** The app on `database`, its `openai` provider at `baseUrl` (LLM_MAX_RETRIES 2, a short idle timeout). */
export const providerServer = (database: TestDatabase, baseUrl: string) =>
  testServer(database, {
    llm: { provider: "openai", baseUrl, apiKey: Redacted.make(secret), model: "fake-model", maxRetries: 2 },
    llmIdleTimeoutMs: idleTimeoutMs
  }).pipe(Layer.provide(captureLogs))

export interface Outcome {
  readonly snapshot: SnapshotJson
  readonly events: ReadonlyArray<EventJson>
  /** Upstream requests the provider received. */
  readonly requests: number
  /** The assistant message's text as the chat shows it. */
  readonly answer: string
}

/**
 * One turn, once the provider is set up; returns once the run has ended. Checks on the way that
 * the key reaches no answer, event or log line, that the run's end is logged with why it failed,
 * and the data model's invariants.
 */
export const turn = <R>(requests: Effect.Effect<number, never, R>) =>
  Effect.gen(function*() {
    const chatId = yield* newChat
    const linesBefore = logLines.length
    const started = yield* sendMessage(chatId, { userMessageId: crypto.randomUUID(), content: "Say hello", settings: {} })
    expect(started.status).toBe(202)
    const runId = (started.body as SnapshotJson).run.id
    const stream = yield* runEvents(runId)
    const snapshot = yield* snapshotOf(runId)
    const messages = yield* messagesOf(chatId)
    const lines = logLines.slice(linesBefore)
    for (const text of [started.text, JSON.stringify(stream), JSON.stringify(snapshot), JSON.stringify(messages), ...lines]) {
      expect(text).not.toContain(secret)
    }
    const ended = lines.find((line) => line.includes("run finished") && line.includes(runId))
    expect(ended).toContain(`status=${snapshot.run.status}`)
    if (snapshot.run.error !== null) expect(ended).toContain(`errorCode=${snapshot.run.error.code}`)
    yield* checkInvariants
    return {
      snapshot,
      events: dataOf(stream.events),
      requests: yield* requests,
      answer: messages.find((message) => message.role === "assistant")?.content ?? ""
    } satisfies Outcome
  })

/** A run the model finished: done everywhere, the text as sent, after `attempts` requests. */
export const expectDone = (outcome: Outcome, text: string, attempts: number) => {
  const { events, snapshot } = outcome
  expect(snapshot.run).toMatchObject({ status: "done", error: null })
  expect(snapshot.steps.map((step) => [step.stepType, step.status])).toEqual([["pre", "done"], ["llm", "done"], ["post", "done"]])
  expect(snapshot.generation).toMatchObject({ status: "done", error: null, attempts })
  expect(outline(events)).toEqual(successOutline)
  expect(deltaText(events)).toBe(text)
  expect(outcome.answer).toBe(text)
  expect(outcome.requests).toBe(attempts)
}

/** A run that failed in the `llm` step with `code`: error everywhere, the text so far kept. */
export const expectFailed = (
  outcome: Outcome,
  expected: { readonly code: string; readonly message?: string; readonly text: string; readonly attempts: number }
) => {
  const { events, snapshot } = outcome
  const step = (stepType: string) => snapshot.steps.find((step) => step.stepType === stepType)
  expect(snapshot.run).toMatchObject({ status: "error", error: { code: expected.code } })
  expect(step("llm")).toMatchObject({ status: "error", error: { code: expected.code } })
  expect(step("post")?.status ?? "skipped").toBe("skipped")
  expect(snapshot.generation).toMatchObject({ status: "error", error: { code: expected.code }, attempts: expected.attempts })
  if (expected.message !== undefined) expect(snapshot.generation?.error?.message).toContain(expected.message)
  expect(events.find((event) => event.type === "llm.stream.error")).toMatchObject({ error: { code: expected.code } })
  expect(events.find((event) => event.type === "llm.stream.done")).toMatchObject({ status: "error" })
  expect(events.at(-1)).toMatchObject({ type: "pipeline.run.error", error: { code: expected.code } })
  expect(deltaText(events)).toBe(expected.text)
  expect(outcome.answer).toBe(expected.text)
  expect(outcome.requests).toBe(expected.attempts)
}
