import { Clock, Effect, Queue } from "effect"
import type { Scope } from "effect"
import type { GenerationId } from "../../domain/Ids.ts"
import type { Envelope, RunEvent, RunEventBody, StepRef } from "../../domain/RunEvent.ts"

export interface JournalEntry {
  readonly event: RunEvent
  /** Encoded once, for the journal and every SSE consumer alike. */
  readonly json: string
}

/** What a new subscriber of a live run gets, all taken at one instant so nothing is missed or doubled. */
export interface Subscription {
  /** Events with `seq` in (after, journaledSeq] are in the database. */
  readonly journaledSeq: number
  /** Emitted but not yet known to be journaled, oldest first. */
  readonly pending: ReadonlyArray<JournalEntry>
  /** Every event emitted from now on. */
  readonly live: Queue.Dequeue<JournalEntry>
}

/**
 * The event stream of one live run (spec 60): assigns `seq` and `at`, stamps the envelope, keeps
 * the events not yet journaled, and hands each event to every subscriber. Emission is
 * synchronous, so a subscriber that takes its `Subscription` sees each event exactly once,
 * either in `pending`, in the journal, or in `live`.
 */
export class EventLog {
  private seq = 0
  private journaled = 0
  private pending: Array<JournalEntry> = []
  private readonly subscribers = new Set<Queue.Queue<JournalEntry>>()
  private envelope: Envelope
  // The periodic flush and the final one must not write the same batch twice.
  private readonly writing = Effect.unsafeMakeSemaphore(1)

  constructor(envelope: Envelope) {
    this.envelope = envelope
  }

  get generationId(): GenerationId | null {
    return this.envelope.generationId
  }

  /** From the generation's creation on, every event names it. */
  setGeneration(generationId: GenerationId) {
    this.envelope = { ...this.envelope, generationId }
  }

  emit(body: RunEventBody, step?: StepRef): Effect.Effect<RunEvent> {
    return Effect.map(Clock.currentTimeMillis, (millis) => {
      const entry = this.entryOf(body, step, new Date(millis).toISOString())
      this.pending.push(entry)
      for (const subscriber of this.subscribers) Queue.unsafeOffer(subscriber, entry)
      return entry.event
    })
  }

  /** Several events at one instant, handed to each subscriber together. */
  emitAll(bodies: Iterable<RunEventBody>, step?: StepRef): Effect.Effect<void> {
    return Effect.map(Clock.currentTimeMillis, (millis) => {
      const at = new Date(millis).toISOString()
      const entries: Array<JournalEntry> = []
      for (const body of bodies) entries.push(this.entryOf(body, step, at))
      for (const entry of entries) this.pending.push(entry)
      for (const subscriber of this.subscribers) for (const entry of entries) Queue.unsafeOffer(subscriber, entry)
    })
  }

  private entryOf(body: RunEventBody, step: StepRef | undefined, at: string): JournalEntry {
    const { type, ...fields } = body
    const event = { type, seq: ++this.seq, at, ...this.envelope, ...step, ...fields } as RunEvent
    return { event, json: JSON.stringify(event) }
  }

  subscribe(): Effect.Effect<Subscription, never, Scope.Scope> {
    return Effect.acquireRelease(
      Effect.flatMap(Queue.unbounded<JournalEntry>(), (live) =>
        Effect.sync(() => {
          this.subscribers.add(live)
          return { journaledSeq: this.journaled, pending: [...this.pending], live }
        })),
      ({ live }) => Effect.sync(() => this.subscribers.delete(live))
    )
  }

  /** Writes the pending events in one batch; they leave `pending` only once the write is done. */
  flush<E, R>(write: (entries: ReadonlyArray<JournalEntry>) => Effect.Effect<void, E, R>): Effect.Effect<void, E, R> {
    return this.writing.withPermits(1)(Effect.suspend(() => {
      // A copy: events emitted while the batch is being written stay pending for the next one.
      const batch = this.pending.slice()
      if (batch.length === 0) return Effect.void
      // Uninterruptible: a write cut off mid-way may still commit, and its rows would be written twice.
      return Effect.uninterruptible(Effect.map(write(batch), () => {
        this.pending = this.pending.slice(batch.length)
        this.journaled = batch[batch.length - 1]!.event.seq
      }))
    }))
  }
}
