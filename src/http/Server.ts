import { HttpApiBuilder, HttpApiSwagger, HttpMiddleware, HttpRouter, HttpServer } from "@effect/platform"
import { Layer } from "effect"
import { Api } from "./Api.ts"
import { ChatsHttp } from "./ChatsHttp.ts"
import { ErrorBodies } from "./ErrorBodies.ts"
import { Prometheus } from "../services/observability/Prometheus.ts"
import { RunsHttp } from "./RunsHttp.ts"
import { SystemHttp } from "./SystemHttp.ts"
import { TurnsHttp } from "./TurnsHttp.ts"
import { WebApp } from "./WebApp.ts"

/** The API's handlers, the OpenAPI document and its docs page, and the web app (`/`, `/ui/…`), served on whatever `HttpServer` is given. */
export const HttpLive = HttpApiBuilder.serve(HttpMiddleware.logger).pipe(
  Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
  Layer.provide(WebApp),
  Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
  Layer.provide(ErrorBodies),
  Layer.provide(HttpApiBuilder.api(Api).pipe(Layer.provide([SystemHttp.pipe(Layer.provide(Prometheus.Default)), ChatsHttp, TurnsHttp, RunsHttp]))),
  // Long path parameters still reach their route, to be refused there as invalid ids (400, not 404).
  Layer.provide(HttpRouter.setRouterConfig({ maxParamLength: 16_384 })),
  HttpServer.withLogAddress
)
