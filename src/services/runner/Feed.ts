import { Effect, Exit, Mailbox } from "effect"
import type { Scope, Stream } from "effect"

/** A stream fed from plain synchronous code (an event log's subscriber, say). */
export interface Feed<A> {
  /** Queues a value; refused (false) once the feed has ended. */
  readonly offer: (value: A) => boolean
  readonly end: () => void
  /** Drains whatever piled up at once: one chunk per wake-up, not one per value. */
  readonly stream: Stream.Stream<A>
}

/**
 * A feed, optionally with a heartbeat: `value` offered whenever nothing else was for `everyMs`
 * (the idle timer restarts after every value), never after the end. One fiber for the heartbeat,
 * none per value; the feed lives as long as the scope.
 */
export const make = <A>(options: { readonly heartbeat?: { readonly everyMs: number; readonly value: A } | undefined } = {}): Effect.Effect<Feed<A>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const mailbox = yield* Mailbox.make<A>()
    const clock = yield* Effect.clock
    let lastOfferedAt = clock.unsafeCurrentTimeMillis()
    const offer = (value: A) => {
      lastOfferedAt = clock.unsafeCurrentTimeMillis()
      return mailbox.unsafeOffer(value)
    }
    const { heartbeat } = options
    if (heartbeat !== undefined && heartbeat.everyMs > 0) {
      yield* Effect.gen(function*() {
        while (true) {
          const idleMs = clock.unsafeCurrentTimeMillis() - lastOfferedAt
          if (idleMs < heartbeat.everyMs) yield* Effect.sleep(heartbeat.everyMs - idleMs)
          else if (!offer(heartbeat.value)) return
        }
      }).pipe(Effect.forkScoped)
    }
    return { offer, end: () => void mailbox.unsafeDone(Exit.void), stream: Mailbox.toStream(mailbox) }
  })
