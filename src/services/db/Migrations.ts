import { Migrator } from "@effect/sql"
import { Effect, Layer, Schedule } from "effect"
import initial from "./migrations/0001_initial.ts"
import compactJournal from "./migrations/0002_compact_journal.ts"
import generationAttempts from "./migrations/0003_generation_attempts.ts"
import abortRequests from "./migrations/0004_abort_requests.ts"
import runReport from "./migrations/0005_run_report.ts"
import turnStops from "./migrations/0006_turn_stops.ts"
import access from "./migrations/0007_access.ts"
import journalEventType from "./migrations/0008_journal_event_type.ts"
import journalWithoutForeignKey from "./migrations/0009_journal_without_foreign_key.ts"

/** Versioned migrations, applied in order at start-up; a new one is a new entry here. */
const loader = Migrator.fromRecord({
  "0001_initial": initial,
  "0002_compact_journal": compactJournal,
  "0003_generation_attempts": generationAttempts,
  "0004_abort_requests": abortRequests,
  "0005_run_report": runReport,
  "0006_turn_stops": turnStops,
  "0007_access": access,
  "0008_journal_event_type": journalEventType,
  "0009_journal_without_foreign_key": journalWithoutForeignKey
})

/**
 * Two instances starting on an empty database at once race to create the migrations table (a
 * unique violation in Postgres' catalog for the loser). The loser tries again, by then the
 * table exists and the winner's lock orders the rest; a migration that is really broken still
 * fails, a few seconds later.
 */
const afterARace = Schedule.exponential("100 millis").pipe(Schedule.intersect(Schedule.recurs(5)))

export const migrate = Migrator.make({})({ loader }).pipe(
  Effect.retry(afterARace),
  Effect.tap((applied) =>
    applied.length > 0
      ? Effect.logInfo("migrations applied").pipe(Effect.annotateLogs("migrations", applied.map(([id, name]) => `${id}_${name}`).join(",")))
      : Effect.void
  ),
  Effect.withSpan("Migrations.migrate")
)

/** Brings the schema up to date before anything that needs it is built. */
export const MigrationsLive = Layer.effectDiscard(migrate)
