import { HttpApiClient, HttpClientRequest } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Context, Effect, Layer, Redacted } from "effect"
import type { MessageId } from "../../src/domain/Ids.ts"
import { Api } from "../../src/http/Api.ts"
import { uuidv7At } from "../../src/services/Uuid.ts"
import * as Fake from "../support/FakeChatCompletions.ts"
import { count } from "../support/Fixtures.ts"
import { checkInvariants } from "../support/Invariants.ts"
import { shiftedClock } from "../support/ShiftedClock.ts"
import { readAll } from "../support/SseClient.ts"
import type { TestDatabase } from "../support/TestDatabase.ts"
import { testDatabases } from "../support/TestDatabase.ts"
import { postJson, postRaw, testServer } from "../support/TestServer.ts"
import type { SnapshotJson } from "../support/Turns.ts"
import {
  dataOf,
  expectWellFormedStream,
  finished,
  messagesOf,
  messagesPath,
  newChat,
  outline,
  regenerate,
  runEvents,
  sendMessage,
  snapshotOf
} from "../support/Turns.ts"

/**
 * Stopping a turn by the client's own ids (spec 75, "Stop before the run id is known"), against a
 * fake provider server that counts the requests it gets, on a clock the tests can move ahead.
 */

class Upstream extends Context.Tag("test/Upstream")<Upstream, Fake.FakeChatCompletions>() {}
class Time extends Context.Tag("test/Time")<Time, ReturnType<typeof shiftedClock>>() {}

/** A short answer. */
const short = Fake.stream(Fake.textChunks(["Otters ", "sleep ", "afloat."]))
/** An answer that takes about ten seconds: live until the test stops it. */
const long = Fake.stream(Fake.textChunks(Array.from({ length: 300 }, () => "word ")), { delayMs: 30 })

const suiteLayer = (database: TestDatabase) =>
  Layer.unwrapScoped(Effect.map(Fake.start(short), (fake) => {
    const time = shiftedClock()
    const server = testServer(database, {
      llm: { provider: "openai", baseUrl: fake.baseUrl, apiKey: Redacted.make("sk-test"), model: "fake-model", maxRetries: 0 },
      // Leases renewed every 200 ms: a stop that raced a turn's start is found that soon.
      leaseTtlMs: 600
    }).pipe(Layer.provide(Layer.setClock(time.clock)))
    return Layer.mergeAll(Layer.succeed(Upstream, fake), Layer.succeed(Time, time), server)
  }))

const stopTurn = (chatId: string, body: unknown) => postJson(`/chats/${chatId}/turns/abort`, body)

/** The provider answers `script` from now on, its request count back at 0. */
const upstreamAnswers = (script: Fake.Script) => Effect.flatMap(Upstream, (upstream) => upstream.answer(script))
const upstreamRequests = Effect.flatMap(Upstream, (upstream) => Effect.map(upstream.requests, (requests) => requests.length))

const userMessage = (userMessageId: string = crypto.randomUUID()) => ({ userMessageId, content: "Where do otters sleep?" })

const stoppedOutline = [
  "pipeline.run.started",
  "pipeline.step.done pre skipped",
  "pipeline.step.done llm skipped",
  "pipeline.step.done post skipped",
  "pipeline.run.aborted"
]

/** A run stopped before it started, as its snapshot shows it. */
const expectStoppedBeforeStart = (snapshot: SnapshotJson) => {
  expect(snapshot.run).toMatchObject({
    status: "aborted",
    abortReason: "user",
    error: { code: "aborted", message: expect.any(String) },
    generationId: null,
    finishedAt: expect.any(String)
  })
  expect(snapshot.steps.map((step) => [step.stepType, step.status])).toEqual([["pre", "skipped"], ["llm", "skipped"], ["post", "skipped"]])
  expect(snapshot.generation).toBeNull()
}

const stopsOf = (chatId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(sql<{ readonly key: string }>`SELECT idempotency_key AS key FROM turn_stops WHERE chat_id = ${chatId}`, (rows) => rows.map((row) => row.key)))

