import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { DatabaseUnavailable, NotFound } from "../domain/ApiErrors.ts"
import { AppConfig } from "../services/AppConfig.ts"
import { Prometheus } from "../services/observability/Prometheus.ts"
import { Notifications } from "../services/cluster/Notifications.ts"
import { Api } from "./Api.ts"

export const SystemHttp = HttpApiBuilder.group(Api, "system", (handlers) =>
  Effect.map(Effect.all([SqlClient.SqlClient, Notifications, Prometheus, AppConfig]), ([sql, notifications, prometheus, config]) =>
    handlers.handle("metrics", () =>
      config.metricsEnabled ? prometheus.render : Effect.fail(new NotFound({ message: "metrics are off (METRICS_ENABLED=false)" }))
    ).handle("health", () =>
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
