import { Cause, Clock, Duration, Effect, Exit, Fiber, FiberMap, Option, Schedule } from "effect"
import type { Scope } from "effect"
import { GenerationFailed } from "../../domain/Generation.ts"
import type { ErrorInfo } from "../../domain/Generation.ts"
import type { RunId, StepRunId } from "../../domain/Ids.ts"
import type { AbortReason, StepType } from "../../domain/Run.ts"
import { builtinPipeline, stepOrder } from "../../domain/Run.ts"
import type { PromptDraft } from "../../domain/Prompt.ts"
import type { RunEventBody, StepRef } from "../../domain/RunEvent.ts"
import { AppConfig } from "../AppConfig.ts"
import { Generations } from "../Generations.ts"
import { WriteBehind } from "../WriteBehind.ts"
import { InterruptionCause } from "../Interruption.ts"
import { RunsRepo } from "../RunsRepo.ts"
import { durably } from "../db/Unavailable.ts"
import { makeId } from "../Uuid.ts"
import { EventLog } from "./EventLog.ts"
import { LiveRuns } from "./LiveRuns.ts"
import type { LiveRun } from "./LiveRuns.ts"
import { PostStep } from "./PostStep.ts"
import { PreStep } from "./PreStep.ts"
import { StepFailed } from "./RunContext.ts"
import type { RunContext } from "./RunContext.ts"

const now = Effect.map(Clock.currentTimeMillis, (millis) => new Date(millis))

const internalError: ErrorInfo = { code: "internal_error", message: "an internal error occurred" }

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

/**
 * Runs turns (spec 10): each run executes `pre → llm → post` in its own fiber, owned by this
 * scoped service rather than by the HTTP request that started it. Every way a run can end
 * (success, typed failure, defect, interruption) passes through the same finalizers, which
 * close the step rows, skip the steps never reached, close the run and emit its terminal event.
 */
