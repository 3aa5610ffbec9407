/**
 * `turn-runner/client`: a typed client for a running server, made from the same `HttpApi` the
 * server implements, with the domain it speaks. Nothing here needs Node or a database.
 */
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import { Api } from "./http/Api.ts"

export * from "./domain/ApiErrors.ts"
export * from "./domain/Chat.ts"
export * from "./domain/Generation.ts"
export * from "./domain/Ids.ts"
export * from "./domain/Prompt.ts"
export * from "./domain/Run.ts"
export * from "./domain/RunEvent.ts"
export * from "./domain/RunReport.ts"
export { Api } from "./http/Api.ts"

/** The client of the server at `baseUrl`; needs an `HttpClient` (e.g. `FetchHttpClient.layer`). */
export const makeClient = (baseUrl: string) => HttpApiClient.make(Api, { baseUrl })
