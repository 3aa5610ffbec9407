import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import { Layer } from "effect"
import { ServicesLive } from "../AppLayer.ts"
import type { Chats } from "../services/Chats.ts"
import type { Notifications } from "../services/cluster/Notifications.ts"
import type { RunEvents } from "../services/runner/RunEvents.ts"
import type { Runner } from "../services/runner/Runner.ts"
import type { Runs } from "../services/runner/Runs.ts"
import type { Turns } from "../services/runner/Turns.ts"
import { Api } from "./Api.ts"
import { ChatsHttp } from "./ChatsHttp.ts"
import { DocsHttp } from "./DocsHttp.ts"
import { ErrorBodies } from "./ErrorBodies.ts"
import { Prometheus } from "../services/observability/Prometheus.ts"
import { RunsHttp } from "./RunsHttp.ts"
import { SystemHttp } from "./SystemHttp.ts"
import { TurnsHttp } from "./TurnsHttp.ts"

/** The API's handlers, the OpenAPI document and its docs page, served on whatever `HttpServer` is given. */
export const HttpLive = HttpApiBuilder.serve(HttpMiddleware.logger).pipe(
  Layer.provide(DocsHttp),
  Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
  Layer.provide(ErrorBodies),
  Layer.provide(HttpApiBuilder.api(Api).pipe(Layer.provide([SystemHttp.pipe(Layer.provide(Prometheus.Default)), ChatsHttp, TurnsHttp, RunsHttp]))),
  // Long path parameters still reach their route, to be refused there as invalid ids (400, not 404).
  Layer.provide(HttpRouter.setRouterConfig({ maxParamLength: 16_384 })),
  HttpServer.withLogAddress
)

/** The HTTP API over the given services (`servicesWith` over your steps, for one). */
export const appWith = <E, R>(services: Layer.Layer<Chats | Turns | Runs | Runner | RunEvents | Notifications, E, R>) =>
  HttpLive.pipe(Layer.provide(services))

/** The HTTP API over the services; needs an `HttpServer`, `AppConfig` and a `SqlClient`. */
export const AppLive = appWith(ServicesLive)
