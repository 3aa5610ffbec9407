import { HttpApiBuilder } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { DatabaseUnavailable } from "../domain/ApiErrors.ts"
import { Notifications } from "../services/cluster/Notifications.ts"
import { Api } from "./Api.ts"

export const SystemHttp = HttpApiBuilder.group(Api, "system", (handlers) =>
  Effect.map(Effect.all([SqlClient.SqlClient, Notifications]), ([sql, notifications]) =>
    handlers.handle("health", () =>
      sql`SELECT 1`.pipe(
        Effect.timeout("2 seconds"),
        // Still 200 while the database answers, signals or not: the instance works, only slower.
        Effect.as({ status: "ok" as const, notifications: notifications.status() }),
        Effect.catchAll((error) =>
          Effect.logWarning("health check: database unreachable", error).pipe(
            Effect.zipRight(Effect.fail(new DatabaseUnavailable({ message: "the database cannot be reached" })))
          )
        )
      ))))
