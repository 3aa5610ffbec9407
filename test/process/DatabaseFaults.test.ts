import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { privatePostgres, privatePostgresAvailable } from "../support/PrivatePostgres.ts"
import { startServer } from "../support/ServerProcess.ts"
import { parseSse } from "../support/SseClient.ts"
import { tcpProxy } from "../support/TcpProxy.ts"
import { freshDatabaseUrl } from "../support/TestDatabase.ts"

const adminUrl = process.env.TEST_DATABASE_URL

const request = (baseUrl: string, method: string, path: string, body?: unknown) =>
  Effect.tryPromise(() =>
    fetch(baseUrl + path, {
      method,
      headers: { "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    }).then(async (response) => ({ status: response.status, body: await response.json() as any })))

/** Polls (bounded) until `check` holds; what it last saw. */
const eventually = <A>(effect: Effect.Effect<A, unknown>, check: (a: A) => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 300; i++) {
      const value = yield* effect
      if (check(value)) return value
      yield* Effect.sleep("50 millis")
    }
    return yield* effect
  })

/**
 * The database goes away while a turn streams, then comes back: new turns get 503
 * `database_unavailable` and write nothing, `/health` reports the outage and the recovery, and
 * the cut-off run ends terminal with nothing left open. `cut`/`restore` say how it goes away.
 */
const outageMidStream = (databaseUrl: string, outage: { readonly cut: Effect.Effect<void>; readonly restore: Effect.Effect<void> }) =>
  Effect.gen(function*() {
    const server = yield* startServer({ DATABASE_URL: databaseUrl, LEASE_TTL_MS: "1500" })
    const base = server.baseUrl
    const chat = (yield* request(base, "POST", "/chats", {})).body
    const other = (yield* request(base, "POST", "/chats", {})).body
    const started = yield* request(base, "POST", `/chats/${chat.id}/messages`, {
      userMessageId: crypto.randomUUID(),
      content: "Keep going",
      settings: { max_tokens: 150, local: { tokenDelayMs: 20 } }
    })
    const runId = started.body.run.id as string
    // Mid-stream: a few deltas have gone out.
    const response = yield* Effect.tryPromise(() => fetch(`${base}/runs/${runId}/events`))
    yield* parseSse(Stream.fromAsyncIterable(response.body!, (error) => new Error(String(error)))).pipe(
      Stream.filter((message) => message._tag === "Event" && message.event === "llm.stream.delta"),
      Stream.take(3),
      Stream.runDrain
    )

    yield* outage.cut
    const refused = yield* request(base, "POST", `/chats/${other.id}/messages`, { userMessageId: crypto.randomUUID(), content: "Anyone?" })
    expect(refused).toMatchObject({ status: 503, body: { code: "database_unavailable" } })
    expect(JSON.stringify(refused.body)).not.toMatch(/postgres:|ECONN|SELECT|INSERT/)
    expect((yield* request(base, "GET", "/health")).status).toBe(503)

    yield* outage.restore
    const health = yield* eventually(request(base, "GET", "/health"), (answer) => answer.status === 200)
    expect(health).toMatchObject({ status: 200, body: { status: "ok" } })
    const final = yield* eventually(request(base, "GET", `/runs/${runId}`), (answer) => answer.body.run?.status !== "running")
    expect(["done", "error"]).toContain(final.body.run.status)
    expect(final.body.steps).toHaveLength(3)
    for (const step of final.body.steps) expect(step.status).not.toBe("running")
    expect(final.body.generation?.status).not.toBe("streaming")
    // The refused turn wrote nothing: the other chat is still empty.
    expect((yield* request(base, "GET", `/chats/${other.id}/messages`)).body.messages).toEqual([])
  })

describe.runIf(adminUrl !== undefined)("database faults, on real Postgres behind a proxy (TEST_DATABASE_URL)", () => {
  it.live("the connection is cut mid-stream: new turns 503, health 503; once it is back, health 200 and the run ends terminal", () =>
    Effect.gen(function*() {
      const url = new URL(yield* freshDatabaseUrl(adminUrl!))
      const proxy = yield* tcpProxy({ host: url.hostname, port: Number(url.port) })
      url.port = String(proxy.port)
      yield* outageMidStream(url.href, { cut: proxy.cut, restore: proxy.restore })
    }).pipe(Effect.scoped), 90_000)
})

describe.runIf(privatePostgresAvailable)("database faults, with Postgres stopped and started again", () => {
  it.live("Postgres stops mid-stream: new turns 503, health 503; started again: health 200 and the run ends terminal", () =>
    Effect.gen(function*() {
      const postgres = yield* privatePostgres
      yield* outageMidStream(postgres.url, { cut: postgres.stop, restore: postgres.start })
    }).pipe(Effect.scoped), 90_000)
})
