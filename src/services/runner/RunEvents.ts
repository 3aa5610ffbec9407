import { Duration, Effect, Option, Stream } from "effect"
import type { RunId } from "../../domain/Ids.ts"
import { isTerminal } from "../../domain/RunEvent.ts"
import { AppConfig } from "../AppConfig.ts"
import { Journal } from "../journal/Journal.ts"
import type { JournalEntry } from "../journal/Journal.ts"
import * as Feed from "./Feed.ts"
import { LiveRuns } from "./LiveRuns.ts"

/** How a follower wants the events: each entry as an `A`, and what to send while nothing happens. */
export interface FollowOptions<A> {
  readonly encode: (entry: JournalEntry) => A
  /** Offered whenever nothing else was for `everyMs` (an SSE keep-alive); never after the end. */
  readonly heartbeat?: { readonly everyMs: number; readonly value: A } | undefined
}

const asEntries: FollowOptions<JournalEntry> = { encode: (entry) => entry }

/**
 * Following a run's events (spec 60, "Journal and resume"): every consumer (the client that
 * started the turn, a duplicate that attached, `GET /runs/{runId}/events`) gets the same events
 * with the same `seq`, from any point, without a gap or a duplicate, ending after the terminal
 * event. A live run's events go from its log straight into the follower's mailbox, encoded on the
 * way (no fiber and no stream stage per event); the follower drains whatever piled up at once.
 */
export class RunEvents extends Effect.Service<RunEvents>()("turn-runner/RunEvents", {
  effect: Effect.gen(function*() {
    const config = yield* AppConfig
    const journal = yield* Journal
    const live = yield* LiveRuns
    const pollInterval = Duration.millis(config.flushIntervalMs)

    const follow = <A = JournalEntry>(
      runId: RunId,
      after: number,
      options: FollowOptions<A> = asEntries as unknown as FollowOptions<A>
    ): Stream.Stream<A> =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const feed = yield* Feed.make<A>({ heartbeat: options.heartbeat })
        let last = after
        const deliver = (entries: ReadonlyArray<JournalEntry>) => {
          for (const entry of entries) {
            if (entry.seq <= last) continue
            last = entry.seq
            feed.offer(options.encode(entry))
            if (isTerminal(entry.type)) feed.end()
          }
        }

        const log = live.logOf(runId)
        if (Option.isSome(log)) {
          // Held back while the journal is read, so the order stays that of `seq`.
          let held: Array<JournalEntry> | undefined = []
          const subscription = yield* Effect.acquireRelease(
            Effect.sync(() =>
              log.value.subscribe((entries) => {
                if (held === undefined) deliver(entries)
                else for (const entry of entries) held.push(entry)
              })
            ),
            (subscription) => Effect.sync(subscription.unsubscribe)
          )
          // Nothing to read when the client is already past what the journal holds (a new turn's client).
          if (subscription.journaledSeq > after) deliver(yield* journal.read(runId, after, subscription.journaledSeq))
          deliver(subscription.pending)
          deliver(held)
          held = undefined
        } else {
          // Not live here (finished, or running on another instance): its journal, polled.
          yield* Effect.gen(function*() {
            while (true) {
              const entries = yield* journal.read(runId, last)
              if (entries.length > 0) deliver(entries)
              else if (Option.isSome(yield* journal.terminalSeq(runId))) return feed.end()
              else yield* Effect.sleep(pollInterval)
            }
          }).pipe(Effect.forkScoped)
        }
        return feed.stream
      }))

    return { follow } as const
  }),
  dependencies: [Journal.Default]
}) {}
