import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect, Layer, Option, Redacted } from "effect"
import { Unauthorized } from "../domain/ApiErrors.ts"
import type { ChatId, GenerationId, RunId } from "../domain/Ids.ts"
import { Access } from "../services/access/Access.ts"
import { Ownership } from "../services/access/Ownership.ts"
import { Authentication, CurrentOwner } from "./Authentication.ts"

/** The one route a run's event token opens. */
const eventsRoute = /^\/runs\/([^/?]+)\/events\/?(?:\?|$)/

/** 401 `unauthorized` with `WWW-Authenticate: Bearer` (spec 85). */
export const refused = (message: string) =>
  Effect.zipRight(
    HttpApp.appendPreResponseHandler((_, response) => Effect.succeed(HttpServerResponse.setHeader(response, "www-authenticate", "Bearer"))),
    Effect.fail(new Unauthorized({ message }))
  )

export const AuthenticationLive = Layer.effect(
  Authentication,
  Effect.map(Access, (access) =>
    Authentication.of({
      bearer: (credential) =>
        access.mode === "none"
          ? Effect.succeed(access.anonymous)
          : Effect.flatMap(access.ownerOfBearer(Redacted.value(credential)), Option.match({
            onNone: () => refused("missing or invalid credentials: send Authorization: Bearer <key or token>"),
            onSome: Effect.succeed
          })),
      eventToken: (token) =>
        Effect.gen(function*() {
          if (access.mode === "none") return access.anonymous
          const request = yield* HttpServerRequest.HttpServerRequest
          const route = request.method === "GET" ? eventsRoute.exec(request.url) : null
          const owner = route === null || Redacted.value(token) === ""
            ? Option.none()
            : yield* access.ownerOfEventToken(Redacted.value(token), decodeURIComponent(route[1]!))
          return yield* Option.match(owner, {
            onNone: () => refused("missing or invalid credentials: send Authorization: Bearer <key or token>"),
            onSome: Effect.succeed
          })
        })
    }))
)

/** `use`, once the chat is the caller's (another owner's is 404, as an unknown one). */
export const ownChat = <A, E, R>(chatId: ChatId, use: (owner: string) => Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.all([CurrentOwner, Ownership]), ([owner, ownership]) => Effect.zipRight(ownership.chat(chatId, owner), use(owner)))

/** `use`, once the run is the caller's. */
export const ownRun = <A, E, R>(runId: RunId, use: (owner: string) => Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.all([CurrentOwner, Ownership]), ([owner, ownership]) => Effect.zipRight(ownership.run(runId, owner), use(owner)))

/** `use`, once the generation is the caller's. */
export const ownGeneration = <A, E, R>(generationId: GenerationId, use: (owner: string) => Effect.Effect<A, E, R>) =>
  Effect.flatMap(
    Effect.all([CurrentOwner, Ownership]),
    ([owner, ownership]) => Effect.zipRight(ownership.generation(generationId, owner), use(owner))
  )

/** A refusal that says when to come back (429, 503) carries it as `Retry-After` too (spec 85). */
export const withRetryAfter = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.tapError(effect, (error) => {
    const details = typeof error === "object" && error !== null && "details" in error ? error.details : undefined
    const seconds = typeof details === "object" && details !== null && "retryAfterSeconds" in details ? details.retryAfterSeconds : undefined
    return typeof seconds === "number"
      ? HttpApp.appendPreResponseHandler((_, response) => Effect.succeed(HttpServerResponse.setHeader(response, "retry-after", String(seconds))))
      : Effect.void
  })
