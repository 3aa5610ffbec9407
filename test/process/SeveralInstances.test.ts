import { PgClient } from "@effect/sql-pg"
import { SqlClient } from "@effect/sql"
import { describe, expect, it, layer } from "@effect/vitest"
import { Context, Effect, Layer, Redacted } from "effect"
import { checkInvariants } from "../support/Invariants.ts"
import { eventually, follow, get, post } from "../support/Instances.ts"
import { privatePostgres, privatePostgresAvailable } from "../support/PrivatePostgres.ts"
import { startServer } from "../support/ServerProcess.ts"
import type { ServerProcess } from "../support/ServerProcess.ts"
import { freshDatabaseUrl } from "../support/TestDatabase.ts"

/**
 * Spec 50: two server processes on one real Postgres behave as one server. Every row of the
 * table: abort (both routes) and `onBusy: "interrupt"` from the instance that does not own the
 * run, events followed live from either instance, a duplicate streaming request attached through
 * the other one, `abortOnDisconnect` held by the other one, and the owner dying under a follower.
 */

const adminUrl = process.env.TEST_DATABASE_URL
const leaseTtlMs = 3000

class Cluster extends Context.Tag("test/Cluster")<Cluster, {
  readonly url: string
  readonly a: ServerProcess
  readonly b: ServerProcess
}>() {}

const clusterLayer = Layer.scoped(
  Cluster,
  Effect.gen(function*() {
    const url = yield* freshDatabaseUrl(adminUrl!)
    const env = { DATABASE_URL: url, LEASE_TTL_MS: String(leaseTtlMs) }
    // One first, so the migrations are not raced (they would be settled, but slower).
    const a = yield* startServer(env)
    const b = yield* startServer(env)
    return { url, a, b }
  }).pipe(Effect.orDie)
)

const long = { max_tokens: 5000, local: { tokenDelayMs: 20 } }
const newChat = (baseUrl: string) => Effect.map(post(baseUrl, "/chats", {}), ({ body }) => body.id as string)
const turn = (content = "Keep talking", settings: object = long, extra: object = {}) => ({
  userMessageId: crypto.randomUUID(),
  content,
  settings,
  ...extra
})

/** A long turn started on `baseUrl` in JSON mode, returned once it streams (its first delta journaled or seen live). */
const liveTurnOn = (baseUrl: string) =>
  Effect.gen(function*() {
    const chatId = yield* newChat(baseUrl)
    const started = yield* post(baseUrl, `/chats/${chatId}/messages`, turn())
    expect(started.status).toBe(202)
    const runId = started.body.run.id as string
    const events = yield* follow(baseUrl, `/runs/${runId}/events`)
    yield* events.first("llm.stream.delta")
    return { chatId, runId, events }
  })

const onDatabase = <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>) =>
  Effect.flatMap(Cluster, ({ url }) => Effect.provide(effect, PgClient.layer({ url: Redacted.make(url) })))

const abortColumns = (runId: string) =>
  onDatabase(Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ readonly at: Date | null; readonly reason: string | null }>`
      SELECT abort_requested_at AS at, abort_requested_reason AS reason FROM pipeline_runs WHERE id = ${runId}`)).pipe(
    Effect.map((rows) => rows[0]!)
  )

const expectAborted = (snapshot: any, reason: string) => {
  expect(snapshot.run).toMatchObject({ status: "aborted", abortReason: reason })
  expect(snapshot.steps.map((step: any) => [step.stepType, step.status])).toEqual([["pre", "done"], ["llm", "aborted"], ["post", "skipped"]])
  expect(snapshot.generation).toMatchObject({ status: "aborted" })
}

