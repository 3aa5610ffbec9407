import type { SqlError } from "@effect/sql/SqlError"
import { Clock, Effect, Stream } from "effect"
import { constVoid } from "effect/Function"
import { ChatBusy, IdempotencyKeyReused, NotFound, NotLatestAssistantMessage, ShuttingDown } from "../../domain/ApiErrors.ts"
import type { ChatId, MessageId, RunId, VariantId } from "../../domain/Ids.ts"
import type { PromptMessage } from "../../domain/Prompt.ts"
import { idempotencyKey, turnStopTtlMs } from "../../domain/Run.ts"
import type { OnBusy, Regenerate, SendMessage, Trigger } from "../../domain/Run.ts"
import { AppConfig } from "../AppConfig.ts"
import { sha256Of } from "../Hashing.ts"
import { Instance } from "../Instance.ts"
import { TurnsRepo } from "../TurnsRepo.ts"
import type { NewTurn, StartRow } from "../TurnsRepo.ts"
import * as Metrics from "../observability/Metrics.ts"
import { makeId } from "../Uuid.ts"
import type { RunContext } from "./RunContext.ts"
import { Runner } from "./Runner.ts"
import type { RunHandle } from "./Runner.ts"

/** A turn request's answer: its run, and whether the request repeated an earlier one. */
export interface TurnStarted {
  readonly run: RunHandle
  readonly deduplicated: boolean
}

export type TurnError = NotFound | IdempotencyKeyReused | ChatBusy | NotLatestAssistantMessage | ShuttingDown

interface TurnPlan {
  readonly chatId: ChatId
  readonly trigger: Trigger
  readonly idempotencyKey: string
  readonly fingerprint: string
  readonly onBusy: OnBusy
  readonly settings: Readonly<Record<string, unknown>>
  readonly userMessageId: MessageId | null
  readonly assistantMessageId: MessageId
  /** What a `conflict` of the start statement means for this trigger. */
  readonly conflict: TurnError
  /** The new user message, which follows the history read before it was written. */
  readonly userMessage: PromptMessage | undefined
  readonly start: (turn: NewTurn) => Effect.Effect<StartRow, SqlError>
}

/** How a turn request ended, for `turn_runner_turn_requests_total` (spec 95). */
const outcomeOf: Record<TurnError["_tag"], string> = {
  NotFound: "not_found",
  IdempotencyKeyReused: "idempotency_key_reused",
  ChatBusy: "rejected_busy",
  NotLatestAssistantMessage: "not_latest_assistant_message",
  ShuttingDown: "shutting_down"
}

const counted = (trigger: Trigger, turn: Effect.Effect<TurnStarted, TurnError>) =>
  Effect.tapBoth(turn, {
    onSuccess: ({ deduplicated }) =>
      Effect.sync(() => Metrics.count(Metrics.turnRequests, 1, { trigger, outcome: deduplicated ? "deduplicated" : "started" })),
    onFailure: (error) => Effect.sync(() => Metrics.count(Metrics.turnRequests, 1, { trigger, outcome: outcomeOf[error._tag] }))
  })

const sqlState = (error: SqlError) => (error.cause as { readonly code?: unknown } | undefined)?.code

/**
 * The start statement lost a race: a twin (or another turn of the chat) committed first (a unique
 * violation), or the chat, or the message to regenerate, was deleted meanwhile (a foreign key).
 */
const lostARace = (error: SqlError) => sqlState(error) === "23505" || sqlState(error) === "23503"

/**
 * Starting a turn (spec 10, "Idempotency" and "The flow of a turn"): validation is the API's; then
 * one statement checks the chat and the target, the idempotency key (an existing key wins), a
 * running turn, and when all pass writes the messages and the run and reads the prompt's history
 * (`TurnsRepo`). A busy chat is refused or interrupted. A turn its client stopped before it arrived
 * starts already stopped, and is answered once aborted (spec 75). Races are settled by the
 * database's constraints, never by in-memory checks.
 */
