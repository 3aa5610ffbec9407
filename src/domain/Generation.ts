import { Schema } from "effect"
import { GenerationId, RunId } from "./Ids.ts"

/** Why a run or a generation failed (spec 70, "Run and generation error codes"). */
export const FailureCode = Schema.Literal(
  "aborted",
  "llm_error",
  "rate_limited",
  "upstream_timeout",
  "upstream_unavailable",
  "run_timeout",
  "run_interrupted",
  "step_failed",
  "internal_error"
)
export type FailureCode = typeof FailureCode.Type

export const ErrorInfo = Schema.Struct({ code: Schema.String, message: Schema.String })
export type ErrorInfo = typeof ErrorInfo.Type

export const GenerationStatus = Schema.Literal("streaming", "done", "aborted", "error")
export type GenerationStatus = typeof GenerationStatus.Type

export const Usage = Schema.Struct({ promptTokens: Schema.Int, completionTokens: Schema.Int })
export type Usage = typeof Usage.Type

/** One streaming call of the model that fills one assistant variant (`llm_generations`). */
export class Generation extends Schema.Class<Generation>("Generation")({
  id: GenerationId,
  runId: Schema.NullOr(RunId),
  status: GenerationStatus,
  provider: Schema.String,
  model: Schema.String,
  startedAt: Schema.Date,
  finishedAt: Schema.NullOr(Schema.Date),
  finishReason: Schema.NullOr(Schema.String),
  usage: Schema.NullOr(Usage),
  error: Schema.NullOr(ErrorInfo),
  /** Upstream requests made: 1, plus one per retry before the first token (spec 90). */
  attempts: Schema.Int
}) {}

/** A generation that did not end well; `code` is one of `FailureCode`. */
export class GenerationFailed extends Schema.TaggedError<GenerationFailed>()("GenerationFailed", {
  code: FailureCode,
  message: Schema.String
}) {}
