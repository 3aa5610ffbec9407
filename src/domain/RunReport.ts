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

/** Where a finished run stopped and why, said once (the rest of the report has the details). */
export const RunEnding = Schema.Struct({
  status: Schema.Literal("done", "aborted", "error"),
  /** The step it stopped in (aborted, failed, or interrupted with its process); null when done. */
  step: Schema.NullOr(Schema.String),
  /** The abort reason or the error code; null when done. */
  reason: Schema.NullOr(Schema.String),
  /** From the run's start to its end. */
  durationMs: Schema.Number,
  /** The same in one sentence, for a person. */
  summary: Schema.String
})
export type RunEnding = typeof RunEnding.Type

const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`

/** How `snapshot`'s run ended, with `deltas` streamed; null while it runs. */
export const endingOf = (snapshot: RunSnapshot, deltas: number): RunEnding | null => {
  const { run, steps, generation } = snapshot
  if (run.status === "running" || run.finishedAt === null) return null
  const durationMs = run.finishedAt.getTime() - run.startedAt.getTime()
  const stopped = steps.find((step) => step.status === "aborted" || step.status === "error")
  const step = run.status === "done" ? null : stopped?.stepType ?? null
  const where = step === null ? "before its first step" : `in the ${step} step`
  const streamed = plural(deltas, "delta")
  if (run.status === "done") {
    const finish = generation?.finishReason ?? "no reason given"
    return { status: "done", step, reason: null, durationMs, summary: `done in ${seconds(durationMs)}: the model finished (${finish}) after ${streamed}` }
  }
  if (run.status === "aborted") {
    const reason = run.abortReason ?? "user"
    return {
      status: "aborted",
      step,
      reason,
      durationMs,
      summary: `aborted (${reason}) ${where}, ${seconds(durationMs)} after the start, after ${streamed}`
    }
  }
  const error = run.error ?? stopped?.error ?? { code: "internal_error", message: "no error was recorded" }
  return {
    status: "error",
    step,
    reason: error.code,
    durationMs,
    summary: `failed ${where} with ${error.code} (${error.message}), ${seconds(durationMs)} after the start, after ${streamed}`
  }
}

/**
 * The debug report of one turn (spec 95, `GET /runs/{runId}/report`): why the model answered
 * what it did, and where the run stopped. Everything in it is read from the run's rows and
 * journal; prompt text appears only when `STORE_PROMPT_SNAPSHOTS=true`.
 */
export class RunReport extends Schema.Class<RunReport>("RunReport")({
  snapshot: RunSnapshot,
  traceId: Schema.NullOr(Schema.String),
  /** Where it stopped and why; null while it runs. */
  ending: Schema.NullOr(RunEnding),
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
