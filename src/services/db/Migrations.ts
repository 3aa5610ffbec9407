import { Migrator } from "@effect/sql"
import { Effect, Layer } from "effect"
import initial from "./migrations/0001_initial.ts"

/** Versioned migrations, applied in order at start-up; a new one is a new entry here. */
const loader = Migrator.fromRecord({
  "0001_initial": initial
})

export const migrate = Migrator.make({})({ loader }).pipe(
  Effect.tap((applied) =>
    applied.length > 0
      ? Effect.logInfo("migrations applied").pipe(Effect.annotateLogs("migrations", applied.map(([id, name]) => `${id}_${name}`).join(",")))
      : Effect.void
  ),
  Effect.withSpan("Migrations.migrate")
)

/** Brings the schema up to date before anything that needs it is built. */
export const MigrationsLive = Layer.effectDiscard(migrate)
