import { Clock, Effect } from "effect"
import type { Scope } from "effect"
import type { GenerationId } from "../../domain/Ids.ts"
import type { Envelope, RunEvent, RunEventBody, StepRef } from "../../domain/RunEvent.ts"
import type { PendingWrites } from "../WriteBehind.ts"

export interface JournalEntry {
  readonly event: RunEvent
  /** Encoded once, for the journal and every SSE consumer alike. */
  readonly json: string
}

/** A subscriber of a live run: called synchronously with each batch of new events, in order. */
export type Subscriber = (entries: ReadonlyArray<JournalEntry>) => void

/** What a new subscriber of a live run gets, all taken at one instant so nothing is missed or doubled. */
export interface Subscription {
  /** Events with `seq` in (after, journaledSeq] are in the database. */
  readonly journaledSeq: number
  /** Emitted but not yet known to be journaled, oldest first; what is emitted later goes to the subscriber. */
  readonly pending: ReadonlyArray<JournalEntry>
}

/**
 * The event stream of one live run (spec 60): assigns `seq` and `at`, stamps the envelope, keeps
 * the events not yet journaled (the write-behind writes them), and hands each event to every
 * subscriber. Emission is synchronous, so a subscriber that takes its `Subscription` sees each event exactly once,
 * either in `pending`, in the journal, or through its callback.
 */
export class EventLog {
  private seq = 0
  private journaled = 0
  private pending: Array<JournalEntry> = []
  private readonly subscribers = new Set<Subscriber>()
  private envelope: Envelope

  constructor(envelope: Envelope) {
    this.envelope = envelope
  }

  /** From the generation's creation on, every event names it. */
  setGeneration(generationId: GenerationId) {
    this.envelope = { ...this.envelope, generationId }
  }

  emit(body: RunEventBody, step?: StepRef): Effect.Effect<void> {
    return this.emitAll([body], step)
  }

  /** Several events at one instant, handed to each subscriber together. */
  emitAll(bodies: Iterable<RunEventBody>, step?: StepRef): Effect.Effect<void> {
    return Effect.map(Clock.currentTimeMillis, (millis) => {
      const at = new Date(millis).toISOString()
      const entries: Array<JournalEntry> = []
      for (const body of bodies) entries.push(this.entryOf(body, step, at))
      for (const entry of entries) this.pending.push(entry)
      for (const subscriber of this.subscribers) subscriber(entries)
    })
  }

  private entryOf(body: RunEventBody, step: StepRef | undefined, at: string): JournalEntry {
    const { type, ...fields } = body
    const event = { type, seq: ++this.seq, at, ...this.envelope, ...step, ...fields } as RunEvent
    return { event, json: JSON.stringify(event) }
  }

  subscribe(subscriber: Subscriber): Effect.Effect<Subscription, never, Scope.Scope> {
    return Effect.acquireRelease(
      Effect.sync(() => {
        this.subscribers.add(subscriber)
        return { journaledSeq: this.journaled, pending: [...this.pending] }
      }),
      () => Effect.sync(() => this.subscribers.delete(subscriber))
    )
  }

  /** The events not yet journaled, for the write-behind: they leave `pending` once written. */
  readonly pendingWrites: PendingWrites = (batch) => {
    // Events emitted while the batch is being written stay pending for the next one.
    const taken = this.pending.length
    if (taken === 0) return undefined
    const { runId } = this.envelope
    for (let i = 0; i < taken; i++) batch.events.push({ runId, entry: this.pending[i]! })
    return () => {
      this.journaled = this.pending[taken - 1]!.event.seq
      this.pending = this.pending.slice(taken)
    }
  }
}
