import { Cause, Clock, Effect, Exit, Fiber, HashSet, Mailbox, Stream } from "effect"
import { GenerationFailed } from "../domain/Generation.ts"
import type { ErrorInfo, Usage } from "../domain/Generation.ts"
import type { ChatId, GenerationId, MessageId, RunId, StepRunId, VariantId } from "../domain/Ids.ts"
import type { PromptDraft } from "../domain/Prompt.ts"
import { AppConfig } from "./AppConfig.ts"
import type { Batch, GenerationState } from "./BatchRepo.ts"
import { llmIdleTimeout, llmIdleTimeoutError, timeoutError } from "./Interruption.ts"
import { durably } from "./db/Unavailable.ts"
import { sha256Of, sha256OfText } from "./Hashing.ts"
import { ChatModel } from "./llm/ChatModel.ts"
import * as GenAiSpan from "./observability/GenAiSpan.ts"
import * as Metrics from "./observability/Metrics.ts"
import * as Tracing from "./observability/Tracing.ts"
import { makeId } from "./Uuid.ts"
import { merge, WriteBehind } from "./WriteBehind.ts"

export interface GenerateRequest {
  readonly chatId: ChatId
  readonly assistantMessageId: MessageId
  readonly variantId: VariantId
  readonly prompt: PromptDraft
  readonly settings: Readonly<Record<string, unknown>>
  /** Set when the generation is a run's `llm` step. */
  readonly runId?: RunId | undefined
  readonly stepRunId?: StepRunId | undefined
}

/** Where a generation's answer goes, synchronously, as it leaves: its row exists, then text, then how it finished. */
export interface GenerationSink {
  readonly started: (generation: { readonly generationId: GenerationId; readonly provider: string; readonly model: string }) => void
  readonly delta: (content: string) => void
  readonly finished: (finishReason: string | null, usage: Usage | null) => void
}

/** A generation's answer as a stream of values (`generate`). */
export type GenerationEvent =
  | { readonly _tag: "Started"; readonly generationId: GenerationId; readonly provider: string; readonly model: string }
  | { readonly _tag: "Delta"; readonly content: string }
  | { readonly _tag: "Finished"; readonly finishReason: string | null; readonly usage: Usage | null }

const currentDate = Effect.map(Clock.currentTimeMillis, (millis) => new Date(millis))

/** A generation the idle watchdog listens to. */
interface Listening {
  lastHeardAt: number
  readonly silent: () => void
}

/**
 * The chat-core's streaming generation (spec 30, `llm`). `run` creates the `llm_generations` row,
 * streams the model's answer into a sink, writes the text to the variant at most once per
 * `FLUSH_INTERVAL_MS` and once at the end, and closes the row from its `Exit`: `done` when the
 * model finished, `error` with its code when it failed, `aborted` when interrupted; it succeeds
 * with the answer's whole text, as it was streamed. A silence of
 * `LLM_IDLE_TIMEOUT_MS` (first chunk included) interrupts the fiber streaming it as `llmIdleTimeout`
 * (`Interruption.ts`), and it ends `error` with `upstream_timeout`.
 *
 * The answer's path is plain synchronous code from the model's sink to the caller's: a token
 * costs no Effect stage, and the model is called in the caller's own fiber (a run's request to
 * the model leaves in the same pass that started the run). `generate` offers the same answer as a
 * `Stream`.
 */
