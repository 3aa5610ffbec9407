import { HttpClientRequest } from "@effect/platform"
import type { HttpMethod } from "@effect/platform/HttpMethod"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Context, Effect, Layer, Schedule, Stream } from "effect"
import { ChatsRepo } from "../../src/services/ChatsRepo.ts"
import { PostStepLive } from "../../src/services/runner/PostStep.ts"
import { PreStepLive } from "../../src/services/runner/PreStep.ts"
import { count } from "../support/Fixtures.ts"
import { testConfig } from "../support/TestConfig.ts"
import type { TestDatabase } from "../support/TestDatabase.ts"
import { testDatabases } from "../support/TestDatabase.ts"
import { send, testServer } from "../support/TestServer.ts"
import { block, scriptedSettings, TestSteps, testSteps } from "../support/TestSteps.ts"
import type { SnapshotJson } from "../support/Turns.ts"
import { abortRun, completedTurn, finished, newChat, quick, regenerate, sendMessage } from "../support/Turns.ts"

/**
 * Hostile input (spec 70 "Errors", spec 10 "Order of checks"): every request below is refused
 * with the status and stable `code` of the error table, as JSON that leaks nothing, and none of
 * them writes a row. Each runs against a real scene: a chat with two finished turns and a
 * regenerate, and a second chat that is busy (its run held in its `pre` step).
 */

// ---------------------------------------------------------------------------------------------
// The scene every case runs against, built once per suite

interface SceneShape {
  /** A chat with two finished turns; the second answer was regenerated once. */
  readonly chatId: string
  readonly firstUserMessageId: string
  readonly firstAssistantMessageId: string
  readonly latestUserMessageId: string
  /** The chat's latest message, read again before each case (a wrongly accepted turn moves it). */
  readonly latestAssistantMessageId: string
  /** The assistant message the scene regenerated, with `regenerateRequestId`. */
  readonly regeneratedMessageId: string
  readonly finishedRunId: string
  readonly generationId: string
  /** The `requestId` of the scene's regenerate of `regeneratedMessageId`. */
  readonly regenerateRequestId: string
  /** A chat whose only run is held running. */
  readonly busyChatId: string
  readonly busyRunId: string
  readonly busyUserMessageId: string
  readonly busyAssistantMessageId: string
}

class Scene extends Context.Tag("test/HostileInput/Scene")<Scene, SceneShape>() {}

const tables = [
  "chats",
  "chat_messages",
  "message_variants",
  "pipeline_runs",
  "pipeline_step_runs",
  "llm_generations",
  "pipeline_run_events"
] as const

const rowCounts = Effect.map(Effect.forEach(tables, count), (counts) => Object.fromEntries(tables.map((table, i) => [table, counts[i]!])))

const snapshotIn = (answer: { readonly body: unknown }) => answer.body as SnapshotJson

