import { HttpApiClient } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { Api } from "../../src/http/Api.ts"
import { uuidv7At } from "../../src/services/Uuid.ts"
import { count, seedChat } from "../support/Fixtures.ts"
import { testDatabases } from "../support/TestDatabase.ts"
import { getJson, postJson, postRaw, testServer } from "../support/TestServer.ts"

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/** No answer may leak internals (spec 70): no stack, no SQL, no file paths. */
const expectSafe = (text: string) => {
  expect(text).not.toMatch(/\bat \S+ \(|\.ts:\d+|SELECT |INSERT |stack/i)
}

for (const database of testDatabases) {
  layer(testServer(database), { timeout: 60_000, excludeTestServices: true })(`the chats API on ${database.name}`, (it) => {
    it.effect("POST /chats creates a chat and answers 201 with it", () =>
      Effect.gen(function*() {
        const { body, status } = yield* postJson("/chats", { title: "Otters", systemPrompt: "Be brief." })
        expect(status).toBe(201)
        expect(body).toEqual({ id: expect.stringMatching(uuid), title: "Otters", systemPrompt: "Be brief.", createdAt: expect.any(String) })
        const created = body as { readonly id: string; readonly createdAt: string }
        expect(new Date(created.createdAt).toISOString()).toBe(created.createdAt)
        const again = yield* getJson(`/chats/${created.id}`)
        expect(again).toMatchObject({ status: 200, body })
      }))

    it.effect("a chat needs neither title nor system prompt", () =>
      Effect.gen(function*() {
        const { body, status } = yield* postJson("/chats", {})
        expect(status).toBe(201)
        expect(body).toMatchObject({ title: null, systemPrompt: null })
      }))

    it.effect("the typed client reads the same API", () =>
      Effect.gen(function*() {
        const client = yield* HttpApiClient.make(Api)
        const chat = yield* client.chats.createChat({ payload: { title: "typed" } })
        const read = yield* client.chats.getChat({ path: { chatId: chat.id } })
        expect(read).toEqual(chat)
        const error = yield* Effect.flip(client.chats.getChat({ path: { chatId: uuidv7At(0) as typeof chat.id } }))
        expect(error).toMatchObject({ _tag: "NotFound", code: "not_found" })
      }))

    it.effect("GET /chats/{chatId}/messages lists the history with selected contents and every variant", () =>
      Effect.gen(function*() {
        const chat = yield* seedChat
        const sql = yield* SqlClient.SqlClient
        const secondVariant = uuidv7At(Date.now() + 1000)
        yield* sql`INSERT INTO message_variants (id, message_id, content, created_at)
                   VALUES (${secondVariant}, ${chat.assistantMessageId}, 'second answer', ${new Date(Date.now() + 1000)})`
        yield* sql`UPDATE chat_messages SET selected_variant_id = ${secondVariant} WHERE id = ${chat.assistantMessageId}`
        const { body, status } = yield* getJson(`/chats/${chat.chatId}/messages`)
        expect(status).toBe(200)
        const { messages } = body as { readonly messages: ReadonlyArray<Record<string, unknown>> }
        expect(messages).toHaveLength(2)
        expect(messages[0]).toMatchObject({ id: chat.userMessageId, chatId: chat.chatId, role: "user", position: 0, content: "Hello there" })
        expect(messages[1]).toMatchObject({
          id: chat.assistantMessageId,
          role: "assistant",
          position: 1,
          selectedVariantId: secondVariant,
          content: "second answer",
          variants: [
            { id: chat.assistantVariantId, content: "", generationId: null, createdAt: expect.any(String) },
            { id: secondVariant, content: "second answer", generationId: null, createdAt: expect.any(String) }
          ]
        })
      }))

    it.effect("an unknown chat is 404 not_found", () =>
      Effect.gen(function*() {
        for (const path of [`/chats/${uuidv7At(0)}`, `/chats/${uuidv7At(0)}/messages`]) {
          const { body, status } = yield* getJson(path)
          expect(status).toBe(404)
          expect(body).toMatchObject({ code: "not_found", message: expect.stringContaining("does not exist") })
        }
      }))

    it.effect("a path id that is not a UUID is 400 validation_error naming the parameter", () =>
      Effect.gen(function*() {
        const { body, status, text } = yield* getJson("/chats/not-a-uuid")
        expect(status).toBe(400)
        expect(body).toMatchObject({ code: "validation_error", message: expect.stringContaining("chatId"), details: { issues: [{ path: ["chatId"] }] } })
        expectSafe(text)
      }))

    it.effect("bad bodies are refused with 400 validation_error and write nothing", () =>
      Effect.gen(function*() {
        const before = yield* count("chats")
        const answers = [
          yield* postRaw("/chats", "{\"title\":"),
          yield* postRaw("/chats", "[1,2]"),
          yield* postRaw("/chats", "\"text\""),
          yield* postJson("/chats", { title: 42 }),
          yield* postJson("/chats", { title: "x".repeat(201) }),
          yield* postRaw("/chats", "title=x", "text/plain")
        ]
        for (const answer of answers) {
          expect(answer.status).toBe(400)
          expect(answer.body).toMatchObject({ code: "validation_error", message: expect.any(String) })
          expectSafe(answer.text)
        }
        expect(yield* count("chats")).toBe(before)
      }))

    it.effect("a body over 1 MiB is 413 payload_too_large", () =>
      Effect.gen(function*() {
        const before = yield* count("chats")
        const { body, status } = yield* postJson("/chats", { title: "t", systemPrompt: "x".repeat(1024 * 1024) })
        expect(status).toBe(413)
        expect(body).toMatchObject({ code: "payload_too_large" })
        expect(yield* count("chats")).toBe(before)
      }))

    it.effect("a route that does not exist is 404 not_found with a JSON body", () =>
      Effect.gen(function*() {
        const { body, status } = yield* getJson("/nowhere")
        expect(status).toBe(404)
        expect(body).toMatchObject({ code: "not_found", message: "no route for GET /nowhere" })
      }))

    it.effect("GET /health answers 200 ok after a database round trip", () =>
      Effect.gen(function*() {
        expect(yield* getJson("/health")).toMatchObject({ status: 200, body: { status: "ok" } })
      }))

    it.effect("GET /openapi.json describes the API and GET /docs serves a page for it", () =>
      Effect.gen(function*() {
        const spec = yield* getJson("/openapi.json")
        expect(spec.status).toBe(200)
        expect(Object.keys((spec.body as { readonly paths: object }).paths)).toEqual(
          expect.arrayContaining(["/health", "/chats", "/chats/{chatId}", "/chats/{chatId}/messages", "/runs/{runId}/report"])
        )
        const docs = yield* getJson("/docs")
        expect(docs.status).toBe(200)
        expect(docs.headers["content-type"]).toContain("text/html")
      }))
  })
}
