import type { SqlError } from "@effect/sql/SqlError"
import { Clock, Effect, Option, Stream } from "effect"
import { constVoid } from "effect/Function"
import {
  ChatBusy,
  IdempotencyKeyReused,
  NotFound,
  NotLatestAssistantMessage,
  Overloaded,
  ShuttingDown,
  TooManyRuns,
  TurnRateLimited
} from "../../domain/ApiErrors.ts"
import type { ChatId, MessageId, RunId, VariantId } from "../../domain/Ids.ts"
import { anonymousOwner } from "../../domain/Owner.ts"
import type { Owner } from "../../domain/Owner.ts"
import type { PromptMessage } from "../../domain/Prompt.ts"
import { idempotencyKey, turnStopTtlMs } from "../../domain/Run.ts"
import type { OnBusy, Regenerate, SendMessage, Trigger } from "../../domain/Run.ts"
import { Limits } from "../access/Limits.ts"
import { AppConfig } from "../AppConfig.ts"
import { sha256Of } from "../Hashing.ts"
import { Instance } from "../Instance.ts"
import { TurnsRepo } from "../TurnsRepo.ts"
import type { NewTurn, StartRow } from "../TurnsRepo.ts"
import * as Metrics from "../observability/Metrics.ts"
import * as Tracing from "../observability/Tracing.ts"
import { makeId } from "../Uuid.ts"
import { LiveRuns } from "./LiveRuns.ts"
import type { RunContext } from "./RunContext.ts"
import { Runner } from "./Runner.ts"
import type { RunHandle } from "./Runner.ts"

/** A turn request's answer: its run, and whether the request repeated an earlier one. */
export interface TurnStarted {
  readonly run: RunHandle
  readonly deduplicated: boolean
}

export type TurnError =
  | NotFound
  | IdempotencyKeyReused
  | ChatBusy
  | NotLatestAssistantMessage
  | ShuttingDown
  | TooManyRuns
  | TurnRateLimited
  | Overloaded

/** A refusal that comes before anything is looked at: the instance's state, the caller's pace. */
type Refusal = ShuttingDown | TurnRateLimited | Overloaded

/** When a caller refused for its live runs, or an instance at its limit, may try again. */
const retryAfterSeconds = 5

interface TurnPlan {
  readonly chatId: ChatId
  readonly owner: Owner
  readonly trigger: Trigger
  readonly idempotencyKey: string
  readonly fingerprint: string
  readonly onBusy: OnBusy
  readonly settings: Readonly<Record<string, unknown>>
  readonly userMessageId: MessageId | null
  readonly assistantMessageId: MessageId
  /** What a `conflict` of the start statement means for this trigger (made only then: an error is dear to make). */
  readonly conflict: () => TurnError
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
  ShuttingDown: "shutting_down",
  TooManyRuns: "too_many_runs",
  TurnRateLimited: "rate_limited",
  Overloaded: "overloaded"
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
 *
 * The limits of spec 85 refuse a new turn before anything is written, never a repeated one: a
 * turn the instance or the caller's pace refuses is still looked up (and answered, if it is a
 * duplicate) by the same statement told to write nothing; the caller's live runs are counted in it.
 */