export class Turns extends Effect.Service<Turns>()("turn-runner/Turns", {
  effect: Effect.gen(function*() {
    const config = yield* AppConfig
    const repo = yield* TurnsRepo
    const runner = yield* Runner
    const instance = yield* Instance

    const start = (plan: TurnPlan): Effect.Effect<TurnStarted, TurnError> =>
      Effect.gen(function*() {
        const runId = yield* makeId<RunId>()
        const assistantVariantId = yield* makeId<VariantId>()
        const startedAt = new Date(yield* Clock.currentTimeMillis)
        const turn: NewTurn = {
          chatId: plan.chatId,
          runId,
          trigger: plan.trigger,
          idempotencyKey: plan.idempotencyKey,
          fingerprint: plan.fingerprint,
          settings: plan.settings,
          assistantMessageId: plan.assistantMessageId,
          assistantVariantId,
          ownerInstance: instance.id,
          leaseExpiresAt: new Date(startedAt.getTime() + config.leaseTtlMs),
          startedAt,
          historyLimit: config.maxPromptMessages,
          create: !runner.isDraining(),
          stopsSince: new Date(startedAt.getTime() - turnStopTtlMs)
        }
        const row = yield* plan.start(turn).pipe(
          // Read what the winner left: its run, a running turn, or no chat (404).
          Effect.catchAll((error) => lostARace(error) ? plan.start({ ...turn, create: false }) : Effect.fail(error)),
          Effect.orDie
        )
        if (!row.chatFound) return yield* new NotFound({ message: `chat ${plan.chatId} does not exist` })
        if (plan.trigger === "regenerate" && row.conflict) return yield* plan.conflict
        if (row.existingRunId !== null) {
          if (row.existingFingerprint !== plan.fingerprint) {
            return yield* new IdempotencyKeyReused({ message: `idempotency key ${plan.idempotencyKey} was used for a different request` })
          }
          yield* repo.countDuplicate(row.existingRunId as RunId).pipe(Effect.orDie)
          return { run: runner.handle(row.existingRunId as RunId), deduplicated: true }
        }
        if (!turn.create) return yield* new ShuttingDown({ message: "the server is shutting down; try again shortly" })
        if (row.runningRunId !== null) {
          const running = row.runningRunId as RunId
          // Wherever the running turn runs (spec 50): aborted, and terminal, before this one starts.
          if (plan.onBusy === "interrupt") {
            yield* runner.abort(running, "superseded")
            return yield* start(plan)
          }
          return yield* new ChatBusy({ message: `chat ${plan.chatId} has a running turn`, details: { runId: running } })
        }
        if (row.conflict) return yield* plan.conflict
        if (row.notLatest) {
          return yield* new NotLatestAssistantMessage({ message: `message ${plan.assistantMessageId} is not the chat's latest assistant message` })
        }
        if (!row.created || row.position === null) return yield* Effect.dieMessage(`the turn of chat ${plan.chatId} was neither started nor refused`)
        const history = [...row.history ?? [], ...(plan.userMessage === undefined ? [] : [plan.userMessage])]
        const context: RunContext = {
          runId,
          chatId: plan.chatId,
          trigger: plan.trigger,
          userMessageId: plan.userMessageId,
          assistantMessageId: plan.assistantMessageId,
          assistantVariantId,
          assistantPosition: plan.trigger === "user_message" ? row.position + 1 : row.position,
          settings: plan.settings,
          startedAt,
          systemPrompt: row.systemPrompt,
          history,
          earlierMessages: row.earlierMessages
        }
        const stoppedAt = row.stopRequestedAt ?? undefined
        const run = yield* runner.launch(context, { stoppedAt })
        // Stopped before it arrived (spec 75): the run ends at once, and is answered once it has.
        if (stoppedAt !== undefined) yield* Stream.runDrain(run.follow(0, { encode: constVoid }))
        return { run, deduplicated: false }
      })

    const sendMessage = Effect.fn("Turns.sendMessage")(function*(chatId: ChatId, request: SendMessage) {
      const userVariantId = yield* makeId<VariantId>()
      return yield* counted("user_message", start({
        chatId,
        trigger: "user_message",
        idempotencyKey: idempotencyKey.userMessage(request.userMessageId),
        fingerprint: sha256Of({ trigger: "user_message", content: request.content, settings: request.settings }),
        onBusy: request.onBusy,
        settings: request.settings,
        userMessageId: request.userMessageId,
        assistantMessageId: yield* makeId<MessageId>(),
        conflict: new IdempotencyKeyReused({ message: `message id ${request.userMessageId} is already taken` }),
        userMessage: { role: "user", content: request.content },
        start: (turn) => repo.startUserMessage(turn, { messageId: request.userMessageId, variantId: userVariantId, content: request.content })
      }))
    })

    const regenerate = Effect.fn("Turns.regenerate")(
      function*(chatId: ChatId, assistantMessageId: MessageId, request: Regenerate) {
        return yield* counted("regenerate", start({
          chatId,
          trigger: "regenerate",
          idempotencyKey: idempotencyKey.regenerate(assistantMessageId, request.requestId),
          fingerprint: sha256Of({ trigger: "regenerate", assistantMessageId, settings: request.settings }),
          onBusy: request.onBusy,
          settings: request.settings,
          userMessageId: null,
          assistantMessageId,
          conflict: new NotFound({ message: `message ${assistantMessageId} does not exist in chat ${chatId}` }),
          userMessage: undefined,
          start: repo.startRegenerate
        }))
      }
    )

    return { sendMessage, regenerate } as const
  }),
  dependencies: [TurnsRepo.Default]
}) {}
