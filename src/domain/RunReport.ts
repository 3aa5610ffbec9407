import { Schema } from "effect"
import { ErrorInfo, Usage } from "./Generation.ts"
import { AbortReason, RunSnapshot, Trigger } from "./Run.ts"

/** One message of the prompt the model was sent: its text only when prompt snapshots are stored. */
export const PromptMessageSummary = Schema.Struct({
  role: Schema.String,
  length: Schema.Int,
  /** The first 16 hex digits of the SHA-256 of its text. */
  hash: Schema.String,
  content: Schema.optional(Schema.String)
})

/**
 * The debug report of one turn (spec 95, `GET /runs/{runId}/report`): why the model answered
 * what it did, and where the run stopped. Everything in it is read from the run's rows and
 * journal; prompt text appears only when `STORE_PROMPT_SNAPSHOTS=true`.
 */
export class RunReport extends Schema.Class<RunReport>("RunReport")({
  snapshot: RunSnapshot,
  traceId: Schema.NullOr(Schema.String),
  start: Schema.Struct({
    trigger: Trigger,
    idempotencyKey: Schema.String,
    requestFingerprint: Schema.String,
    /** Repeated requests this run answered (the same key, the same request). */
    duplicateRequests: Schema.Int,
    /** The settings passed to the provider. */
    settings: Schema.Unknown
  }),
  prompt: Schema.Struct({
    /** SHA-256 of the whole prompt, as the generation row records it. */
    hash: Schema.NullOr(Schema.String),
    messages: Schema.NullOr(Schema.Array(PromptMessageSummary)),
    textStored: Schema.Boolean,
    /** What `pre` reported: for the built-in one, the messages kept and dropped. */
    pre: Schema.NullOr(Schema.Unknown)
  }),
  generation: Schema.NullOr(Schema.Struct({
    provider: Schema.String,
    model: Schema.String,
    attempts: Schema.Int,
    /** From the run's start to its first delta. */
    timeToFirstTokenMs: Schema.NullOr(Schema.Number),
    deltas: Schema.Int,
    /** Deltas per second between the first and the last. */
    deltasPerSecond: Schema.NullOr(Schema.Number),
    usage: Schema.NullOr(Usage),
    finishReason: Schema.NullOr(Schema.String),
    error: Schema.NullOr(ErrorInfo)
  })),
  journal: Schema.Struct({
    events: Schema.Int,
    firstSeq: Schema.NullOr(Schema.Int),
    lastSeq: Schema.NullOr(Schema.Int),
    byType: Schema.Record({ key: Schema.String, value: Schema.Int })
  }),
  ownership: Schema.Struct({
    ownerInstance: Schema.NullOr(Schema.String),
    leaseExpiresAt: Schema.NullOr(Schema.Date),
    abortRequest: Schema.NullOr(Schema.Struct({ at: Schema.Date, reason: AbortReason }))
  })
}) {}
