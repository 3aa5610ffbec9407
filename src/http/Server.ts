import { HttpApiBuilder, HttpApiSwagger, HttpMiddleware, HttpRouter, HttpServer, HttpServerRequest } from "@effect/platform"
import type { HttpApp } from "@effect/platform"
import { Effect, Layer } from "effect"
import { AppConfig } from "../services/AppConfig.ts"
import { Prometheus } from "../services/observability/Prometheus.ts"
import { Api } from "./Api.ts"
import { AuthenticationLive } from "./Authentication.ts"
import { ChatsHttp } from "./ChatsHttp.ts"
import { ErrorBodies } from "./ErrorBodies.ts"
import { RunsHttp } from "./RunsHttp.ts"
import { SystemHttp } from "./SystemHttp.ts"
import { TurnsHttp } from "./TurnsHttp.ts"
import { WebApp } from "./WebApp.ts"

/**
 * Browser access from other origins (spec 75), around the whole app: preflights are answered
 * before any route, and every answer (an event stream, an error, a 404) carries the headers.
 * Without `CORS_ORIGINS` there is none of it.
 */
const cors = (origins: ReadonlyArray<string>): (app: HttpApp.Default) => HttpApp.Default =>
  origins.length === 0 ? (app) => app : HttpMiddleware.cors({
    // One origin is answered as it is; several are matched against the request's `Origin`.
    allowedOrigins: origins[0] === "*" ? [] : origins,
    allowedHeaders: ["Content-Type", "Authorization", "Last-Event-ID", "Accept"],
    exposedHeaders: ["Idempotent-Replayed"],
    maxAge: 600
  })

/** `?access_token=` (a run's event token, spec 85): never in a log line or a span. */
const carriesToken = /[?&]access_token=/

/**
 * The platform's request log, shown a copy of the request whose URL has its event token replaced
 * by `REDACTED`; the app itself gets the request as it came.
 */
const logger = (app: HttpApp.Default): HttpApp.Default =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    carriesToken.test(request.url)
      ? HttpMiddleware.logger(Effect.provideService(app, HttpServerRequest.HttpServerRequest, request)).pipe(
        Effect.provideService(
          HttpServerRequest.HttpServerRequest,
          request.modify({ url: request.url.replace(/([?&]access_token=)[^&#]*/g, "$1REDACTED") })
        )
      )
      : HttpMiddleware.logger(app))

/** The API's handlers, the OpenAPI document and its docs page, and the web app (`/`, `/ui/…`), served on whatever `HttpServer` is given. */
export const HttpLive = Layer.unwrapEffect(Effect.map(AppConfig, (config) => {
  const withCors = cors(config.corsOrigins)
  return HttpApiBuilder.serve((app) => logger(withCors(app)))
})).pipe(
  Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
  Layer.provide(WebApp),
  Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
  Layer.provide(ErrorBodies),
  Layer.provide(HttpApiBuilder.api(Api).pipe(
    Layer.provide([SystemHttp.pipe(Layer.provide(Prometheus.Default)), ChatsHttp, TurnsHttp, RunsHttp]),
    Layer.provide(AuthenticationLive)
  )),
  // Long path parameters still reach their route, to be refused there as invalid ids (400, not 404).
  Layer.provide(HttpRouter.setRouterConfig({ maxParamLength: 16_384 })),
  // A URL with a run's event token is not traced either: `url.full` would carry it.
  HttpMiddleware.withTracerDisabledWhen((request) => carriesToken.test(request.url)),
  HttpServer.withLogAddress
)
