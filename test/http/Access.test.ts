import { HttpClient, HttpClientRequest } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Logger, Redacted, Schedule, Stream } from "effect"
import { SignJWT } from "jose"
import { ApiKeys } from "../../src/services/access/ApiKeys.ts"
import type { AppConfigShape } from "../../src/services/AppConfig.ts"
import { defaultConfig } from "../support/TestConfig.ts"
import type { TestDatabase } from "../support/TestDatabase.ts"
import { testDatabases } from "../support/TestDatabase.ts"
import { openSse } from "../support/SseClient.ts"
import { send, testServer } from "../support/TestServer.ts"
import type { SnapshotJson } from "../support/Turns.ts"
import { abortRun, completedTurn, finished, lingering, liveTurn, messagesOf, newChat, quick, sendMessage } from "../support/Turns.ts"

/**
 * Access (spec 85): every route × (no credentials, wrong credentials, another owner, the owner);
 * the event token of a browser `EventSource`; the limits, answered before anything is written and
 * never to a duplicate; JWTs over HTTP.
 */

const withAuth = (database: TestDatabase, overrides: Partial<AppConfigShape> = {}) =>
  ApiKeys.Default.pipe(Layer.provideMerge(testServer(database, {
    access: { ...defaultConfig.access, auth: "api_key" },
    ...overrides
  })))

/** Runs `effect` with every request carrying `Authorization: Bearer <credential>`. */
const as = (credential: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.updateService(effect, HttpClient.HttpClient, (client) => HttpClient.mapRequest(client, HttpClientRequest.bearerToken(credential)))

const keyOf = (owner: string) => Effect.map(Effect.flatMap(ApiKeys, (keys) => keys.create(owner)), ({ key }) => key)

/** Rows in every table; the journal without the events of `liveRunIds`, which stream (and are written behind) meanwhile. */
const tableCountsBeside = (...liveRunIds: ReadonlyArray<string>) => Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<Record<string, number>>`SELECT
    (SELECT count(*)::int FROM chats) AS chats, (SELECT count(*)::int FROM chat_messages) AS messages,
    (SELECT count(*)::int FROM message_variants) AS variants, (SELECT count(*)::int FROM pipeline_runs) AS runs,
    (SELECT count(*)::int FROM pipeline_step_runs) AS steps, (SELECT count(*)::int FROM llm_generations) AS generations,
    (SELECT count(*)::int FROM pipeline_run_events WHERE run_id::text NOT IN ${sql.in(["", ...liveRunIds])}) AS events,
    (SELECT count(*)::int FROM turn_stops) AS stops`
  return row!
})
const tableCounts = tableCountsBeside()

interface Ids {
  readonly chatId: string
  /** A chat the owner's own pass may delete and rewind. */
  readonly spareChatId: string
  readonly runId: string
  readonly generationId: string
  readonly userMessageId: string
  readonly assistantMessageId: string
  readonly variantId: string
}

interface Route {
  readonly name: string
  readonly request: (ids: Ids) => HttpClientRequest.HttpClientRequest
  /** The owner's answer. */
  readonly ok: number
  /** Another owner's answer (404 unless the route is not about one chat). */
  readonly stranger?: number
}

const json = (request: HttpClientRequest.HttpClientRequest, body: unknown) => HttpClientRequest.bodyUnsafeJson(request, body)

