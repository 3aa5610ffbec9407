import { Effect } from "effect"
import type { RunId } from "../../domain/Ids.ts"
import { isTerminal } from "../../domain/RunEvent.ts"
import type { JournalEntry } from "../journal/Journal.ts"
import type { EventLog } from "../runner/EventLog.ts"
import { LiveRuns } from "../runner/LiveRuns.ts"
import { WriteBehind } from "../WriteBehind.ts"
import { channels, maxPayloadBytes, Notifications } from "./Notifications.ts"

/**
 * A live run's events for its followers on other instances (spec 50), through the instances'
 * notifications: a follower announces itself on `follow`; the run's owner then publishes the
 * run's events on `events` until the end, each once it is journaled (the run's journal is then
 * written with every write, not every interval), so a follower elsewhere never sees an event the
 * journal could lose: if the owner dies, the sweeper's closing events follow on from what it saw.
 * A run nobody follows elsewhere costs nothing per token.
 *
 * A message is `<runId> <journaledSeq>` (every event up to it is in the journal), then one line
 * per event: `seq`, `type` and the event's JSON, tab-separated (JSON has no raw tabs or newlines).
 * The journal stays the source of truth: a follower that sees a gap reads it (`RunEvents`).
 */
export interface RelayMessage {
  readonly journaledSeq: number
  readonly entries: ReadonlyArray<JournalEntry>
}

interface Publication {
  readonly log: EventLog
  /** Emitted, waiting to be journaled before they travel. */
  queued: Array<JournalEntry>
  scheduled: boolean
  unsubscribe: () => void
}

const encoder = new TextEncoder()

export class Relay extends Effect.Service<Relay>()("turn-runner/Relay", {
  effect: Effect.gen(function*() {
    const notifications = yield* Notifications
    const live = yield* LiveRuns
    const writeBehind = yield* WriteBehind

    // The owner's side: the runs followed elsewhere, each published until its terminal event.
    const publishing = new Map<RunId, Publication>()

    /** Sends the journaled events that piled up, in messages under Postgres' payload limit. */
    const flush = (runId: RunId, publication: Publication) => {
      publication.scheduled = false
      const journaledSeq = publication.log.journaledSeq
      const ready = publication.queued.filter((entry) => entry.seq <= journaledSeq)
      if (ready.length === 0) return
      publication.queued = publication.queued.filter((entry) => entry.seq > journaledSeq)
      const header = `${runId} ${journaledSeq}`
      let message = header
      let bytes = encoder.encode(header).length
      for (const entry of ready) {
        const line = `\n${entry.seq}\t${entry.type}\t${entry.json}`
        const size = encoder.encode(line).length
        if (bytes + size > maxPayloadBytes && message !== header) {
          notifications.send(channels.events, message)
          message = header
          bytes = encoder.encode(header).length
        }
        // An event too large to travel alone is left to the journal: the follower finds the gap.
        if (bytes + size > maxPayloadBytes) continue
        message += line
        bytes += size
      }
      if (message !== header) notifications.send(channels.events, message)
      if (ready.some((entry) => isTerminal(entry.type))) {
        publication.unsubscribe()
        publication.log.onJournaled = undefined
        publishing.delete(runId)
      }
    }

    /** Once per turn of the event loop at most. */
    const schedule = (runId: RunId, publication: Publication) => {
      if (publication.scheduled) return
      publication.scheduled = true
      setImmediate(() => flush(runId, publication))
    }

    const enqueue = (runId: RunId, publication: Publication, entries: ReadonlyArray<JournalEntry>) => {
      if (entries.length === 0) return
      for (const entry of entries) publication.queued.push(entry)
      writeBehind.soon()
      schedule(runId, publication)
    }

    notifications.on(channels.follow, (payload) => {
      const runId = payload as RunId
      const log = live.get(runId)?.log
      if (log === undefined) return
      const current = publishing.get(runId)
      if (current !== undefined) {
        // A new follower: what the journal does not hold yet, again (the others skip what they have).
        return enqueue(runId, current, log.unjournaled().pending)
      }
      const publication: Publication = { log, queued: [], scheduled: false, unsubscribe: () => {} }
      const subscription = log.subscribe((entries) => enqueue(runId, publication, entries))
      publication.unsubscribe = subscription.unsubscribe
      publishing.set(runId, publication)
      log.followedElsewhere = true
      log.onJournaled = () => schedule(runId, publication)
      enqueue(runId, publication, subscription.pending)
    })

    // The followers' side: messages about the runs followed here, by run.
    const followers = new Map<RunId, Set<(message: RelayMessage) => void>>()

    notifications.on(channels.events, (payload) => {
      const newline = payload.indexOf("\n")
      const header = newline === -1 ? payload : payload.slice(0, newline)
      const space = header.indexOf(" ")
      const handlers = followers.get(header.slice(0, space) as RunId)
      if (handlers === undefined) return
      const entries: Array<JournalEntry> = []
      if (newline !== -1) {
        for (const line of payload.slice(newline + 1).split("\n")) {
          const first = line.indexOf("\t")
          const second = line.indexOf("\t", first + 1)
          entries.push({ seq: Number(line.slice(0, first)), type: line.slice(first + 1, second) as JournalEntry["type"], json: line.slice(second + 1) })
        }
      }
      const message: RelayMessage = { journaledSeq: Number(header.slice(space + 1)), entries }
      for (const handler of handlers) handler(message)
    })

    /**
     * Receives the messages about `runId` for the scope's life, and asks the run's owner, wherever
     * it is, to publish them (`announce` again when nothing came: the request may have been lost).
     */
    const follow = (runId: RunId, handler: (message: RelayMessage) => void) =>
      Effect.acquireRelease(
        Effect.promise(() => {
          const handlers = followers.get(runId) ?? new Set()
          handlers.add(handler)
          followers.set(runId, handlers)
          // Returns once the request has left: what the follower does next comes after it.
          return notifications.send(channels.follow, runId)
        }),
        () =>
          Effect.sync(() => {
            const handlers = followers.get(runId)
            handlers?.delete(handler)
            if (handlers?.size === 0) followers.delete(runId)
          })
      ).pipe(Effect.as({ announce: () => void notifications.send(channels.follow, runId) }))

    return {
      follow,
      /** Whether other instances may exist at all (not on the embedded database). */
      enabled: notifications.status() !== "off",
      /** Whether messages arrive right now (when not, followers poll the journal). */
      listening: () => notifications.status() === "listening"
    } as const
  })
}) {}
