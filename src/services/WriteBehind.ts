import { Cause, Clock, Effect } from "effect"
import { AppConfig } from "./AppConfig.ts"
import { BatchRepo, emptyBatch, isEmpty } from "./BatchRepo.ts"
import type { Batch } from "./BatchRepo.ts"
import { isDatabaseUnavailable } from "./db/Unavailable.ts"
import * as Metrics from "./observability/Metrics.ts"

/**
 * Something a live run keeps in memory until it is written (its rows, its event journal, its
 * answer's text). `take` puts what is pending into the batch (only rows when `rowsOnly`) and
 * returns what to do once the batch is written, or `undefined` when it has nothing to write. A
 * source that will add nothing more says so with `closed`, and is dropped after the next full write.
 */
export interface WriteSource {
  readonly take: (batch: Batch, rowsOnly: boolean) => (() => void) | undefined
  readonly closed: boolean
}

/**
 * Write-behind for everything a run writes after its start (spec 10's statuses, spec 30's flush
 * cadence, spec 60's journal): one writer per process gathers what every live run has pending and
 * writes it in one statement (`BatchRepo`). Rows (a step starting, a generation, a run closing) go
 * out at once (`soon`), without the run waiting for them; the journal and the text go every
 * `FLUSH_INTERVAL_MS`, so the writes of a turn grow with its duration, not with its tokens; `flush`
 * writes everything now, for whoever must see it written (a run's finalization). Writes happen one
 * at a time, in order, so nothing lands after a later write.
 */
export class WriteBehind extends Effect.Service<WriteBehind>()("turn-runner/WriteBehind", {
  scoped: Effect.gen(function*() {
    const config = yield* AppConfig
    const repo = yield* BatchRepo
    const sources = new Set<WriteSource>()
    const writing = yield* Effect.makeSemaphore(1)
    const kicked = yield* Effect.makeLatch(false)

    /**
     * After a batch the database refused (not an outage: a constraint, say), each source alone, so
     * that one run's bad row cannot hold every other run's writes back; what is refused again is
     * logged and dropped.
     */
    const writeEach = (contributors: ReadonlyArray<WriteSource>, rowsOnly: boolean) =>
      Effect.forEach(contributors, (source) =>
        Effect.suspend(() => {
          const own = emptyBatch()
          const done = source.take(own, rowsOnly)
          if (done === undefined) return Effect.void
          return repo.write(own).pipe(
            Effect.catchAllDefect((defect) =>
              isDatabaseUnavailable(defect)
                ? Effect.die(defect)
                : Effect.logError("the database refused a run's pending writes; they are dropped", Cause.die(defect))
            ),
            Effect.zipRight(Effect.sync(done))
          )
        }), { discard: true })

    const write = (rowsOnly: boolean) =>
      writing.withPermits(1)(Effect.suspend(() => {
        const batch = emptyBatch()
        const written: Array<() => void> = []
        const contributors: Array<WriteSource> = []
        const finished: Array<WriteSource> = []
        for (const source of sources) {
          if (source.closed && !rowsOnly) finished.push(source)
          const done = source.take(batch, rowsOnly)
          if (done === undefined) continue
          written.push(done)
          contributors.push(source)
        }
        const drop = () => {
          for (const source of finished) sources.delete(source)
        }
        if (isEmpty(batch)) return Effect.sync(drop)
        // Uninterruptible: a write cut off mid-way may still commit, and would then be repeated.
        const timed = batch.events.length === 0
          ? repo.write(batch)
          : Effect.flatMap(Clock.currentTimeNanos, (start) =>
            Effect.tap(repo.write(batch), () =>
              Effect.map(Clock.currentTimeNanos, (end) => Metrics.observe(Metrics.journalWrite, Number(end - start) / 1e9))))
        return Effect.uninterruptible(timed.pipe(
          Effect.zipRight(Effect.sync(() => {
            for (const done of written) done()
          })),
          Effect.catchAllDefect((defect) => isDatabaseUnavailable(defect) ? Effect.die(defect) : writeEach(contributors, rowsOnly)),
          Effect.zipRight(Effect.sync(drop))
        ))
      }))

    // A kick waits for the end of the current turn of the event loop: whatever the run that asked
    // for it is sending (a model request) leaves first, and the kicks of one turn make one write.
    let kickPending = false
    const kick = () => {
      kickPending = false
      kicked.unsafeOpen()
    }

    // Rows as soon as they change, everything every interval; what failed stays pending.
    const loop = Effect.gen(function*() {
      let nextTickAt = (yield* Clock.currentTimeMillis) + config.flushIntervalMs
      while (true) {
        const now = yield* Clock.currentTimeMillis
        if (now < nextTickAt) yield* Effect.raceFirst(Effect.sleep(nextTickAt - now), kicked.await)
        kicked.unsafeClose()
        const tick = (yield* Clock.currentTimeMillis) >= nextTickAt
        if (tick) nextTickAt = (yield* Clock.currentTimeMillis) + config.flushIntervalMs
        yield* write(!tick).pipe(
          Effect.catchAllCause((cause) => Effect.logWarning("could not write the runs' pending rows, text and events", cause))
        )
      }
    })
    // Housekeeping is not traced: a root trace per flush would bury the turns' own (a run's last
    // write is made by the run, inside its span).
    yield* Effect.forkScoped(Effect.withTracerEnabled(loop, false))

    return {
      /** Written from now on, until it is closed and written one last time. */
      add: (source: WriteSource) => Effect.sync(() => void sources.add(source)),
      /** Rows changed: write them without waiting for the interval. */
      soon: () => {
        if (kickPending) return
        kickPending = true
        setImmediate(kick)
      },
      /** Writes everything pending now (after any write in progress). */
      flush: write(false)
    } as const
  }),
  dependencies: [BatchRepo.Default]
}) {}

/** Sets `update` on `key`, merged with what another source already put there. */
export const merge = <K, V extends object>(map: Map<K, V>, key: K, update: V) => {
  const current = map.get(key)
  map.set(key, current === undefined ? update : { ...current, ...update })
}
