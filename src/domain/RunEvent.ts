import { Schema } from "effect"
import { ErrorInfo, Usage } from "./Generation.ts"
import { ChatId, GenerationId, MessageId, RunId, StepRunId, VariantId } from "./Ids.ts"
import { AbortReason, StepType, Trigger } from "./Run.ts"

/** The correlation fields every event of a run carries (spec 60, "Envelope"; seed F1.3). */
export const Envelope = Schema.Struct({
  chatId: ChatId,
  runId: RunId,
  pipelineId: Schema.String,
  pipelineName: Schema.String,
  trigger: Trigger,
  userMessageId: Schema.NullOr(MessageId),
  assistantMessageId: MessageId,
  assistantVariantId: VariantId,
  generationId: Schema.NullOr(GenerationId)
})
export type Envelope = typeof Envelope.Type

/** The step an event belongs to (`pipeline.step.*`, `llm.stream.*`). */
export const StepRef = Schema.Struct({ stepRunId: StepRunId, stepType: StepType })
export type StepRef = typeof StepRef.Type

const ClosedStepStatus = Schema.Literal("done", "aborted", "error", "skipped")

/** What each event type adds to the envelope (spec 60, "Event types and their own fields"). */
export const RunEventBody = Schema.Union(
  Schema.Struct({ type: Schema.Literal("pipeline.run.started"), status: Schema.Literal("running") }),
  Schema.Struct({ type: Schema.Literal("pipeline.step.started"), status: Schema.Literal("running"), label: Schema.String }),
  Schema.Struct({
    type: Schema.Literal("pipeline.step.done"),
    status: ClosedStepStatus,
    durationMs: Schema.Number,
    error: Schema.optional(ErrorInfo)
  }),
  Schema.Struct({ type: Schema.Literal("llm.stream.meta"), provider: Schema.String, model: Schema.String }),
  Schema.Struct({ type: Schema.Literal("llm.stream.delta"), content: Schema.NonEmptyString }),
  Schema.Struct({ type: Schema.Literal("llm.stream.error"), error: ErrorInfo }),
  Schema.Struct({
    type: Schema.Literal("llm.stream.done"),
    status: Schema.Literal("done", "aborted", "error"),
    finishReason: Schema.optional(Schema.String),
    usage: Schema.optional(Usage)
  }),
  Schema.Struct({ type: Schema.Literal("pipeline.run.done"), status: Schema.Literal("done"), finishedAt: Schema.String }),
  Schema.Struct({
    type: Schema.Literal("pipeline.run.aborted"),
    status: Schema.Literal("aborted"),
    finishedAt: Schema.String,
    abortReason: AbortReason
  }),
  Schema.Struct({
    type: Schema.Literal("pipeline.run.error"),
    status: Schema.Literal("error"),
    finishedAt: Schema.String,
    error: ErrorInfo
  })
)
export type RunEventBody = typeof RunEventBody.Type

export const RunEventType = Schema.Literal(
  "pipeline.run.started",
  "pipeline.step.started",
  "pipeline.step.done",
  "llm.stream.meta",
  "llm.stream.delta",
  "llm.stream.error",
  "llm.stream.done",
  "pipeline.run.done",
  "pipeline.run.aborted",
  "pipeline.run.error"
)
export type RunEventType = typeof RunEventType.Type

export const runEventTypes = RunEventType.literals

/** One event as sent and journaled: type, seq and time, the envelope, the step, the body's fields. */
export const RunEvent = Schema.extend(
  Schema.Struct({ seq: Schema.Int.pipe(Schema.positive()), at: Schema.String }),
  Schema.extend(Envelope, Schema.extend(Schema.partial(StepRef), RunEventBody))
)
export type RunEvent = typeof RunEvent.Type

export const isTerminal = (type: string): boolean =>
  type === "pipeline.run.done" || type === "pipeline.run.aborted" || type === "pipeline.run.error"
