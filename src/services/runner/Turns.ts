import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Clock, Effect, Option } from "effect"
import { ChatBusy, IdempotencyKeyReused, NotFound, NotLatestAssistantMessage, ShuttingDown } from "../../domain/ApiErrors.ts"
import type { ChatId, MessageId, RunId, VariantId } from "../../domain/Ids.ts"
import { builtinPipeline } from "../../domain/Run.ts"
import type { OnBusy, Regenerate, SendMessage, Trigger } from "../../domain/Run.ts"
import { AppConfig } from "../AppConfig.ts"
import { ChatsRepo } from "../ChatsRepo.ts"
import { sha256Of } from "../Hashing.ts"
import { Instance } from "../Instance.ts"
import { RunsRepo } from "../RunsRepo.ts"
import { makeId } from "../Uuid.ts"
import type { RunContext } from "./RunContext.ts"
import { Runner } from "./Runner.ts"

/** A turn request's answer: its run, and whether the request repeated an earlier one. */
export interface TurnStarted {
  readonly runId: RunId
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
  /** Checks that only hold for a new turn (latest message, free message id), after dedup. */
  readonly preconditions: Effect.Effect<void, TurnError>
  /** Writes the turn's messages and variants, inside the turn's transaction. */
  readonly write: (at: Date) => Effect.Effect<
    { readonly assistantMessageId: MessageId; readonly assistantVariantId: VariantId; readonly assistantPosition: number },
    SqlError
  >
}

const isUniqueViolation = (error: SqlError) => (error.cause as { readonly code?: unknown } | undefined)?.code === "23505"

/**
 * Starting a turn (spec 10, "Idempotency" and "The flow of a turn"): validation is the API's;
 * then the chat and target must exist, an existing idempotency key wins, a busy chat is
 * refused or interrupted, and the messages and the run are written in one transaction. Races
 * are settled by the database's unique constraints, never by in-memory checks.
 */
