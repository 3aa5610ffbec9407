import { Context, Effect, Layer } from "effect"
import type { PromptDraft, PromptMessage } from "../../domain/Prompt.ts"
import { AppConfig } from "../AppConfig.ts"
import { sha256Of } from "../Hashing.ts"
import type { StepProgram } from "./RunContext.ts"

/** The `pre` step (spec 30): builds the prompt. A library user may provide their own Layer. */
export class PreStep extends Context.Tag("turn-runner/PreStep")<PreStep, StepProgram<PromptDraft>>() {}

/** Keeps the newest messages within both limits: older ones are dropped first. */
export const boundHistory = (history: ReadonlyArray<PromptMessage>, maxMessages: number, maxChars: number) => {
  const kept: Array<PromptMessage> = []
  let chars = 0
  for (let i = history.length - 1; i >= 0 && kept.length < maxMessages; i--) {
    const message = history[i]!
    if (chars + message.content.length > maxChars) break
    chars += message.content.length
    kept.unshift(message)
  }
  return kept
}

/**
 * The built-in `pre`: the chat's system prompt, then the selected text of every earlier message,
 * within both limits. Everything it needs came with the turn's start, so it does no I/O.
 */
export const PreStepLive = Layer.effect(
  PreStep,
  Effect.map(AppConfig, (config) => ({
    label: "Preparing context",
    run: (context) =>
      Effect.sync(() => {
        const system = context.systemPrompt ?? ""
        const kept = boundHistory(context.history, config.maxPromptMessages, Math.max(0, config.maxPromptChars - system.length))
        const draft: PromptDraft = {
          messages: system.length > 0 ? [{ role: "system", content: system }, ...kept] : kept
        }
        return {
          value: draft,
          output: {
            messageCount: kept.length,
            droppedMessages: context.earlierMessages + context.history.length - kept.length,
            promptChars: draft.messages.reduce((sum, message) => sum + message.content.length, 0),
            promptHash: sha256Of(draft)
          }
        }
      })
  }))
)
