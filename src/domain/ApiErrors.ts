import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { Schema } from "effect"

/**
 * The errors the HTTP API answers with (spec 70, "Errors"). Each body carries a stable
 * snake_case `code` and a `message` for people, optionally `details`; each class names its status.
 */
const body = <const Code extends string>(code: Code) => ({
  code: Schema.Literal(code).pipe(Schema.propertySignature, Schema.withConstructorDefault(() => code)),
  message: Schema.String
})

export class ValidationError extends Schema.TaggedError<ValidationError>()("ValidationError", {
  ...body("validation_error"),
  details: Schema.optional(Schema.Struct({
    issues: Schema.Array(Schema.Struct({
      path: Schema.Array(Schema.Union(Schema.String, Schema.Number)),
      message: Schema.String
    }))
  }))
}, HttpApiSchema.annotations({ status: 400 })) {}

export class NotFound extends Schema.TaggedError<NotFound>()(
  "NotFound",
  body("not_found"),
  HttpApiSchema.annotations({ status: 404 })
) {}

export class ChatBusy extends Schema.TaggedError<ChatBusy>()("ChatBusy", {
  ...body("chat_busy"),
  details: Schema.Struct({ runId: Schema.String })
}, HttpApiSchema.annotations({ status: 409 })) {}

export class NotLatestAssistantMessage extends Schema.TaggedError<NotLatestAssistantMessage>()(
  "NotLatestAssistantMessage",
  body("not_latest_assistant_message"),
  HttpApiSchema.annotations({ status: 409 })
) {}

export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()(
  "PayloadTooLarge",
  body("payload_too_large"),
  HttpApiSchema.annotations({ status: 413 })
) {}

export class IdempotencyKeyReused extends Schema.TaggedError<IdempotencyKeyReused>()(
  "IdempotencyKeyReused",
  body("idempotency_key_reused"),
  HttpApiSchema.annotations({ status: 422 })
) {}

export class DatabaseUnavailable extends Schema.TaggedError<DatabaseUnavailable>()(
  "DatabaseUnavailable",
  body("database_unavailable"),
  HttpApiSchema.annotations({ status: 503 })
) {}

export class ShuttingDown extends Schema.TaggedError<ShuttingDown>()(
  "ShuttingDown",
  body("shutting_down"),
  HttpApiSchema.annotations({ status: 503 })
) {}

export class InternalError extends Schema.TaggedError<InternalError>()(
  "InternalError",
  body("internal_error"),
  HttpApiSchema.annotations({ status: 500 })
) {}

/** Missing or invalid credentials (spec 85); answered with `WWW-Authenticate: Bearer`. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  body("unauthorized"),
  HttpApiSchema.annotations({ status: 401 })
) {}

/** The caller already has `MAX_LIVE_RUNS_PER_OWNER` runs running; answered with `Retry-After`. */
export class TooManyRuns extends Schema.TaggedError<TooManyRuns>()("TooManyRuns", {
  ...body("too_many_runs"),
  details: Schema.Struct({ retryAfterSeconds: Schema.Int })
}, HttpApiSchema.annotations({ status: 429 })) {}

/** The caller sent more than `TURN_RATE_PER_OWNER` turn requests a minute; answered with `Retry-After`. */
export class TurnRateLimited extends Schema.TaggedError<TurnRateLimited>()("TurnRateLimited", {
  ...body("rate_limited"),
  details: Schema.Struct({ retryAfterSeconds: Schema.Int })
}, HttpApiSchema.annotations({ status: 429 })) {}

/** This instance is at `MAX_LIVE_RUNS` or `MAX_SSE_CLIENTS`; answered with `Retry-After`. */
export class Overloaded extends Schema.TaggedError<Overloaded>()("Overloaded", {
  ...body("overloaded"),
  details: Schema.Struct({ retryAfterSeconds: Schema.Int })
}, HttpApiSchema.annotations({ status: 503 })) {}