export class Turns extends Effect.Service<Turns>()("turn-runner/Turns", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const config = yield* AppConfig
    const chats = yield* ChatsRepo
    const runs = yield* RunsRepo
    const runner = yield* Runner
    const instance = yield* Instance

    const existingRun = (plan: TurnPlan) =>
      Effect.flatMap(runs.findByKey(plan.chatId, plan.idempotencyKey), Option.match({
        onNone: () => Effect.succeedNone,
        onSome: (run) =>
          run.fingerprint === plan.fingerprint
            ? Effect.succeedSome<TurnStarted>({ runId: run.id, deduplicated: true })
            : Effect.fail(new IdempotencyKeyReused({ message: `idempotency key ${plan.idempotencyKey} was used for a different request` }))
      }))

    const makeWay = (plan: TurnPlan) =>
      Effect.flatMap(runs.findRunning(plan.chatId), Option.match({
        onNone: () => Effect.void,
        onSome: (runId) =>
          plan.onBusy === "interrupt" && runner.isLive(runId)
            ? runner.abort(runId, "superseded")
            : Effect.fail(new ChatBusy({ message: `chat ${plan.chatId} has a running turn`, details: { runId } }))
      }))

    /** After a unique violation: a racing duplicate, a busy chat, or a message id taken elsewhere. */
    const settle = (plan: TurnPlan, error: SqlError) =>
      Effect.gen(function*() {
        const existing = yield* existingRun(plan)
        if (Option.isSome(existing)) return existing.value
        const running = yield* runs.findRunning(plan.chatId)
        if (Option.isSome(running)) {
          return yield* new ChatBusy({ message: `chat ${plan.chatId} has a running turn`, details: { runId: running.value } })
        }
        yield* plan.preconditions
        return yield* Effect.die(error)
      })

    const start = (plan: TurnPlan) =>
      Effect.gen(function*() {
        const existing = yield* existingRun(plan)
        if (Option.isSome(existing)) return existing.value
        if (runner.isDraining()) return yield* new ShuttingDown({ message: "the server is shutting down; try again shortly" })
        // A racing twin may commit between the key check and these: its run wins over their refusal.
        const raced = yield* Effect.zipRight(makeWay(plan), plan.preconditions).pipe(
          Effect.as(Option.none<TurnStarted>()),
          Effect.catchAll((refusal) =>
            Effect.flatMap(existingRun(plan), Option.match({
              onNone: () => Effect.fail(refusal),
              onSome: Effect.succeedSome
            })))
        )
        if (Option.isSome(raced)) return raced.value
        const runId = yield* makeId<RunId>()
        const startedAt = new Date(yield* Clock.currentTimeMillis)
        const created = yield* sql.withTransaction(Effect.gen(function*() {
          const assistant = yield* plan.write(startedAt)
          yield* runs.insert({
            id: runId,
            chatId: plan.chatId,
            pipelineId: builtinPipeline.id,
            pipelineName: builtinPipeline.name,
            trigger: plan.trigger,
            idempotencyKey: plan.idempotencyKey,
            requestFingerprint: plan.fingerprint,
            userMessageId: plan.userMessageId,
            assistantMessageId: assistant.assistantMessageId,
            assistantVariantId: assistant.assistantVariantId,
            settings: plan.settings,
            ownerInstance: instance.id,
            leaseExpiresAt: new Date(startedAt.getTime() + config.leaseTtlMs),
            startedAt
          })
          return assistant
        })).pipe(Effect.either)
        if (created._tag === "Left") {
          if (!isUniqueViolation(created.left)) return yield* Effect.die(created.left)
          return yield* settle(plan, created.left)
        }
        const context: RunContext = {
          runId,
          chatId: plan.chatId,
          trigger: plan.trigger,
          userMessageId: plan.userMessageId,
          ...created.right,
          settings: plan.settings,
          startedAt
        }
        yield* runner.launch(context)
        return { runId, deduplicated: false }
      })

    const chatExists = (chatId: ChatId) =>
      Effect.flatMap(chats.findChat(chatId), Option.match({
        onNone: () => Effect.fail(new NotFound({ message: `chat ${chatId} does not exist` })),
        onSome: () => Effect.void
      }))

    const sendMessage = Effect.fn("Turns.sendMessage")(function*(chatId: ChatId, request: SendMessage) {
      yield* chatExists(chatId)
      const idempotencyKey = `user_message:${request.userMessageId}`
      return yield* start({
        chatId,
        trigger: "user_message",
        idempotencyKey,
        fingerprint: sha256Of({ trigger: "user_message", content: request.content, settings: request.settings }),
        onBusy: request.onBusy,
        settings: request.settings,
        userMessageId: request.userMessageId,
        preconditions: Effect.flatMap(chats.messageExists(request.userMessageId), Option.match({
          onNone: () => Effect.void,
          onSome: () => Effect.fail(new IdempotencyKeyReused({ message: `message id ${request.userMessageId} is already taken` }))
        })),
        write: (at) =>
          Effect.gen(function*() {
            const position = yield* chats.nextPosition(chatId)
            const assistantMessageId = yield* makeId<MessageId>()
            const assistantVariantId = yield* makeId<VariantId>()
            yield* chats.insertMessage({
              id: request.userMessageId,
              chatId,
              role: "user",
              position,
              variant: { id: yield* makeId<VariantId>(), content: request.content },
              createdAt: at
            })
            yield* chats.insertMessage({
              id: assistantMessageId,
              chatId,
              role: "assistant",
              position: position + 1,
              variant: { id: assistantVariantId, content: "" },
              createdAt: at
            })
            return { assistantMessageId, assistantVariantId, assistantPosition: position + 1 }
          })
      })
    })

    const regenerate = Effect.fn("Turns.regenerate")(
      function*(chatId: ChatId, assistantMessageId: MessageId, request: Regenerate) {
        yield* chatExists(chatId)
        const message = yield* chats.messageExists(assistantMessageId)
        if (Option.isNone(message) || message.value.chatId !== chatId) {
          return yield* new NotFound({ message: `message ${assistantMessageId} does not exist in chat ${chatId}` })
        }
        const position = message.value.position
        return yield* start({
          chatId,
          trigger: "regenerate",
          idempotencyKey: `regenerate:${assistantMessageId}:${request.requestId}`,
          fingerprint: sha256Of({ trigger: "regenerate", assistantMessageId, settings: request.settings }),
          onBusy: request.onBusy,
          settings: request.settings,
          userMessageId: null,
          preconditions: Effect.flatMap(chats.latestMessage(chatId), (latest) =>
            Option.isSome(latest) && latest.value.id === assistantMessageId && latest.value.role === "assistant"
              ? Effect.void
              : Effect.fail(new NotLatestAssistantMessage({ message: `message ${assistantMessageId} is not the chat's latest assistant message` }))),
          write: (at) =>
            Effect.gen(function*() {
              const assistantVariantId = yield* makeId<VariantId>()
              yield* chats.addVariant(assistantMessageId, { id: assistantVariantId, createdAt: at })
              return { assistantMessageId, assistantVariantId, assistantPosition: position }
            })
        })
      }
    )

    return { sendMessage, regenerate } as const
  })
}) {}