for (const database of testDatabases) {
  layer(suiteLayer(database), { timeout: 60_000, excludeTestServices: true })(`stopping a turn by its client's ids on ${database.name}`, (it) => {
    describe("before the turn arrived", () => {
      it.effect("the stop is recorded (run: null); the turn then creates its run already aborted, pre, llm and post skipped, the model never called", () =>
        Effect.gen(function*() {
          yield* upstreamAnswers(short)
          const chatId = yield* newChat
          const request = userMessage()
          const stop = yield* stopTurn(chatId, { userMessageId: request.userMessageId })
          expect(stop).toMatchObject({ status: 200, body: { run: null } })
          expect(yield* stopsOf(chatId)).toEqual([`user_message:${request.userMessageId}`])

          const answer = yield* sendMessage(chatId, request)
          expect(answer.status).toBe(202)
          const snapshot = answer.body as SnapshotJson
          expectStoppedBeforeStart(snapshot)
          expect(snapshot).toMatchObject({ deduplicated: false, run: { userMessageId: request.userMessageId, trigger: "user_message" } })
          expect(yield* upstreamRequests).toBe(0)

          const { events } = yield* runEvents(snapshot.run.id)
          expect(outline(dataOf(events))).toEqual(stoppedOutline)
          expectWellFormedStream(events, snapshot)
          expect(dataOf(events).at(-1)).toMatchObject({ type: "pipeline.run.aborted", abortReason: "user" })
          // The turn's messages are there, the answer empty; the stop is used up.
          const messages = yield* messagesOf(chatId)
          expect(messages.map((message) => [message.role, message.content])).toEqual([["user", request.content], ["assistant", ""]])
          expect(yield* stopsOf(chatId)).toEqual([])
          expect((yield* snapshotOf(snapshot.run.id))).toEqual({ ...snapshot, deduplicated: undefined })
        }))

      it.effect("in streaming mode the answer is the stopped run's stream: run started, three steps skipped, run aborted, then the end", () =>
        Effect.gen(function*() {
          yield* upstreamAnswers(short)
          const chatId = yield* newChat
          const request = userMessage()
          yield* stopTurn(chatId, { userMessageId: request.userMessageId })
          const { events, status } = yield* readAll(HttpClientRequest.post(messagesPath(chatId)).pipe(HttpClientRequest.bodyUnsafeJson(request)))
          expect(status).toBe(200)
          expect(outline(dataOf(events))).toEqual(stoppedOutline)
          const snapshot = yield* snapshotOf(dataOf(events)[0]!.runId as string)
          expectStoppedBeforeStart(snapshot)
          expectWellFormedStream(events, snapshot)
          expect(yield* upstreamRequests).toBe(0)
        }))

      it.effect("the same turn request again gets the stopped run back (deduplicated)", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const request = userMessage()
          yield* stopTurn(chatId, { userMessageId: request.userMessageId })
          const first = (yield* sendMessage(chatId, request)).body as SnapshotJson
          const again = yield* sendMessage(chatId, request)
          expect(again.headers["idempotent-replayed"]).toBe("true")
          expect(again.body).toMatchObject({ run: { id: first.run.id, status: "aborted" }, deduplicated: true })
        }))

      it.effect("a regenerate stopped by its assistantMessageId and requestId starts aborted too, the model never called", () =>
        Effect.gen(function*() {
          yield* upstreamAnswers(short)
          const chatId = yield* newChat
          const first = yield* finished(((yield* sendMessage(chatId, userMessage())).body as SnapshotJson).run.id)
          expect(first.run.status).toBe("done")
          yield* upstreamAnswers(short)
          const requestId = crypto.randomUUID()
          expect(yield* stopTurn(chatId, { assistantMessageId: first.run.assistantMessageId, requestId })).toMatchObject({ status: 200, body: { run: null } })
          const answer = yield* regenerate(chatId, first.run.assistantMessageId, { requestId })
          expect(answer.status).toBe(202)
          expectStoppedBeforeStart(answer.body as SnapshotJson)
          expect((answer.body as SnapshotJson).run.trigger).toBe("regenerate")
          expect(yield* upstreamRequests).toBe(0)
        }))

      it.effect("a stop repeated is recorded once; a stop names one turn, not the next one", () =>
        Effect.gen(function*() {
          yield* upstreamAnswers(short)
          const chatId = yield* newChat
          const request = userMessage()
          for (let i = 0; i < 3; i++) expect((yield* stopTurn(chatId, { userMessageId: request.userMessageId })).body).toEqual({ run: null })
          expect(yield* stopsOf(chatId)).toHaveLength(1)
          yield* sendMessage(chatId, request)
          const next = yield* finished(((yield* sendMessage(chatId, userMessage())).body as SnapshotJson).run.id)
          expect(next.run.status).toBe("done")
          expect(yield* upstreamRequests).toBe(1)
        }))

      it.effect("a stop expires after 10 minutes: a turn arriving later runs as usual", () =>
        Effect.gen(function*() {
          const time = yield* Time
          yield* upstreamAnswers(short)
          const chatId = yield* newChat
          const late = userMessage()
          yield* stopTurn(chatId, { userMessageId: late.userMessageId })
          yield* time.advance(10 * 60_000 + 1_000)
          const snapshot = yield* finished(((yield* sendMessage(chatId, late)).body as SnapshotJson).run.id)
          expect(snapshot.run).toMatchObject({ status: "done", abortReason: null })
          expect(yield* upstreamRequests).toBe(1)
          expect(yield* stopsOf(chatId)).toEqual([])
        }))

      it.effect("a stop is still in force just before its 10 minutes are over", () =>
        Effect.gen(function*() {
          const time = yield* Time
          yield* upstreamAnswers(short)
          const chatId = yield* newChat
          const request = userMessage()
          yield* stopTurn(chatId, { userMessageId: request.userMessageId })
          yield* time.advance(10 * 60_000 - 5_000)
          expectStoppedBeforeStart((yield* sendMessage(chatId, request)).body as SnapshotJson)
          expect(yield* upstreamRequests).toBe(0)
        }))

      it.effect("a stopped turn meeting another running turn is 409 chat_busy like any turn; its stop waits for it", () =>
        Effect.gen(function*() {
          yield* upstreamAnswers(long)
          const chatId = yield* newChat
          const running = ((yield* sendMessage(chatId, userMessage())).body as SnapshotJson).run.id
          const request = userMessage()
          yield* stopTurn(chatId, { userMessageId: request.userMessageId })
          const busy = yield* sendMessage(chatId, request)
          expect(busy).toMatchObject({ status: 409, body: { code: "chat_busy", details: { runId: running } } })
          yield* postJson(`/runs/${running}/abort`, {})
          expectStoppedBeforeStart((yield* sendMessage(chatId, request)).body as SnapshotJson)
        }))
    })

    describe("once the run exists", () => {
      it.effect("the run is aborted (user) and the answer, once it is terminal, is its final snapshot", () =>
        Effect.gen(function*() {
          yield* upstreamAnswers(long)
          const chatId = yield* newChat
          const request = userMessage()
          const started = (yield* sendMessage(chatId, request)).body as SnapshotJson
          yield* Effect.flatMap(Upstream, (upstream) => upstream.received(1))
          const answer = yield* stopTurn(chatId, { userMessageId: request.userMessageId })
          expect(answer.status).toBe(200)
          const { run } = answer.body as { readonly run: SnapshotJson }
          expect(run.run).toMatchObject({ id: started.run.id, status: "aborted", abortReason: "user", finishedAt: expect.any(String) })
          expect(run.steps.map((step) => step.status)).toEqual(["done", "aborted", "skipped"])
          expect(run.generation?.status).toBe("aborted")
          expect(yield* snapshotOf(started.run.id)).toEqual(run)
          expect(yield* stopsOf(chatId)).toEqual([])
        }))

      it.effect("a regenerate's run is stopped by its assistantMessageId and requestId", () =>
        Effect.gen(function*() {
          yield* upstreamAnswers(short)
          const chatId = yield* newChat
          const first = yield* finished(((yield* sendMessage(chatId, userMessage())).body as SnapshotJson).run.id)
          yield* upstreamAnswers(long)
          const requestId = crypto.randomUUID()
          const started = (yield* regenerate(chatId, first.run.assistantMessageId, { requestId })).body as SnapshotJson
          yield* Effect.flatMap(Upstream, (upstream) => upstream.received(1))
          const answer = yield* stopTurn(chatId, { assistantMessageId: first.run.assistantMessageId, requestId })
          expect(answer.body).toMatchObject({ run: { run: { id: started.run.id, status: "aborted", abortReason: "user" } } })
        }))

      it.effect("a finished run is left as it is and answered with its snapshot", () =>
        Effect.gen(function*() {
          yield* upstreamAnswers(short)
          const chatId = yield* newChat
          const request = userMessage()
          const done = yield* finished(((yield* sendMessage(chatId, request)).body as SnapshotJson).run.id)
          const answer = yield* stopTurn(chatId, { userMessageId: request.userMessageId })
          expect(answer).toMatchObject({ status: 200, body: { run: done } })
          expect(yield* stopsOf(chatId)).toEqual([])
        }))

      it.effect("a stop recorded that the run's start did not see (they raced) still aborts the run, at the next lease renewal", () =>
        Effect.gen(function*() {
          yield* upstreamAnswers(long)
          const chatId = yield* newChat
          const request = userMessage()
          const started = (yield* sendMessage(chatId, request)).body as SnapshotJson
          yield* Effect.flatMap(Upstream, (upstream) => upstream.received(1))
          // What a stop whose statement ran alongside the start leaves: the stop, and a running run.
          const sql = yield* SqlClient.SqlClient
          yield* sql`INSERT INTO turn_stops (chat_id, idempotency_key, requested_at)
                     VALUES (${chatId}, ${started.run.idempotencyKey}, ${new Date(started.run.startedAt)})`
          const ended = yield* finished(started.run.id)
          expect(ended.run).toMatchObject({ status: "aborted", abortReason: "user" })
          expect(ended.steps.map((step) => step.status)).toEqual(["done", "aborted", "skipped"])
        }))
    })

    it.effect("the typed client stops a turn by either pair of ids", () =>
      Effect.gen(function*() {
        yield* upstreamAnswers(short)
        const client = yield* HttpApiClient.make(Api)
        const chat = yield* client.chats.createChat({ payload: {} })
        const userMessageId = crypto.randomUUID() as MessageId
        expect(yield* client.turns.abortTurn({ path: { chatId: chat.id }, payload: { userMessageId } })).toEqual({ run: null })
        const stopped = yield* client.turns.sendMessage({ path: { chatId: chat.id }, payload: { userMessageId, content: "Hi", settings: {}, onBusy: "reject", abortOnDisconnect: false } })
        const again = yield* client.turns.abortTurn({ path: { chatId: chat.id }, payload: { userMessageId } })
        expect(again.run?.run).toMatchObject({ id: (stopped as { readonly run: { readonly id: string } }).run.id, status: "aborted" })
        const regenerateStop = yield* client.turns.abortTurn({
          path: { chatId: chat.id },
          payload: { assistantMessageId: again.run!.run.assistantMessageId, requestId: crypto.randomUUID() }
        })
        expect(regenerateStop).toEqual({ run: null })
      }))

    describe("refused stops", () => {
      it.effect("an unknown chat is 404 not_found and records nothing", () =>
        Effect.gen(function*() {
          const before = yield* count("turn_stops")
          expect(yield* stopTurn(uuidv7At(0), { userMessageId: crypto.randomUUID() })).toMatchObject({ status: 404, body: { code: "not_found" } })
          expect(yield* count("turn_stops")).toBe(before)
        }))

      it.effect("a body naming no turn, or not JSON, is 400 validation_error and records nothing", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const answers = [
            yield* stopTurn(chatId, {}),
            yield* stopTurn(chatId, { userMessageId: "not-a-uuid" }),
            yield* stopTurn(chatId, { assistantMessageId: crypto.randomUUID() }),
            yield* stopTurn(chatId, { requestId: crypto.randomUUID() }),
            yield* postRaw(`/chats/${chatId}/turns/abort`, "{")
          ]
          for (const answer of answers) expect(answer).toMatchObject({ status: 400, body: { code: "validation_error" } })
          expect(yield* stopsOf(chatId)).toEqual([])
        }))
    })

    it.effect("the database satisfies every invariant of the spec", () => checkInvariants)
  })
}
