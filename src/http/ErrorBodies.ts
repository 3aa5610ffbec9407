import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import { Cause, Effect, Option } from "effect"
import { DatabaseUnavailable, InternalError, NotFound, PayloadTooLarge, ValidationError } from "../domain/ApiErrors.ts"
import * as Metrics from "../services/observability/Metrics.ts"
import { isDatabaseUnavailable } from "../services/db/Unavailable.ts"
import { Api } from "./Api.ts"
import { checkedBody } from "./RequestBody.ts"

/** The turn routes; a refused turn request counts in `turn_runner_turn_requests_total` (spec 95). */
const turnRoute = /^\/chats\/[^/?]+\/messages(\/[^/?]+\/regenerate)?\/?(?:\?|$)/

const countRefusedTurn = (request: HttpServerRequest.HttpServerRequest, error: unknown) => {
  const outcome = error instanceof ValidationError ? "invalid" : error instanceof PayloadTooLarge ? "too_large" : undefined
  if (outcome === undefined || request.method !== "POST") return
  const route = turnRoute.exec(request.url)
  if (route !== null) Metrics.count(Metrics.turnRequests, 1, { trigger: route[1] === undefined ? "user_message" : "regenerate", outcome })
}

const isRequestError = (defect: unknown): defect is { readonly _tag: "RequestError" } =>
  typeof defect === "object" && defect !== null && "_tag" in defect && defect._tag === "RequestError"

/**
 * Every error answer carries `{code, message}` (spec 70): the platform's own failures (a body
 * that does not decode, an unknown route, a body too large) are translated into the API's error
 * classes here, and a defect becomes a bare `internal_error` while the log keeps the whole cause.
 */
export const ErrorBodies = HttpApiBuilder.middleware(Api, (app) =>
  app.pipe(
    checkedBody,
    Effect.catchAllCause((cause) =>
      Effect.gen(function*() {
        if (Cause.isInterruptedOnly(cause)) return yield* Effect.failCause(cause)
        const request = yield* HttpServerRequest.HttpServerRequest
        // The platform types the wrapped app as infallible; at run time its failures pass through here.
        const failure = Cause.failureOption(cause as Cause.Cause<unknown>)
        if (Option.isSome(failure)) {
          const error = failure.value
          if (error instanceof HttpApiDecodeError) {
            const issues = error.issues.map((issue) => ({
              path: issue.path.map((key) => typeof key === "symbol" ? String(key) : key),
              message: issue.message
            }))
            return yield* new ValidationError({
              message: issues.slice(0, 3).map(({ message, path }) => path.length > 0 ? `${path.join(".")}: ${message}` : message).join("; "),
              details: { issues }
            })
          }
          if (typeof error === "object" && error !== null && "_tag" in error && error._tag === "RouteNotFound") {
            return yield* new NotFound({ message: `no route for ${request.method} ${request.url}` })
          }
          return yield* Effect.failCause(cause)
        }
        const defect = Cause.dieOption(cause)
        if (Option.isSome(defect)) {
          // The platform turns body read failures into defects; so do ours (`checkedBody`).
          if (defect.value instanceof ValidationError) return yield* defect.value
          if (isRequestError(defect.value)) return yield* new ValidationError({ message: "the request body is not valid JSON" })
          if (isDatabaseUnavailable(defect.value)) {
            yield* Effect.logWarning("database unavailable", cause)
            return yield* new DatabaseUnavailable({ message: "the database cannot be reached; nothing was written" })
          }
          // Input nested deeper than the stack: the decoder gave up, the input is at fault.
          if (defect.value instanceof RangeError && defect.value.message.includes("call stack")) {
            return yield* new ValidationError({ message: "the request is nested too deeply" })
          }
        }
        yield* Effect.logError("request failed with a defect", cause)
        return yield* new InternalError({ message: "an internal error occurred; the server log has the details" })
      })
    ),
    Effect.tapError((error) => Effect.map(HttpServerRequest.HttpServerRequest, (request) => countRefusedTurn(request, error)))
  ))
