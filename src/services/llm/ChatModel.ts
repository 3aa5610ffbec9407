import { LanguageModel, Prompt } from "@effect/ai"
import type { AiError } from "@effect/ai"
import { Context, Effect, Layer, Option, Stream } from "effect"
import { GenerationFailed } from "../../domain/Generation.ts"
import type { Usage } from "../../domain/Generation.ts"
import type { PromptDraft } from "../../domain/Prompt.ts"
import { GenerationSettings } from "./GenerationSettings.ts"
import { failureOf } from "./LlmFailure.ts"

/** Where a model's answer goes, synchronously, as it arrives. */
export interface ModelSink {
  /**
   * The model said something that is not text (its first chunk, say): it is not silent. A chunk
   * that names the answer's model and id passes them on (the GenAI span records them).
   */
  readonly heard: (metadata?: { readonly model?: string | undefined; readonly id?: string | undefined }) => void
  readonly delta: (text: string) => void
  /** The model finished: why, and what it counted. */
  readonly finish: (finishReason: string | null, usage: Usage | null) => void
  /**
   * The request failed before any text and is made again after `afterMs` (spec 90, retries): a
   * wait that is not silence.
   */
  readonly waiting: (afterMs: number) => void
  /** The request was made again: one more attempt. */
  readonly retried: () => void
}

/**
 * The model a generation streams from (spec 30, `llm`): its provider and default model, as each
 * generation records them, and a push-based stream of its answer. A provider calls the sink from
 * plain synchronous code as the answer arrives, so a token costs no Effect stage; the returned
 * Effect owns the call's lifetime (interrupting it cancels the call) and ends when the model has
 * finished.
 *
 * The built-in providers implement it directly; any `@effect/ai` `LanguageModel` plugs in through
 * `fromLanguageModel` (the parts of its stream are read a chunk at a time).
 */
export class ChatModel extends Context.Tag("turn-runner/ChatModel")<ChatModel, {
  readonly provider: string
  readonly model: string
  /** The server it calls, when it calls one (the GenAI span's `server.address` and `server.port`). */
  readonly server?: { readonly address: string; readonly port: number } | undefined
  readonly stream: (
    prompt: PromptDraft,
    settings: Readonly<Record<string, unknown>>,
    sink: ModelSink
  ) => Effect.Effect<void, GenerationFailed>
}>() {}

export const toPrompt = (draft: PromptDraft): Prompt.Prompt =>
  Prompt.make(draft.messages.map((message) =>
    message.role === "system"
      ? { role: "system" as const, content: message.content }
      : { role: message.role, content: [{ type: "text" as const, text: message.content }] }
  ))

export const generationFailed = (error: AiError.AiError) => new GenerationFailed(failureOf(error))

/** An `@effect/ai` `LanguageModel` as the generation's model; `settings` reach it as `GenerationSettings`. */
export const fromLanguageModel = (info: { readonly provider: string; readonly model: string }) =>
  Layer.effect(
    ChatModel,
    Effect.map(LanguageModel.LanguageModel, (model) =>
      ChatModel.of({
        ...info,
        stream: (prompt, settings, sink) =>
          model.streamText({ prompt: toPrompt(prompt) }).pipe(
            Stream.provideService(GenerationSettings, settings),
            Stream.runForEachChunk((parts) =>
              Effect.sync(() => {
                sink.heard()
                for (const part of parts) {
                  if (part.type === "response-metadata") {
                    sink.heard({ model: Option.getOrUndefined(part.modelId), id: Option.getOrUndefined(part.id) })
                  } else if (part.type === "text-delta") {
                    if (part.delta.length > 0) sink.delta(part.delta)
                  } else if (part.type === "finish") {
                    sink.finish(
                      part.reason,
                      part.usage.inputTokens === undefined && part.usage.outputTokens === undefined
                        ? null
                        : { promptTokens: part.usage.inputTokens ?? 0, completionTokens: part.usage.outputTokens ?? 0 }
                    )
                  }
                }
              })
            ),
            Effect.mapError(generationFailed)
          )
      }))
  )
