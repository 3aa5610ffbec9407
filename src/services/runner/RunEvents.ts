import { Duration, Effect, Mailbox, Option, Stream } from "effect"
import type { RunId } from "../../domain/Ids.ts"
import { isTerminal } from "../../domain/RunEvent.ts"
import type { RunEvent } from "../../domain/RunEvent.ts"
import { AppConfig } from "../AppConfig.ts"
import { Relay } from "../cluster/Relay.ts"
import type { RelayMessage } from "../cluster/Relay.ts"
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

/** Each event as a value, for programs that embed the runner (its JSON is the journal's, byte for byte). */
export const asRunEvents: FollowOptions<RunEvent> = { encode: (entry) => JSON.parse(entry.json) }

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
    const relay = yield* Relay
    const pollInterval = Duration.millis(config.flushIntervalMs)
    /** How long a follower of a run elsewhere waits for its owner before reading the journal anyway. */
    const backstop = Duration.seconds(1)

    const follow = <A = JournalEntry>(
      runId: RunId,
      after: number,
      options: FollowOptions<A> = asEntries as unknown as FollowOptions<A>
    ): Stream.Stream<A> =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const feed = yield* Feed.make<A>({ heartbeat: options.heartbeat })
        let last = after
        let ended = false
        const deliver = (entries: ReadonlyArray<JournalEntry>) => {
          for (const entry of entries) {
            if (entry.seq <= last || ended) continue
            last = entry.seq
            feed.offer(options.encode(entry))
            if (isTerminal(entry.type)) {
              ended = true
              feed.end()
            }
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
        } else if (relay.enabled) {
          // Live elsewhere, or finished: the journal, then what the owner publishes (spec 50),
          // delivered strictly in `seq` order; a gap is read from the journal.
          const waiting = new Map<number, JournalEntry>()
          const take = (entries: ReadonlyArray<JournalEntry>) => {
            for (const entry of entries) if (entry.seq > last) waiting.set(entry.seq, entry)
            const next: Array<JournalEntry> = []
            for (let entry = waiting.get(last + 1 + next.length); entry !== undefined; entry = waiting.get(last + 1 + next.length)) next.push(entry)
            for (const entry of next) waiting.delete(entry.seq)
            deliver(next)
          }
          const inbox = yield* Mailbox.make<RelayMessage>()
          const { announce } = yield* relay.follow(runId, (message) => inbox.unsafeOffer(message))
          yield* Effect.gen(function*() {
            take(yield* journal.read(runId, last))
            while (!ended) {
              const message = yield* inbox.take.pipe(
                Effect.timeout(relay.listening() ? backstop : pollInterval),
                Effect.option
              )
              if (Option.isSome(message)) {
                const first = message.value.entries[0]?.seq ?? message.value.journaledSeq + 1
                if (first > last + 1 && message.value.journaledSeq > last) {
                  take(yield* journal.read(runId, last, Math.min(message.value.journaledSeq, first - 1)))
                }
                take(message.value.entries)
                continue
              }
              // Nothing for a while: the journal (the owner may have died and been swept), and ask again.
              const entries = yield* journal.read(runId, last)
              if (entries.length > 0) take(entries)
              else if (Option.isSome(yield* journal.terminalSeq(runId))) return feed.end()
              announce()
            }
          }).pipe(Effect.forkScoped)
        } else {
          // Not live here, one process (finished, or its process died): its journal, polled.
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
