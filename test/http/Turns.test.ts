import { HttpClient, HttpClientRequest } from "@effect/platform"
import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as Zlib from "node:zlib"
import { uuidv7At } from "../../src/services/Uuid.ts"
import { checkInvariants } from "../support/Invariants.ts"
import { testDatabases } from "../support/TestDatabase.ts"
import { getJson, postRaw, testServer } from "../support/TestServer.ts"
import type { ErrorJson, RunJson, SnapshotJson } from "../support/Turns.ts"
import {
  completedTurn,
  dataOf,
  deltaText,
  expectWellFormedStream,
  finished,
  messagesOf,
  messagesPath,
  newChat,
  outline,
  quick,
  regenerate,
  regeneratePath,
  rowCounts,
  runEvents,
  sendMessage,
  snapshotOf,
  streamTurn,
  streamTurnInBackground,
  successOutline,
  wire,
  withLiveTurn
} from "../support/Turns.ts"

/**
 * Turns through the real HTTP server and a real SSE parser (spec 10, 60, 70): starting a turn in
 * JSON and in streaming mode, idempotency, regenerate, busy chats, validation, and the runs list.
 */

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const normalized = (text: string) => text.replace(/\r\n/g, "\n").trimEnd()

const snapshotIn = (answer: { readonly body: unknown }) => answer.body as SnapshotJson
const errorIn = (answer: { readonly body: unknown }) => answer.body as ErrorJson & { readonly details?: { readonly runId?: string } }

/** A user message request with a fresh id. */
const userMessage = (content = "Hello there", extra: object = {}) => ({
  userMessageId: crypto.randomUUID(),
  content,
  settings: quick(),
  ...extra
})