const routes: ReadonlyArray<Route> = [
  { name: "GET /chats", request: () => HttpClientRequest.get("/chats"), ok: 200, stranger: 200 },
  { name: "POST /chats", request: () => json(HttpClientRequest.post("/chats"), { title: "mine" }), ok: 201, stranger: 201 },
  { name: "GET /chats/{id}", request: (ids) => HttpClientRequest.get(`/chats/${ids.chatId}`), ok: 200 },
  { name: "PATCH /chats/{id}", request: (ids) => json(HttpClientRequest.patch(`/chats/${ids.chatId}`), { title: "renamed" }), ok: 200 },
  { name: "GET /chats/{id}/messages", request: (ids) => HttpClientRequest.get(`/chats/${ids.chatId}/messages`), ok: 200 },
  {
    name: "POST /chats/{id}/messages",
    request: (ids) => json(HttpClientRequest.post(`/chats/${ids.spareChatId}/messages`), { userMessageId: crypto.randomUUID(), content: "Hi", settings: quick() }),
    ok: 202
  },
  {
    name: "PUT …/selected-variant",
    request: (ids) => json(HttpClientRequest.put(`/chats/${ids.chatId}/messages/${ids.assistantMessageId}/selected-variant`), { variantId: ids.variantId }),
    ok: 200
  },
  { name: "POST /chats/{id}/turns/abort", request: (ids) => json(HttpClientRequest.post(`/chats/${ids.chatId}/turns/abort`), { userMessageId: crypto.randomUUID() }), ok: 200 },
  { name: "GET /chats/{id}/runs", request: (ids) => HttpClientRequest.get(`/chats/${ids.chatId}/runs`), ok: 200 },
  { name: "GET /runs/{id}", request: (ids) => HttpClientRequest.get(`/runs/${ids.runId}`), ok: 200 },
  { name: "GET /runs/{id}/report", request: (ids) => HttpClientRequest.get(`/runs/${ids.runId}/report`), ok: 200 },
  { name: "GET /runs/{id}/events", request: (ids) => HttpClientRequest.get(`/runs/${ids.runId}/events`), ok: 200 },
  { name: "POST /runs/{id}/abort", request: (ids) => HttpClientRequest.post(`/runs/${ids.runId}/abort`), ok: 200 },
  { name: "POST /generations/{id}/abort", request: (ids) => HttpClientRequest.post(`/generations/${ids.generationId}/abort`), ok: 200 },
  {
    name: "POST …/regenerate",
    request: (ids) =>
      json(HttpClientRequest.post(`/chats/${ids.chatId}/messages/${ids.assistantMessageId}/regenerate`), { requestId: crypto.randomUUID(), settings: quick() }),
    ok: 202
  },
  { name: "DELETE …/messages/{id}", request: (ids) => HttpClientRequest.del(`/chats/${ids.chatId}/messages/${ids.userMessageId}`), ok: 204 },
  { name: "DELETE /chats/{id}", request: (ids) => HttpClientRequest.del(`/chats/${ids.spareChatId}`), ok: 204 }
]

/** Alice's chat with one finished turn, and a spare chat. */
const aliceWorld = Effect.gen(function*() {
  const chatId = yield* newChat
  const spareChatId = yield* newChat
  const snapshot = yield* completedTurn(chatId)
  const [user, assistant] = yield* messagesOf(chatId)
  return {
    chatId,
    spareChatId,
    runId: snapshot.run.id,
    generationId: snapshot.generation!.id,
    userMessageId: user!.id,
    assistantMessageId: assistant!.id,
    variantId: assistant!.variants[0]!.id
  } satisfies Ids
})

