import { HttpApiBuilder } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { DatabaseUnavailable } from "../domain/ApiErrors.ts"
import { Api } from "./Api.ts"

export const SystemHttp = HttpApiBuilder.group(Api, "system", (handlers) =>
  Effect.map(SqlClient.SqlClient, (sql) =>
    handlers.handle("health", () =>
      sql`SELECT 1`.pipe(
        Effect.timeout("2 seconds"),
        Effect.as({ status: "ok" as const }),
        Effect.catchAll((error) =>
          Effect.logWarning("health check: database unreachable", error).pipe(
            Effect.zipRight(Effect.fail(new DatabaseUnavailable({ message: "the database cannot be reached" })))
          )
        )
      ))))