for (const database of testDatabases) {
  layer(testServer(database), { timeout: 60_000, excludeTestServices: true })(`turns over HTTP on ${database.name}`, (it) => {
    describe("POST /chats/{chatId}/messages without Accept: text/event-stream", () => {
      it.effect("answers 202 with the new run's snapshot, deduplicated: false", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const request = userMessage()
          const answer = yield* sendMessage(chatId, request)
          expect(answer.status).toBe(202)
          expect(answer.headers["idempotent-replayed"]).toBeUndefined()
          const snapshot = snapshotIn(answer)
          expect(snapshot).toMatchObject({ steps: expect.any(Array), deduplicated: false })
          expect(snapshot).toHaveProperty("generation")
          expect(snapshot.run).toMatchObject({
            id: expect.stringMatching(uuid),
            chatId,
            pipelineId: "builtin:default",
            pipelineName: "default",
            trigger: "user_message",
            idempotencyKey: `user_message:${request.userMessageId}`,
            userMessageId: request.userMessageId,
            assistantMessageId: expect.stringMatching(uuid),
            assistantVariantId: expect.stringMatching(uuid)
          })
          expect(["running", "done"]).toContain(snapshot.run.status)
          yield* finished(snapshot.run.id)
        }))

      it.effect("the run then finishes done, with pre, llm, post and the generation done", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const started = snapshotIn(yield* sendMessage(chatId, userMessage()))
          const snapshot = yield* finished(started.run.id)
          expect(snapshot.run).toMatchObject({ id: started.run.id, status: "done", error: null, abortReason: null, finishedAt: expect.any(String) })
          expect(snapshot.steps.map((step) => [step.stepType, step.status])).toEqual([["pre", "done"], ["llm", "done"], ["post", "done"]])
          expect(snapshot.generation).toMatchObject({ runId: started.run.id, status: "done", provider: "local", finishReason: "stop" })
          expect(snapshot.run.generationId).toBe(snapshot.generation?.id)
        }))

      it.effect("the history then shows the user message and the assistant's answer", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const request = userMessage("Where do otters sleep?", { settings: quick(12) })
          const snapshot = yield* finished(snapshotIn(yield* sendMessage(chatId, request)).run.id)
          const messages = yield* messagesOf(chatId)
          expect(messages).toHaveLength(2)
          expect(messages[0]).toMatchObject({ id: request.userMessageId, chatId, role: "user", position: 0, content: "Where do otters sleep?" })
          expect(messages[1]).toMatchObject({
            id: snapshot.run.assistantMessageId,
            role: "assistant",
            position: 1,
            selectedVariantId: snapshot.run.assistantVariantId,
            variants: [{ id: snapshot.run.assistantVariantId, generationId: snapshot.generation?.id }]
          })
          // The local model quotes the last user message (spec 90): the history reached the model.
          expect(messages[1]!.content).toMatch(/^You said: “Where do otters sleep\?”\./)
        }))
    })

    describe("POST /chats/{chatId}/messages with Accept: text/event-stream", () => {
      it.effect("answers 200 with text/event-stream, no-cache and no proxy buffering", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const { headers, status } = yield* streamTurn(messagesPath(chatId), userMessage())
          expect(status).toBe(200)
          expect(headers["content-type"]).toMatch(/^text\/event-stream/)
          expect(headers["cache-control"]).toBe("no-cache")
          expect(headers["x-accel-buffering"]).toBe("no")
        }))

      it.effect("every event has the envelope, seq 1..n, id = seq, event = type and a non-decreasing ISO at; the response ends after the terminal event", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const request = userMessage()
          const { events } = yield* streamTurn(messagesPath(chatId), request)
          const snapshot = yield* snapshotOf(dataOf(events)[0]!.runId as string)
          expect(snapshot.run).toMatchObject({ chatId, trigger: "user_message", userMessageId: request.userMessageId, status: "done" })
          expectWellFormedStream(events, snapshot)
        }))

      it.effect("the events come in the order of spec 60: run started, pre, llm (meta, deltas, done), post, one terminal event", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const { events } = yield* streamTurn(messagesPath(chatId), userMessage())
          expect(outline(dataOf(events))).toEqual(successOutline)
        }))

      it.effect("each event type carries its own fields", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const { events } = yield* streamTurn(messagesPath(chatId), userMessage("Hi", { settings: quick(3) }))
          const data = dataOf(events)
          const ofType = (type: string) => data.filter((event) => event.type === type)
          for (const event of ofType("pipeline.step.started")) {
            expect(event).toMatchObject({ status: "running", label: expect.any(String) })
            expect((event.label as string).length).toBeGreaterThan(0)
          }
          for (const event of ofType("pipeline.step.done")) {
            expect(event).toMatchObject({ status: "done", durationMs: expect.any(Number) })
            expect(event.durationMs).toBeGreaterThanOrEqual(0)
          }
          expect(ofType("llm.stream.meta")).toEqual([expect.objectContaining({ provider: "local", model: expect.any(String) })])
          expect(ofType("llm.stream.delta")).toHaveLength(3)
          for (const event of ofType("llm.stream.delta")) expect(event.content).toEqual(expect.stringMatching(/.+/))
          expect(ofType("llm.stream.done")).toEqual([
            expect.objectContaining({ status: "done", finishReason: "stop", usage: { promptTokens: expect.any(Number), completionTokens: 3 } })
          ])
          const done = ofType("pipeline.run.done")
          expect(done).toEqual([expect.objectContaining({ status: "done", finishedAt: expect.any(String) })])
          expect(new Date(done[0]!.finishedAt as string).toISOString()).toBe(done[0]!.finishedAt)
        }))

      it.effect("the deltas concatenate to the generation's text, which the answer keeps", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const { events } = yield* streamTurn(messagesPath(chatId), userMessage("Tell me about rivers", { settings: quick(6) }))
          const text = deltaText(dataOf(events))
          expect(text).toMatch(/^You said: “Tell me about rivers”\. /)
          const messages = yield* messagesOf(chatId)
          expect(messages[1]!.content).toBe(normalized(text))
        }))

      it.effect("every event is journaled: afterwards GET /runs/{runId}/events replays the same events, seq 1..n without a gap", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          // Many events over several journal flushes, so events are emitted while a batch is being written.
          const first = yield* streamTurn(messagesPath(chatId), userMessage("Hello there", { settings: { max_tokens: 150, local: { tokenDelayMs: 2 } } }))
          const replay = yield* runEvents(dataOf(first.events)[0]!.runId as string)
          const seqs = dataOf(replay.events).map((event) => event.seq)
          expect(seqs).toEqual(seqs.map((_, i) => i + 1))
          expect(wire(replay.events)).toEqual(wire(first.events))
        }))

      it.effect("with Accept-Encoding: gzip the stream is gzip-compressed, and unpacks to the same bytes the journal replays", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const client = yield* HttpClient.HttpClient
          const response = yield* client.execute(
            HttpClientRequest.post(messagesPath(chatId)).pipe(
              HttpClientRequest.setHeaders({ accept: "text/event-stream", "accept-encoding": "gzip" }),
              HttpClientRequest.bodyUnsafeJson(userMessage("Hello there", { settings: { max_tokens: 60, local: { tokenDelayMs: 1 } } }))
            )
          )
          expect(response.headers["content-encoding"]).toBe("gzip")
          const packed = new Uint8Array(yield* response.arrayBuffer)
          const text = Zlib.gunzipSync(packed).toString("utf8")
          const runId = /"runId":"([^"]+)"/.exec(text)![1]!
          const replayed = yield* Effect.scoped(Effect.flatMap(
            client.execute(HttpClientRequest.get(`/runs/${runId}/events`)),
            (answer) => answer.text
          ))
          expect(text).toBe(replayed)
          // The envelope repeats, so the compressed stream is a fraction of the text.
          expect(packed.length).toBeLessThan(text.length / 3)
        }).pipe(Effect.scoped))
    })

    describe("idempotency (F1.1)", () => {
      it.effect("the same request again answers 202 with the same run, deduplicated: true and Idempotent-Replayed: true", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const request = userMessage()
          const first = snapshotIn(yield* sendMessage(chatId, request))
          const done = yield* finished(first.run.id)
          const again = yield* sendMessage(chatId, request)
          expect(again.status).toBe(202)
          expect(again.headers["idempotent-replayed"]).toBe("true")
          expect(snapshotIn(again)).toEqual({ ...done, deduplicated: true })
        }))

      it.effect("a duplicate writes nothing: no message, variant, run, step or generation", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const request = userMessage()
          yield* finished(snapshotIn(yield* sendMessage(chatId, request)).run.id)
          const before = yield* rowCounts
          yield* sendMessage(chatId, request)
          expect(yield* rowCounts).toEqual(before)
        }))

      it.effect("the same userMessageId with other content is 422 idempotency_key_reused and writes nothing", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const request = userMessage("first")
          yield* finished(snapshotIn(yield* sendMessage(chatId, request)).run.id)
          const before = yield* rowCounts
          const answer = yield* sendMessage(chatId, { ...request, content: "second" })
          expect(answer.status).toBe(422)
          expect(errorIn(answer)).toMatchObject({ code: "idempotency_key_reused", message: expect.any(String) })
          expect(yield* rowCounts).toEqual(before)
        }))

      it.effect("the same userMessageId with other settings is 422 idempotency_key_reused and writes nothing", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const request = userMessage()
          yield* finished(snapshotIn(yield* sendMessage(chatId, request)).run.id)
          const before = yield* rowCounts
          const answer = yield* sendMessage(chatId, { ...request, settings: { ...quick(), temperature: 0.2 } })
          expect(answer.status).toBe(422)
          expect(errorIn(answer)).toMatchObject({ code: "idempotency_key_reused" })
          expect(yield* rowCounts).toEqual(before)
        }))

      it.effect("a duplicate in streaming mode replays the identical event sequence from seq 1", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const request = userMessage()
          const first = yield* streamTurn(messagesPath(chatId), request)
          const before = yield* rowCounts
          const again = yield* streamTurn(messagesPath(chatId), request)
          expect(again.status).toBe(200)
          expect(wire(again.events)).toEqual(wire(first.events))
          expect(yield* rowCounts).toEqual(before)
        }))

      it.effect("a duplicate in streaming mode while the run is live attaches and receives the same events as the first client", () =>
        Effect.scoped(Effect.gen(function*() {
          const chatId = yield* newChat
          const request = userMessage("Tell me a story", { settings: { max_tokens: 40, local: { tokenDelayMs: 20 } } })
          const first = yield* streamTurnInBackground(messagesPath(chatId), request)
          const delta = yield* first.firstDelta
          const again = yield* streamTurn(messagesPath(chatId), request)
          const firstEvents = yield* first.all
          expect(again.status).toBe(200)
          expect(dataOf(again.events)[0]).toMatchObject({ seq: 1, runId: delta.runId })
          expect(wire(again.events)).toEqual(wire(firstEvents))
          expect(outline(dataOf(again.events))).toEqual(successOutline)
        })))

      it.effect("a userMessageId that already names a message of another chat is 422 idempotency_key_reused", () =>
        Effect.gen(function*() {
          const otherChat = yield* newChat
          const request = userMessage()
          const other = yield* finished(snapshotIn(yield* sendMessage(otherChat, request)).run.id)
          const chatId = yield* newChat
          const before = yield* rowCounts
          for (const takenId of [request.userMessageId, other.run.assistantMessageId]) {
            const answer = yield* sendMessage(chatId, { ...request, userMessageId: takenId })
            expect(answer.status).toBe(422)
            expect(errorIn(answer)).toMatchObject({ code: "idempotency_key_reused" })
          }
          expect(yield* rowCounts).toEqual(before)
        }))

      it.effect("25 identical requests in parallel make exactly one run, and every answer names it", () =>
        Effect.gen(function*() {
          // A race: three rounds, each in a fresh chat, so that a lost race shows up reliably.
          for (let round = 0; round < 3; round++) {
            const chatId = yield* newChat
            const request = userMessage()
            const answers = yield* Effect.all(Array.from({ length: 25 }, () => sendMessage(chatId, request)), { concurrency: "unbounded" })
            const named = new Set(answers.filter((answer) => answer.status === 202).map((answer) => snapshotIn(answer).run.id))
            for (const runId of named) yield* finished(runId)
            const outcome = (answer: { readonly status: number; readonly body: unknown }) =>
              answer.status === 202 ? "202" : `${answer.status} ${errorIn(answer).code}`
            expect(answers.map(outcome)).toEqual(answers.map(() => "202"))
            const runIds = new Set(answers.map((answer) => snapshotIn(answer).run.id))
            expect(runIds.size).toBe(1)
            expect(answers.filter((answer) => snapshotIn(answer).deduplicated === true)).toHaveLength(24)
            const [runId] = runIds
            const runs = (yield* getJson(`/chats/${chatId}/runs`)).body as { readonly runs: ReadonlyArray<RunJson> }
            expect(runs.runs.map((run) => run.id)).toEqual([runId])
            const messages = yield* messagesOf(chatId)
            expect(messages.filter((message) => message.role === "user").map((message) => message.id)).toEqual([request.userMessageId])
            expect(messages).toHaveLength(2)
          }
        }))
    })

    describe("POST /chats/{chatId}/messages/{assistantMessageId}/regenerate", () => {
      it.effect("adds a new selected variant to the latest assistant message, filled by a new run", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const first = yield* completedTurn(chatId)
          const messageId = first.run.assistantMessageId
          const answer = yield* regenerate(chatId, messageId, { requestId: crypto.randomUUID(), settings: quick(5) })
          expect(answer.status).toBe(202)
          expect(snapshotIn(answer).deduplicated).toBe(false)
          const second = yield* finished(snapshotIn(answer).run.id)
          expect(second.run).toMatchObject({ status: "done", trigger: "regenerate", userMessageId: null, assistantMessageId: messageId })
          expect(second.run.id).not.toBe(first.run.id)
          expect(second.run.assistantVariantId).not.toBe(first.run.assistantVariantId)
          const messages = yield* messagesOf(chatId)
          expect(messages).toHaveLength(2)
          const assistant = messages[1]!
          expect(assistant.id).toBe(messageId)
          expect(assistant.variants.map((variant) => variant.id)).toEqual([first.run.assistantVariantId, second.run.assistantVariantId])
          expect(assistant.selectedVariantId).toBe(second.run.assistantVariantId)
          expect(assistant.variants[1]).toMatchObject({ generationId: second.generation?.id })
          expect(assistant.content).toBe(assistant.variants[1]!.content)
          expect(assistant.content.length).toBeGreaterThan(0)
        }))

      it.effect("a regenerate run's events have trigger regenerate and userMessageId null, and obey spec 60", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const first = yield* completedTurn(chatId)
          const { events, status } = yield* streamTurn(regeneratePath(chatId, first.run.assistantMessageId), { requestId: crypto.randomUUID(), settings: quick(5) })
          expect(status).toBe(200)
          const data = dataOf(events)
          const snapshot = yield* snapshotOf(data[0]!.runId as string)
          expect(snapshot.run).toMatchObject({ trigger: "regenerate", userMessageId: null, assistantMessageId: first.run.assistantMessageId })
          expectWellFormedStream(events, snapshot)
          expect(outline(data)).toEqual(successOutline)
          for (const event of data) expect(event).toMatchObject({ trigger: "regenerate", userMessageId: null })
          const messages = yield* messagesOf(chatId)
          expect(messages[1]!.content).toBe(normalized(deltaText(data)))
        }))

      it.effect("regenerating a message that is not the latest assistant message is 409 not_latest_assistant_message and writes nothing", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const older = yield* completedTurn(chatId, "one")
          yield* completedTurn(chatId, "two")
          const before = yield* rowCounts
          for (const messageId of [older.run.assistantMessageId, older.run.userMessageId!]) {
            const answer = yield* regenerate(chatId, messageId, { requestId: crypto.randomUUID() })
            expect(answer.status).toBe(409)
            expect(errorIn(answer)).toMatchObject({ code: "not_latest_assistant_message", message: expect.any(String) })
          }
          expect(yield* rowCounts).toEqual(before)
        }))

      it.effect("regenerating an unknown message, or one of another chat, is 404 not_found", () =>
        Effect.gen(function*() {
          const otherChat = yield* newChat
          const other = yield* completedTurn(otherChat)
          const chatId = yield* newChat
          yield* completedTurn(chatId)
          const before = yield* rowCounts
          for (const messageId of [uuidv7At(0), other.run.assistantMessageId]) {
            const answer = yield* regenerate(chatId, messageId, { requestId: crypto.randomUUID() })
            expect(answer.status).toBe(404)
            expect(errorIn(answer)).toMatchObject({ code: "not_found" })
          }
          expect(yield* rowCounts).toEqual(before)
        }))

      it.effect("the same regenerate again answers with the same run, deduplicated, and writes nothing", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const first = yield* completedTurn(chatId)
          const request = { requestId: crypto.randomUUID(), settings: quick() }
          const started = snapshotIn(yield* regenerate(chatId, first.run.assistantMessageId, request))
          const done = yield* finished(started.run.id)
          const before = yield* rowCounts
          const again = yield* regenerate(chatId, first.run.assistantMessageId, request)
          expect(again.status).toBe(202)
          expect(again.headers["idempotent-replayed"]).toBe("true")
          expect(snapshotIn(again)).toEqual({ ...done, deduplicated: true })
          expect(done.run.idempotencyKey).toBe(`regenerate:${first.run.assistantMessageId}:${request.requestId}`)
          expect(yield* rowCounts).toEqual(before)
        }))

      it.effect("a duplicate regenerate gets its run back even when the message is no longer the latest (an existing key wins)", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const first = yield* completedTurn(chatId)
          const request = { requestId: crypto.randomUUID(), settings: quick() }
          const regenerated = yield* finished(snapshotIn(yield* regenerate(chatId, first.run.assistantMessageId, request)).run.id)
          yield* completedTurn(chatId, "a newer message")
          const again = yield* regenerate(chatId, first.run.assistantMessageId, request)
          expect(again.status).toBe(202)
          expect(snapshotIn(again)).toMatchObject({ run: { id: regenerated.run.id }, deduplicated: true })
        }))

      it.effect("the same requestId with other settings is 422 idempotency_key_reused and writes nothing", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const first = yield* completedTurn(chatId)
          const request = { requestId: crypto.randomUUID(), settings: quick() }
          yield* finished(snapshotIn(yield* regenerate(chatId, first.run.assistantMessageId, request)).run.id)
          const before = yield* rowCounts
          const answer = yield* regenerate(chatId, first.run.assistantMessageId, { ...request, settings: quick(7) })
          expect(answer.status).toBe(422)
          expect(errorIn(answer)).toMatchObject({ code: "idempotency_key_reused" })
          expect(yield* rowCounts).toEqual(before)
        }))
    })

    describe("a busy chat (one running turn per chat)", () => {
      it.effect("a new turn with onBusy reject, or none, is 409 chat_busy naming the running run, and writes nothing", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          yield* withLiveTurn(chatId, (runId) =>
            Effect.gen(function*() {
              const before = yield* rowCounts
              for (const request of [userMessage("busy?", { onBusy: "reject" }), userMessage("busy?")]) {
                const answer = yield* sendMessage(chatId, request)
                expect(answer.status).toBe(409)
                expect(errorIn(answer)).toMatchObject({ code: "chat_busy", message: expect.any(String), details: { runId } })
              }
              expect(yield* rowCounts).toEqual(before)
              expect((yield* snapshotOf(runId)).run.status).toBe("running")
            }))
        }))

      it.effect("a regenerate while the chat is busy is 409 chat_busy and writes nothing", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          yield* withLiveTurn(chatId, (runId) =>
            Effect.gen(function*() {
              const live = yield* snapshotOf(runId)
              const before = yield* rowCounts
              const answer = yield* regenerate(chatId, live.run.assistantMessageId, { requestId: crypto.randomUUID() })
              expect(answer.status).toBe(409)
              expect(errorIn(answer)).toMatchObject({ code: "chat_busy", details: { runId } })
              expect(yield* rowCounts).toEqual(before)
            }))
        }))

      it.effect("a duplicate of an earlier turn gets its run back even while the chat is busy (an existing key wins)", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const request = userMessage()
          const earlier = yield* finished(snapshotIn(yield* sendMessage(chatId, request)).run.id)
          yield* withLiveTurn(chatId, () =>
            Effect.gen(function*() {
              const again = yield* sendMessage(chatId, request)
              expect(again.status).toBe(202)
              expect(snapshotIn(again)).toMatchObject({ run: { id: earlier.run.id, status: "done" }, deduplicated: true })
            }))
        }))

      it.effect("onBusy interrupt aborts the running run with reason superseded, then starts the new turn", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          yield* withLiveTurn(chatId, (oldRunId) =>
            Effect.gen(function*() {
              const answer = yield* sendMessage(chatId, userMessage("never mind", { onBusy: "interrupt" }))
              expect(answer.status).toBe(202)
              const started = snapshotIn(answer)
              expect(started.run.id).not.toBe(oldRunId)
              expect(started.deduplicated).toBe(false)
              // The server waits for the old run to be terminal before it starts the new one.
              const old = yield* snapshotOf(oldRunId)
              expect(old.run).toMatchObject({ status: "aborted", abortReason: "superseded", error: { code: "aborted" } })
              expect(old.steps.map((step) => [step.stepType, step.status])).toEqual([["pre", "done"], ["llm", "aborted"], ["post", "skipped"]])
              expect(old.generation?.status).toBe("aborted")
              const oldEvents = dataOf((yield* runEvents(oldRunId)).events)
              expect(oldEvents.at(-1)).toMatchObject({ type: "pipeline.run.aborted", status: "aborted", abortReason: "superseded" })
              expect(outline(oldEvents).slice(-4)).toEqual([
                "llm.stream.done aborted",
                "pipeline.step.done llm aborted",
                "pipeline.step.done post skipped",
                "pipeline.run.aborted"
              ])
              expect((yield* finished(started.run.id)).run.status).toBe("done")
            }))
        }))
    })

    describe("validation", () => {
      const badTurns: ReadonlyArray<readonly [string, (valid: ReturnType<typeof userMessage>) => unknown]> = [
        ["empty content", (valid) => ({ ...valid, content: "" })],
        ["content of only white space", (valid) => ({ ...valid, content: " \n\t  " })],
        ["content over 100000 characters", (valid) => ({ ...valid, content: "x".repeat(100_001) })],
        ["a missing content", ({ content: _, ...rest }) => rest],
        ["a missing userMessageId", ({ userMessageId: _, ...rest }) => rest],
        ["a userMessageId that is not a UUID", (valid) => ({ ...valid, userMessageId: "message-1" })],
        ["settings that are an array", (valid) => ({ ...valid, settings: [1, 2] })],
        ["settings that are a string", (valid) => ({ ...valid, settings: "hot" })],
        ["settings that are null", (valid) => ({ ...valid, settings: null })],
        ["settings over 16 KiB", (valid) => ({ ...valid, settings: { pad: "x".repeat(16 * 1024) } })],
        ["an unknown onBusy value", (valid) => ({ ...valid, onBusy: "queue" })],
        ["abortOnDisconnect that is not a boolean", (valid) => ({ ...valid, abortOnDisconnect: "yes" })]
      ]

      for (const [what, make] of badTurns) {
        it.effect(`a turn request with ${what} is 400 validation_error and writes nothing`, () =>
          Effect.gen(function*() {
            const chatId = yield* newChat
            const before = yield* rowCounts
            const answer = yield* sendMessage(chatId, make(userMessage()))
            expect(answer.status).toBe(400)
            expect(errorIn(answer)).toMatchObject({ code: "validation_error", message: expect.any(String) })
            expect(yield* rowCounts).toEqual(before)
          }))
      }

      it.effect("a turn request whose body is not JSON is 400 validation_error and writes nothing", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const before = yield* rowCounts
          for (const body of ["{\"content\":", "not json at all", "[]"]) {
            const answer = yield* postRaw(messagesPath(chatId), body)
            expect(answer.status).toBe(400)
            expect(errorIn(answer)).toMatchObject({ code: "validation_error" })
          }
          expect(yield* rowCounts).toEqual(before)
        }))

      it.effect("a regenerate without a requestId, or with one that is not a UUID, is 400 validation_error and writes nothing", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const first = yield* completedTurn(chatId)
          const before = yield* rowCounts
          for (const body of [{}, { requestId: "click-1" }, { requestId: crypto.randomUUID(), onBusy: "queue" }]) {
            const answer = yield* regenerate(chatId, first.run.assistantMessageId, body)
            expect(answer.status).toBe(400)
            expect(errorIn(answer)).toMatchObject({ code: "validation_error" })
          }
          expect(yield* rowCounts).toEqual(before)
        }))

      it.effect("content of exactly 100000 characters and settings of exactly 16 KiB are accepted", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const settings = { ...quick(), pad: "" }
          settings.pad = "x".repeat(16 * 1024 - JSON.stringify(settings).length)
          expect(JSON.stringify(settings).length).toBe(16 * 1024)
          const answer = yield* sendMessage(chatId, userMessage("y".repeat(100_000), { settings }))
          expect(answer.status).toBe(202)
          expect((yield* finished(snapshotIn(answer).run.id)).run.status).toBe("done")
        }))

      it.effect("a turn in an unknown chat is 404 not_found and writes nothing", () =>
        Effect.gen(function*() {
          const before = yield* rowCounts
          const unknown = uuidv7At(0)
          const answers = [
            yield* sendMessage(unknown, userMessage()),
            yield* regenerate(unknown, uuidv7At(1), { requestId: crypto.randomUUID() })
          ]
          for (const answer of answers) {
            expect(answer.status).toBe(404)
            expect(errorIn(answer)).toMatchObject({ code: "not_found" })
          }
          expect(yield* rowCounts).toEqual(before)
        }))

      it.effect("validation comes before existence: a bad request to an unknown chat is 400", () =>
        Effect.gen(function*() {
          const answer = yield* sendMessage(uuidv7At(0), userMessage(""))
          expect(answer.status).toBe(400)
          expect(errorIn(answer)).toMatchObject({ code: "validation_error" })
        }))
    })

    describe("GET /chats/{chatId}/runs", () => {
      const listRuns = (chatId: string, query = "") =>
        Effect.map(getJson(`/chats/${chatId}/runs${query}`), (answer) => ({
          status: answer.status,
          body: answer.body,
          ids: ((answer.body as { readonly runs?: ReadonlyArray<RunJson> }).runs ?? []).map((run) => run.id)
        }))

      it.effect("lists the chat's runs newest first, 20 by default, and ?limit= bounds the list", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const created: Array<string> = []
          for (let i = 0; i < 21; i++) created.push((yield* completedTurn(chatId, `message ${i}`, quick(1))).run.id)
          const newestFirst = [...created].reverse()
          const byDefault = yield* listRuns(chatId)
          expect(byDefault.status).toBe(200)
          expect(byDefault.ids).toEqual(newestFirst.slice(0, 20))
          expect((yield* listRuns(chatId, "?limit=100")).ids).toEqual(newestFirst)
          expect((yield* listRuns(chatId, "?limit=1")).ids).toEqual(newestFirst.slice(0, 1))
          expect((yield* listRuns(chatId, "?limit=3")).ids).toEqual(newestFirst.slice(0, 3))
        }))

      it.effect("each listed run has the Run shape and only the chat's own runs are listed", () =>
        Effect.gen(function*() {
          const otherChat = yield* newChat
          yield* completedTurn(otherChat)
          const chatId = yield* newChat
          const turn = yield* completedTurn(chatId)
          const { body } = yield* listRuns(chatId)
          expect(body).toEqual({ runs: [turn.run] })
        }))

      it.effect("?status= keeps only the runs with that status", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const done = yield* completedTurn(chatId)
          const failed = yield* completedTurn(chatId, "fail", { max_tokens: 4, local: { tokenDelayMs: 0, failAfterTokens: 1 } })
          expect(failed.run).toMatchObject({ status: "error", error: { code: "llm_error" } })
          const aborted = yield* withLiveTurn(chatId, (runId) => Effect.succeed(runId))
          expect((yield* snapshotOf(aborted)).run).toMatchObject({ status: "aborted", abortReason: "user" })
          expect((yield* listRuns(chatId, "?status=done")).ids).toEqual([done.run.id])
          expect((yield* listRuns(chatId, "?status=error")).ids).toEqual([failed.run.id])
          expect((yield* listRuns(chatId, "?status=aborted")).ids).toEqual([aborted])
          expect((yield* listRuns(chatId, "?status=running")).ids).toEqual([])
          expect((yield* listRuns(chatId)).ids).toEqual([aborted, failed.run.id, done.run.id])
        }))

      it.effect("a limit of 0, 101 or abc, or an unknown status, is 400 validation_error", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          for (const query of ["?limit=0", "?limit=101", "?limit=abc", "?limit=2.5", "?status=finished"]) {
            const answer = yield* listRuns(chatId, query)
            expect(answer.status, query).toBe(400)
            expect(answer.body, query).toMatchObject({ code: "validation_error" })
          }
        }))

      it.effect("the runs of an unknown chat are 404 not_found", () =>
        Effect.gen(function*() {
          const answer = yield* listRuns(uuidv7At(0))
          expect(answer.status).toBe(404)
          expect(answer.body).toMatchObject({ code: "not_found" })
        }))
    })

    it.effect("the database satisfies every invariant of the spec", () => checkInvariants)
  })
}

