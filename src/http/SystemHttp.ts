import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { SqlClient } from "@effect/sql"
import { Effect, Redacted } from "effect"
import { timingSafeEqual } from "node:crypto"
import { DatabaseUnavailable, NotFound } from "../domain/ApiErrors.ts"
import { AppConfig } from "../services/AppConfig.ts"
import { Prometheus } from "../services/observability/Prometheus.ts"
import { Notifications } from "../services/cluster/Notifications.ts"
import { Api } from "./Api.ts"
import { refused } from "./AuthenticationHttp.ts"

/** Whether `header` is `Bearer <token>`, compared in constant time. */
const isBearer = (header: string | undefined, token: Redacted.Redacted) => {
  const given = Buffer.from(header ?? "")
  const expected = Buffer.from(`Bearer ${Redacted.value(token)}`)
  return given.length === expected.length && timingSafeEqual(given, expected)
}

export const SystemHttp = HttpApiBuilder.group(Api, "system", (handlers) =>
  Effect.map(Effect.all([SqlClient.SqlClient, Notifications, Prometheus, AppConfig]), ([sql, notifications, prometheus, config]) =>
    handlers.handle("metrics", () =>
      !config.metricsEnabled
        ? Effect.fail(new NotFound({ message: "metrics are off (METRICS_ENABLED=false)" }))
        : config.access.metricsToken === undefined
        ? prometheus.render
        : Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
          isBearer(request.headers.authorization, config.access.metricsToken!)
            ? prometheus.render
            : refused("GET /metrics needs Authorization: Bearer <METRICS_TOKEN>"))
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
