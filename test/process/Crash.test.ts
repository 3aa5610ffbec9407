import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted, Stream } from "effect"
import { checkInvariants } from "../support/Invariants.ts"
import { parseSse } from "../support/SseClient.ts"
import { startServer } from "../support/ServerProcess.ts"
import { freshDatabaseUrl } from "../support/TestDatabase.ts"

const adminUrl = process.env.TEST_DATABASE_URL
const leaseTtlMs = 1500

const post = (baseUrl: string, path: string, body: unknown) =>
  Effect.tryPromise(() =>
    fetch(baseUrl + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
      .then((response) => response.json() as Promise<any>))

/** Starts a slow streaming turn and returns once `deltas` chunks have arrived: the run is mid-stream. */
const streamingTurn = (baseUrl: string, deltas: number) =>
  Effect.gen(function*() {
    const chat = yield* post(baseUrl, "/chats", {})
    const response = yield* Effect.tryPromise(() =>
      fetch(`${baseUrl}/chats/${chat.id}/messages`, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "text/event-stream" },
        body: JSON.stringify({ userMessageId: crypto.randomUUID(), content: "Keep talking", settings: { max_tokens: 5000, local: { tokenDelayMs: 20 } } })
      }))
    const body = Stream.fromAsyncIterable(response.body!, (error) => new Error(String(error)))
    const events = yield* parseSse(body).pipe(
      Stream.filter((message) => message._tag === "Event"),
      Stream.map((message) => JSON.parse((message as { readonly data: string }).data) as { readonly type: string; readonly runId: string }),
      Stream.filter((event) => event.type === "llm.stream.delta"),
      Stream.take(deltas),
      Stream.runCollect
    )
    return [...events][0]!.runId
  })

/** Waits until the run is no longer running; the elapsed milliseconds. */
const awaitClosed = (baseUrl: string, runId: string) =>
  Effect.gen(function*() {
    const start = performance.now()
    for (let i = 0; i < 400; i++) {
      const snapshot = yield* Effect.tryPromise(() => fetch(`${baseUrl}/runs/${runId}`).then((r) => r.json() as Promise<any>))
      if (snapshot.run.status !== "running") return { snapshot, elapsed: performance.now() - start }
      yield* Effect.sleep("50 millis")
    }
    return yield* Effect.fail(new Error(`run ${runId} still running after 20 s`))
  })

const expectInterrupted = (snapshot: any) => {
  expect(snapshot.run).toMatchObject({ status: "error", error: { code: "run_interrupted" } })
  expect(snapshot.steps.map((step: any) => [step.stepType, step.status])).toEqual([["pre", "done"], ["llm", "error"], ["post", "skipped"]])
  expect(snapshot.generation).toMatchObject({ status: "error" })
}

/** The spec's invariants over the database the servers used. */
const onDatabase = (url: string) => Effect.provide(checkInvariants, PgClient.layer({ url: Redacted.make(url) }))

describe.runIf(adminUrl !== undefined)("a killed process, on real Postgres (TEST_DATABASE_URL)", () => {
  it.live("SIGKILL mid-stream, restart: the run ends run_interrupted within a lease and a sweep, nothing left open", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabaseUrl(adminUrl!)
      const env = { DATABASE_URL: url, LEASE_TTL_MS: String(leaseTtlMs) }
      const first = yield* startServer(env)
      const runId = yield* streamingTurn(first.baseUrl, 5)
      const killedAt = performance.now()
      first.child.kill("SIGKILL")
      expect(yield* Effect.promise(() => first.exited)).toBe("SIGKILL")
      const second = yield* startServer(env)
      const { elapsed, snapshot } = yield* awaitClosed(second.baseUrl, runId)
      expectInterrupted(snapshot)
      // From the restarted server's first answer: the start-up sweep, or at most one more period.
      expect(elapsed).toBeLessThanOrEqual(leaseTtlMs + leaseTtlMs / 3 + 500)
      yield* Effect.logInfo(`killed → swept in ${Math.round(performance.now() - killedAt)} ms (including the restart)`)
      yield* onDatabase(url)
    }).pipe(Effect.scoped), 90_000)

  it.live("two instances on one database: the survivor sweeps the dead one's run", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabaseUrl(adminUrl!)
      const env = { DATABASE_URL: url, LEASE_TTL_MS: String(leaseTtlMs) }
      const [doomed, survivor] = yield* Effect.all([startServer(env), startServer(env)], { concurrency: 2 })
      const runId = yield* streamingTurn(doomed.baseUrl, 5)
      const killedAt = performance.now()
      doomed.child.kill("SIGKILL")
      const { snapshot } = yield* awaitClosed(survivor.baseUrl, runId)
      const killToSwept = performance.now() - killedAt
      expectInterrupted(snapshot)
      expect(killToSwept).toBeLessThanOrEqual(leaseTtlMs + leaseTtlMs / 3 + 1000)
      yield* Effect.logInfo(`killed → swept by the survivor in ${Math.round(killToSwept)} ms`)
      // The survivor follows the swept run's journal to its end, like any client would.
      const events = yield* Effect.tryPromise(() => fetch(`${survivor.baseUrl}/runs/${runId}/events`).then((r) => r.text()))
      expect(events.trimEnd().split("\n\n").at(-1)).toContain("event: pipeline.run.error")
      yield* onDatabase(url)
    }).pipe(Effect.scoped), 90_000)
})
