import { Context, Effect, Layer, Option } from "effect"
import type { PromptDraft, PromptMessage } from "../../domain/Prompt.ts"
import { AppConfig } from "../AppConfig.ts"
import { ChatsRepo } from "../ChatsRepo.ts"
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

/** The built-in `pre`: the chat's system prompt, then the selected text of every earlier message. */
export const PreStepLive = Layer.effect(
  PreStep,
  Effect.gen(function*() {
    const chats = yield* ChatsRepo
    const config = yield* AppConfig
    return {
      label: "Preparing context",
      run: (context) =>
        Effect.gen(function*() {
          const chat = yield* Effect.flatMap(chats.findChat(context.chatId), Option.match({
            onNone: () => Effect.dieMessage(`chat ${context.chatId} vanished during its run`),
            onSome: Effect.succeed
          }))
          const history = yield* chats.historyBefore(context.chatId, context.assistantPosition)
          const system = chat.systemPrompt ?? ""
          const kept = boundHistory(history, config.maxPromptMessages, Math.max(0, config.maxPromptChars - system.length))
          const draft: PromptDraft = {
            messages: system.length > 0 ? [{ role: "system", content: system }, ...kept] : kept
          }
          return {
            value: draft,
            output: {
              messageCount: kept.length,
              droppedMessages: history.length - kept.length,
              promptChars: draft.messages.reduce((sum, message) => sum + message.content.length, 0),
              promptHash: sha256Of(draft)
            }
          }
        })
    }
  })
)
