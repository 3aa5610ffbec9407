/**
 * `turn-runner/client`: a typed client for a running server, made from the same `HttpApi` the
 * server implements, with the domain it speaks. Nothing here needs Node or a database.
 */
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import { Api } from "./http/Api.ts"

export * from "./domain/index.ts"
export { Api } from "./http/Api.ts"

/** The client of the server at `baseUrl`; needs an `HttpClient` (e.g. `FetchHttpClient.layer`). */
export const makeClient = (baseUrl: string) => HttpApiClient.make(Api, { baseUrl })
