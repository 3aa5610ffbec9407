import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { prepared } from "../../../src/services/db/Prepared.ts"
import * as PreparedPg from "../../../src/services/db/PreparedPg.ts"

const adminUrl = process.env.TEST_DATABASE_URL

/** The statements prepared in the one session of a one-connection pool, and what each was run with. */
const onOneConnection = <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>) =>
  Effect.provide(effect, PreparedPg.layer({ url: Redacted.make(adminUrl!), applicationName: "prepared-test", maxConnections: 1 }))

const preparedHere = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql<{ readonly name: string; readonly statement: string }>`SELECT name, statement FROM pg_prepared_statements ORDER BY name`)

describe.skipIf(adminUrl === undefined)("statements marked prepared, on Postgres", () => {
  it.effect("are parsed once per connection under a name from their text, and answer like any other", () =>
    onOneConnection(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const marked = (n: number) => sql<{ readonly doubled: number }>`${sql.unsafe(prepared)} SELECT ${n}::int * 2 AS doubled`
      expect(yield* marked(2)).toEqual([{ doubled: 4 }])
      expect(yield* marked(21)).toEqual([{ doubled: 42 }])
      yield* sql`SELECT ${1}::int AS unmarked`
      const statements = yield* preparedHere
      // One statement for the marked text, run twice; the unmarked one is not kept.
      expect(statements).toHaveLength(1)
      expect(statements[0]!.name).toMatch(/^turn_runner_[0-9a-f]{20}$/)
      expect(statements[0]!.statement).toContain("SELECT $1::int * 2 AS doubled")
    })))

  it.effect("a failing marked statement fails as any statement does, and the connection goes on", () =>
    onOneConnection(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const error = yield* sql`${sql.unsafe(prepared)} SELECT 1 / ${0}::int AS boom`.pipe(Effect.flip)
      expect(error._tag).toBe("SqlError")
      expect(yield* sql`${sql.unsafe(prepared)} SELECT ${3}::int AS three`).toEqual([{ three: 3 }])
    })))
})
