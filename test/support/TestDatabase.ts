import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Option, Redacted } from "effect"
import { clientLayer } from "../../src/services/db/Database.ts"

/**
 * The databases every storage test runs on: the embedded PGlite always, and a real Postgres
 * when `TEST_DATABASE_URL` is set. Each layer is a fresh, migrated, empty database.
 */
export interface TestDatabase {
  readonly name: "pglite" | "postgres"
  readonly layer: Layer.Layer<SqlClient.SqlClient>
}

export const pglite: TestDatabase = {
  name: "pglite",
  layer: Layer.orDie(clientLayer(Option.none(), "memory"))
}

/** The URL of a new, empty database on the server of `adminUrl`, dropped when the scope closes. */
export const freshDatabaseUrl = (adminUrl: string) =>
  Effect.gen(function*() {
    const name = `turn_runner_test_${Date.now()}_${Math.floor(Math.random() * 1e6)}`
    const admin = PgClient.layer({ url: Redacted.make(adminUrl), maxConnections: 1 })
    const onAdmin = <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>) =>
      Effect.provide(effect, admin).pipe(Effect.orDie)
    yield* onAdmin(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`CREATE DATABASE ${name}`)))
    yield* Effect.addFinalizer(() =>
      onAdmin(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)))
    )
    const url = new URL(adminUrl)
    url.pathname = `/${name}`
    return url.href
  })

/** A new, migrated database on the server of `TEST_DATABASE_URL`, dropped when the layer is released. */
const freshPostgres = (adminUrl: string): Layer.Layer<SqlClient.SqlClient> =>
  Layer.unwrapScoped(Effect.map(freshDatabaseUrl(adminUrl), (url) =>
    Layer.orDie(clientLayer(Option.some(Redacted.make(url)), "memory"))))

export const postgres: TestDatabase | undefined = process.env.TEST_DATABASE_URL
  ? { name: "postgres", layer: freshPostgres(process.env.TEST_DATABASE_URL) }
  : undefined

export const testDatabases: ReadonlyArray<TestDatabase> = postgres ? [pglite, postgres] : [pglite]