/** The rows of one run's journal. */
const journaled = (runId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM pipeline_run_events WHERE run_id = ${runId}`, (rows) => rows[0]!.n))

/** The id of the chat's latest message. */
const latestMessageOf = (chatId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ readonly id: string }>`SELECT id FROM chat_messages WHERE chat_id = ${chatId} ORDER BY position DESC LIMIT 1`,
      (rows) => rows[0]!.id
    ))

/**
 * Waits until every run but the held one has its terminal event in the journal, so no write of an
 * earlier run (or of a request the product wrongly accepted) lands while a case is counting rows.
 */
const quiet = (busyRunId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ readonly n: number }>`
      SELECT count(*)::int AS n FROM pipeline_runs r
      WHERE r.id <> ${busyRunId}
        AND NOT EXISTS (SELECT 1 FROM pipeline_run_events e
                        WHERE e.run_id = r.id AND e.type IN ('pipeline.run.done', 'pipeline.run.aborted', 'pipeline.run.error'))`.pipe(
      Effect.map((rows) => rows[0]!.n),
      Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: (n) => n === 0 }),
      Effect.timeoutOption("20 seconds"),
      Effect.asVoid
    ))

const makeScene = Effect.gen(function*() {
  const chatId = yield* newChat
  const first = yield* completedTurn(chatId, "Hello there", quick(3))
  const latest = yield* completedTurn(chatId, "And again", quick(3))
  const regenerateRequestId = crypto.randomUUID()
  const regenerated = yield* regenerate(chatId, latest.run.assistantMessageId, { requestId: regenerateRequestId, settings: quick(3) })
  expect(regenerated.status).toBe(202)
  yield* finished(snapshotIn(regenerated).run.id)

  const busyChatId = yield* newChat
  const busyUserMessageId = crypto.randomUUID()
  const held = yield* sendMessage(busyChatId, {
    userMessageId: busyUserMessageId,
    content: "Hold on",
    settings: scriptedSettings({ pre: block }, quick(3))
  })
  expect(held.status).toBe(202)
  const busy = snapshotIn(held).run
  yield* Effect.flatMap(TestSteps, (steps) => steps.entered("pre", busy.id))
  // The held run has written its first events; wait until its journal stops growing.
  yield* Effect.all([journaled(busy.id), Effect.sleep("300 millis"), journaled(busy.id)]).pipe(
    Effect.repeat({ until: ([before, , after]) => after > 0 && after === before }),
    Effect.timeout("20 seconds")
  )
  return {
    chatId,
    firstUserMessageId: first.run.userMessageId!,
    firstAssistantMessageId: first.run.assistantMessageId,
    latestUserMessageId: latest.run.userMessageId!,
    latestAssistantMessageId: latest.run.assistantMessageId,
    regeneratedMessageId: latest.run.assistantMessageId,
    finishedRunId: latest.run.id,
    generationId: latest.run.generationId!,
    regenerateRequestId,
    busyChatId,
    busyRunId: busy.id,
    busyUserMessageId,
    busyAssistantMessageId: busy.assistantMessageId
  }
})

/** The scene, its held run aborted when the suite ends. */
const sceneLayer = Layer.scoped(Scene, Effect.acquireRelease(makeScene, (scene) => Effect.ignore(abortRun(scene.busyRunId))))

/** The app with the scripted steps (so the busy chat's run can be held), and the scene over it. */
const suiteLayer = (database: TestDatabase) => {
  // `database.layer` is the server's own: a Layer used twice in one build is built once.
  const builtin = Layer.merge(PreStepLive, PostStepLive).pipe(
    Layer.provide(ChatsRepo.Default),
    Layer.provide(Layer.merge(testConfig(), database.layer))
  )
  return Layer.unwrapEffect(Effect.map(testSteps(builtin), ({ controls, steps }) =>
    sceneLayer.pipe(Layer.provideMerge(Layer.merge(controls, testServer(database, {}, { pre: steps, post: steps }))))))
}

// ---------------------------------------------------------------------------------------------
// The requests

interface HostileRequest {
  readonly method: HttpMethod
  readonly path: string
  readonly headers?: Readonly<Record<string, string>>
  readonly body?: string | Uint8Array
  /** `application/json` unless given. */
  readonly contentType?: string
  /** Streamed with `Transfer-Encoding: chunked`, without a `Content-Length`. */
  readonly chunked?: boolean
}

interface HostileCase {
  readonly name: string
  readonly request: (scene: SceneShape) => HostileRequest
  readonly expectedStatus: number
  /** `null`: Node's HTTP parser answers before the app sees the request, with no JSON body. */
  readonly expectedCode: string | null
  /** More of the body that must be there (e.g. `details`). */
  readonly expectedBody?: (scene: SceneShape) => object
}

const get = (path: string, headers: Readonly<Record<string, string>> = {}): HostileRequest => ({ method: "GET", path, headers })
const post = (path: string, body?: string | Uint8Array, contentType?: string): HostileRequest =>
  body === undefined ? { method: "POST", path } : contentType === undefined ? { method: "POST", path, body } : { method: "POST", path, body, contentType }
const postJsonBody = (path: string, value: unknown): HostileRequest => post(path, JSON.stringify(value))

const messages = (chatId: string) => `/chats/${chatId}/messages`
const regenerateOf = (chatId: string, messageId: string) => `/chats/${chatId}/messages/${messageId}/regenerate`
const latestRegenerate = (s: SceneShape) => regenerateOf(s.chatId, s.latestAssistantMessageId)

/** A well-formed id that names nothing. */
const unknownId = "0190f0f0-0000-7000-8000-000000000000"
const nilUuid = "00000000-0000-0000-0000-000000000000"

const validMessage = (extra: object = {}) => ({ userMessageId: crypto.randomUUID(), content: "Hello there", settings: quick(3), ...extra })
const validRegenerate = (extra: object = {}) => ({ requestId: crypto.randomUUID(), settings: quick(3), ...extra })
const without = (value: Record<string, unknown>, key: string) => Object.fromEntries(Object.entries(value).filter(([k]) => k !== key))

const overOneMiB = "x".repeat(1024 * 1024 + 16)
const overSixteenKiB = { padding: "x".repeat(16 * 1024) }
/** `{"a":{"a":…}}` deeper than any recursive walk of it can go, yet well under 1 MiB. */
const deeplyNested = (depth: number) => "{\"a\":".repeat(depth) + "1" + "}".repeat(depth)

const utf8 = (text: string) => new TextEncoder().encode(text)
/** A JSON text whose `content` holds bytes that are not UTF-8 (a lone 0xFF, a truncated sequence). */
const invalidUtf8Message = () => {
  const [head, tail] = JSON.stringify(validMessage({ content: "@@" })).split("@@") as [string, string]
  return Buffer.concat([utf8(head), new Uint8Array([0x68, 0x69, 0xff, 0xfe, 0xc3, 0x28]), utf8(tail)])
}

const boundary = "----hostile-boundary"
const multipart = (fields: Readonly<Record<string, string>>) =>
  Object.entries(fields).map(([name, value]) => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`).join("") +
  `--${boundary}--\r\n`
