import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The journal's rows no longer check their run one by one. A foreign key runs a trigger per
 * inserted row that looks the run up and locks it (`FOR KEY SHARE`): two thirds of the cost of
 * writing a delta's row on PGlite, which writes in the service's own thread. Instead:
 *
 * - the journal is written only for runs that exist: `BatchRepo` inserts its rows with one join
 *   against `pipeline_runs` per statement (a late write for a run deleted meanwhile is dropped,
 *   where the foreign key failed the whole batch, other runs' events with it);
 * - a run's journal goes with the run: one trigger per `DELETE` statement on `pipeline_runs`
 *   (a chat deleted, a chat rewound) deletes the journals of every run it deleted, as the
 *   foreign key's `ON DELETE CASCADE` did row by row.
 */
const statements = [
  `ALTER TABLE pipeline_run_events DROP CONSTRAINT pipeline_run_events_run_id_fkey`,
  `CREATE FUNCTION delete_run_journals() RETURNS trigger LANGUAGE plpgsql AS $$
   BEGIN
     DELETE FROM pipeline_run_events e USING deleted_runs d WHERE e.run_id = d.id;
     RETURN NULL;
   END $$`,
  `CREATE TRIGGER pipeline_runs_journals_deleted AFTER DELETE ON pipeline_runs
     REFERENCING OLD TABLE AS deleted_runs FOR EACH STATEMENT EXECUTE FUNCTION delete_run_journals()`
]

export default Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.forEach(statements, (statement) => sql.unsafe(statement), { discard: true }))
