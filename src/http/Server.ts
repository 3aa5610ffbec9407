import type * as HttpApi from "@effect/platform/HttpApi"
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { Effect, Layer } from "effect"
import { ServicesLive } from "../AppLayer.ts"
import type { Access } from "../services/access/Access.ts"
import type { Limits } from "../services/access/Limits.ts"
import type { Ownership } from "../services/access/Ownership.ts"
import { AppConfig } from "../services/AppConfig.ts"
import type { Chats } from "../services/Chats.ts"
import type { Notifications } from "../services/cluster/Notifications.ts"
import type { Messages } from "../services/Messages.ts"
import { Prometheus } from "../services/observability/Prometheus.ts"
import type { RunEvents } from "../services/runner/RunEvents.ts"
import type { Runner } from "../services/runner/Runner.ts"
import type { Runs } from "../services/runner/Runs.ts"
import type { Turns } from "../services/runner/Turns.ts"
import type { TurnStops } from "../services/runner/TurnStops.ts"
import { Api } from "./Api.ts"
import { AuthenticationLive } from "./AuthenticationHttp.ts"
import { ChatsHttp } from "./ChatsHttp.ts"
import { DocsHttp } from "./DocsHttp.ts"
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

/** The API's handlers, with its authentication. */
const ApiLive = HttpApiBuilder.api(Api).pipe(
  Layer.provide([SystemHttp.pipe(Layer.provide(Prometheus.Default)), ChatsHttp, TurnsHttp, RunsHttp]),
  Layer.provide(AuthenticationLive)
)

/** The API, the OpenAPI document and its docs page, and the web app, served on whatever `HttpServer` is given. */
const serving = <E, R>(api: Layer.Layer<HttpApi.Api, E, R>) =>
  Layer.unwrapEffect(Effect.map(AppConfig, (config) => {
    const withCors = cors(config.corsOrigins)
    return HttpApiBuilder.serve((app) => logger(withCors(app)))
  })).pipe(
    Layer.provide(DocsHttp),
    Layer.provide(WebApp),
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
    Layer.provide(ErrorBodies),
    Layer.provide(api),
    // Long path parameters still reach their route, to be refused there as invalid ids (400, not 404).
    Layer.provide(HttpRouter.setRouterConfig({ maxParamLength: 16_384 })),
    // A URL with a run's event token is not traced either: `url.full` would carry it.
    HttpMiddleware.withTracerDisabledWhen((request) => carriesToken.test(request.url)),
    HttpServer.withLogAddress
  )

/**
 * The API's handlers, the OpenAPI document and its docs page, and the web app (`/`, `/ui/…`),
 * served on whatever `HttpServer` is given, over services the program provides.
 */
export const HttpLive = serving(ApiLive)

/**
 * The HTTP API over the given services (`servicesWith` over your steps, for one). Only the
 * handlers see the services: a request runs in the server's own context, which stays small (each
 * open stream keeps its request's copy of it).
 */
export const appWith = <E, R>(
  services: Layer.Layer<
    Chats | Messages | Turns | TurnStops | Runs | Runner | RunEvents | Notifications | Access | Ownership | Limits,
    E,
    R
  >
) => serving(ApiLive.pipe(Layer.provide(services)))

/** The HTTP API over the services; needs an `HttpServer`, `AppConfig` and a `SqlClient`. */
export const AppLive = appWith(ServicesLive)