const multipartType = `multipart/form-data; boundary=${boundary}`
const formType = "application/x-www-form-urlencoded"

const validation = (name: string, request: (scene: SceneShape) => HostileRequest): HostileCase => ({
  name,
  request,
  expectedStatus: 400,
  expectedCode: "validation_error"
})
const notFound = (name: string, request: (scene: SceneShape) => HostileRequest): HostileCase => ({
  name,
  request,
  expectedStatus: 404,
  expectedCode: "not_found"
})
const tooLarge = (name: string, request: (scene: SceneShape) => HostileRequest): HostileCase => ({
  name,
  request,
  expectedStatus: 413,
  expectedCode: "payload_too_large"
})

/** The body shapes that are not a JSON object, each refused on the given route. */
const notAnObject = (route: string, path: (scene: SceneShape) => string): ReadonlyArray<HostileCase> => [
  validation(`${route}: a body that is not JSON is 400`, (s) => post(path(s), "{\"content\": \"Hello")),
  validation(`${route}: a JSON array body is 400`, (s) => post(path(s), "[1, 2]")),
  validation(`${route}: a JSON string body is 400`, (s) => post(path(s), "\"Hello\"")),
  validation(`${route}: a JSON number body is 400`, (s) => post(path(s), "42")),
  validation(`${route}: a JSON null body is 400`, (s) => post(path(s), "null")),
  validation(`${route}: an empty body is 400`, (s) => post(path(s), "")),
  validation(`${route}: a body nested 100000 levels deep is 400`, (s) => post(path(s), "[".repeat(100_000) + "]".repeat(100_000)))
]

/** A valid body sent as something else than JSON: "JSON in" (spec 70), so 400. */
const wrongContentTypes = (route: string, path: (scene: SceneShape) => string, fields: () => Record<string, string>): ReadonlyArray<HostileCase> => [
  validation(`${route}: a JSON text sent as text/plain is 400`, (s) => post(path(s), JSON.stringify(fields()), "text/plain")),
  validation(`${route}: valid fields sent as application/x-www-form-urlencoded are 400`, (s) =>
    post(path(s), new URLSearchParams(fields()).toString(), formType)),
  validation(`${route}: valid fields sent as multipart/form-data are 400`, (s) => post(path(s), multipart(fields()), multipartType))
]

