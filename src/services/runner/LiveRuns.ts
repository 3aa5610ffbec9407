import { Effect, Option } from "effect"
import type { RunId } from "../../domain/Ids.ts"
import type { AbortReason } from "../../domain/Run.ts"
import type { EventLog } from "./EventLog.ts"

/** A run executing in this process. */
export interface LiveRun {
  readonly log: EventLog
  /** Why it is being aborted, set by whoever interrupts it first. */
  abortReason: AbortReason | undefined
  /** When an abort was first asked for (spec 50: recorded on the run row). */
  abortRequestedAt: Date | undefined
}

/**
 * The runs executing in this process, by id: the runner adds and removes them, and followers find
 * a live run's event log here, so nobody calls back up into the runner to look one up.
 */
export class LiveRuns extends Effect.Service<LiveRuns>()("turn-runner/LiveRuns", {
  sync: () => {
    const runs = new Map<RunId, LiveRun>()
    return {
      add: (run: LiveRun) => void runs.set(run.log.runId, run),
      remove: (runId: RunId) => void runs.delete(runId),
      get: (runId: RunId) => runs.get(runId),
      logOf: (runId: RunId): Option.Option<EventLog> => Option.map(Option.fromNullable(runs.get(runId)), (run) => run.log),
      has: (runId: RunId) => runs.has(runId),
      all: () => runs.values(),
      ids: () => [...runs.keys()],
      /** A function, not a getter: a service's fields are copied once, when it is made. */
      size: () => runs.size
    } as const
  }
}) {}