export class Generations extends Effect.Service<Generations>()("turn-runner/Generations", {
  scoped: Effect.gen(function*() {
    const config = yield* AppConfig
    const model = yield* ChatModel
    const writeBehind = yield* WriteBehind

    // LLM_IDLE_TIMEOUT_MS: one watchdog for every generation, waking when the nearest silence
    // could be over. A generation heard later than the others has a later deadline, so one that
    // starts while the watchdog sleeps never needs it sooner.
    const listening = new Set<Listening>()
    const listened = yield* Effect.makeLatch(false)
    yield* Effect.gen(function*() {
      while (true) {
        if (listening.size === 0) {
          listened.unsafeClose()
          yield* listened.await
          continue
        }
        const now = yield* Clock.currentTimeMillis
        let nearest = Infinity
        for (const generation of listening) {
          const deadline = generation.lastHeardAt + config.llmIdleTimeoutMs
          if (deadline > now) nearest = Math.min(nearest, deadline)
          else {
            listening.delete(generation)
            generation.silent()
          }
        }
        if (nearest !== Infinity) yield* Effect.sleep(nearest - now)
      }
    }).pipe(Effect.forkScoped)

    const run = (request: GenerateRequest, sink: GenerationSink): Effect.Effect<string, GenerationFailed> =>
      Effect.gen(function*() {
        const generationId = yield* makeId<GenerationId>()
        const clock = yield* Effect.clock
        const fiber = yield* Effect.withFiberRuntime<Fiber.RuntimeFiber<unknown, unknown>>((fiber) => Effect.succeed(fiber))
        const modelName = typeof request.settings.model === "string" ? request.settings.model : model.model
        // The parent of the model's request (spec 95); closed after the row, so it records the outcome.
        const { close: closeSpan, span } = yield* Tracing.openSpan(GenAiSpan.spanName(modelName), {
          kind: "client",
          attributes: GenAiSpan.requestAttributes({
            provider: model.provider,
            model: modelName,
            chatId: request.chatId,
            settings: request.settings,
            server: model.server,
            prompt: config.storePromptSnapshots ? request.prompt : undefined
          })
        })
        let answered: { model?: string | undefined; id?: string | undefined } = {}
        let text = ""
        let writtenLength = 0
        let finished: { readonly finishReason: string | null; readonly usage: Usage | null } | undefined
        // The prompt's hashes are made when the row is first written: nothing but the request before it.
        let digest: PromptDigest | undefined
        let row: GenerationRow = {
          id: generationId,
          runId: request.runId ?? null,
          stepRunId: request.stepRunId ?? null,
          chatId: request.chatId,
          assistantMessageId: request.assistantMessageId,
          variantId: request.variantId,
          status: "streaming",
          provider: model.provider,
          model: modelName,
          params: request.settings,
          promptSnapshot: config.storePromptSnapshots ? request.prompt : null,
          finishReason: null,
          usage: null,
          error: null,
          attempts: 1,
          startedAt: yield* currentDate,
          finishedAt: null
        }
        let rowVersion = 1
        let rowWritten = 0

        // The row (with the variant's and the run's links to it) and the text are written behind:
        // the row at once, the text once per interval. Counted as written only once they are.
        const source = {
          closed: false,
          take: (batch: Batch, rowsOnly: boolean) => {
            const version = rowVersion
            const content = text
            const writeText = !rowsOnly && content.length !== writtenLength
            if (version === rowWritten && !writeText) return undefined
            if (version !== rowWritten) {
              digest ??= promptDigest(request.prompt)
              batch.generations.set(generationId, { ...row, ...digest })
              merge(batch.variants, request.variantId, { generationId })
              if (request.runId !== undefined) merge(batch.runs, request.runId, { generationId })
            }
            if (writeText) merge(batch.variants, request.variantId, { content })
            return () => {
              rowWritten = Math.max(rowWritten, version)
              if (writeText) writtenLength = Math.max(writtenLength, content.length)
            }
          }
        }

        // A run's generation is written with the run's next write (its finalization, or before
        // `post`); on its own, a generation is written before it ends.
        const close = (exit: Exit.Exit<unknown, unknown>) =>
          Effect.gen(function*() {
            const timedOut = Exit.isFailure(exit) ? timeoutError(exit.cause, config) : undefined
            row = { ...row, ...outcomeOf(exit, finished, timedOut, yield* currentDate) }
            recordMetrics(row, deltas)
            GenAiSpan.recordResponse(span, {
              ...answered,
              finishReason: row.finishReason,
              usage: row.usage,
              error: row.status === "error" ? row.error : null,
              answer: config.storePromptSnapshots ? text : undefined
            })
            rowVersion++
            source.closed = true
            if (request.runId === undefined) yield* durably(writeBehind.flush)
          }).pipe(Effect.withSpan("Generations.close"))

        yield* writeBehind.add(source)
        writeBehind.soon()

        // Text counts as it leaves, so the variant holds exactly what was streamed.
        let deltas = 0
        const emit = (content: string) => {
          deltas++
          text += content
          sink.delta(content)
        }
        // DELTA_COALESCE_MS (spec 30): chunks that arrive within one window leave as one delta.
        let held = ""
        const window = Effect.unsafeMakeLatch(false)
        const coalescing = config.deltaCoalesceMs <= 0 ? undefined : yield* Effect.fork(Effect.gen(function*() {
          while (true) {
            yield* window.await
            yield* Effect.sleep(config.deltaCoalesceMs)
            window.unsafeClose()
            const content = held
            held = ""
            if (content !== "") emit(content)
          }
        }))

        // The model answers in this fiber; the watchdog interrupts a silent one.
        const listener: Listening = {
          lastHeardAt: clock.unsafeCurrentTimeMillis(),
          silent: () => fiber.unsafeInterruptAsFork(llmIdleTimeout)
        }
        listening.add(listener)
        listened.unsafeOpen()
        const answer = model.stream(request.prompt, request.settings, {
          heard: (metadata) => {
            listener.lastHeardAt = clock.unsafeCurrentTimeMillis()
            if (metadata !== undefined) answered = { model: metadata.model ?? answered.model, id: metadata.id ?? answered.id }
          },
          delta: (content) => {
            listener.lastHeardAt = clock.unsafeCurrentTimeMillis()
            if (config.deltaCoalesceMs <= 0) return emit(content)
            if (held === "") window.unsafeOpen()
            held += content
          },
          waiting: (afterMs) => {
            // The wait before the next request is not silence; that request's own is.
            listener.lastHeardAt = clock.unsafeCurrentTimeMillis() + afterMs
          },
          retried: () => {
            listener.lastHeardAt = clock.unsafeCurrentTimeMillis()
            row = { ...row, attempts: row.attempts + 1 }
            rowVersion++
            writeBehind.soon()
          },
          finish: (finishReason, usage) => {
            listener.lastHeardAt = clock.unsafeCurrentTimeMillis()
            if (held !== "") {
              emit(held)
              held = ""
            }
            finished = { finishReason, usage }
            sink.finished(finishReason, usage)
          }
        })
        // One finalizer, from the first write on: the watchdog and the coalescing let go, the row
        // closed, then the span.
        const ending = (exit: Exit.Exit<string, GenerationFailed>) =>
          Effect.suspend(() => {
            listening.delete(listener)
            return (coalescing === undefined ? close(exit) : Effect.zipRight(Fiber.interrupt(coalescing), close(exit))).pipe(
              Effect.ensuring(closeSpan(exit))
            )
          })
        // Returned, not run here: this generator ends, so nothing of it stays on the fiber's stack
        // while the answer streams, and the finalizer and the answer's check are one frame.
        return Effect.uninterruptibleMask((restore) =>
          Effect.matchCauseEffect(
            restore(Effect.suspend(() => {
              sink.started({ generationId, provider: model.provider, model: modelName })
              return answer
            })),
            {
              onFailure: (cause) => Effect.zipRight(ending(Exit.failCause(cause)), Effect.failCause(cause)),
              onSuccess: () => {
                // A model that stopped without saying it finished cut the answer short (spec 90).
                const exit = finished === undefined ? Exit.fail(unfinished) : Exit.succeed(text)
                return Effect.zipRight(ending(exit), exit)
              }
            }
          )
        )
      }).pipe(Effect.flatten)

    /** The same generation as a `Stream`: for programs that consume it as values. */
    const generate = (request: GenerateRequest): Stream.Stream<GenerationEvent, GenerationFailed> =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const events = yield* Mailbox.make<GenerationEvent, GenerationFailed>()
        yield* run(request, {
          started: (generation) => events.unsafeOffer({ _tag: "Started", ...generation }),
          delta: (content) => events.unsafeOffer({ _tag: "Delta", content }),
          finished: (finishReason, usage) => events.unsafeOffer({ _tag: "Finished", finishReason, usage })
        }).pipe(
          Effect.asVoid,
          // The watchdog's interruption ends this fiber: the stream fails as the generation did.
          Effect.onExit((exit) => Effect.sync(() => events.unsafeDone(failedOnSilence(exit, config.llmIdleTimeoutMs)))),
          Effect.forkScoped
        )
        return Mailbox.toStream(events)
      }))

    return { run, generate } as const
  }),
  dependencies: [WriteBehind.Default]
}) {}