describe.runIf(adminUrl !== undefined)("several instances on one Postgres (spec 50)", () => {
  layer(clusterLayer, { timeout: 120_000, excludeTestServices: true })("two instances", (it) => {
    it.scoped("both answer /health with their listening connection", () =>
      Effect.gen(function*() {
        const { a, b } = yield* Cluster
        for (const instance of [a, b]) {
          expect(yield* get(instance.baseUrl, "/health")).toEqual({ status: 200, body: { status: "ok", notifications: "listening" } })
        }
      }))

    it.scoped("POST /runs/{id}/abort on the other instance aborts the run on its owner and answers its final snapshot", () =>
      Effect.gen(function*() {
        const { a, b } = yield* Cluster
        const { events, runId } = yield* liveTurnOn(a.baseUrl)
        const answer = yield* post(b.baseUrl, `/runs/${runId}/abort`)
        expect(answer.status).toBe(200)
        expectAborted(answer.body, "user")
        expect(answer.body.run.finishedAt).not.toBeNull()
        // The owner's own followers saw the run end the same way.
        expect((yield* events.all).at(-1)?.json).toMatchObject({ type: "pipeline.run.aborted", abortReason: "user" })
        const columns = yield* abortColumns(runId)
        expect(columns.reason).toBe("user")
        expect(columns.at).toBeInstanceOf(Date)
      }))

    it.scoped("POST /generations/{id}/abort on the other instance does the same", () =>
      Effect.gen(function*() {
        const { a, b } = yield* Cluster
        const { runId } = yield* liveTurnOn(a.baseUrl)
        const snapshot = yield* get(b.baseUrl, `/runs/${runId}`)
        const answer = yield* post(b.baseUrl, `/generations/${snapshot.body.run.generationId}/abort`)
        expect(answer.status).toBe(200)
        expectAborted(answer.body, "user")
      }))

    it.scoped("a stop by the client's own id on the other instance aborts the run on its owner and answers its final snapshot (spec 75)", () =>
      Effect.gen(function*() {
        const { a, b } = yield* Cluster
        const chatId = yield* newChat(a.baseUrl)
        const request = turn()
        const started = yield* post(a.baseUrl, `/chats/${chatId}/messages`, request)
        const events = yield* follow(a.baseUrl, `/runs/${started.body.run.id}/events`)
        yield* events.first("llm.stream.delta")
        const answer = yield* post(b.baseUrl, `/chats/${chatId}/turns/abort`, { userMessageId: request.userMessageId })
        expect(answer.status).toBe(200)
        expect(answer.body.run.run.id).toBe(started.body.run.id)
        expectAborted(answer.body.run, "user")
        expect(answer.body.run.run.finishedAt).not.toBeNull()
      }))

    it.scoped("a stop recorded on one instance stops the turn that arrives on the other (spec 75)", () =>
      Effect.gen(function*() {
        const { a, b } = yield* Cluster
        const chatId = yield* newChat(a.baseUrl)
        const request = turn()
        expect(yield* post(a.baseUrl, `/chats/${chatId}/turns/abort`, { userMessageId: request.userMessageId })).toEqual({ status: 200, body: { run: null } })
        const started = yield* post(b.baseUrl, `/chats/${chatId}/messages`, request)
        expect(started.status).toBe(202)
        expect(started.body.run).toMatchObject({ status: "aborted", abortReason: "user", generationId: null })
        expect(started.body.steps.map((step: { readonly status: string }) => step.status)).toEqual(["skipped", "skipped", "skipped"])
      }))

    it.scoped("an abort on the owner records the request on the row too", () =>
      Effect.gen(function*() {
        const { a } = yield* Cluster
        const { runId } = yield* liveTurnOn(a.baseUrl)
        expectAborted((yield* post(a.baseUrl, `/runs/${runId}/abort`)).body, "user")
        expect((yield* abortColumns(runId)).reason).toBe("user")
      }))

    it.scoped("onBusy: interrupt on the other instance ends the running turn superseded, then starts the new one", () =>
      Effect.gen(function*() {
        const { a, b } = yield* Cluster
        const { chatId, runId } = yield* liveTurnOn(a.baseUrl)
        const refused = yield* post(b.baseUrl, `/chats/${chatId}/messages`, turn("Again"))
        expect(refused).toMatchObject({ status: 409, body: { code: "chat_busy", details: { runId } } })
        const started = yield* post(b.baseUrl, `/chats/${chatId}/messages`, turn("Instead", { max_tokens: 3, local: { tokenDelayMs: 0 } }, { onBusy: "interrupt" }))
        expect(started.status).toBe(202)
        expect(started.body.run.id).not.toBe(runId)
        expectAborted((yield* get(a.baseUrl, `/runs/${runId}`)).body, "superseded")
        const next = yield* follow(b.baseUrl, `/runs/${started.body.run.id}/events`)
        expect((yield* next.all).at(-1)?.json.type).toBe("pipeline.run.done")
      }))

    it.scoped("GET /runs/{id}/events on the other instance replays, then follows live: the owner's events, same seq and data, no gap, no duplicate", () =>
      Effect.gen(function*() {
        const { a, b } = yield* Cluster
        const chatId = yield* newChat(a.baseUrl)
        const settings = { max_tokens: 60, local: { tokenDelayMs: 15 } }
        const own = yield* follow(a.baseUrl, `/chats/${chatId}/messages`, turn("Hello", settings))
        const runId = (yield* own.first("llm.stream.delta")).json.runId as string
        const elsewhere = yield* follow(b.baseUrl, `/runs/${runId}/events`)
        const [mine, theirs] = [yield* own.all, yield* elsewhere.all]
        expect(theirs.map(({ data, event, id }) => ({ data, event, id }))).toEqual(mine.map(({ data, event, id }) => ({ data, event, id })))
        expect(theirs.map((frame) => Number(frame.id))).toEqual(theirs.map((_, i) => i + 1))
        // Live, not one journal poll per event: most deltas reach the other instance with the owner's.
        const arrival = new Map(mine.map((frame) => [frame.id, frame.receivedAt]))
        const late = theirs.filter((frame) => frame.event === "llm.stream.delta").map((frame) => frame.receivedAt - arrival.get(frame.id)!)
        late.sort((x, y) => x - y)
        yield* Effect.logInfo(`a follower elsewhere: deltas later by p50 ${late[Math.floor(late.length / 2)]!.toFixed(1)} ms, max ${late.at(-1)!.toFixed(1)} ms`)
      }))

    it.scoped("Last-Event-ID on the other instance resumes after that event", () =>
      Effect.gen(function*() {
        const { a, b } = yield* Cluster
        const { events, runId } = yield* liveTurnOn(a.baseUrl)
        const resumed = yield* follow(b.baseUrl, `/runs/${runId}/events?after=3`)
        yield* resumed.first("llm.stream.delta")
        yield* post(a.baseUrl, `/runs/${runId}/abort`)
        const [all, after] = [yield* events.all, yield* resumed.all]
        expect(after.map((frame) => frame.data)).toEqual(all.slice(3).map((frame) => frame.data))
      }))

    it.scoped("a duplicate streaming request on the other instance attaches to the run: the same events as the first client", () =>
      Effect.gen(function*() {
        const { a, b } = yield* Cluster
        const chatId = yield* newChat(a.baseUrl)
        const request = turn("Hello", { max_tokens: 40, local: { tokenDelayMs: 15 } })
        const first = yield* follow(a.baseUrl, `/chats/${chatId}/messages`, request)
        yield* first.first("llm.stream.delta")
        const duplicate = yield* follow(b.baseUrl, `/chats/${chatId}/messages`, request)
        const [one, two] = [yield* first.all, yield* duplicate.all]
        expect(two.map((frame) => frame.data)).toEqual(one.map((frame) => frame.data))
      }))

    it.scoped("abortOnDisconnect held by the other instance aborts the run on its owner (client_disconnect)", () =>
      Effect.gen(function*() {
        const { a, b } = yield* Cluster
        const chatId = yield* newChat(a.baseUrl)
        const request = turn()
        const started = yield* post(a.baseUrl, `/chats/${chatId}/messages`, request)
        const runId = started.body.run.id as string
        const own = yield* follow(a.baseUrl, `/runs/${runId}/events`)
        // The same request, streamed through the other instance, which aborts the run if it goes away.
        const held = yield* follow(b.baseUrl, `/chats/${chatId}/messages`, { ...request, abortOnDisconnect: true })
        yield* held.first("llm.stream.delta")
        yield* held.disconnect
        expect((yield* own.all).at(-1)?.json).toMatchObject({ type: "pipeline.run.aborted", abortReason: "client_disconnect" })
        expectAborted((yield* get(b.baseUrl, `/runs/${runId}`)).body, "client_disconnect")
      }))

    it.scoped("an abort stored without its signal (a lost notification) still arrives, by the owner's lease renewal", () =>
      Effect.gen(function*() {
        const { a } = yield* Cluster
        const { events, runId } = yield* liveTurnOn(a.baseUrl)
        yield* onDatabase(Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql`UPDATE pipeline_runs SET abort_requested_at = now(), abort_requested_reason = 'user' WHERE id = ${runId}`))
        const before = performance.now()
        expect((yield* events.all).at(-1)?.json).toMatchObject({ type: "pipeline.run.aborted", abortReason: "user" })
        expect(performance.now() - before).toBeLessThanOrEqual(leaseTtlMs / 3 + 1500)
      }))

    it.scoped("the listening connection killed: the instance says so, listens again, and aborts still arrive", () =>
      Effect.gen(function*() {
        const { a, b } = yield* Cluster
        const { events, runId } = yield* liveTurnOn(a.baseUrl)
        const killed = yield* onDatabase(Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql<{ readonly killed: boolean }>`SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
            WHERE application_name = 'turn-runner-listener' AND datname = current_database()`))
        expect(killed.length).toBe(2)
        yield* eventually(get(a.baseUrl, "/health"), ({ body }) => body.notifications === "listening")
        const answer = yield* post(b.baseUrl, `/runs/${runId}/abort`)
        expectAborted(answer.body, "user")
        expect((yield* events.all).at(-1)?.json.type).toBe("pipeline.run.aborted")
        expect(a.output() + b.output()).toContain("notifications: the listening connection was lost; reconnecting")
      }))

    it.scoped("the owner dies under a follower on the other instance: the sweeper closes the run and the follower's stream ends", () =>
      Effect.gen(function*() {
        const { b, url } = yield* Cluster
        // An owner of its own, killed without a word.
        const doomed = yield* startServer({ DATABASE_URL: url, LEASE_TTL_MS: String(leaseTtlMs) })
        const { runId } = yield* liveTurnOn(doomed.baseUrl)
        const elsewhere = yield* follow(b.baseUrl, `/runs/${runId}/events`)
        yield* elsewhere.first("llm.stream.delta")
        doomed.child.kill("SIGKILL")
        const all = yield* elsewhere.all
        expect(all.at(-1)?.json).toMatchObject({ type: "pipeline.run.error", error: { code: "run_interrupted" } })
        expect(all.map((frame) => Number(frame.id))).toEqual(all.map((_, i) => i + 1))
        // An abort of a swept run answers its final snapshot.
        expect((yield* post(b.baseUrl, `/runs/${runId}/abort`)).body.run).toMatchObject({ status: "error", error: { code: "run_interrupted" } })
      }))

    it.scoped("nothing is left open", () => onDatabase(checkInvariants))
  })
})

