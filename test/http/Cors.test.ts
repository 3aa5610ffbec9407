import { HttpClientRequest } from "@effect/platform"
import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { testDatabases } from "../support/TestDatabase.ts"
import { send, testServer } from "../support/TestServer.ts"
import type { SnapshotJson } from "../support/Turns.ts"
import { readAll } from "../support/SseClient.ts"
import { messagesPath, newChat, quick, runEvents, streamTurn } from "../support/Turns.ts"

/** Browser access from other origins (spec 75, "Browser access (CORS)"). */

const app = "https://app.example"
const other = "https://other.example"

const withOrigin = (request: HttpClientRequest.HttpClientRequest, origin = app) => HttpClientRequest.setHeader(request, "origin", origin)

/** A browser's preflight for a JSON request with the given extra headers. */
const preflight = (path: string, method: string, headers: string) =>
  send(HttpClientRequest.make("OPTIONS")(path).pipe(
    HttpClientRequest.setHeaders({ origin: app, "access-control-request-method": method, "access-control-request-headers": headers })
  ))

const list = (value: string | undefined) => (value ?? "").split(",").map((part) => part.trim().toLowerCase())

const userMessage = () => ({ userMessageId: crypto.randomUUID(), content: "Hello there", settings: quick() })

for (const database of testDatabases) {
  layer(testServer(database, { corsOrigins: [app, other] }), { timeout: 60_000, excludeTestServices: true })(
    `CORS_ORIGINS=${app},${other} on ${database.name}`,
    (it) => {
      it.effect("a preflight is answered 204 with the origin, the methods and the headers a front-end sends", () =>
        Effect.gen(function*() {
          for (const [path, method] of [["/chats", "POST"], [`/chats/${crypto.randomUUID()}`, "PATCH"], [`/chats/${crypto.randomUUID()}`, "DELETE"]] as const) {
            const { headers, status, text } = yield* preflight(path, method, "content-type, authorization, last-event-id")
            expect(status).toBe(204)
            expect(text).toBe("")
            expect(headers["access-control-allow-origin"]).toBe(app)
            expect(list(headers["access-control-allow-methods"])).toEqual(expect.arrayContaining(["get", "post", "put", "patch", "delete"]))
            expect(list(headers["access-control-allow-headers"])).toEqual(expect.arrayContaining(["content-type", "authorization", "last-event-id"]))
          }
        }))

      it.effect("a JSON answer carries the origin and exposes Idempotent-Replayed", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const request = userMessage()
          const post = () => send(withOrigin(HttpClientRequest.post(messagesPath(chatId)).pipe(HttpClientRequest.bodyUnsafeJson(request))))
          const first = yield* post()
          const again = yield* post()
          expect(again.status).toBe(202)
          expect(again.headers["idempotent-replayed"]).toBe("true")
          for (const answer of [first, again]) {
            expect(answer.headers["access-control-allow-origin"]).toBe(app)
            expect(list(answer.headers["access-control-expose-headers"])).toContain("idempotent-replayed")
          }
          yield* runEvents((first.body as SnapshotJson).run.id)
        }))

      it.effect("each allowed origin gets its own name back; another origin gets no CORS header", () =>
        Effect.gen(function*() {
          const fromOther = yield* send(withOrigin(HttpClientRequest.get("/health"), other))
          expect(fromOther.headers["access-control-allow-origin"]).toBe(other)
          expect(fromOther.headers["vary"]).toMatch(/origin/i)
          const stranger = yield* send(withOrigin(HttpClientRequest.get("/health"), "https://evil.example"))
          expect(stranger.status).toBe(200)
          expect(stranger.headers["access-control-allow-origin"]).toBeUndefined()
        }))

      it.effect("error answers carry the headers too: 404 for an unknown route or chat, 400 for a bad body", () =>
        Effect.gen(function*() {
          const answers = [
            yield* send(withOrigin(HttpClientRequest.get("/nowhere"))),
            yield* send(withOrigin(HttpClientRequest.get(`/chats/${crypto.randomUUID()}`))),
            yield* send(withOrigin(HttpClientRequest.post("/chats").pipe(HttpClientRequest.bodyText("{", "application/json"))))
          ]
          expect(answers.map((answer) => answer.status)).toEqual([404, 404, 400])
          for (const answer of answers) expect(answer.headers["access-control-allow-origin"]).toBe(app)
        }))

      it.effect("a streamed turn and GET /runs/{runId}/events carry the headers, its 204 too", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          // Read to the end: the turn is over before the next request.
          const streamed = yield* readAll(withOrigin(HttpClientRequest.post(messagesPath(chatId)).pipe(HttpClientRequest.bodyUnsafeJson(userMessage()))))
          expect(streamed.status).toBe(200)
          expect(streamed.headers["content-type"]).toMatch(/^text\/event-stream/)
          expect(streamed.headers["access-control-allow-origin"]).toBe(app)
          expect(streamed.events.at(-1)?.event).toBe("pipeline.run.done")
          const runId = (streamed.events[0]!.data as { readonly runId: string }).runId
          const replay = yield* readAll(withOrigin(HttpClientRequest.get(`/runs/${runId}/events`)))
          expect(replay.status).toBe(200)
          expect(replay.headers["access-control-allow-origin"]).toBe(app)
          expect(replay.events).toHaveLength(streamed.events.length)
          // The reconnection after the end: 204, readable cross-origin, so a browser's EventSource stops.
          const over = yield* send(withOrigin(HttpClientRequest.get(`/runs/${runId}/events`).pipe(
            HttpClientRequest.setHeader("last-event-id", String(streamed.events.length))
          )))
          expect(over.status).toBe(204)
          expect(over.headers["access-control-allow-origin"]).toBe(app)
        }))
    }
  )
}

describe("CORS_ORIGINS=*", () => {
  layer(testServer(testDatabases[0]!, { corsOrigins: ["*"] }), { timeout: 60_000, excludeTestServices: true })("any origin", (it) => {
    it.effect("every origin is allowed, preflights included", () =>
      Effect.gen(function*() {
        const answer = yield* send(withOrigin(HttpClientRequest.get("/health"), "http://localhost:5173"))
        expect(answer.headers["access-control-allow-origin"]).toBe("*")
        const { headers, status } = yield* preflight("/chats", "POST", "content-type")
        expect(status).toBe(204)
        expect(headers["access-control-allow-origin"]).toBe("*")
      }))
  })
})

describe("without CORS_ORIGINS", () => {
  layer(testServer(testDatabases[0]!), { timeout: 60_000, excludeTestServices: true })("no CORS", (it) => {
    it.effect("answers carry no CORS header, and a preflight is not answered as one", () =>
      Effect.gen(function*() {
        const json = yield* send(withOrigin(HttpClientRequest.get("/health")))
        expect(json.status).toBe(200)
        expect(Object.keys(json.headers).filter((name) => name.startsWith("access-control-"))).toEqual([])
        const chatId = yield* newChat
        const { events, headers } = yield* streamTurn(messagesPath(chatId), userMessage())
        expect(events.length).toBeGreaterThan(0)
        expect(Object.keys(headers).filter((name) => name.startsWith("access-control-"))).toEqual([])
        const { headers: preflightHeaders, status } = yield* preflight("/chats", "POST", "content-type")
        expect(status).toBe(404)
        expect(Object.keys(preflightHeaders).filter((name) => name.startsWith("access-control-"))).toEqual([])
      }))
  })
})
