import { Cause, Effect, Exit, Option } from "effect"
import { GenerationFailed } from "../../domain/Generation.ts"
import type { ErrorInfo } from "../../domain/Generation.ts"
import type { StepRunId } from "../../domain/Ids.ts"
import type { PromptDraft } from "../../domain/Prompt.ts"
import { stepOrder } from "../../domain/Run.ts"
import type { StepType } from "../../domain/Run.ts"
import type { RunEventBody, StepRef } from "../../domain/RunEvent.ts"
import { durably } from "../db/Unavailable.ts"
import type { Generations } from "../Generations.ts"
import { timeoutError } from "../Interruption.ts"
import type { Timeouts } from "../Interruption.ts"
import * as Metrics from "../observability/Metrics.ts"
import * as Tracing from "../observability/Tracing.ts"
import { makeId } from "../Uuid.ts"
import type { WriteBehind } from "../WriteBehind.ts"
import type { LiveRun } from "./LiveRuns.ts"
import type { PostStep } from "./PostStep.ts"
import type { PreStep } from "./PreStep.ts"
import { StepFailed } from "./RunContext.ts"
import type { RunContext, StepResult } from "./RunContext.ts"
import type { RunRows } from "./RunRows.ts"

const internalError: ErrorInfo = { code: "internal_error", message: "an internal error occurred" }

/** A step row's `output` holds at most 8 KiB of JSON (spec 30); a larger one is recorded as its size. */
const maxOutputBytes = 8 * 1024

const boundedOutput = (output: unknown): unknown => {
  if (output === undefined || output === null) return null
  const json = JSON.stringify(output)
  const bytes = Buffer.byteLength(json)
  // Postgres prints jsonb with a space after every `:` and `,`: count them as it will.
  const stored = bytes + (json.match(/[:,]/g)?.length ?? 0)
  return stored <= maxOutputBytes ? output : { truncated: true, bytes }
}

/** The `{code, message}` a failed step or run records; `undefined` for an interruption. */
const errorOf = (cause: Cause.Cause<unknown>): ErrorInfo | undefined => {
  if (Cause.isInterruptedOnly(cause)) return undefined
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    if (error instanceof GenerationFailed) return { code: error.code, message: error.message }
    if (error instanceof StepFailed) return { code: error.code ?? "step_failed", message: error.message }
  }
  return internalError
}

export interface RunProgramDeps {
  readonly pre: PreStep["Type"]
  readonly post: PostStep["Type"]
  readonly generations: Generations
  readonly writeBehind: WriteBehind
  readonly timeouts: Timeouts
}

/**
 * One run's program (spec 10, "The flow of a turn"): `pre → llm → post`, each step's row and events
 * at its start and end, and a finalization that every way of ending passes through (success, typed
 * failure, defect, interruption): the steps never reached are skipped, the run is closed, the
 * terminal event emitted, and everything the run still holds is written in one statement. The
 * rows change in memory (`RunRows`) and are written behind, so no step waits for the database:
 * the only write a run waits for is its last. The caller runs `steps` with `finalize` as their one
 * finalizer (`Runner`): a step's span and its closing share one finalizer too, so a streaming
 * run's fiber holds a few frames, not one set per concern.
 */
