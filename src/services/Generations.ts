import { LanguageModel, Prompt } from "@effect/ai"
import type { AiError } from "@effect/ai"
import { Cause, Clock, Duration, Effect, Exit, Mailbox, Stream } from "effect"
import { GenerationFailed } from "../domain/Generation.ts"
import type { ErrorInfo, Usage } from "../domain/Generation.ts"
import type { ChatId, GenerationId, MessageId, RunId, StepRunId, VariantId } from "../domain/Ids.ts"
import type { PromptDraft } from "../domain/Prompt.ts"
import { AppConfig } from "./AppConfig.ts"
import { GenerationsRepo } from "./GenerationsRepo.ts"
import { InterruptionCause } from "./Interruption.ts"
import type { GenerationOutcome } from "./GenerationsRepo.ts"
import { durably } from "./db/Unavailable.ts"
import { sha256Of } from "./Hashing.ts"
import { GenerationSettings } from "./llm/GenerationSettings.ts"
import { ModelInfo } from "./llm/LanguageModelLive.ts"
import { failureOf } from "./llm/LlmFailure.ts"
import { makeId } from "./Uuid.ts"
import { WriteBehind } from "./WriteBehind.ts"
import type { PendingWrites } from "./WriteBehind.ts"

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

/** What a generation streams: its row exists, then text, then how it finished. */
export type GenerationEvent =
  | { readonly _tag: "Started"; readonly generationId: GenerationId; readonly provider: string; readonly model: string }
  | { readonly _tag: "Delta"; readonly content: string }
  | { readonly _tag: "Finished"; readonly finishReason: string | null; readonly usage: Usage | null }

const toPrompt = (draft: PromptDraft): Prompt.Prompt =>
  Prompt.make(draft.messages.map((message) =>
    message.role === "system"
      ? { role: "system" as const, content: message.content }
      : { role: message.role, content: [{ type: "text" as const, text: message.content }] }
  ))

const currentDate = Effect.map(Clock.currentTimeMillis, (millis) => new Date(millis))

/**
 * The chat-core's streaming generation (spec 30, `llm`). `generate` creates the
 * `llm_generations` row, streams the model's answer, writes the text to the variant at most once
 * per `FLUSH_INTERVAL_MS` and once at the end, and closes the row from the stream's `Exit`:
 * `done` when the model finished, `error` with its code when it failed, `aborted` when the
 * consumer was interrupted or stopped early. A silence of `LLM_IDLE_TIMEOUT_MS` (first chunk
 * included) fails it with `upstream_timeout`.
 */
