import { Effect } from "effect"
import type { Scope } from "effect"
import { acquireForScope } from "../ScopedResource.ts"

/** One follower's keep-alive, while its scope lasts. */
export interface Heartbeat {
  /** Something was sent: the idle period starts again. */
  readonly touch: () => void
}

interface Beating {
  lastAt: number
  readonly everyMs: number
  readonly beat: () => void
}

/**
 * The keep-alives of every open follower (spec 60, `SSE_KEEPALIVE_MS`) from one fiber: `beat` is
 * called whenever nothing was sent to its follower for `everyMs` (the period restarts after every
 * `touch` and every beat). The fiber wakes when the nearest period could be over, not per
 * follower nor per event; a follower costs an entry in a set.
 */
export class Heartbeats extends Effect.Service<Heartbeats>()("turn-runner/Heartbeats", {
  scoped: Effect.gen(function*() {
    const clock = yield* Effect.clock
    const beating = new Set<Beating>()
    /** Opened when a follower may be due before the fiber would wake (or the first one came). */
    const sooner = yield* Effect.makeLatch(false)
    let wakeAt = Infinity

    yield* Effect.gen(function*() {
      while (true) {
        sooner.unsafeClose()
        const now = clock.unsafeCurrentTimeMillis()
        wakeAt = Infinity
        for (const entry of beating) {
          if (entry.lastAt + entry.everyMs <= now) {
            entry.lastAt = now
            entry.beat()
          }
          wakeAt = Math.min(wakeAt, entry.lastAt + entry.everyMs)
        }
        if (wakeAt === Infinity) yield* sooner.await
        else yield* Effect.raceFirst(Effect.sleep(wakeAt - now), sooner.await)
      }
    }).pipe(Effect.forkScoped)

    /** `beat` whenever nothing was sent for `everyMs` (a keep-alive), until the scope closes. */
    const register = (everyMs: number, beat: () => void): Effect.Effect<Heartbeat, never, Scope.Scope> =>
      Effect.map(
        acquireForScope(() => {
          const entry: Beating = { lastAt: clock.unsafeCurrentTimeMillis(), everyMs, beat }
          beating.add(entry)
          if (entry.lastAt + everyMs < wakeAt) sooner.unsafeOpen()
          return entry
        }, (entry) => Effect.sync(() => beating.delete(entry))),
        (entry): Heartbeat => ({ touch: () => void (entry.lastAt = clock.unsafeCurrentTimeMillis()) })
      )

    return { register } as const
  })
}) {}
