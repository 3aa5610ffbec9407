import { SqlClient } from "@effect/sql"
import { Clock, Effect, Option } from "effect"
import { createHmac, timingSafeEqual } from "node:crypto"

/** How long a run's event token lets a browser follow (and resume) that run. */
export const eventTokenTtlSeconds = 3600

/**
 * Short-lived tokens scoped to one run (spec 85): a browser `EventSource` cannot send headers, so
 * `GET /runs/{id}/events?access_token=…` carries one of these instead of the caller's key or JWT.
 * A token names its owner and expiry and is signed (HMAC-SHA256) with a secret every instance on
 * the database shares; it opens that run's events and nothing else.
 */
export class EventTokens extends Effect.Service<EventTokens>()("turn-runner/EventTokens", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* sql<{ readonly value: string }>`SELECT value FROM service_secrets WHERE name = 'event_tokens'`.pipe(Effect.orDie)
    if (row === undefined) return yield* Effect.dieMessage("the event token secret is missing (migration 0007)")
    const secret = Buffer.from(row.value, "base64url")
    const sign = (runId: string, rest: string) => createHmac("sha256", secret).update(`${runId}.${rest}`).digest("base64url")

    /** A token for `owner` to follow `runId`. */
    const issue = (owner: string, runId: string) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const rest = `${Math.floor(now / 1000) + eventTokenTtlSeconds}.${Buffer.from(owner).toString("base64url")}`
        return `${rest}.${sign(runId, rest)}`
      })

    /** The owner a token names, when it is this run's, signed by us and not expired. */
    const ownerOf = (token: string, runId: string) =>
      Effect.map(Clock.currentTimeMillis, (now): Option.Option<string> => {
        const parts = token.split(".")
        if (parts.length !== 3 || token.length > 1024) return Option.none()
        const [expiry, owner, signature] = parts as [string, string, string]
        const expected = Buffer.from(sign(runId, `${expiry}.${owner}`))
        const given = Buffer.from(signature)
        if (given.length !== expected.length || !timingSafeEqual(given, expected)) return Option.none()
        if (!/^\d+$/.test(expiry) || Number(expiry) * 1000 <= now) return Option.none()
        return Option.some(Buffer.from(owner, "base64url").toString("utf8"))
      })

    return { issue, ownerOf } as const
  })
}) {}
