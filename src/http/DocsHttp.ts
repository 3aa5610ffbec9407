import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect, Layer } from "effect"
import type { Context } from "effect"

/** The Swagger UI page of `api`, made on its first request: its script is 2 MB that few processes ever serve. */
const swaggerUi = (api: Context.Tag.Service<HttpApi.Api>) =>
  Effect.gen(function*() {
    const HttpApiSwagger = yield* Effect.promise(() => import("@effect/platform/HttpApiSwagger"))
    return yield* HttpApiBuilder.Router.router.pipe(
      Effect.provide(HttpApiSwagger.layer({ path: "/docs" }).pipe(
        Layer.provideMerge(HttpApiBuilder.Router.Live),
        Layer.provide(Layer.succeed(HttpApi.Api, api))
      ))
    )
  })

/** `GET /docs`: an interactive page for the OpenAPI document (`/openapi.json`). */
export const DocsHttp = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    const page = yield* Effect.cached(swaggerUi(yield* HttpApi.Api))
    yield* router.get("/docs", Effect.flatten(page))
  })
)