export class Runner extends Effect.Service<Runner>()("turn-runner/Runner", {
  scoped: Effect.gen(function*() {
    const config = yield* AppConfig
    const runs = yield* RunsRepo
    const generations = yield* Generations
    const writeBehind = yield* WriteBehind
    const pre = yield* PreStep
    const post = yield* PostStep
    const fibers = yield* FiberMap.make<RunId>()
    const scope = yield* Effect.scope
    const live = yield* LiveRuns
    // Runs still live when the service closes (the process is stopping) end `aborted (shutdown)`;
    // registered after the FiberMap, so it runs before the FiberMap interrupts them.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const run of live.all()) run.abortReason ??= "shutdown"
      })
    )
    const runTimeout = Duration.millis(config.runTimeoutMs)

    // Leases (spec 10, "Crash safety"): while this process lives its runs' leases keep moving
    // ahead; once it dies they expire and any instance's sweeper closes the runs.
    yield* Effect.flatMap(now, (at) => runs.renewLeases(live.ids(), new Date(at.getTime() + config.leaseTtlMs))).pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("could not renew leases", cause)),
      Effect.repeat(Schedule.spaced(Duration.millis(config.leaseTtlMs / 3))),
      Effect.forkScoped
    )

    const execute = (context: RunContext, run: LiveRun) => {
      const { log } = run
      const reached = new Set<StepType>()
      const interruption: { error: ErrorInfo | undefined } = { error: undefined }
      /** A failure's error, or for an interruption the reason it was not an abort (a timeout). */
      const errorFor = (cause: Cause.Cause<unknown>) => errorOf(cause) ?? interruption.error

      /** One step: its row and `pipeline.step.started` now, its closing from its own `Exit`. */
      const step = <A, E>(
        stepType: StepType,
        label: string,
        body: (ref: StepRef) => Effect.Effect<{ readonly value: A; readonly output: unknown }, E>
      ) =>
        Effect.gen(function*() {
          const ref: StepRef = { stepRunId: yield* makeId<StepRunId>(), stepType }
          const startedAt = yield* now
          reached.add(stepType)
          yield* runs.insertStep({ id: ref.stepRunId, runId: context.runId, stepType, position: stepOrder.indexOf(stepType), status: "running", label, startedAt })
          log.emit({ type: "pipeline.step.started", status: "running", label }, ref)
          return yield* body(ref).pipe(
            Effect.onExit((exit) =>
              Effect.gen(function*() {
                const finishedAt = yield* now
                const error = Exit.isFailure(exit) ? errorFor(exit.cause) : undefined
                const status = Exit.isSuccess(exit) ? "done" : error === undefined ? "aborted" : "error"
                if (Exit.isFailure(exit) && error === internalError) yield* Effect.logError(`step ${stepType} failed`, exit.cause)
                yield* durably(runs.finishStep(ref.stepRunId, {
                  status,
                  output: Exit.isSuccess(exit) ? exit.value.output : null,
                  error: error ?? null,
                  finishedAt
                }))
                log.emit({
                  type: "pipeline.step.done",
                  status,
                  durationMs: finishedAt.getTime() - startedAt.getTime(),
                  ...(error ? { error } : {})
                }, ref)
              })
            ),
            Effect.map(({ value }) => value)
          )
        })

      const llm = (prompt: PromptDraft) => (ref: StepRef) => {
        let started = false
        log.deltasOf(ref)
        // The token path: from the model's sink straight into the log, in plain synchronous code.
        return generations.run({
          chatId: context.chatId,
          assistantMessageId: context.assistantMessageId,
          variantId: context.assistantVariantId,
          prompt,
          settings: context.settings,
          runId: context.runId,
          stepRunId: ref.stepRunId
        }, {
          started: ({ generationId, model, provider }) => {
            // The first event: every later one names the generation. The run row already does,
            // as the generation's insert linked them.
            started = true
            log.setGeneration(generationId)
            log.emit({ type: "llm.stream.meta", provider, model }, ref)
          },
          delta: (content) => log.delta(content),
          finished: (finishReason, usage) =>
            log.emit({
              type: "llm.stream.done",
              status: "done",
              ...(finishReason === null ? {} : { finishReason }),
              ...(usage === null ? {} : { usage })
            }, ref)
        }).pipe(
          Effect.onExit((exit) =>
            Effect.sync(() => {
              if (Exit.isSuccess(exit) || !started) return
              const error = errorFor(exit.cause)
              if (error !== undefined) log.emit({ type: "llm.stream.error", error }, ref)
              log.emit({ type: "llm.stream.done", status: error === undefined ? "aborted" : "error" }, ref)
            })
          ),
          Effect.as({ value: undefined, output: null })
        )
      }

      const steps = Effect.gen(function*() {
        const prompt = yield* step("pre", pre.label, () => pre.run(context))
        yield* step("llm", "Generating answer", llm(prompt))
        yield* step("post", post.label, () => post.run(context))
      })

      const finalize = (exit: Exit.Exit<unknown, unknown>) =>
        Effect.gen(function*() {
          for (const stepType of stepOrder) {
            if (reached.has(stepType)) continue
            const ref: StepRef = { stepRunId: yield* makeId<StepRunId>(), stepType }
            yield* durably(runs.insertStep({ id: ref.stepRunId, runId: context.runId, stepType, position: stepOrder.indexOf(stepType), status: "skipped", label: stepType, startedAt: yield* now }))
            log.emit({ type: "pipeline.step.done", status: "skipped", durationMs: 0 }, ref)
          }
          const finishedAt = yield* now
          const error = Exit.isFailure(exit) ? errorFor(exit.cause) : undefined
          const abortReason = run.abortReason ?? "user"
          const terminal: RunEventBody = Exit.isSuccess(exit)
            ? { type: "pipeline.run.done", status: "done", finishedAt: finishedAt.toISOString() }
            : error === undefined
            ? { type: "pipeline.run.aborted", status: "aborted", finishedAt: finishedAt.toISOString(), abortReason }
            : { type: "pipeline.run.error", status: "error", finishedAt: finishedAt.toISOString(), error }
          yield* durably(runs.finish(context.runId, {
            status: terminal.status,
            abortReason: terminal.type === "pipeline.run.aborted" ? abortReason : null,
            error: terminal.type === "pipeline.run.done"
              ? null
              : terminal.type === "pipeline.run.aborted"
              ? { code: "aborted", message: `the run was aborted (${abortReason})` }
              : terminal.error,
            finishedAt
          }))
          log.emit(terminal)
          yield* durably(writeBehind.writeNow(log.pendingWrites))
          yield* Effect.logInfo("run finished").pipe(Effect.annotateLogs({ status: terminal.status }))
        }).pipe(Effect.ensuring(Effect.sync(() => live.remove(context.runId))))

      return Effect.gen(function*() {
        yield* Effect.logInfo("run started").pipe(Effect.annotateLogs({ trigger: context.trigger }))
        // The journal is written once per interval while the run lives, and once more at its end.
        yield* writeBehind.register(log.pendingWrites)
        // RUN_TIMEOUT_MS: a watchdog interrupts the run as an abort would, having said why.
        yield* Effect.withFiberRuntime<void, never, Scope.Scope>((self) =>
          Effect.sleep(runTimeout).pipe(
            Effect.zipRight(Effect.sync(() => {
              interruption.error = { code: "run_timeout", message: `the run took longer than ${config.runTimeoutMs} ms` }
            })),
            Effect.zipRight(Fiber.interruptFork(self)),
            Effect.forkScoped,
            Effect.asVoid
          ))
        yield* steps
      }).pipe(
        Effect.provideService(InterruptionCause, interruption),
        Effect.scoped,
        Effect.onExit(finalize),
        Effect.annotateLogs({ runId: context.runId, chatId: context.chatId }),
        Effect.withSpan("Runner.run", { attributes: { runId: context.runId } })
      )
    }

    /** Emits `pipeline.run.started` and forks the run; call right after its row commits. */
    const launch = Effect.fn("Runner.launch")(function*(context: RunContext) {
      const log = new EventLog({
        chatId: context.chatId,
        runId: context.runId,
        pipelineId: builtinPipeline.id,
        pipelineName: builtinPipeline.name,
        trigger: context.trigger,
        userMessageId: context.userMessageId,
        assistantMessageId: context.assistantMessageId,
        assistantVariantId: context.assistantVariantId,
        generationId: null
      }, yield* Effect.clock)
      const run: LiveRun = { log, abortReason: undefined }
      live.add(run)
      log.emit({ type: "pipeline.run.started", status: "running" })
      yield* FiberMap.run(fibers, context.runId, execute(context, run))
    })

    /** Interrupts a live run and waits until it is terminal; a finished run is left as it is. */
    const abort = Effect.fn("Runner.abort")(function*(runId: RunId, reason: AbortReason) {
      const run = live.get(runId)
      if (run !== undefined) run.abortReason ??= reason
      const fiber = yield* FiberMap.get(fibers, runId).pipe(Effect.option)
      if (Option.isSome(fiber)) yield* Fiber.interrupt(fiber.value)
    })

    /** Aborts without waiting, in the runner's own scope: for callers that are going away (a disconnect). */
    const abortInBackground = (runId: RunId, reason: AbortReason) => Effect.asVoid(Effect.forkIn(abort(runId, reason), scope))

    let draining = false

    /**
     * Graceful shutdown (spec 10): stop taking turns, let live runs finish for
     * `SHUTDOWN_GRACE_MS`, then abort the rest (`shutdown`) and wait until they are terminal.
     */
    const drain = Effect.gen(function*() {
      draining = true
      const running = () => live.ids().flatMap((runId) => Option.toArray(FiberMap.unsafeGet(fibers, runId)))
      yield* Effect.logInfo("draining").pipe(Effect.annotateLogs({ liveRuns: live.size, graceMs: config.shutdownGraceMs }))
      yield* Fiber.awaitAll(running()).pipe(Effect.timeout(Duration.millis(config.shutdownGraceMs)), Effect.ignore)
      for (const run of live.all()) run.abortReason ??= "shutdown"
      yield* Fiber.interruptAll(running())
    }).pipe(Effect.withSpan("Runner.drain"))

    return {
      launch,
      abort,
      abortInBackground,
      drain,
      isDraining: () => draining,
      isLive: live.has
    } as const
  })
}) {}
