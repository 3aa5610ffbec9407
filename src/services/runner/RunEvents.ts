import { Duration, Effect, Exit, Mailbox, Option, Stream } from "effect"
import type { Scope } from "effect"
import type { RunId } from "../../domain/Ids.ts"
import { isTerminal } from "../../domain/RunEvent.ts"
import type { RunEvent } from "../../domain/RunEvent.ts"
import { AppConfig } from "../AppConfig.ts"
import { Relay } from "../cluster/Relay.ts"
import { acquireForScope } from "../ScopedResource.ts"
import type { RelayMessage } from "../cluster/Relay.ts"
import { Journal } from "../journal/Journal.ts"
import type { JournalEntry } from "../journal/Journal.ts"
import { Heartbeats } from "./Heartbeats.ts"
import { LiveRuns } from "./LiveRuns.ts"

/**
 * Where a follower's events go, as they come: plain synchronous code, called in `seq` order, each
 * event once (several at a time when they piled up), from the run's own emission when it is live
 * here. Writing them to a socket from there is the token's whole path.
 */
export interface Follower {
  readonly events: (entries: ReadonlyArray<JournalEntry>) => void
  /** After the terminal event: nothing more comes. */
  readonly end: () => void
  /** Called whenever nothing was delivered for `everyMs` (an SSE keep-alive); never after the end. */
  readonly keepAlive?: { readonly everyMs: number; readonly send: () => void } | undefined
}

/** How a follower wants the events as a `Stream`: each entry as an `A`, and what to send while nothing happens. */
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
 * event. `subscribe` hands a live run's events from its log straight to the follower, in the same
 * synchronous pass that emitted them (no fiber and no stream stage per event); `follow` offers
 * them as a `Stream`, drained whatever piled up at once.
 */
export class RunEvents extends Effect.Service<RunEvents>()("turn-runner/RunEvents", {
  effect: Effect.gen(function*() {
    const config = yield* AppConfig
    const journal = yield* Journal
    const live = yield* LiveRuns
    const relay = yield* Relay
    const heartbeats = yield* Heartbeats
    const pollInterval = Duration.millis(config.flushIntervalMs)
    /** How long a follower of a run elsewhere waits for its owner before reading the journal anyway. */
    const backstop = Duration.seconds(1)

    // A follower's reads are short and are let finish when it goes away: interrupting one would
    // cancel its statement by backend id, and the cancel can reach the connection's next statement.
    const read = (runId: RunId, after: number, upTo?: number) => Effect.uninterruptible(journal.read(runId, after, upTo))
    const terminalSeq = (runId: RunId) => Effect.uninterruptible(journal.terminalSeq(runId))

    /** `follower` gets the run's events after `after`, from the journal and then live, until the scope closes. */
    const subscribe = (runId: RunId, after: number, follower: Follower): Effect.Effect<void, never, Scope.Scope> =>
      Effect.gen(function*() {
        let last = after
        let ended = false
        const { keepAlive } = follower
        const heartbeat = keepAlive !== undefined && keepAlive.everyMs > 0
          ? yield* heartbeats.register(keepAlive.everyMs, () => {
            if (!ended) keepAlive.send()
          })
          : undefined
        const deliver = (entries: ReadonlyArray<JournalEntry>) => {
          if (ended) return
          let fresh: Array<JournalEntry> | undefined
          for (const entry of entries) {
            if (entry.seq <= last) continue
            last = entry.seq
            ;(fresh ??= []).push(entry)
            if (isTerminal(entry.type)) {
              ended = true
              break
            }
          }
          if (fresh === undefined) return
          follower.events(fresh)
          heartbeat?.touch()
          if (ended) follower.end()
        }

        const log = live.logOf(runId)
        if (Option.isSome(log)) {
          // Held back while the journal is read, so the order stays that of `seq`.
          let held: Array<JournalEntry> | undefined = []
          const { journaledSeq, pending } = yield* acquireForScope(
            () =>
              log.value.subscribe((entries) => {
                if (held === undefined) deliver(entries)
                else for (const entry of entries) held.push(entry)
              }),
            // The finalizer keeps only the unsubscribe, not the events pending at the start.
            ({ unsubscribe }) => Effect.sync(unsubscribe)
          )
          // Nothing to read when the client is already past what the journal holds (a new turn's client).
          if (journaledSeq > after) deliver(yield* read(runId, after, journaledSeq))
          deliver(pending)
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
            take(yield* read(runId, last))
            while (!ended) {
              const message = yield* inbox.take.pipe(
                Effect.timeout(relay.listening() ? backstop : pollInterval),
                Effect.option
              )
              if (Option.isSome(message)) {
                const first = message.value.entries[0]?.seq ?? message.value.journaledSeq + 1
                if (first > last + 1 && message.value.journaledSeq > last) {
                  take(yield* read(runId, last, Math.min(message.value.journaledSeq, first - 1)))
                }
                take(message.value.entries)
                continue
              }
              // Nothing for a while: the journal (the owner may have died and been swept), and ask again.
              const entries = yield* read(runId, last)
              if (entries.length > 0) take(entries)
              else if (Option.isSome(yield* terminalSeq(runId))) return endWithout()
              announce()
            }
          }).pipe(Effect.forkScoped)
        } else {
          // Not live here, one process (finished, or its process died): its journal, polled.
          yield* Effect.gen(function*() {
            while (!ended) {
              const entries = yield* read(runId, last)
              if (entries.length > 0) deliver(entries)
              else if (Option.isSome(yield* terminalSeq(runId))) return endWithout()
              else yield* Effect.sleep(pollInterval)
            }
          }).pipe(Effect.forkScoped)
        }

        /** The journal ends before `after`'s next event: nothing to deliver, only the end. */
        function endWithout() {
          if (ended) return
          ended = true
          follower.end()
        }
      })

    /** The run's events after `after` as a `Stream` of what `options` encodes (for programs that embed the runner). */
    const follow = <A = JournalEntry>(
      runId: RunId,
      after: number,
      options: FollowOptions<A> = asEntries as unknown as FollowOptions<A>
    ): Stream.Stream<A> =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const mailbox = yield* Mailbox.make<A>()
        const { heartbeat } = options
        yield* subscribe(runId, after, {
          events: (entries) => {
            for (const entry of entries) mailbox.unsafeOffer(options.encode(entry))
          },
          end: () => void mailbox.unsafeDone(Exit.void),
          keepAlive: heartbeat === undefined ? undefined : { everyMs: heartbeat.everyMs, send: () => mailbox.unsafeOffer(heartbeat.value) }
        })
        return Mailbox.toStream(mailbox)
      }))

    return { subscribe, follow } as const
  }),
  dependencies: [Journal.Default, Heartbeats.Default]
}) {}