/** More than 1 MiB, with a `Content-Length` and streamed without one. */
const oversized = (route: string, path: (scene: SceneShape) => string, body: () => string): ReadonlyArray<HostileCase> => [
  tooLarge(`${route}: a body over 1 MiB with Content-Length is 413`, (s) => post(path(s), body())),
  tooLarge(`${route}: a body over 1 MiB sent chunked is 413`, (s) => ({ ...post(path(s), body()), chunked: true }))
]

const cases: ReadonlyArray<HostileCase> = [
  // POST /chats
  ...notAnObject("POST /chats", () => "/chats"),
  ...wrongContentTypes("POST /chats", () => "/chats", () => ({ title: "not JSON" })),
  validation("POST /chats: a title that is not a string is 400", () => postJsonBody("/chats", { title: 42 })),
  validation("POST /chats: a title over 200 characters is 400", () => postJsonBody("/chats", { title: "x".repeat(201) })),
  validation("POST /chats: a title with a NUL character is 400", () => postJsonBody("/chats", { title: "nul\u0000title" })),
  validation("POST /chats: a systemPrompt that is an object is 400", () => postJsonBody("/chats", { systemPrompt: { role: "system" } })),
  ...oversized("POST /chats", () => "/chats", () => JSON.stringify({ title: "big", systemPrompt: overOneMiB })),

  // POST /chats/{chatId}/messages
  ...notAnObject("POST /chats/{chatId}/messages", (s) => messages(s.chatId)),
  ...wrongContentTypes("POST /chats/{chatId}/messages", (s) => messages(s.chatId), () => ({ userMessageId: crypto.randomUUID(), content: "Hello there" })),
  validation("POST /chats/{chatId}/messages: a missing userMessageId is 400", (s) => postJsonBody(messages(s.chatId), without(validMessage(), "userMessageId"))),
  validation("POST /chats/{chatId}/messages: a missing content is 400", (s) => postJsonBody(messages(s.chatId), without(validMessage(), "content"))),
  validation("POST /chats/{chatId}/messages: a userMessageId that is not a UUID is 400", (s) =>
    postJsonBody(messages(s.chatId), validMessage({ userMessageId: "not-a-uuid" }))),
  validation("POST /chats/{chatId}/messages: a userMessageId that is a number is 400", (s) =>
    postJsonBody(messages(s.chatId), validMessage({ userMessageId: 12345 }))),
  validation("POST /chats/{chatId}/messages: a content that is a number is 400", (s) => postJsonBody(messages(s.chatId), validMessage({ content: 42 }))),
  validation("POST /chats/{chatId}/messages: a content that is an array is 400", (s) => postJsonBody(messages(s.chatId), validMessage({ content: ["Hello"] }))),
  validation("POST /chats/{chatId}/messages: an empty content is 400", (s) => postJsonBody(messages(s.chatId), validMessage({ content: "" }))),
  validation("POST /chats/{chatId}/messages: a content of only white space is 400", (s) =>
    postJsonBody(messages(s.chatId), validMessage({ content: " \n\t\r  " }))),
  validation("POST /chats/{chatId}/messages: a content of 100001 characters is 400", (s) =>
    postJsonBody(messages(s.chatId), validMessage({ content: "x".repeat(100_001) }))),
  validation("POST /chats/{chatId}/messages: a content with a NUL character is 400", (s) =>
    postJsonBody(messages(s.chatId), validMessage({ content: "Hello\u0000there" }))),
  validation("POST /chats/{chatId}/messages: settings that are a string are 400", (s) =>
    postJsonBody(messages(s.chatId), validMessage({ settings: "temperature=0.7" }))),
  validation("POST /chats/{chatId}/messages: settings that are an array are 400", (s) =>
    postJsonBody(messages(s.chatId), validMessage({ settings: [{ temperature: 0.7 }] }))),
  validation("POST /chats/{chatId}/messages: settings that are null are 400", (s) => postJsonBody(messages(s.chatId), validMessage({ settings: null }))),
  validation("POST /chats/{chatId}/messages: settings over 16 KiB are 400", (s) =>
    postJsonBody(messages(s.chatId), validMessage({ settings: overSixteenKiB }))),
  validation("POST /chats/{chatId}/messages: settings nested 150000 levels deep are 400", (s) => {
    const [head, tail] = JSON.stringify(validMessage({ settings: "@@" })).split("\"@@\"") as [string, string]
    return post(messages(s.chatId), head + deeplyNested(150_000) + tail)
  }),
  validation("POST /chats/{chatId}/messages: settings with a NUL character in a value are 400", (s) =>
    postJsonBody(messages(s.chatId), validMessage({ settings: { ...quick(3), note: "nul\u0000" } }))),
  validation("POST /chats/{chatId}/messages: an unknown onBusy is 400", (s) => postJsonBody(messages(s.chatId), validMessage({ onBusy: "queue" }))),
  validation("POST /chats/{chatId}/messages: an abortOnDisconnect that is a string is 400", (s) =>
    postJsonBody(messages(s.chatId), validMessage({ abortOnDisconnect: "yes" }))),
  validation("POST /chats/{chatId}/messages: bytes that are not UTF-8 in the body are 400", (s) => post(messages(s.chatId), invalidUtf8Message())),
  validation("POST /chats/{chatId}/messages: with Accept: text/event-stream an invalid body is still a JSON 400", (s) => ({
    ...postJsonBody(messages(s.chatId), validMessage({ content: "" })),
    headers: { accept: "text/event-stream" }
  })),
  ...oversized("POST /chats/{chatId}/messages", (s) => messages(s.chatId), () => JSON.stringify(validMessage({ content: overOneMiB }))),
  {
    // Node's own limit on the header section (16 KiB) answers before the app: no JSON, but never a 500 and never a write.
    name: "POST /chats/{chatId}/messages: a 64 KiB header value is refused by Node with 431 and writes nothing",
    request: (s) => ({ ...postJsonBody(messages(s.chatId), validMessage()), headers: { "x-padding": "a".repeat(64 * 1024) } }),
    expectedStatus: 431,
    expectedCode: null
  },

  // POST /chats/{chatId}/messages/{assistantMessageId}/regenerate
  ...notAnObject("POST …/regenerate", latestRegenerate),
  ...wrongContentTypes("POST …/regenerate", latestRegenerate, () => ({ requestId: crypto.randomUUID() })),
  validation("POST …/regenerate: a missing requestId is 400", (s) => postJsonBody(latestRegenerate(s), without(validRegenerate(), "requestId"))),
  validation("POST …/regenerate: a requestId that is not a UUID is 400", (s) => postJsonBody(latestRegenerate(s), validRegenerate({ requestId: "again" }))),
  validation("POST …/regenerate: a requestId that is a number is 400", (s) => postJsonBody(latestRegenerate(s), validRegenerate({ requestId: 7 }))),
  validation("POST …/regenerate: settings that are a string are 400", (s) => postJsonBody(latestRegenerate(s), validRegenerate({ settings: "hot" }))),
  validation("POST …/regenerate: settings over 16 KiB are 400", (s) => postJsonBody(latestRegenerate(s), validRegenerate({ settings: overSixteenKiB }))),
  validation("POST …/regenerate: an unknown onBusy is 400", (s) => postJsonBody(latestRegenerate(s), validRegenerate({ onBusy: "wait" }))),
  ...oversized("POST …/regenerate", latestRegenerate, () => JSON.stringify(validRegenerate({ settings: { padding: overOneMiB } }))),

  // Path ids that are not UUIDs, in every route with an id
  validation("GET /chats/{chatId}: a chatId that is not a UUID is 400", () => get("/chats/not-a-uuid")),
  validation("GET /chats/{chatId}/messages: a chatId that is not a UUID is 400", () => get("/chats/not-a-uuid/messages")),
  validation("POST /chats/{chatId}/messages: a chatId that is not a UUID is 400", () => postJsonBody(messages("not-a-uuid"), validMessage())),
  validation("POST …/regenerate: a chatId that is not a UUID is 400", (s) =>
    postJsonBody(regenerateOf("not-a-uuid", s.latestAssistantMessageId), validRegenerate())),
  validation("POST …/regenerate: an assistantMessageId that is not a UUID is 400", (s) =>
    postJsonBody(regenerateOf(s.chatId, "not-a-uuid"), validRegenerate())),
  validation("GET /chats/{chatId}/runs: a chatId that is not a UUID is 400", () => get("/chats/not-a-uuid/runs")),
  validation("GET /runs/{runId}: a runId that is not a UUID is 400", () => get("/runs/not-a-uuid")),
  validation("GET /runs/{runId}/events: a runId that is not a UUID is 400", () => get("/runs/not-a-uuid/events")),
  validation("POST /runs/{runId}/abort: a runId that is not a UUID is 400", () => post("/runs/not-a-uuid/abort")),
  validation("POST /generations/{generationId}/abort: a generationId that is not a UUID is 400", () => post("/generations/not-a-uuid/abort")),
  validation("GET /chats/{chatId}: a UUID with a character too many is 400", (s) => get(`/chats/${s.chatId}0`)),
  validation("GET /chats/{chatId}: an encoded path traversal is 400", () => get("/chats/..%2F..%2Fetc%2Fpasswd")),
  validation("GET /runs/{runId}: an encoded SQL fragment is 400", () => get(`/runs/${encodeURIComponent("' OR 1=1 --")}`)),
  validation("GET /chats/{chatId}: a 10000-character id is 400", () => get(`/chats/${"a".repeat(10_000)}`)),

  // Well-formed ids that name nothing
  notFound("GET /chats/{chatId}: an unknown chat is 404", () => get(`/chats/${unknownId}`)),
  notFound("GET /chats/{chatId}: the nil UUID is 404", () => get(`/chats/${nilUuid}`)),
  notFound("GET /chats/{chatId}/messages: an unknown chat is 404", () => get(`/chats/${unknownId}/messages`)),
  notFound("POST /chats/{chatId}/messages: an unknown chat is 404", () => postJsonBody(messages(unknownId), validMessage())),
  notFound("POST …/regenerate: an unknown chat is 404", (s) => postJsonBody(regenerateOf(unknownId, s.latestAssistantMessageId), validRegenerate())),
  notFound("POST …/regenerate: an unknown message is 404", (s) => postJsonBody(regenerateOf(s.chatId, unknownId), validRegenerate())),
  notFound("POST …/regenerate: a message of another chat is 404", (s) =>
    postJsonBody(regenerateOf(s.chatId, s.busyAssistantMessageId), validRegenerate())),
  notFound("GET /chats/{chatId}/runs: an unknown chat is 404", () => get(`/chats/${unknownId}/runs`)),
  notFound("GET /runs/{runId}: an unknown run is 404", () => get(`/runs/${unknownId}`)),
  notFound("GET /runs/{runId}/events: an unknown run is 404", () => get(`/runs/${unknownId}/events`)),
  notFound("POST /runs/{runId}/abort: an unknown run is 404", () => post(`/runs/${unknownId}/abort`)),
  notFound("POST /generations/{generationId}/abort: an unknown generation is 404", () => post(`/generations/${unknownId}/abort`)),
  notFound("POST /runs/{runId}/abort: a generation id is not a run id (404)", (s) => post(`/runs/${s.generationId}/abort`)),

  // Order of checks (spec 10): the request is validated before anything is looked up
  validation("order of checks: an invalid message for an unknown chat is 400, not 404", () =>
    postJsonBody(messages(unknownId), validMessage({ content: "   " }))),
  validation("order of checks: an invalid regenerate for an unknown chat and message is 400, not 404", () =>
    postJsonBody(regenerateOf(unknownId, unknownId), { settings: [] })),
  validation("order of checks: a non-JSON body for an unknown chat is 400, not 404", () => post(messages(unknownId), "content=hi")),
  validation("order of checks: an invalid message for the busy chat is 400, not 409", (s) =>
    postJsonBody(messages(s.busyChatId), validMessage({ onBusy: "queue" }))),
  validation("order of checks: a bad limit for an unknown chat is 400, not 404", () => get(`/chats/${unknownId}/runs?limit=0`)),
  tooLarge("order of checks: a body over 1 MiB for an unknown chat is 413, not 404", () =>
    post(messages(unknownId), JSON.stringify(validMessage({ content: overOneMiB })))),

  // Query parameters and Last-Event-ID
  ...["0", "-1", "101", "1e9", "abc", "", "2.5"].map((limit) =>
    validation(`GET /chats/{chatId}/runs: limit=${JSON.stringify(limit)} is 400`, (s) => get(`/chats/${s.chatId}/runs?limit=${encodeURIComponent(limit)}`))),
  validation("GET /chats/{chatId}/runs: an unknown status is 400", (s) => get(`/chats/${s.chatId}/runs?status=finished`)),
  ...["-1", "1.5", "abc"].map((after) =>
    validation(`GET /runs/{runId}/events: after=${after} is 400`, (s) => get(`/runs/${s.finishedRunId}/events?after=${after}`))),
  validation("GET /runs/{runId}/events: Last-Event-ID: abc is 400", (s) => get(`/runs/${s.finishedRunId}/events`, { "last-event-id": "abc" })),
  validation("GET /runs/{runId}/events: Last-Event-ID: -1 is 400", (s) => get(`/runs/${s.finishedRunId}/events`, { "last-event-id": "-1" })),

  // The state checks: busy chat, latest assistant message, idempotency keys
  {
    name: "POST /chats/{chatId}/messages: a busy chat is 409 chat_busy naming its run",
    request: (s) => postJsonBody(messages(s.busyChatId), validMessage()),
    expectedStatus: 409,
    expectedCode: "chat_busy",
    expectedBody: (s) => ({ details: { runId: s.busyRunId } })
  },
  {
    name: "POST …/regenerate: a busy chat is 409 chat_busy naming its run",
    request: (s) => postJsonBody(regenerateOf(s.busyChatId, s.busyAssistantMessageId), validRegenerate()),
    expectedStatus: 409,
    expectedCode: "chat_busy",
    expectedBody: (s) => ({ details: { runId: s.busyRunId } })
  },
  {
    name: "POST …/regenerate: an assistant message that is not the latest is 409 not_latest_assistant_message",
    request: (s) => postJsonBody(regenerateOf(s.chatId, s.firstAssistantMessageId), validRegenerate()),
    expectedStatus: 409,
    expectedCode: "not_latest_assistant_message"
  },
  {
    name: "POST …/regenerate: a user message is 409 not_latest_assistant_message",
    request: (s) => postJsonBody(regenerateOf(s.chatId, s.latestUserMessageId), validRegenerate()),
    expectedStatus: 409,
    expectedCode: "not_latest_assistant_message"
  },
  {
    name: "POST /chats/{chatId}/messages: a userMessageId reused with another content is 422 idempotency_key_reused",
    request: (s) => postJsonBody(messages(s.chatId), validMessage({ userMessageId: s.firstUserMessageId, content: "Something else" })),
    expectedStatus: 422,
    expectedCode: "idempotency_key_reused"
  },
  {
    name: "POST /chats/{chatId}/messages: a userMessageId that names an assistant message is 422 idempotency_key_reused",
    request: (s) => postJsonBody(messages(s.chatId), validMessage({ userMessageId: s.firstAssistantMessageId })),
    expectedStatus: 422,
    expectedCode: "idempotency_key_reused"
  },
  {
    name: "POST /chats/{chatId}/messages: a userMessageId of another chat's message is 422 idempotency_key_reused",
    request: (s) => postJsonBody(messages(s.chatId), validMessage({ userMessageId: s.busyUserMessageId })),
    expectedStatus: 422,
    expectedCode: "idempotency_key_reused"
  },
  {
    name: "POST …/regenerate: a requestId reused with other settings is 422 idempotency_key_reused",
    request: (s) => postJsonBody(regenerateOf(s.chatId, s.regeneratedMessageId), { requestId: s.regenerateRequestId, settings: quick(5) }),
    expectedStatus: 422,
    expectedCode: "idempotency_key_reused"
  },

  // Routes and methods that do not exist: the router has no 405, so these are 404 not_found
  notFound("an unknown route is 404", () => get("/nowhere")),
  notFound("an unknown route under a known prefix is 404", (s) => get(`/chats/${s.chatId}/everything`)),
  notFound("DELETE /runs/{runId} (a method the route lacks) is 404", (s) => ({ method: "DELETE", path: `/runs/${s.finishedRunId}` })),
  notFound("PUT /chats/{chatId} is 404", (s) => ({ method: "PUT", path: `/chats/${s.chatId}`, body: JSON.stringify({ title: "renamed" }) })),
  notFound("PATCH /runs/{runId} is 404", (s) => ({ method: "PATCH", path: `/runs/${s.finishedRunId}`, body: "{}" })),
  notFound("GET /runs/{runId}/abort is 404", (s) => get(`/runs/${s.busyRunId}/abort`)),
  notFound("POST /chats/{chatId} is 404", (s) => postJsonBody(`/chats/${s.chatId}`, { title: "again" }))
]

