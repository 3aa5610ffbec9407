import { HttpApiBuilder, HttpIncomingMessage, HttpServerRequest } from "@effect/platform"
import type { HttpServerResponse } from "@effect/platform/HttpServerResponse"
import { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import { Cause, Effect, Option } from "effect"
import { InternalError, NotFound, PayloadTooLarge, ValidationError } from "../domain/ApiErrors.ts"
import { Api } from "./Api.ts"

/** Request bodies larger than this are refused with 413 before anything is parsed (spec 70). */
export const maxBodyBytes = 1024 * 1024

const isRequestError = (defect: unknown): defect is { readonly _tag: "RequestError"; readonly cause?: unknown } =>
  typeof defect === "object" && defect !== null && "_tag" in defect && defect._tag === "RequestError"

const bodyTooLarge = (defect: { readonly cause?: unknown }) =>
  defect.cause instanceof Error && defect.cause.message === "maxBytes exceeded"

/**
 * Every error answer carries `{code, message}` (spec 70): the platform's own failures (a body
 * that does not decode, an unknown route, a body too large) are translated into the API's error
 * classes here, and a defect becomes a bare `internal_error` while the log keeps the whole cause.
 */
const tooLarge = new PayloadTooLarge({ message: `the request body is larger than ${maxBodyBytes} bytes` })

/**
 * A declared length over the limit is refused before the body is read, so Node can drain it and
 * the client reads a clean 413; a body that only turns out too long while streaming is cut off.
 */
const refuseLargeBodies = <E, R>(app: Effect.Effect<HttpServerResponse, E, R>) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request): Effect.Effect<HttpServerResponse, E | PayloadTooLarge, R> =>
    Number(request.headers["content-length"] ?? 0) > maxBodyBytes
      ? Effect.fail(tooLarge)
      : HttpIncomingMessage.withMaxBodySize(app, Option.some(maxBodyBytes)))

export const ErrorBodies = HttpApiBuilder.middleware(Api, (app) =>
  app.pipe(
    refuseLargeBodies,
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
        if (Option.isSome(defect) && isRequestError(defect.value)) {
          return yield* bodyTooLarge(defect.value)
            ? tooLarge
            : new ValidationError({ message: "the request body is not valid JSON" })
        }
        yield* Effect.logError("request failed with a defect", cause)
        return yield* new InternalError({ message: "an internal error occurred; the server log has the details" })
      })
    )
  ))
