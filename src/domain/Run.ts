import { Schema } from "effect"
import { ErrorInfo, Generation } from "./Generation.ts"
import { ChatId, GenerationId, MessageId, RunId, StepRunId, VariantId } from "./Ids.ts"

/** v1 has one built-in pipeline (spec 30). */
export const builtinPipeline = { id: "builtin:default", name: "default" } as const

export const Trigger = Schema.Literal("user_message", "regenerate")
export type Trigger = typeof Trigger.Type

export const RunStatus = Schema.Literal("running", "done", "aborted", "error")
export type RunStatus = typeof RunStatus.Type

export const StepStatus = Schema.Literal("running", "done", "aborted", "error", "skipped")
export type StepStatus = typeof StepStatus.Type

/** Free text in the database so `rag`/`tool` can come later; v1 runs these three, in order. */
export const StepType = Schema.Literal("pre", "llm", "post")
export type StepType = typeof StepType.Type
export const stepOrder: ReadonlyArray<StepType> = ["pre", "llm", "post"]

export const AbortReason = Schema.Literal("user", "client_disconnect", "superseded", "shutdown")
export type AbortReason = typeof AbortReason.Type

export const OnBusy = Schema.Literal("reject", "interrupt")
export type OnBusy = typeof OnBusy.Type

export class Run extends Schema.Class<Run>("Run")({
  id: RunId,
  chatId: ChatId,
  pipelineId: Schema.String,
  pipelineName: Schema.String,
  trigger: Trigger,
  status: RunStatus,
  idempotencyKey: Schema.String,
  userMessageId: Schema.NullOr(MessageId),
  assistantMessageId: MessageId,
  assistantVariantId: VariantId,
  generationId: Schema.NullOr(GenerationId),
  abortReason: Schema.NullOr(AbortReason),
  error: Schema.NullOr(ErrorInfo),
  startedAt: Schema.Date,
  finishedAt: Schema.NullOr(Schema.Date),
  /** The run's OpenTelemetry trace (spec 95); null while tracing is off. */
  traceId: Schema.NullOr(Schema.String)
}) {}

export class StepRun extends Schema.Class<StepRun>("StepRun")({
  id: StepRunId,
  runId: RunId,
  stepType: Schema.String,
  position: Schema.Int,
  status: StepStatus,
  label: Schema.NullOr(Schema.String),
  startedAt: Schema.Date,
  finishedAt: Schema.NullOr(Schema.Date),
  durationMs: Schema.NullOr(Schema.Number),
  output: Schema.NullOr(Schema.Unknown),
  error: Schema.NullOr(ErrorInfo)
}) {}

/** A run with its steps and generation, as `GET /runs/{runId}` and the turn routes answer it. */
export class RunSnapshot extends Schema.Class<RunSnapshot>("RunSnapshot")({
  run: Run,
  steps: Schema.Array(StepRun),
  generation: Schema.NullOr(Generation),
  deduplicated: Schema.optional(Schema.Boolean)
}) {}

/** JSON objects only: `settings` is passed to the provider as it is, at most 16 KiB (spec 70). */
export const Settings = Schema.Record({ key: Schema.String, value: Schema.Unknown }).pipe(
  Schema.filter((settings) => JSON.stringify(settings).length <= 16 * 1024 || "settings must be at most 16 KiB of JSON")
)

const Content = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(100_000),
  Schema.filter((text) => text.trim().length > 0 || "content must not be only white space")
)

/** A turn's idempotency key (spec 10, "Idempotency"), from the client's own ids. */
export const idempotencyKey = {
  userMessage: (userMessageId: string) => `user_message:${userMessageId}`,
  regenerate: (assistantMessageId: string, requestId: string) => `regenerate:${assistantMessageId}:${requestId}`
} as const

export const SendMessage = Schema.Struct({
  userMessageId: MessageId,
  content: Content,
  settings: Schema.optionalWith(Settings, { default: () => ({}) }),
  onBusy: Schema.optionalWith(OnBusy, { default: () => "reject" as const }),
  abortOnDisconnect: Schema.optionalWith(Schema.Boolean, { default: () => false })
})
export type SendMessage = typeof SendMessage.Type

export const Regenerate = Schema.Struct({
  requestId: Schema.UUID,
  settings: Schema.optionalWith(Settings, { default: () => ({}) }),
  onBusy: Schema.optionalWith(OnBusy, { default: () => "reject" as const }),
  abortOnDisconnect: Schema.optionalWith(Schema.Boolean, { default: () => false })
})
export type Regenerate = typeof Regenerate.Type

/**
 * Stop a turn by the client's own ids (spec 75), those of its turn request: its `userMessageId`,
 * or a regenerate's `assistantMessageId` and `requestId`.
 */
export const AbortTurn = Schema.Union(
  Schema.Struct({ userMessageId: MessageId }),
  Schema.Struct({ assistantMessageId: MessageId, requestId: Schema.UUID })
)
export type AbortTurn = typeof AbortTurn.Type

/** The stopped turn's run once terminal, or null when the stop was recorded for a turn yet to come. */
export const AbortTurnAnswer = Schema.Struct({ run: Schema.NullOr(RunSnapshot) })

/** How long a stop recorded before its turn arrived applies to it (spec 75). */
export const turnStopTtlMs = 10 * 60 * 1000
