import { HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { servicesWith } from "../../src/AppLayer.ts"
import { appWith } from "../../src/http/Server.ts"
import type { AppConfigShape } from "../../src/services/AppConfig.ts"
import { LanguageModelLive } from "../../src/services/llm/LanguageModelLive.ts"
import { PostStepLive } from "../../src/services/runner/PostStep.ts"
import type { PostStep } from "../../src/services/runner/PostStep.ts"
import { PreStepLive } from "../../src/services/runner/PreStep.ts"
import type { PreStep } from "../../src/services/runner/PreStep.ts"
import { testConfig } from "./TestConfig.ts"
import type { TestDatabase } from "./TestDatabase.ts"

/**
 * The whole app on a real HTTP server on loopback, with an `HttpClient` pointed at it: the
 * given database, configuration overrides, and `pre`/`post` steps (the built-in ones by default).
 */
export const testServer = (
  database: TestDatabase,
  overrides: Partial<AppConfigShape> = {},
  steps: { readonly pre?: Layer.Layer<PreStep>; readonly post?: Layer.Layer<PostStep> } = {}
) => {
  const stepsLayer = Layer.merge(steps.pre ?? PreStepLive, steps.post ?? PostStepLive)
  return appWith(servicesWith(stepsLayer).pipe(Layer.provide(LanguageModelLive))).pipe(
    Layer.provideMerge(NodeHttpServer.layerTest),
    Layer.provide(testConfig(overrides)),
    Layer.provideMerge(database.layer)
  )
}

/** Sends a request and reads the answer's status, headers and body (JSON when it parses). */
export const send = (request: HttpClientRequest.HttpClientRequest) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const response = yield* client.execute(request)
    const text = yield* response.text
    let body: unknown = text
    try {
      body = JSON.parse(text)
    } catch {
      // not JSON: keep the text
    }
    return { status: response.status, headers: response.headers, body, text }
  }).pipe(Effect.scoped)

export const getJson = (path: string) => send(HttpClientRequest.get(path))

export const postJson = (path: string, body: unknown) =>
  send(HttpClientRequest.post(path).pipe(HttpClientRequest.bodyUnsafeJson(body)))

export const postRaw = (path: string, body: string, contentType = "application/json") =>
  send(HttpClientRequest.post(path).pipe(HttpClientRequest.bodyText(body, contentType)))


export const patchJson = (path: string, body: unknown) =>
  send(HttpClientRequest.patch(path).pipe(HttpClientRequest.bodyUnsafeJson(body)))

export const putJson = (path: string, body: unknown) =>
  send(HttpClientRequest.put(path).pipe(HttpClientRequest.bodyUnsafeJson(body)))

export const del = (path: string) => send(HttpClientRequest.del(path))
