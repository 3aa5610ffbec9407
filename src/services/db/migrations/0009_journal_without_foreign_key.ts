import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The journal's rows no longer check their run one by one. A foreign key runs a trigger per
 * inserted row that looks the run up and locks it (`FOR KEY SHARE`): two thirds of the cost of
 * writing a delta's row on PGlite, which writes in the service's own thread. Instead:
 *
 * - nothing is checked on insert: a run's events are all written before its row closes (its last
 *   ones in the same statement), and a run is deleted only with its chat or a rewind, both refused
 *   while the chat has a running turn. Only an instance cut off past its lease, whose run was swept
 *   and then deleted, could still write a few rows for it, which nothing reads (with the foreign
 *   key, that write failed, and the other runs' events in its batch with it). A check by join is
 *   no cheaper: a prepared statement keeps the plan made while the table was small (PGlite never
 *   analyzes), and a hash join over a sequential scan of every run costs more with each run;
 * - a run's journal goes with the run: one trigger per `DELETE` statement on `pipeline_runs`
 *   (a chat deleted, a chat rewound) deletes the journals of every run it deleted, as the
 *   foreign key's `ON DELETE CASCADE` did row by row, by the journal's primary key.
 */
const statements = [
  `ALTER TABLE pipeline_run_events DROP CONSTRAINT pipeline_run_events_run_id_fkey`,
  `CREATE FUNCTION delete_run_journals() RETURNS trigger LANGUAGE plpgsql AS $$
   BEGIN
     -- Planned at each call (EXECUTE): a plan kept from when the journal was small would read all of it.
     EXECUTE 'DELETE FROM pipeline_run_events e USING deleted_runs d WHERE e.run_id = d.id';
     RETURN NULL;
   END $$`,
  `CREATE TRIGGER pipeline_runs_journals_deleted AFTER DELETE ON pipeline_runs
     REFERENCING OLD TABLE AS deleted_runs FOR EACH STATEMENT EXECUTE FUNCTION delete_run_journals()`
]

export default Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.forEach(statements, (statement) => sql.unsafe(statement), { discard: true }))
