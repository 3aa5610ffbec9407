import { Clock, Effect, Option } from "effect"
import { Overloaded } from "../../domain/ApiErrors.ts"
import { AppConfig } from "../AppConfig.ts"

/**
 * The limits one instance enforces in memory (spec 85, "Limits"): turn requests per owner per
 * minute (a token bucket: `TURN_RATE_PER_OWNER` a minute, as a burst or spread out) and open event
 * streams. Live runs are counted where they are known: the owner's in the turn's own statement
 * (every instance's runs), the instance's by its live runs.
 */
export class Limits extends Effect.Service<Limits>()("turn-runner/Limits", {
  effect: Effect.gen(function*() {
    const { limits } = yield* AppConfig
    const perMillisecond = limits.turnsPerMinutePerOwner / 60_000
    const buckets = new Map<string, { tokens: number; at: number }>()
    let streams = 0

    // A full bucket is what an absent one means: forgetting those keeps the map to the active owners.
    let pruneAt = 10_000
    const prune = (now: number) => {
      for (const [owner, bucket] of buckets) {
        if (bucket.tokens + (now - bucket.at) * perMillisecond >= limits.turnsPerMinutePerOwner) buckets.delete(owner)
      }
      pruneAt = Math.max(10_000, buckets.size * 2)
    }

    /** Takes one turn from the owner's bucket; when it is empty, the seconds until one is back. */
    const takeTurn = (owner: string) =>
      Effect.map(Clock.currentTimeMillis, (now): Option.Option<number> => {
        const bucket = buckets.get(owner) ?? { tokens: limits.turnsPerMinutePerOwner, at: now }
        bucket.tokens = Math.min(limits.turnsPerMinutePerOwner, bucket.tokens + (now - bucket.at) * perMillisecond)
        bucket.at = now
        if (bucket.tokens < 1) {
          buckets.set(owner, bucket)
          return Option.some(Math.max(1, Math.ceil((1 - bucket.tokens) / perMillisecond / 1000)))
        }
        bucket.tokens -= 1
        buckets.set(owner, bucket)
        if (buckets.size > pruneAt) prune(now)
        return Option.none()
      })

    /**
     * The instance's open event streams: a new one is refused while `MAX_SSE_CLIENTS` are open
     * (checked before a streamed turn starts, counted while the stream is sent).
     */
    const eventStreams = {
      /** Fails with 503 `overloaded` while the instance has no room for another stream. */
      room: Effect.suspend(() =>
        streams < limits.sseClients ? Effect.void : Effect.fail(
          new Overloaded({
            message: `this instance has ${limits.sseClients} event streams open, as many as it may; try again shortly`,
            details: { retryAfterSeconds: 5 }
          })
        )
      ),
      opened: () => void streams++,
      closed: () => void streams--
    }

    return { takeTurn, eventStreams } as const
  })
}) {}