for (const database of testDatabases) {
  layer(withAuth(database), { timeout: 60_000, excludeTestServices: true })(`access with API keys on ${database.name}`, (it) => {
    it.effect("every route refuses a request without credentials or with wrong ones (401, WWW-Authenticate), and writes nothing", () =>
      Effect.gen(function*() {
        const alice = yield* keyOf("alice")
        const ids = yield* as(alice)(aliceWorld)
        const before = yield* tableCounts
        for (const credential of [undefined, "trk_not-a-key", "Basic dXNlcjpwYXNz", "a".repeat(9000)]) {
          for (const route of routes) {
            const request = route.request(ids)
            const answer = yield* send(credential === undefined ? request : HttpClientRequest.setHeader(request, "authorization", credential.startsWith("Basic") ? credential : `Bearer ${credential}`))
            expect([route.name, credential?.slice(0, 10), answer.status]).toEqual([route.name, credential?.slice(0, 10), 401])
            expect(answer.headers["www-authenticate"]).toBe("Bearer")
            expect(answer.body).toMatchObject({ code: "unauthorized" })
          }
        }
        expect(yield* tableCounts).toEqual(before)
      }))

    it.effect("another owner's chats, messages, runs, generations and events are 404, as unknown ids are; nothing of theirs changes", () =>
      Effect.gen(function*() {
        const alice = yield* keyOf("alice")
        const bob = yield* keyOf("bob")
        const ids = yield* as(alice)(aliceWorld)
        const before = yield* tableCounts
        for (const route of routes) {
          const answer = yield* as(bob)(send(route.request(ids)))
          expect([route.name, answer.status]).toEqual([route.name, route.stranger ?? 404])
          if ((route.stranger ?? 404) === 404) expect(answer.body).toMatchObject({ code: "not_found" })
        }
        // Bob's list has only his own chat (the one his POST /chats made); Alice's rows are as they were.
        const listed = yield* as(bob)(send(HttpClientRequest.get("/chats")))
        expect((listed.body as { chats: Array<{ title: string }> }).chats.map((chat) => chat.title)).toEqual(["mine"])
        const after = yield* tableCounts
        expect(after).toEqual({ ...before, chats: before.chats! + 1 })
        const chat = yield* as(alice)(send(HttpClientRequest.get(`/chats/${ids.chatId}`)))
        expect(chat.body).toMatchObject({ title: "turns" })
      }))

    it.effect("the owner reaches every route", () =>
      Effect.gen(function*() {
        const alice = yield* keyOf("alice")
        const ids = yield* as(alice)(aliceWorld)
        for (const route of routes) {
          const answer = yield* as(alice)(send(route.request(ids)))
          expect([route.name, answer.status]).toEqual([route.name, route.ok])
          // A started turn ends before the next route, which may need the chat idle.
          if (answer.status === 202) yield* as(alice)(finished((answer.body as SnapshotJson).run.id))
        }
      }))

    it.effect("the OpenAPI document declares the bearer scheme and the event token, and needs no credentials", () =>
      Effect.gen(function*() {
        const { body, status } = yield* send(HttpClientRequest.get("/openapi.json"))
        expect(status).toBe(200)
        const document = body as { components: { securitySchemes: Record<string, { type: string; scheme?: string; in?: string; name?: string }> }; paths: Record<string, any> }
        const schemes = Object.values(document.components.securitySchemes)
        expect(schemes).toContainEqual(expect.objectContaining({ type: "http", scheme: "bearer" }))
        expect(schemes).toContainEqual(expect.objectContaining({ type: "apiKey", in: "query", name: "access_token" }))
        expect(document.paths["/chats"].get.security.length).toBeGreaterThan(0)
      }))

    it.effect("a revoked key stops working at once", () =>
      Effect.gen(function*() {
        const keys = yield* ApiKeys
        const created = yield* keys.create("carol")
        expect((yield* as(created.key)(send(HttpClientRequest.get("/chats")))).status).toBe(200)
        expect(yield* keys.revoke(created.id)).toBe(true)
        expect((yield* as(created.key)(send(HttpClientRequest.get("/chats")))).status).toBe(401)
      }))

    it.effect("a run's event token lets a browser follow that run without a header, and nothing else", () =>
      Effect.gen(function*() {
        const alice = yield* keyOf("alice")
        const ids = yield* as(alice)(aliceWorld)
        const other = yield* as(alice)(aliceWorld)
        const snapshot = (yield* as(alice)(send(HttpClientRequest.get(`/runs/${ids.runId}`)))).body as SnapshotJson & { eventsToken: string }
        expect(snapshot.eventsToken).toEqual(expect.any(String))
        const token = encodeURIComponent(snapshot.eventsToken)
        const events = yield* send(HttpClientRequest.get(`/runs/${ids.runId}/events?access_token=${token}`))
        expect(events.status).toBe(200)
        expect(events.text).toContain("event: pipeline.run.done")
        // Not another run's events, not another route, not a tampered token.
        expect((yield* send(HttpClientRequest.get(`/runs/${other.runId}/events?access_token=${token}`))).status).toBe(401)
        expect((yield* send(HttpClientRequest.get(`/runs/${ids.runId}?access_token=${token}`))).status).toBe(401)
        expect((yield* send(HttpClientRequest.post(`/runs/${ids.runId}/abort?access_token=${token}`))).status).toBe(401)
        const tampered = snapshot.eventsToken.replace(/.$/, (last) => (last === "A" ? "B" : "A"))
        expect((yield* send(HttpClientRequest.get(`/runs/${ids.runId}/events?access_token=${encodeURIComponent(tampered)}`))).status).toBe(401)
        // A turn's own 202 answer carries one too.
        const started = yield* as(alice)(sendMessage(ids.spareChatId, { userMessageId: crypto.randomUUID(), content: "Hi", settings: quick() }))
        expect((started.body as { eventsToken?: string }).eventsToken).toEqual(expect.any(String))
        yield* as(alice)(finished((started.body as SnapshotJson).run.id))
      }))
  })

  layer(withAuth(database, { limits: { ...defaultConfig.limits, liveRunsPerOwner: 2, liveRuns: 3 } }), { timeout: 60_000, excludeTestServices: true })(
    `live-run limits on ${database.name}`,
    (it) => {
      it.effect("an owner's third live run is 429 too_many_runs with Retry-After, nothing written; a duplicate is answered; the instance's limit is 503", () =>
        Effect.gen(function*() {
          const alice = yield* keyOf("alice")
          const bob = yield* keyOf("bob")
          const [first, second] = [yield* as(alice)(newChat), yield* as(alice)(newChat)]
          const firstTurn = { userMessageId: crypto.randomUUID(), content: "Tell me a long story", settings: lingering }
          const one = (yield* as(alice)(sendMessage(first, firstTurn))).body as SnapshotJson
          const two = yield* as(alice)(liveTurn(second))
          const third = yield* as(alice)(newChat)
          const counts = tableCountsBeside(one.run.id, two)
          const before = yield* counts
          const refused = yield* as(alice)(sendMessage(third, { userMessageId: crypto.randomUUID(), content: "One more", settings: quick() }))
          expect(refused.status).toBe(429)
          expect(refused.body).toMatchObject({ code: "too_many_runs" })
          expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0)
          expect(yield* counts).toEqual(before)
          // The same request again is its run, whatever the limits.
          const again = yield* as(alice)(sendMessage(first, firstTurn))
          expect(again.status).toBe(202)
          expect((again.body as SnapshotJson).run.id).toBe(one.run.id)
          // Bob has his own allowance, but the instance holds three live runs at most.
          const bobChats = [yield* as(bob)(newChat), yield* as(bob)(newChat)]
          const bobRun = yield* as(bob)(liveTurn(bobChats[0]!))
          const overloaded = yield* as(bob)(sendMessage(bobChats[1]!, { userMessageId: crypto.randomUUID(), content: "Hi", settings: quick() }))
          expect(overloaded.status).toBe(503)
          expect(overloaded.body).toMatchObject({ code: "overloaded" })
          expect(Number(overloaded.headers["retry-after"])).toBeGreaterThan(0)
          for (const runId of [one.run.id, two, bobRun]) yield* as(runId === bobRun ? bob : alice)(abortRun(runId))
        }))
    }
  )

  layer(withAuth(database, { limits: { ...defaultConfig.limits, turnsPerMinutePerOwner: 3, sseClients: 1 } }), { timeout: 60_000, excludeTestServices: true })(
    `turn rate and open streams on ${database.name}`,
    (it) => {
      it.effect("an owner's fourth turn in a minute is 429 rate_limited with Retry-After; its duplicate is not refused", () =>
        Effect.gen(function*() {
          const alice = yield* keyOf("alice")
          const chatId = yield* as(alice)(newChat)
          const turns = Array.from({ length: 3 }, () => ({ userMessageId: crypto.randomUUID(), content: "Hi", settings: quick() }))
          for (const turn of turns) {
            const { body, status } = yield* as(alice)(sendMessage(chatId, turn))
            expect(status).toBe(202)
            yield* as(alice)(finished((body as SnapshotJson).run.id))
          }
          const before = yield* tableCounts
          const refused = yield* as(alice)(sendMessage(chatId, { userMessageId: crypto.randomUUID(), content: "Hi", settings: quick() }))
          expect(refused.status).toBe(429)
          expect(refused.body).toMatchObject({ code: "rate_limited" })
          expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0)
          expect(yield* tableCounts).toEqual(before)
          expect((yield* as(alice)(sendMessage(chatId, turns[0]))).status).toBe(202)
          // Another owner is not slowed down by Alice.
          const bob = yield* keyOf("bob")
          const bobChat = yield* as(bob)(newChat)
          expect((yield* as(bob)(sendMessage(bobChat, { userMessageId: crypto.randomUUID(), content: "Hi", settings: quick() }))).status).toBe(202)
        }))

      it.effect("with MAX_SSE_CLIENTS open event streams, another stream is 503 overloaded with Retry-After, and a streamed turn is refused before it starts", () =>
        Effect.gen(function*() {
          const hana = yield* keyOf("hana")
          const chatId = yield* as(hana)(newChat)
          const runId = yield* as(hana)(liveTurn(chatId))
          // The one stream the instance allows, held open.
          const first = yield* as(hana)(openSse(HttpClientRequest.get(`/runs/${runId}/events`)))
          expect(first.status).toBe(200)
          yield* Effect.forkScoped(Stream.runDrain(first.messages))
          // Counted once the server sends it: its gauge says so.
          yield* send(HttpClientRequest.get("/metrics")).pipe(
            Effect.repeat({ until: ({ text }) => /^turn_runner_sse_clients 1$/m.test(text), schedule: Schedule.spaced("20 millis") }),
            Effect.timeout("10 seconds")
          )
          const second = yield* as(hana)(send(HttpClientRequest.get(`/runs/${runId}/events`)))
          expect(second.status).toBe(503)
          expect(second.body).toMatchObject({ code: "overloaded" })
          expect(Number(second.headers["retry-after"])).toBeGreaterThan(0)
          const otherChat = yield* as(hana)(newChat)
          const before = yield* tableCountsBeside(runId)
          const streamed = yield* as(hana)(send(
            HttpClientRequest.post(`/chats/${otherChat}/messages`).pipe(
              HttpClientRequest.setHeader("accept", "text/event-stream"),
              HttpClientRequest.bodyUnsafeJson({ userMessageId: crypto.randomUUID(), content: "Hi", settings: quick() })
            )
          ))
          expect(streamed.status).toBe(503)
          expect(yield* tableCountsBeside(runId)).toEqual(before)
          yield* as(hana)(abortRun(runId))
        }).pipe(Effect.scoped))
    }
  )
}