export const runProgram = (deps: RunProgramDeps, context: RunContext, run: LiveRun, rows: RunRows) => {
  const { log } = run
  const clock = log.clock
  const now = () => new Date(clock.unsafeCurrentTimeMillis())
  const reached = new Set<StepType>()
  /** A failure's error, or for an interruption the reason it was not an abort (a timeout). */
  const errorFor = (cause: Cause.Cause<unknown>) => errorOf(cause) ?? timeoutError(cause, deps.timeouts)

  const stepRow = (ref: StepRef, label: string, startedAt: Date) => ({
    id: ref.stepRunId,
    runId: context.runId,
    stepType: ref.stepType,
    position: stepOrder.indexOf(ref.stepType),
    label,
    startedAt,
    output: null,
    error: null
  })

  /**
   * One step: its row, its span and `pipeline.step.started` now, its closing from its own `Exit`
   * (after `ending`, the step's own last words), and its value out of its result, in one frame for
   * as long as the step runs.
   */
  const step = <A, E>(
    stepType: StepType,
    label: string,
    body: (ref: StepRef) => Effect.Effect<StepResult<A>, E>,
    ending?: (exit: Exit.Exit<StepResult<A>, E>) => void
  ): Effect.Effect<A, E> =>
    Effect.flatMap(makeId<StepRunId>(), (stepRunId) => {
      const ref: StepRef = { stepRunId, stepType }
      const startedAt = now()
      reached.add(stepType)
      rows.step({ ...stepRow(ref, label, startedAt), status: "running", finishedAt: null })
      deps.writeBehind.soon()
      log.emit({ type: "pipeline.step.started", status: "running", label }, ref)
      return Effect.flatMap(
        Tracing.openSpan(`turn.step ${stepType}`, { attributes: { "turn.step.type": stepType, "turn.step_run_id": ref.stepRunId } }),
        (span) => {
          const close = (exit: Exit.Exit<StepResult<A>, E>) => Effect.suspend(() => {
            ending?.(exit)
            const finishedAt = now()
            const error = Exit.isFailure(exit) ? errorFor(exit.cause) : undefined
            const status = Exit.isSuccess(exit) ? "done" : error === undefined ? "aborted" : "error"
            rows.step({
              ...stepRow(ref, label, startedAt),
              status,
              output: Exit.isSuccess(exit) ? boundedOutput(exit.value.output) : null,
              error: error ?? null,
              finishedAt
            })
            log.emit({
              type: "pipeline.step.done",
              status,
              durationMs: finishedAt.getTime() - startedAt.getTime(),
              ...(error ? { error } : {})
            }, ref)
            const closed = span.close(exit)
            return Exit.isFailure(exit) && error === internalError
              ? Effect.zipRight(closed, Effect.logError(`step ${stepType} failed`, exit.cause))
              : closed
          })
          // `Effect.onExit` and a `map`, merged.
          return Effect.uninterruptibleMask((restore) =>
            Effect.matchCauseEffect(restore(body(ref)), {
              onFailure: (cause) => Effect.zipRight(close(Exit.failCause(cause)), Effect.failCause(cause)),
              onSuccess: (result) => Effect.as(close(Exit.succeed(result)), result.value)
            })
          )
        }
      )
    })

  /** The `llm` step, once its generation started streaming. */
  let llmStarted: StepRef | undefined

  /** The `llm` step: the model's answer from its sink straight into the log, in plain synchronous code; its value is the whole answer. */
  const llm = (prompt: PromptDraft) => (ref: StepRef) => {
    let provider = ""
    let firstDelta = true
    log.deltasOf(ref)
    return deps.generations.run({
      chatId: context.chatId,
      assistantMessageId: context.assistantMessageId,
      variantId: context.assistantVariantId,
      prompt,
      settings: context.settings,
      runId: context.runId,
      stepRunId: ref.stepRunId
    }, {
      started: (generation) => {
        // The first event: every later one names the generation.
        llmStarted = ref
        provider = generation.provider
        const { generationId, model } = generation
        log.setGeneration(generationId)
        log.emit({ type: "llm.stream.meta", provider, model }, ref)
      },
      delta: (content) => {
        if (firstDelta) {
          firstDelta = false
          Metrics.observe(Metrics.timeToFirstToken, (now().getTime() - context.startedAt.getTime()) / 1000, { provider })
        }
        log.delta(content)
      },
      finished: (finishReason, usage) =>
        log.emit({
          type: "llm.stream.done",
          status: "done",
          ...(finishReason === null ? {} : { finishReason }),
          ...(usage === null ? {} : { usage })
        }, ref)
    }).pipe(Effect.map((answer) => ({ value: answer, output: null })))
  }

  /** The `llm` step's last words when it failed once streaming: the stream's error and end, before the step's own end. */
  const llmEnding = (exit: Exit.Exit<unknown, unknown>) => {
    if (Exit.isSuccess(exit) || llmStarted === undefined) return
    const error = errorFor(exit.cause)
    if (error !== undefined) log.emit({ type: "llm.stream.error", error }, llmStarted)
    log.emit({ type: "llm.stream.done", status: error === undefined ? "aborted" : "error" }, llmStarted)
  }

  const finalize = (exit: Exit.Exit<unknown, unknown>) =>
    Effect.gen(function*() {
      log.hold()
      for (const stepType of stepOrder) {
        if (reached.has(stepType)) continue
        const ref: StepRef = { stepRunId: yield* makeId<StepRunId>(), stepType }
        const at = now()
        rows.step({ ...stepRow(ref, stepType, at), status: "skipped", finishedAt: at })
        log.emit({ type: "pipeline.step.done", status: "skipped", durationMs: 0 }, ref)
      }
      const finishedAt = now()
      const error = Exit.isFailure(exit) ? errorFor(exit.cause) : undefined
      const abortReason = run.abortReason ?? "user"
      const terminal: RunEventBody = Exit.isSuccess(exit)
        ? { type: "pipeline.run.done", status: "done", finishedAt: finishedAt.toISOString() }
        : error === undefined
        ? { type: "pipeline.run.aborted", status: "aborted", finishedAt: finishedAt.toISOString(), abortReason }
        : { type: "pipeline.run.error", status: "error", finishedAt: finishedAt.toISOString(), error }
      rows.finish({
        status: terminal.status,
        abortReason: terminal.type === "pipeline.run.aborted" ? abortReason : null,
        error: terminal.type === "pipeline.run.done"
          ? null
          : terminal.type === "pipeline.run.aborted"
          ? { code: "aborted", message: `the run was aborted (${abortReason})` }
          : terminal.error,
        finishedAt,
        abortRequested: run.abortRequestedAt === undefined ? null : { at: run.abortRequestedAt, reason: run.abortReason ?? "user" }
      })
      log.emit(terminal)
      log.closed = true
      const reason = terminal.type === "pipeline.run.done" ? "none" : terminal.type === "pipeline.run.aborted" ? abortReason : terminal.error.code
      Metrics.count(Metrics.runsFinished, 1, { status: terminal.status, reason })
      yield* Effect.annotateCurrentSpan({
        "turn.status": terminal.status,
        ...(terminal.type === "pipeline.run.aborted" ? { "turn.abort_reason": abortReason } : {}),
        ...(terminal.type === "pipeline.run.error" ? { "turn.error_code": terminal.error.code } : {})
      })
      Metrics.observe(Metrics.runDuration, (finishedAt.getTime() - context.startedAt.getTime()) / 1000, { status: terminal.status })
      // Steps, generation, run, the last text and the last journal batch: one statement.
      yield* durably(deps.writeBehind.flush).pipe(Effect.ensuring(Effect.sync(() => log.release())))
      // A failure says why (its message is the provider's, scrubbed, or ours: never prompt text).
      yield* Effect.logInfo("run finished").pipe(Effect.annotateLogs({
        status: terminal.status,
        ...(terminal.type === "pipeline.run.error" ? { errorCode: terminal.error.code, error: terminal.error.message } : {})
      }))
    })

  /**
   * The steps, in order; whichever way they end, `finalize` closes the run from their `Exit`. A
   * chain, not a generator: nothing of it stays on the run's stack while a step runs but what
   * comes after.
   */
  const steps = deps.writeBehind.add(rows).pipe(
    Effect.zipRight(deps.writeBehind.add(log)),
    // Asked to stop before it started (spec 75): no step runs, the model is never called.
    Effect.zipRight(Effect.suspend(() => run.abortRequestedAt !== undefined ? Effect.interrupt : Effect.void)),
    Effect.zipRight(step("pre", deps.pre.label, () => deps.pre.run(context))),
    Effect.flatMap((prompt) => step("llm", "Generating answer", llm(prompt), llmEnding)),
    Effect.flatMap((answer) => step("post", deps.post.label, () => deps.post.run({ ...context, answer }))),
    Effect.map(({ content }) => {
      if (content !== undefined) rows.text(context.assistantVariantId, content)
    })
  )

  return { steps, finalize } as const
}