export class Generations extends Effect.Service<Generations>()("turn-runner/Generations", {
  effect: Effect.gen(function*() {
    const config = yield* AppConfig
    const model = yield* LanguageModel.LanguageModel
    const info = yield* ModelInfo
    const repo = yield* GenerationsRepo
    const writeBehind = yield* WriteBehind

    /** `DELTA_COALESCE_MS` (spec 30): chunks that arrive within one window leave as one delta. */
    const coalesce = (events: Stream.Stream<GenerationEvent, GenerationFailed>) =>
      config.deltaCoalesceMs <= 0 ? events : events.pipe(
        Stream.groupedWithin(Number.MAX_SAFE_INTEGER, Duration.millis(config.deltaCoalesceMs)),
        Stream.mapConcat((group) => {
          const merged: Array<GenerationEvent> = []
          for (const event of group) {
            const last = merged[merged.length - 1]
            if (event._tag === "Delta" && last?._tag === "Delta") merged[merged.length - 1] = { _tag: "Delta", content: last.content + event.content }
            else merged.push(event)
          }
          return merged
        })
      )

    const generate = (request: GenerateRequest): Stream.Stream<GenerationEvent, GenerationFailed> =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const generationId = yield* makeId<GenerationId>()
        const interruption = yield* InterruptionCause
        const modelName = typeof request.settings.model === "string" ? request.settings.model : info.model
        let text = ""
        let flushedLength = 0
        let finished: Extract<GenerationEvent, { _tag: "Finished" }> | undefined

        // The text is written behind, once per interval; counted as written only once it is.
        const pendingText: PendingWrites = (batch) => {
          const content = text
          if (content.length === flushedLength) return undefined
          batch.texts.set(request.variantId, content)
          return () => {
            flushedLength = Math.max(flushedLength, content.length)
          }
        }

        const close = (exit: Exit.Exit<unknown, unknown>) =>
          Effect.gen(function*() {
            yield* durably(writeBehind.writeNow(pendingText))
            yield* durably(repo.finish(generationId, outcomeOf(exit, finished, interruption.error, yield* currentDate)))
          }).pipe(Effect.withSpan("Generations.close"))

        yield* Effect.acquireRelease(
          Effect.flatMap(currentDate, (startedAt) =>
            repo.insert({
              id: generationId,
              runId: request.runId ?? null,
              stepRunId: request.stepRunId ?? null,
              chatId: request.chatId,
              assistantMessageId: request.assistantMessageId,
              variantId: request.variantId,
              provider: info.provider,
              model: modelName,
              params: request.settings,
              promptHash: sha256Of(request.prompt),
              promptSnapshot: config.storePromptSnapshots ? request.prompt : null,
              startedAt
            })),
          (_, exit) => close(exit)
        )
        // Released before `close` (finalizers run in reverse), so the last write is close's own.
        yield* writeBehind.register(pendingText)

        // The model's stream is read by a fiber of its own into a mailbox that the consumer
        // drains, so a silence can fail it from outside (a timeout per pull would cost two fibers
        // per token) and whatever piled up leaves together.
        const answer = yield* Mailbox.make<GenerationEvent, GenerationFailed>()
        const started: GenerationEvent = { _tag: "Started", generationId, provider: info.provider, model: modelName }
        // Without coalescing the first event goes through the mailbox too, which saves a stage.
        if (config.deltaCoalesceMs <= 0) yield* answer.offer(started)
        const clock = yield* Effect.clock
        let lastHeardAt = clock.unsafeCurrentTimeMillis()
        yield* model.streamText({ prompt: toPrompt(request.prompt) }).pipe(
          Stream.provideService(GenerationSettings, request.settings),
          Stream.runForEachChunk((parts) => {
            lastHeardAt = clock.unsafeCurrentTimeMillis()
            const events: Array<GenerationEvent> = []
            for (const part of parts) {
              if (part.type === "text-delta") {
                if (part.delta.length > 0) events.push({ _tag: "Delta", content: part.delta })
              } else if (part.type === "finish") {
                events.push({
                  _tag: "Finished",
                  finishReason: part.reason,
                  usage: part.usage.inputTokens === undefined && part.usage.outputTokens === undefined
                    ? null
                    : { promptTokens: part.usage.inputTokens ?? 0, completionTokens: part.usage.outputTokens ?? 0 }
                })
              }
            }
            return events.length === 0 ? Effect.void : answer.offerAll(events)
          }),
          Effect.mapError((error: AiError.AiError) => new GenerationFailed(failureOf(error))),
          Mailbox.into(answer),
          Effect.forkScoped
        )
        // LLM_IDLE_TIMEOUT_MS: one watchdog per generation, waking when the silence could be over.
        yield* Effect.gen(function*() {
          while (true) {
            const silentMs = clock.unsafeCurrentTimeMillis() - lastHeardAt
            if (silentMs >= config.llmIdleTimeoutMs) {
              return yield* answer.fail(
                new GenerationFailed({ code: "upstream_timeout", message: `no answer from the model for ${config.llmIdleTimeoutMs} ms` })
              )
            }
            yield* Effect.sleep(config.llmIdleTimeoutMs - silentMs)
          }
        }).pipe(Effect.forkScoped)

        // Text and finish count as they leave, so the variant holds exactly what was streamed and a
        // consumer that stopped reading before the finish cut the answer short.
        const events = config.deltaCoalesceMs <= 0
          ? Mailbox.toStream(answer)
          : Stream.concat(Stream.make(started), coalesce(Mailbox.toStream(answer)))
        return events.pipe(Stream.mapChunks((events) => {
          for (const event of events) {
            if (event._tag === "Delta") text += event.content
            else if (event._tag === "Finished") finished = event
          }
          return events
        }))
      }))

    return { generate } as const
  }),
  dependencies: [GenerationsRepo.Default, WriteBehind.Default]
}) {}

const outcomeOf = (
  exit: Exit.Exit<unknown, unknown>,
  finished: Extract<GenerationEvent, { _tag: "Finished" }> | undefined,
  interruptedBecause: ErrorInfo | undefined,
  finishedAt: Date
): GenerationOutcome => {
  const base = { finishReason: finished?.finishReason ?? null, usage: finished?.usage ?? null, finishedAt }
  if (Exit.isSuccess(exit)) {
    // A consumer that stopped reading before the model finished cut the answer short.
    return finished ? { ...base, status: "done", error: null } : { ...base, status: "aborted", error: abortedInfo }
  }
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

const abortedInfo: ErrorInfo = { code: "aborted", message: "the generation was aborted" }
