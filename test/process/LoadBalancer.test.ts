import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { follow, get, post } from "../support/Instances.ts"
import { nginxAvailable, startNginx } from "../support/Nginx.ts"
import { startServer } from "../support/ServerProcess.ts"
import { freshDatabaseUrl } from "../support/TestDatabase.ts"

/**
 * Spec 50 behind a real load balancer: Debian's nginx, round-robin over two instances on one
 * Postgres, with the README's configuration. A client that talks only to nginx cannot tell there
 * are two servers.
 */

const adminUrl = process.env.TEST_DATABASE_URL

const long = { max_tokens: 5000, local: { tokenDelayMs: 20 } }
const turn = (settings: object = long) => ({ userMessageId: crypto.randomUUID(), content: "Keep talking", settings })

const behindNginx = Effect.gen(function*() {
  const url = yield* freshDatabaseUrl(adminUrl!)
  const env = { DATABASE_URL: url, LEASE_TTL_MS: "3000" }
  const a = yield* startServer(env)
  const b = yield* startServer(env)
  const ports = [a, b].map((server) => Number(new URL(server.baseUrl).port))
  return (yield* startNginx(ports)).baseUrl
})

describe.runIf(adminUrl !== undefined && nginxAvailable)("two instances behind nginx (round-robin)", () => {
  it.live("a streamed turn arrives as it is made (unbuffered), and a reload resumes through the other instance without a gap or a repeat", () =>
    Effect.gen(function*() {
      const lb = yield* behindNginx
      const chatId = (yield* post(lb, "/chats", {})).body.id as string
      const first = yield* follow(lb, `/chats/${chatId}/messages`, turn({ max_tokens: 120, local: { tokenDelayMs: 15 } }))
      const delta = yield* first.first("llm.stream.delta")
      const runId = delta.json.runId as string
      // Unbuffered: the first delta came while the run is still going.
      expect((yield* get(lb, `/runs/${runId}`)).body.run.status).toBe("running")
      yield* first.disconnect
      const seen = yield* Effect.orElseSucceed(first.all, () => [])
      const lastSeen = seen.length === 0 ? Number(delta.id) : Number(seen.at(-1)!.id)
      // The page reloads: the next request goes to the next instance, resuming after what it had.
      const resumed = yield* follow(lb, `/runs/${runId}/events?after=${lastSeen}`)
      const rest = yield* resumed.all
      expect(rest.map((frame) => Number(frame.id))).toEqual(rest.map((_, i) => lastSeen + 1 + i))
      expect(rest.at(-1)?.json.type).toBe("pipeline.run.done")
      const whole = yield* follow(lb, `/runs/${runId}/events`)
      expect((yield* whole.all).slice(lastSeen).map((frame) => frame.data)).toEqual(rest.map((frame) => frame.data))
    }).pipe(Effect.scoped), 90_000)

  it.live("an abort through the load balancer stops the run wherever it runs (both parities of round-robin)", () =>
    Effect.gen(function*() {
      const lb = yield* behindNginx
      for (const extraRequests of [0, 1]) {
        const chatId = (yield* post(lb, "/chats", {})).body.id as string
        const started = yield* post(lb, `/chats/${chatId}/messages`, turn())
        const runId = started.body.run.id as string
        const events = yield* follow(lb, `/runs/${runId}/events`)
        yield* events.first("llm.stream.delta")
        // Round-robin alternates: one more request sends the abort to the other instance.
        for (let i = 0; i < extraRequests; i++) yield* get(lb, "/health")
        const aborted = yield* post(lb, `/runs/${runId}/abort`)
        expect(aborted.status).toBe(200)
        expect(aborted.body.run).toMatchObject({ status: "aborted", abortReason: "user" })
        expect(aborted.body.generation).toMatchObject({ status: "aborted" })
        expect((yield* events.all).at(-1)?.json.type).toBe("pipeline.run.aborted")
      }
    }).pipe(Effect.scoped), 90_000)
})
