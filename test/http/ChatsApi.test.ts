import { HttpApiClient } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Fiber, Schedule } from "effect"
import { Api } from "../../src/http/Api.ts"
import { uuidv7At } from "../../src/services/Uuid.ts"
import { chatRowCounts, count, runRowCounts, seedChat } from "../support/Fixtures.ts"
import { checkInvariants } from "../support/Invariants.ts"
import { testDatabases } from "../support/TestDatabase.ts"
import { del, getJson, patchJson, postJson, postRaw, testServer } from "../support/TestServer.ts"
import type { SnapshotJson } from "../support/Turns.ts"
import { completedTurn, finished, newChat, quick, regenerate, sendMessage, withLiveTurn } from "../support/Turns.ts"

/** A finished regenerate of the assistant message. */
const regenerated = (chatId: string, messageId: string) =>
  Effect.flatMap(
    regenerate(chatId, messageId, { requestId: crypto.randomUUID(), settings: quick() }),
    ({ body }) => finished((body as SnapshotJson).run.id)
  )

interface ChatJson {
  readonly id: string
  readonly title: string | null
  readonly systemPrompt?: string | null
  readonly createdAt: string
  readonly activeRunId: string | null
  readonly lastMessageAt: string | null
  readonly lastActivityAt: string
}

interface PageJson {
  readonly chats: ReadonlyArray<ChatJson>
  readonly nextCursor: string | null
}

const page = (query: string) => Effect.map(getJson(`/chats${query}`), ({ body, status }) => {
  expect(status).toBe(200)
  return body as PageJson
})

/** Every chat, page after page of `limit`. */
const walk = (limit: number) =>
  Effect.gen(function*() {
    const all: Array<ChatJson> = []
    let cursor: string | null = null
    do {
      const next: PageJson = yield* page(`?limit=${limit}${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`)
      expect(next.chats.length).toBeLessThanOrEqual(limit)
      all.push(...next.chats)
      cursor = next.nextCursor
    } while (cursor !== null)
    return all
  })