/** Every log line the service writes, as `logfmt`. */
const logLines: Array<string> = []
const captureLogs = Logger.replace(Logger.defaultLogger, Logger.map(Logger.logfmtLogger, (line) => logLines.push(line)))

layer(withAuth(testDatabases[0]!).pipe(Layer.provide(captureLogs)), { timeout: 60_000, excludeTestServices: true })("secrets and logs", (it) => {
  it.effect("no key or event token reaches a log line; the request log shows the token as REDACTED", () =>
    Effect.gen(function*() {
      const alice = yield* keyOf("alice")
      const ids = yield* as(alice)(aliceWorld)
      const { eventsToken } = (yield* as(alice)(send(HttpClientRequest.get(`/runs/${ids.runId}`)))).body as { eventsToken: string }
      expect((yield* send(HttpClientRequest.get(`/runs/${ids.runId}/events?after=0&access_token=${encodeURIComponent(eventsToken)}`))).status).toBe(200)
      expect((yield* as("trk_wrong-key-0123456789")(send(HttpClientRequest.get("/chats")))).status).toBe(401)
      const logs = logLines.join("\n")
      expect(logs).toContain("access_token=REDACTED")
      for (const secret of [alice, eventsToken, encodeURIComponent(eventsToken), "trk_wrong-key-0123456789"]) expect(logs).not.toContain(secret)
    }))
})

