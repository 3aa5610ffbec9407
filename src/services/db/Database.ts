import type { SqlClient } from "@effect/sql"
import { Effect, Layer, Option } from "effect"
import type { Redacted } from "effect"
import { AppConfig } from "../AppConfig.ts"
import { MigrationsLive } from "./Migrations.ts"
import * as PreparedPg from "./PreparedPg.ts"

/**
 * The `SqlClient` the whole service runs on: real Postgres when `DATABASE_URL` is set, otherwise
 * the embedded PGlite in `DATA_DIR`. Everything above speaks only `SqlClient`, so both serve alike.
 * The schema is migrated before the client is handed out.
 */
export const clientLayer = (databaseUrl: Option.Option<Redacted.Redacted>, dataDir: string) =>
  Option.match(databaseUrl, {
    onSome: (url): Layer.Layer<SqlClient.SqlClient, unknown> =>
      PreparedPg.layer({ url, applicationName: "turn-runner", maxConnections: 20 }),
    // Loaded only when used: a server on Postgres never reads PGlite's code.
    onNone: (): Layer.Layer<SqlClient.SqlClient, unknown> =>
      Layer.unwrapEffect(Effect.map(Effect.promise(() => import("./PgliteClient.ts")), (pglite) => pglite.layer({ dataDir })))
  }).pipe((client) => Layer.provideMerge(MigrationsLive, client))

export const DatabaseLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) => clientLayer(config.databaseUrl, config.dataDir))
)