// ---------------------------------------------------------------------------------------------
// Running a case

const toClientRequest = (request: HostileRequest) => {
  const base = HttpClientRequest.make(request.method)(request.path).pipe(HttpClientRequest.setHeaders(request.headers ?? {}))
  if (request.body === undefined) return base
  const bytes = typeof request.body === "string" ? utf8(request.body) : request.body
  const contentType = request.contentType ?? "application/json"
  if (request.chunked !== true) return HttpClientRequest.bodyUint8Array(base, bytes, contentType)
  const pieces = Array.from({ length: Math.ceil(bytes.length / 65_536) }, (_, i) => bytes.subarray(i * 65_536, (i + 1) * 65_536))
  return HttpClientRequest.bodyStream(base, Stream.fromIterable(pieces), { contentType })
}

/** What an answer must never carry (spec 70): stack frames, source paths, SQL, connection strings. */
const leaks = [
  /\n\s+at /,
  /\bat \S+ \(/,
  /\.[cm]?[jt]s:\d+/,
  /node_modules/,
  /file:\/\//,
  /\bSELECT\b/,
  /\bINSERT\b/,
  /\bUPDATE \w+ SET\b/,
  /\bDELETE FROM\b/,
  /Error:/,
  /"stack"/,
  /postgres(ql)?:\/\//
]

/** The answer, or what the client saw when none came (e.g. the connection reset mid-body). */
const answerTo = (request: HostileRequest) =>
  send(toClientRequest(request)).pipe(Effect.catchAll((error) => {
    const cause = error.cause as { readonly code?: string; readonly message?: string } | undefined
    return Effect.succeed({
      status: `no answer: ${cause?.code ?? ""} ${cause?.message ?? error.message}`.trim() as number | string,
      headers: {} as Readonly<Record<string, string>>,
      body: undefined as unknown,
      text: ""
    })
  }))

const changedRows = (before: Record<string, number>, after: Record<string, number>) =>
  Object.fromEntries(tables.filter((table) => after[table] !== before[table]).map((table) => [table, `${before[table]} → ${after[table]}`]))

const runCase = (hostile: HostileCase) =>
  Effect.gen(function*() {
    const base = yield* Scene
    yield* quiet(base.busyRunId)
    const scene = { ...base, latestAssistantMessageId: yield* latestMessageOf(base.chatId) }
    const before = yield* rowCounts
    const answer = yield* answerTo(hostile.request(scene))
    const after = yield* rowCounts
    const body = answer.body as { readonly code?: unknown; readonly message?: unknown } | string
    const code = typeof body === "object" && body !== null ? body.code : undefined
    // One comparison, so a failure shows status, code and writes together.
    expect({ status: answer.status, code, rowsWritten: changedRows(before, after) }).toEqual({
      status: hostile.expectedStatus,
      code: hostile.expectedCode ?? undefined,
      rowsWritten: {}
    })
    expect(answer.status).not.toBe(500)
    if (hostile.expectedCode !== null) {
      expect(answer.headers["content-type"]).toContain("application/json")
      expect(body).toMatchObject({ code: hostile.expectedCode, message: expect.any(String) })
    }
    if (hostile.expectedBody !== undefined) expect(body).toMatchObject(hostile.expectedBody(scene))
    for (const leak of leaks) expect(answer.text).not.toMatch(leak)
  })

for (const database of testDatabases) {
  layer(suiteLayer(database), { timeout: 120_000, excludeTestServices: true })(`hostile input on ${database.name}`, (it) => {
    for (const hostile of cases) {
      it.effect(hostile.name, () => runCase(hostile))
    }
  })
}
