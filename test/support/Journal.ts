import { Effect } from "effect"
import type { RunId } from "../../src/domain/Ids.ts"
import type { RunEvent } from "../../src/domain/RunEvent.ts"
import { Journal } from "../../src/services/journal/Journal.ts"

/** A run's journal as its consumers get it: every event, parsed. */
export const journalOf = (runId: string) =>
  Effect.flatMap(Journal, (journal) =>
    Effect.map(journal.read(runId as RunId, 0), (entries) => entries.map((entry) => JSON.parse(entry.json) as RunEvent)))
