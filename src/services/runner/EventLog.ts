import type { Clock } from "effect"
import type { GenerationId, RunId } from "../../domain/Ids.ts"
import type { Envelope, RunEventBody, StepRef } from "../../domain/RunEvent.ts"
import type { EventRecord } from "../../domain/RunEventJson.ts"
import { dataOf, RunEventJson } from "../../domain/RunEventJson.ts"
import type { JournalEntry } from "../journal/Journal.ts"
import type { Batch } from "../BatchRepo.ts"
import type { WriteSource } from "../WriteBehind.ts"

/** A subscriber of a live run: called synchronously with each batch of new events, in order. */
export type Subscriber = (entries: ReadonlyArray<JournalEntry>) => void

/** What a new subscriber of a live run gets, all taken at one instant so nothing is missed or doubled. */
export interface Subscription {
  /** Events with `seq` in (after, journaledSeq] are in the database. */
  readonly journaledSeq: number
  /** Emitted but not yet known to be journaled, oldest first; what is emitted later goes to the subscriber. */
  readonly pending: ReadonlyArray<JournalEntry>
  readonly unsubscribe: () => void
}

/**
 * The event stream of one live run (spec 60): assigns `seq` and `at`, keeps the records not yet
 * journaled (the write-behind writes them), and hands each event's JSON to every subscriber.
 * Emission is plain synchronous code, the per-token hot path: a delta costs a record, and one
 * encoding when someone is listening. A subscriber that takes its `Subscription` sees each event
 * exactly once, either in `pending`, in the journal, or through its callback.
 */
export class EventLog implements WriteSource {
  readonly runId: RunId
  /** Set once the terminal event is emitted: nothing more comes. */
  closed = false
  /**
   * Followed on another instance (spec 50): its events are journaled with every write, not every
   * interval, and `onJournaled` hears each time they are, so they travel on once they are durable.
   */
  followedElsewhere = false
  onJournaled: (() => void) | undefined
  private seq = 0
  private journaled = 0
  private pending: Array<EventRecord> = []
  private readonly subscribers = new Set<Subscriber>()
  private readonly json: RunEventJson
  /** While set, new events reach subscribers only on `release`. */
  private held: Array<EventRecord> | undefined

  constructor(envelope: Envelope, readonly clock: Clock.Clock) {
    this.runId = envelope.runId
    this.json = new RunEventJson(envelope)
  }

  /** From the next event on, every event names the generation. */
  setGeneration(generationId: GenerationId) {
    this.json.setGeneration(generationId, this.seq + 1)
  }

  /** The seq the next event will have. */
  get nextSeq() {
    return this.seq + 1
  }

  emit(body: RunEventBody, step?: StepRef) {
    if (body.type === "llm.stream.delta") return this.delta(body.content)
    this.append(body.type, dataOf(body, step))
  }

  /** An `llm.stream.delta` of the `llm` step named by `deltasOf`. */
  delta(content: string) {
    this.append("llm.stream.delta", content)
  }

  /** The step every later delta belongs to. */
  deltasOf(step: StepRef) {
    this.json.setDeltaStep(step)
  }

  private append(type: EventRecord["type"], data: string) {
    const record: EventRecord = { seq: ++this.seq, type, at: this.clock.unsafeCurrentTimeMillis(), data }
    this.pending.push(record)
    if (this.held !== undefined) return void this.held.push(record)
    if (this.subscribers.size === 0) return
    const entries = [this.entryOf(record)]
    for (const subscriber of this.subscribers) subscriber(entries)
  }

  /**
   * Holds back the events emitted from now on until `release`: a run's closing events reach its
   * followers only once the rows they announce are written, so a client that saw the terminal
   * event reads a terminal run.
   */
  hold() {
    this.held ??= []
  }

  release() {
    const held = this.held
    this.held = undefined
    if (held === undefined || held.length === 0 || this.subscribers.size === 0) return
    const entries = held.map((record) => this.entryOf(record))
    for (const subscriber of this.subscribers) subscriber(entries)
  }

  private entryOf(record: EventRecord): JournalEntry {
    return { seq: record.seq, type: record.type, json: this.json.encode(record) }
  }

  subscribe(subscriber: Subscriber): Subscription {
    this.subscribers.add(subscriber)
    return { ...this.unjournaled(), unsubscribe: () => this.subscribers.delete(subscriber) }
  }

  /** Every event up to `journaledSeq` is in the database; `pending` are those emitted since (not held back). */
  unjournaled(): { readonly journaledSeq: number; readonly pending: ReadonlyArray<JournalEntry> } {
    return {
      journaledSeq: this.journaled,
      pending: this.pending.filter((record) => this.held === undefined || !this.held.includes(record))
        .map((record) => this.entryOf(record))
    }
  }

  /** Every event up to this seq is in the database. */
  get journaledSeq() {
    return this.journaled
  }

  /** The records not yet journaled, for the write-behind: they leave `pending` once written. */
  take(batch: Batch, rowsOnly: boolean) {
    // Events emitted while the batch is being written stay pending for the next one.
    const taken = this.pending.length
    if (taken === 0 || (rowsOnly && !this.followedElsewhere)) return undefined
    for (let i = 0; i < taken; i++) batch.events.push({ runId: this.runId, record: this.pending[i]! })
    return () => {
      this.journaled = this.pending[taken - 1]!.seq
      this.pending = this.pending.slice(taken)
      this.onJournaled?.()
    }
  }
}