export class Turns extends Effect.Service<Turns>()("turn-runner/Turns", {
  effect: Effect.gen(function*() {
    const config = yield* AppConfig
    const repo = yield* TurnsRepo
    const runner = yield* Runner
    const instance = yield* Instance
    const live = yield* LiveRuns
    const limits = yield* Limits

    /** Whether the instance takes a new turn from `owner` now, and if not, why. */
    const admission = (owner: Owner): Effect.Effect<Refusal | undefined> =>
      Effect.gen(function*() {
        if (runner.isDraining()) return new ShuttingDown({ message: "the server is shutting down; try again shortly" })
        if (live.size() >= config.limits.liveRuns) {
          return new Overloaded({ message: "this instance runs as many turns as it may; try again shortly", details: { retryAfterSeconds } })
        }
        const wait = yield* limits.takeTurn(owner)
        return Option.isSome(wait)
          ? new TurnRateLimited({
            message: `more than ${config.limits.turnsPerMinutePerOwner} turn requests a minute; try again in ${wait.value} s`,
            details: { retryAfterSeconds: wait.value }
          })
          : undefined
      })

    // Nothing interrupts a turn's start between its statement and its run's launch: a run
    // committed is always launched (a caller gone meanwhile is interrupted once it has been). The
    // waits for other runs (one superseded, one stopped) stay interruptible.
    const start = (plan: TurnPlan, admitted = false): Effect.Effect<TurnStarted, TurnError> =>
      Effect.uninterruptibleMask((restore) => Effect.gen(function*() {
        const refusal = admitted ? undefined : yield* admission(plan.owner)
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
          traceId: Option.getOrNull(Option.map(yield* Tracing.recordedSpan, (span) => span.traceId)),
          owner: plan.owner,
          liveRunsPerOwner: config.limits.liveRunsPerOwner,
          historyLimit: config.maxPromptMessages,
          create: refusal === undefined,
          stopsSince: new Date(startedAt.getTime() - turnStopTtlMs)
        }
        const row = yield* plan.start(turn).pipe(
          // Read what the winner left: its run, a running turn, or no chat (404).
          Effect.catchAll((error) => lostARace(error) ? plan.start({ ...turn, create: false }) : Effect.fail(error)),
          Effect.orDie
        )
        if (!row.chatFound) return yield* new NotFound({ message: `chat ${plan.chatId} does not exist` })
        if (plan.trigger === "regenerate" && row.conflict) return yield* plan.conflict()
        if (row.existingRunId !== null) {
          if (row.existingFingerprint !== plan.fingerprint) {
            return yield* new IdempotencyKeyReused({ message: `idempotency key ${plan.idempotencyKey} was used for a different request` })
          }
          yield* repo.countDuplicate(row.existingRunId as RunId).pipe(Effect.orDie)
          return { run: runner.handle(row.existingRunId as RunId), deduplicated: true }
        }
        if (refusal !== undefined) return yield* refusal
        if (row.runningRunId !== null) {
          const running = row.runningRunId as RunId
          // Wherever the running turn runs (spec 50): aborted, and terminal, before this one starts.
          if (plan.onBusy === "interrupt") {
            yield* restore(runner.abort(running, "superseded"))
            return yield* restore(start(plan, true))
          }
          return yield* new ChatBusy({ message: `chat ${plan.chatId} has a running turn`, details: { runId: running } })
        }
        if (row.ownerAtLimit) {
          return yield* new TooManyRuns({
            message: `${config.limits.liveRunsPerOwner} turns of yours are running already; try again once one has ended`,
            details: { retryAfterSeconds }
          })
        }
        if (row.conflict) return yield* plan.conflict()
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
        if (stoppedAt !== undefined) yield* restore(Stream.runDrain(run.follow(0, { encode: constVoid })))
        return { run, deduplicated: false }
      }))

    /** A `user_message` turn of `owner` (spec 85; the anonymous owner of `AUTH=none` by default). */
    const sendMessage = Effect.fn("Turns.sendMessage")(function*(chatId: ChatId, request: SendMessage, owner: Owner = anonymousOwner) {
      const userVariantId = yield* makeId<VariantId>()
      return yield* counted("user_message", start({
        chatId,
        owner,
        trigger: "user_message",
        idempotencyKey: idempotencyKey.userMessage(request.userMessageId),
        fingerprint: sha256Of({ trigger: "user_message", content: request.content, settings: request.settings }),
        onBusy: request.onBusy,
        settings: request.settings,
        userMessageId: request.userMessageId,
        assistantMessageId: yield* makeId<MessageId>(),
        conflict: () => new IdempotencyKeyReused({ message: `message id ${request.userMessageId} is already taken` }),
        userMessage: { role: "user", content: request.content },
        start: (turn) => repo.startUserMessage(turn, { messageId: request.userMessageId, variantId: userVariantId, content: request.content })
      }))
    })

    const regenerate = Effect.fn("Turns.regenerate")(
      function*(chatId: ChatId, assistantMessageId: MessageId, request: Regenerate, owner: Owner = anonymousOwner) {
        return yield* counted("regenerate", start({
          chatId,
          owner,
          trigger: "regenerate",
          idempotencyKey: idempotencyKey.regenerate(assistantMessageId, request.requestId),
          fingerprint: sha256Of({ trigger: "regenerate", assistantMessageId, settings: request.settings }),
          onBusy: request.onBusy,
          settings: request.settings,
          userMessageId: null,
          assistantMessageId,
          conflict: () => new NotFound({ message: `message ${assistantMessageId} does not exist in chat ${chatId}` }),
          userMessage: undefined,
          start: repo.startRegenerate
        }))
      }
    )

    return { sendMessage, regenerate } as const
  }),
  dependencies: [TurnsRepo.Default]
}) {}