layer(testServer(testDatabases[0]!, { access: { ...defaultConfig.access, metricsToken: Redacted.make("scrape-secret") } }), {
  timeout: 60_000,
  excludeTestServices: true
})("METRICS_TOKEN", (it) => {
  it.effect("GET /metrics needs the token once one is set; /health never needs credentials", () =>
    Effect.gen(function*() {
      const none = yield* send(HttpClientRequest.get("/metrics"))
      expect(none.status).toBe(401)
      expect(none.headers["www-authenticate"]).toBe("Bearer")
      expect((yield* as("wrong")(send(HttpClientRequest.get("/metrics")))).status).toBe(401)
      expect((yield* as("scrape-secret")(send(HttpClientRequest.get("/metrics")))).status).toBe(200)
      expect((yield* send(HttpClientRequest.get("/health"))).status).toBe(200)
    }))
})

describe("AUTH=jwt over HTTP", () => {
  const secret = "a-shared-secret-of-at-least-32-bytes!!"
  const jwtLayer = testServer(testDatabases[0]!, {
    access: { ...defaultConfig.access, auth: "jwt", jwt: { jwksUrl: undefined, secret: Redacted.make(secret), issuer: "https://issuer.test/", audience: "turn-runner" } }
  })
  const token = (sub: string, expiresIn: string | number = "5m") =>
    Effect.promise(() =>
      new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub).setIssuer("https://issuer.test/").setAudience("turn-runner")
        .setExpirationTime(expiresIn).sign(new TextEncoder().encode(secret)))

  layer(jwtLayer, { timeout: 60_000, excludeTestServices: true })("the token's subject is the owner", (it) => {
    it.effect("a valid token reaches its own chats only; an expired one is 401", () =>
      Effect.gen(function*() {
        const dana = yield* token("dana")
        const erin = yield* token("erin")
        const chatId = yield* as(dana)(newChat)
        expect((yield* as(dana)(send(HttpClientRequest.get(`/chats/${chatId}`)))).status).toBe(200)
        expect((yield* as(erin)(send(HttpClientRequest.get(`/chats/${chatId}`)))).status).toBe(404)
        const expired = yield* token("dana", Math.floor(Date.now() / 1000) - 120)
        expect((yield* as(expired)(send(HttpClientRequest.get(`/chats/${chatId}`)))).status).toBe(401)
      }))
  })
})
