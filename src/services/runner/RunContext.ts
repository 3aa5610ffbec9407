import { Data } from "effect"
import type { Effect } from "effect"
import type { ChatId, MessageId, RunId, VariantId } from "../../domain/Ids.ts"
import type { PromptMessage } from "../../domain/Prompt.ts"
import type { Trigger } from "../../domain/Run.ts"

/** What every step knows about the turn it serves. */
export interface RunContext {
  readonly runId: RunId
  readonly chatId: ChatId
  readonly trigger: Trigger
  readonly userMessageId: MessageId | null
  readonly assistantMessageId: MessageId
  readonly assistantVariantId: VariantId
  /** The assistant message's position: the prompt's history is everything before it. */
  readonly assistantPosition: number
  readonly settings: Readonly<Record<string, unknown>>
  readonly startedAt: Date
  /** The chat's system prompt, as the turn's start read it. */
  readonly systemPrompt: string | null
  /**
   * The selected text of the messages before the assistant message, oldest first, as the turn's
   * start read them (in the same statement that wrote the turn): the newest `MAX_PROMPT_MESSAGES`.
   */
  readonly history: ReadonlyArray<PromptMessage>
  /** How many messages are older than `history`. */
  readonly earlierMessages: number
}

/** A step's typed failure: the step and the run end `error` with `code` (default `step_failed`). */
export class StepFailed extends Data.TaggedError("StepFailed")<{
  readonly code?: string
  readonly message: string
}> {}

/** What a step hands on (`value`) and records on its row (`output`, JSON of at most 8 KiB). */
export interface StepResult<A> {
  readonly value: A
  readonly output: unknown
}

/** A step program a Layer provides: a short label for UIs and the program itself. */
export interface StepProgram<A, Input = RunContext> {
  readonly label: string
  readonly run: (input: Input) => Effect.Effect<StepResult<A>, StepFailed>
}

/** What `post` is given: the run's context and the answer the model streamed, as it was streamed. */
export interface PostInput extends RunContext {
  readonly answer: string
}

/** What `post` hands back: the variant's final text, when it changes it. */
export interface PostResult {
  readonly content?: string | undefined
}
