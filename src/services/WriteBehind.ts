import { Duration, Effect, Schedule } from "effect"
import type { RunId, VariantId } from "../domain/Ids.ts"
import type { EventRecord } from "../domain/RunEventJson.ts"
import { AppConfig } from "./AppConfig.ts"
import { ChatsRepo } from "./ChatsRepo.ts"
import { Journal } from "./journal/Journal.ts"

/** What one write carries: journal entries of any runs, and the latest text of any variants. */
export interface Batch {
  readonly events: Array<{ readonly runId: RunId; readonly record: EventRecord }>
  readonly texts: Map<VariantId, string>
}

/**
 * Something a live run keeps in memory until it is written (its event journal, its answer's
 * text): it puts what it has pending into the batch and returns what to do once the batch is
 * written, or `undefined` when it has nothing to write.
 */
export type PendingWrites = (batch: Batch) => (() => void) | undefined

/**
 * Write-behind for what streaming runs write while they live (spec 30's flush cadence and spec
 * 60's journal): one writer per process gathers what every live run has pending and writes it in
 * two statements every `FLUSH_INTERVAL_MS`, so the writes per interval do not grow with the
 * number of runs or tokens. A run's last write (`writeNow`) waits for a write in progress, so
 * nothing is written twice and nothing lands after it.
 */
export class WriteBehind extends Effect.Service<WriteBehind>()("turn-runner/WriteBehind", {
  scoped: Effect.gen(function*() {
    const config = yield* AppConfig
    const journal = yield* Journal
    const chats = yield* ChatsRepo
    const sources = new Set<PendingWrites>()
    const writing = yield* Effect.makeSemaphore(1)

    const write = (from: Iterable<PendingWrites>) =>
      writing.withPermits(1)(Effect.suspend(() => {
        const batch: Batch = { events: [], texts: new Map() }
        const written: Array<() => void> = []
        for (const source of from) {
          const done = source(batch)
          if (done !== undefined) written.push(done)
        }
        if (written.length === 0) return Effect.void
        // Uninterruptible: a write cut off mid-way may still commit, and would then be repeated.
        return Effect.uninterruptible(
          Effect.all([journal.append(batch.events), chats.setVariantContents(batch.texts)], { concurrency: 2, discard: true }).pipe(
            Effect.zipRight(Effect.sync(() => {
              for (const done of written) done()
            }))
          )
        )
      }))

    // What failed stays pending and goes with the next write.
    yield* write(sources).pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("could not write the runs' pending text and events", cause)),
      Effect.repeat(Schedule.spaced(Duration.millis(config.flushIntervalMs))),
      Effect.forkScoped
    )

    return {
      /** Written on every interval while the scope lasts. */
      register: (source: PendingWrites) =>
        Effect.acquireRelease(Effect.sync(() => sources.add(source)), () => Effect.sync(() => sources.delete(source))),
      /** Writes what `source` has pending now (after any write in progress). */
      writeNow: (source: PendingWrites) => write([source])
    } as const
  }),
  dependencies: [Journal.Default, ChatsRepo.Default]
}) {}
