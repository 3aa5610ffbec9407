import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * A journal row's `type` becomes an enum: four bytes instead of the name's 17–22, which brings a
 * delta's row (with its primary-key entry) under the 120 bytes issue 9 allows. An implicit cast
 * back to text keeps SQL written against the contract's text column working (`=`, `IN`, `LIKE`,
 * `~`, `left`, `starts_with`, `string_agg`); only `type || 'literal'` needs an explicit
 * `type::text`, and comparing with a name that is no event type is an error, not "no rows". The labels are declared in alphabetical order, so `ORDER BY type` sorts as text
 * did; a new event type is `ALTER TYPE run_event_type ADD VALUE '…' BEFORE '…'` in a migration.
 * The primary key's pages are filled to 100 %: a run's events arrive in `seq` order and run ids
 * are time-ordered, so its entries are appended, never inserted in the middle of a page.
 */
const types = [
  "llm.stream.delta",
  "llm.stream.done",
  "llm.stream.error",
  "llm.stream.meta",
  "pipeline.run.aborted",
  "pipeline.run.done",
  "pipeline.run.error",
  "pipeline.run.started",
  "pipeline.step.done",
  "pipeline.step.started"
]

const statements = [
  `CREATE TYPE run_event_type AS ENUM (${types.map((type) => `'${type}'`).join(", ")})`,
  `CREATE CAST (run_event_type AS text) WITH INOUT AS IMPLICIT`,
  // With the implicit cast, `type IN ('a', 'b')` would find two equally good `=` (the enum's and
  // text's): an exact `=` and `<>` of the type's own settle it.
  `CREATE FUNCTION run_event_type_eq(run_event_type, run_event_type) RETURNS boolean
     LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS 'SELECT enum_eq($1, $2)'`,
  `CREATE FUNCTION run_event_type_ne(run_event_type, run_event_type) RETURNS boolean
     LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS 'SELECT enum_ne($1, $2)'`,
  `CREATE OPERATOR = (LEFTARG = run_event_type, RIGHTARG = run_event_type, FUNCTION = run_event_type_eq,
     COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel)`,
  `CREATE OPERATOR <> (LEFTARG = run_event_type, RIGHTARG = run_event_type, FUNCTION = run_event_type_ne,
     COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel)`,
  // Before the column changes: that rewrites the table and rebuilds its index, now full.
  `ALTER INDEX pipeline_run_events_pkey SET (fillfactor = 100)`,
  `ALTER TABLE pipeline_run_events ALTER COLUMN type TYPE run_event_type USING type::run_event_type`
]

export default Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.forEach(statements, (statement) => sql.unsafe(statement), { discard: true }))