type Outcome = Pick<GenerationState, "status" | "finishReason" | "usage" | "error" | "finishedAt">

const outcomeOf = (
  exit: Exit.Exit<unknown, unknown>,
  finished: { readonly finishReason: string | null; readonly usage: Usage | null } | undefined,
  interruptedBecause: ErrorInfo | undefined,
  finishedAt: Date
): Outcome => {
  const base = { finishReason: finished?.finishReason ?? null, usage: finished?.usage ?? null, finishedAt }
  if (Exit.isSuccess(exit)) return { ...base, status: "done", error: null }
  if (Cause.isInterruptedOnly(exit.cause)) {
    return interruptedBecause === undefined
      ? { ...base, status: "aborted", error: abortedInfo }
      : { ...base, status: "error", error: interruptedBecause }
  }
  const failure = Cause.failureOption(exit.cause)
  const error: ErrorInfo = failure._tag === "Some" && failure.value instanceof GenerationFailed
    ? { code: failure.value.code, message: failure.value.message }
    : { code: "internal_error", message: "the generation failed unexpectedly" }
  return { ...base, status: "error", error }
}

/** A generation the watchdog interrupted, as the failure it is (`upstream_timeout`). */
const failedOnSilence = (exit: Exit.Exit<void, GenerationFailed>, idleTimeoutMs: number): Exit.Exit<void, GenerationFailed> =>
  Exit.isFailure(exit) && HashSet.has(Cause.interruptors(exit.cause), llmIdleTimeout)
    ? Exit.fail(new GenerationFailed(llmIdleTimeoutError(idleTimeoutMs)))
    : exit

