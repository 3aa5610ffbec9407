import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import { Context } from "effect"
import { Unauthorized } from "../domain/ApiErrors.ts"

/** The caller of the request (spec 85): the owner whose chats, runs and events it may see. */
export class CurrentOwner extends Context.Tag("turn-runner/CurrentOwner")<CurrentOwner, string>() {}

/**
 * Every chat, turn and run route is authenticated (spec 85): `Authorization: Bearer <key or JWT>`,
 * or, for a browser `EventSource` on `GET /runs/{id}/events` only, `?access_token=` with the
 * run's own short-lived token. The OpenAPI document declares both schemes; the implementation is
 * `AuthenticationHttp.ts` (this contract is part of the typed client, which needs no server).
 */
export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("turn-runner/Authentication", {
  failure: Unauthorized,
  provides: CurrentOwner,
  security: {
    bearer: HttpApiSecurity.bearer,
    eventToken: HttpApiSecurity.apiKey({ in: "query", key: "access_token" })
  }
}) {}
