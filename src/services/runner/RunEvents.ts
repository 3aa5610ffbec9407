import { Chunk, Duration, Effect, Exit, Mailbox, Option, Stream } from "effect"
import type { RunId } from "../../domain/Ids.ts"
import { isTerminal } from "../../domain/RunEvent.ts"
import { AppConfig } from "../AppConfig.ts"
import { RunsRepo } from "../RunsRepo.ts"
import type { EventLog, JournalEntry } from "./EventLog.ts"
import { Runner } from "./Runner.ts"

/**
 * Following a run's events (spec 60, "Journal and resume"): every consumer (the client that
 * started the turn, a duplicate that attached, `GET /runs/{runId}/events`) gets the same
 * events with the same `seq`, from any point, without a gap or a duplicate, ending after the
 * terminal event.
 */
export class RunEvents extends Effect.Service<RunEvents>()("turn-runner/RunEvents", {
  effect: Effect.gen(function*() {
    const config = yield* AppConfig
    const runs = yield* RunsRepo
    const runner = yield* Runner
    const pollInterval = Duration.millis(config.flushIntervalMs)

    const entriesOf = (events: ReadonlyArray<JournalEntry["event"]>): Array<JournalEntry> =>
      events.map((event) => ({ event, json: JSON.stringify(event) }))

    /**
     * A live run: the journal up to the subscription, then what is pending, then what comes. The
     * log hands new events straight to a mailbox that the consumer drains (no fiber, no stage per
     * event); they are held back while the journal is read, so the order stays that of `seq`.
     */
    const fromLog = (runId: RunId, log: EventLog, after: number) =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const mailbox = yield* Mailbox.make<JournalEntry>()
        const deliver = (entries: ReadonlyArray<JournalEntry>) => {
          for (const entry of entries) {
            if (entry.event.seq <= after) continue
            mailbox.unsafeOffer(entry)
            if (isTerminal(entry.event.type)) mailbox.unsafeDone(Exit.void)
          }
        }
        let held: Array<JournalEntry> | undefined = []
        const subscription = yield* log.subscribe((entries) => {
          if (held === undefined) deliver(entries)
          else for (const entry of entries) held.push(entry)
        })
        // Nothing to read when the client is already past what the journal holds (a new turn's client).
        if (subscription.journaledSeq > after) deliver(entriesOf(yield* runs.readEvents(runId, after, subscription.journaledSeq)))
        deliver(subscription.pending)
        deliver(held)
        held = undefined
        return Mailbox.toStream(mailbox)
      }))

    /** A run that is not live here (finished, or running on another instance): its journal, polled. */
    const fromJournal = (runId: RunId, after: number) =>
      Stream.suspend(() => {
        let last = after
        let ended = false
        return Stream.repeatEffectChunkOption(Effect.gen(function*() {
          if (ended) return yield* Effect.fail(Option.none())
          const events = yield* runs.readEvents(runId, last)
          if (events.length > 0) {
            last = events[events.length - 1]!.seq
            ended = events.some((event) => isTerminal(event.type))
            return Chunk.fromIterable(entriesOf(events))
          }
          // Nothing after `last`: either the run already ended at or before it, or more is coming.
          if (Option.isSome(yield* runs.terminalSeq(runId))) return yield* Effect.fail(Option.none())
          yield* Effect.sleep(pollInterval)
          return Chunk.empty<JournalEntry>()
        }))
      })

    /** The run's events with `seq > after`; the caller has checked that the run exists. */
    const follow = (runId: RunId, after: number): Stream.Stream<JournalEntry> =>
      Option.match(runner.logOf(runId), {
        onNone: () => fromJournal(runId, after),
        onSome: (log) => fromLog(runId, log, after)
      })

    return { follow } as const
  })
}) {}