const chatOf = (chatId: string) => Effect.map(getJson(`/chats/${chatId}`), ({ body }) => body as ChatJson)

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
        expect(body).toEqual({
          id: expect.stringMatching(uuid),
          title: "Otters",
          systemPrompt: "Be brief.",
          createdAt: expect.any(String),
          activeRunId: null,
          lastMessageAt: null,
          lastActivityAt: expect.any(String)
        })
        const created = body as { readonly id: string; readonly createdAt: string; readonly lastActivityAt: string }
        expect(new Date(created.createdAt).toISOString()).toBe(created.createdAt)
        expect(created.lastActivityAt).toBe(created.createdAt)
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

    describe("GET /chats", () => {
      it.effect("lists chats most recently active first: a new turn moves a chat to the top", () =>
        Effect.gen(function*() {
          const a = yield* newChat
          const b = yield* newChat
          const c = yield* newChat
          expect((yield* page("?limit=3")).chats.map((chat) => chat.id)).toEqual([c, b, a])
          const turn = yield* completedTurn(a)
          const top = (yield* page("?limit=3")).chats
          expect(top.map((chat) => chat.id)).toEqual([a, c, b])
          expect(top[0]).toEqual({
            id: a,
            title: "turns",
            createdAt: expect.any(String),
            activeRunId: null,
            lastMessageAt: turn.run.startedAt,
            lastActivityAt: turn.run.startedAt
          })
          expect(top[0]).not.toHaveProperty("systemPrompt")
        }))

      it.effect("a regenerate counts as activity, and lastMessageAt stays the latest message's", () =>
        Effect.gen(function*() {
          const a = yield* newChat
          const first = yield* completedTurn(a)
          yield* newChat
          const again = yield* regenerated(a, first.run.assistantMessageId)
          const [top] = (yield* page("?limit=1")).chats
          expect(top).toMatchObject({ id: a, lastMessageAt: first.run.startedAt, lastActivityAt: again.run.startedAt })
        }))

      it.effect("pages with an opaque cursor: every chat once, in order, ties included, and the last page has no cursor", () =>
        Effect.gen(function*() {
          // Five chats created at the same instant, long ago: the tie is broken by id.
          const sql = yield* SqlClient.SqlClient
          const at = new Date("2001-02-03T04:05:06.789Z")
          const tied: Array<string> = Array.from({ length: 5 }, () => crypto.randomUUID())
          for (const id of tied) yield* sql`INSERT INTO chats (id, title, created_at) VALUES (${id}, 'tied', ${at})`
          const whole = (yield* page("?limit=100")).chats
          expect(whole.length).toBeLessThan(100)
          for (const limit of [1, 2, 7]) {
            expect((yield* walk(limit)).map((chat) => chat.id)).toEqual(whole.map((chat) => chat.id))
          }
          const ids = whole.map((chat) => chat.id)
          expect(new Set(ids).size).toBe(ids.length)
          const times = whole.map((chat) => Date.parse(chat.lastActivityAt))
          expect(times).toEqual([...times].sort((x, y) => y - x))
          expect(whole.filter((chat) => tied.includes(chat.id)).map((chat) => chat.id)).toEqual([...tied].sort().reverse())
        }))

      it.effect("20 chats by default, at most 100", () =>
        Effect.gen(function*() {
          for (let i = 0; i < 21; i++) yield* newChat
          const first = yield* page("")
          expect(first.chats).toHaveLength(20)
          expect(first.nextCursor).toEqual(expect.any(String))
          expect((yield* getJson("/chats?limit=100")).status).toBe(200)
        }))

      it.effect("a bad limit or cursor is 400 validation_error", () =>
        Effect.gen(function*() {
          const notACursor = Buffer.from(JSON.stringify(["12", "not-a-uuid"])).toString("base64url")
          for (const query of ["?limit=0", "?limit=101", "?limit=abc", "?cursor=", "?cursor=garbage", `?cursor=${notACursor}`]) {
            const { body, status } = yield* getJson(`/chats${query}`)
            expect(status, query).toBe(400)
            expect(body).toMatchObject({ code: "validation_error", message: expect.any(String) })
          }
        }))

      it.effect("a chat with a running turn names it in activeRunId, in the list and on its own; null once it ended", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          yield* withLiveTurn(chatId, (runId) =>
            Effect.gen(function*() {
              expect((yield* chatOf(chatId)).activeRunId).toBe(runId)
              const [top] = (yield* page("?limit=1")).chats
              expect(top).toMatchObject({ id: chatId, activeRunId: runId, lastMessageAt: expect.any(String) })
            }))
          expect((yield* chatOf(chatId)).activeRunId).toBeNull()
        }))

      it.effect("the typed client lists chats and follows the cursor", () =>
        Effect.gen(function*() {
          const client = yield* HttpApiClient.make(Api)
          const created = yield* client.chats.createChat({ payload: { title: "typed list" } })
          const first = yield* client.chats.listChats({ urlParams: { limit: 1 } })
          expect(first.chats.map((chat) => chat.id)).toEqual([created.id])
          const second = yield* client.chats.listChats({ urlParams: { limit: 1, cursor: first.nextCursor! } })
          expect(second.chats[0]?.id).not.toBe(created.id)
        }))
    })

    describe("PATCH /chats/{chatId}", () => {
      it.effect("changes the fields given and keeps the others; null clears one", () =>
        Effect.gen(function*() {
          const { body } = yield* postJson("/chats", { title: "Before", systemPrompt: "Be brief." })
          const chat = body as ChatJson
          const renamed = yield* patchJson(`/chats/${chat.id}`, { title: "After" })
          expect(renamed).toMatchObject({ status: 200, body: { ...chat, title: "After", systemPrompt: "Be brief." } })
          const cleared = yield* patchJson(`/chats/${chat.id}`, { systemPrompt: null })
          expect(cleared.body).toEqual({ ...chat, title: "After", systemPrompt: null })
          const unchanged = yield* patchJson(`/chats/${chat.id}`, {})
          expect(unchanged.body).toEqual(cleared.body)
          expect(yield* chatOf(chat.id)).toEqual(cleared.body)
        }))

      it.effect("the next turn reads the new system prompt", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          yield* patchJson(`/chats/${chatId}`, { systemPrompt: "Answer in French." })
          const turn = yield* completedTurn(chatId)
          const report = (yield* getJson(`/runs/${turn.run.id}/report`)).body as { readonly prompt: { readonly messages: ReadonlyArray<{ readonly role: string; readonly length: number }> } }
          expect(report.prompt.messages[0]).toEqual(expect.objectContaining({ role: "system", length: "Answer in French.".length }))
        }))

      it.effect("an unknown chat is 404; a bad body or id is 400; a refused change writes nothing", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const before = yield* chatOf(chatId)
          expect((yield* patchJson(`/chats/${uuidv7At(0)}`, { title: "x" })).body).toMatchObject({ code: "not_found" })
          for (const body of [{ title: "x".repeat(201) }, { title: 42 }, { systemPrompt: ["no"] }]) {
            const answer = yield* patchJson(`/chats/${chatId}`, body)
            expect(answer.status).toBe(400)
            expect(answer.body).toMatchObject({ code: "validation_error" })
          }
          expect((yield* patchJson("/chats/not-a-uuid", { title: "x" })).status).toBe(400)
          expect(yield* chatOf(chatId)).toEqual(before)
        }))
    })

    describe("DELETE /chats/{chatId}", () => {
      it.effect("deletes the chat and everything of it (messages, variants, runs, steps, generations, journal), and only it", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const first = yield* completedTurn(chatId)
          yield* regenerated(chatId, first.run.assistantMessageId)
          const other = yield* newChat
          yield* completedTurn(other)
          const otherBefore = yield* chatRowCounts(other)
          expect(yield* chatRowCounts(chatId)).toEqual({
            chats: 1, chatMessages: 2, messageVariants: 3, pipelineRuns: 2, stepRuns: 6, generations: 2, events: expect.any(Number)
          })
          const answer = yield* del(`/chats/${chatId}`)
          expect(answer.status).toBe(204)
          expect(answer.text).toBe("")
          expect(yield* chatRowCounts(chatId)).toEqual({
            chats: 0, chatMessages: 0, messageVariants: 0, pipelineRuns: 0, stepRuns: 0, generations: 0, events: 0
          })
          expect(yield* chatRowCounts(other)).toEqual(otherBefore)
          expect((yield* getJson(`/chats/${chatId}`)).status).toBe(404)
          expect((yield* getJson(`/runs/${first.run.id}`)).status).toBe(404)
          expect((yield* del(`/chats/${chatId}`)).body).toMatchObject({ code: "not_found" })
        }))

      it.effect("while a turn runs it is 409 chat_busy naming the run, and deletes nothing", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const done = yield* completedTurn(chatId)
          // The live run goes on writing its own rows; what was there before must all stay.
          const kept = Effect.all({
            chat: Effect.map(chatRowCounts(chatId), ({ chatMessages, chats, messageVariants, pipelineRuns }) => ({ chatMessages, chats, messageVariants, pipelineRuns })),
            finishedRun: runRowCounts([done.run.id])
          })
          yield* withLiveTurn(chatId, (runId) =>
            Effect.gen(function*() {
              const before = yield* kept
              const answer = yield* del(`/chats/${chatId}`)
              expect(answer.status).toBe(409)
              expect(answer.body).toMatchObject({ code: "chat_busy", message: expect.any(String), details: { runId } })
              expect(yield* kept).toEqual(before)
            }))
          expect((yield* del(`/chats/${chatId}`)).status).toBe(204)
        }))

      // Postgres only: the embedded database runs one transaction at a time, so nothing can race there.
      it.effect.skipIf(database.name !== "postgres")("a turn that started while the chat was being deleted is 404, not an internal error", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const chatId = yield* newChat
          const waiting = sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE wait_event_type = 'Lock' AND datname = current_database()`
          const answer = yield* sql.withTransaction(Effect.gen(function*() {
            // What the delete does: the chat locked, then gone.
            yield* sql`SELECT 1 FROM chats WHERE id = ${chatId} FOR UPDATE`
            const turn = yield* Effect.fork(sendMessage(chatId, { userMessageId: crypto.randomUUID(), content: "Hi", settings: quick() }))
            // The turn's statement saw the chat, and waits for the lock to write its rows.
            yield* waiting.pipe(Effect.repeat({ until: (rows) => rows[0]!.n > 0, schedule: Schedule.spaced("10 millis") }), Effect.timeout("10 seconds"))
            yield* sql`DELETE FROM chats WHERE id = ${chatId}`
            return turn
          })).pipe(Effect.flatMap(Fiber.join))
          expect(answer).toMatchObject({ status: 404, body: { code: "not_found" } })
        }))

      it.effect("an unknown chat is 404 not_found; an id that is not a UUID is 400", () =>
        Effect.gen(function*() {
          expect((yield* del(`/chats/${uuidv7At(0)}`))).toMatchObject({ status: 404, body: { code: "not_found" } })
          expect((yield* del("/chats/not-a-uuid"))).toMatchObject({ status: 400, body: { code: "validation_error" } })
        }))
    })

    it.effect("GET /openapi.json describes the API and GET /docs serves a page for it", () =>
      Effect.gen(function*() {
        const spec = yield* getJson("/openapi.json")
        expect(spec.status).toBe(200)
        expect(Object.keys((spec.body as { readonly paths: object }).paths)).toEqual(
          expect.arrayContaining([
            "/health",
            "/chats",
            "/chats/{chatId}",
            "/chats/{chatId}/messages",
            "/chats/{chatId}/messages/{messageId}",
            "/chats/{chatId}/messages/{messageId}/selected-variant",
            "/chats/{chatId}/turns/abort",
            "/runs/{runId}/report"
          ])
        )
        const docs = yield* getJson("/docs")
        expect(docs.status).toBe(200)
        expect(docs.headers["content-type"]).toContain("text/html")
      }))

    it.effect("the database satisfies every invariant of the spec", () => checkInvariants)
  })
}