describe.runIf(privatePostgresAvailable)("several instances, Postgres restarted (spec 50, the listener's failure modes)", () => {
  it.live("both instances listen again after a restart; a run started then is followed live and aborted from the other instance", () =>
    Effect.gen(function*() {
      const postgres = yield* privatePostgres
      const env = { DATABASE_URL: postgres.url, LEASE_TTL_MS: String(leaseTtlMs) }
      const a = yield* startServer(env)
      const b = yield* startServer(env)
      yield* postgres.stop
      for (const instance of [a, b]) {
        const down = yield* eventually(get(instance.baseUrl, "/health"), ({ status }) => status === 503)
        expect(down.body).toMatchObject({ code: "database_unavailable" })
      }
      yield* postgres.start
      for (const instance of [a, b]) {
        yield* eventually(get(instance.baseUrl, "/health"), ({ body, status }) => status === 200 && body.notifications === "listening", 30)
      }
      const { events, runId } = yield* liveTurnOn(a.baseUrl)
      const elsewhere = yield* follow(b.baseUrl, `/runs/${runId}/events`)
      yield* elsewhere.first("llm.stream.delta")
      expectAborted((yield* post(b.baseUrl, `/runs/${runId}/abort`)).body, "user")
      const [mine, theirs] = [yield* events.all, yield* elsewhere.all]
      expect(theirs.map((frame) => frame.data)).toEqual(mine.map((frame) => frame.data))
      expect(a.output() + b.output()).toContain("notifications: the listening connection was lost; reconnecting")
    }).pipe(Effect.scoped), 120_000)
})