/** What a generation's row records of its prompt: its hash, and each message's role, length and hash. */
type PromptDigest = Pick<GenerationState, "promptHash" | "promptMessages">

/** A generation's row as it changes in memory; its prompt's digest is added as it is written. */
type GenerationRow = Omit<GenerationState, keyof PromptDigest>

const promptDigest = (prompt: PromptDraft): PromptDigest => ({
  promptHash: sha256Of(prompt),
  promptMessages: prompt.messages.map((message) => ({
    role: message.role,
    length: message.content.length,
    hash: sha256OfText(message.content).slice(0, 16)
  }))
})

const abortedInfo: ErrorInfo = { code: "aborted", message: "the generation was aborted" }

/** The provider's failures, as opposed to the run's own (an abort, a run timeout). */
const upstreamCodes = new Set(["llm_error", "rate_limited", "upstream_timeout", "upstream_unavailable"])

/** A generation's share of the metrics (spec 95), added once it ended. */
const recordMetrics = (row: GenerationRow, deltas: number) => {
  const provider = row.provider
  Metrics.count(Metrics.streamDeltas, deltas, { provider })
  if (row.usage !== null) {
    Metrics.count(Metrics.usageTokens, row.usage.promptTokens, { provider, type: "input" })
    Metrics.count(Metrics.usageTokens, row.usage.completionTokens, { provider, type: "output" })
  }
  if (row.error !== null && upstreamCodes.has(row.error.code)) Metrics.count(Metrics.upstreamErrors, 1, { code: row.error.code })
}

const unfinished = new GenerationFailed({ code: "llm_error", message: "the provider ended the stream before finishing" })
