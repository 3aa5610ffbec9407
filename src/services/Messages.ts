import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import { ChatBusy, NotFound, ValidationError } from "../domain/ApiErrors.ts"
import type { ChatId, MessageId, VariantId } from "../domain/Ids.ts"
import { lockIdleChat, orNoChat } from "./Chats.ts"
import { ChatsRepo } from "./ChatsRepo.ts"
import { MessagesRepo } from "./MessagesRepo.ts"

/**
 * A chat's history as the API offers it: read it, choose which answer of an assistant message is
 * in it (a "swipe"), and rewind it (spec 75). What changes it runs in one transaction, checked
 * before anything is written.
 */
export class Messages extends Effect.Service<Messages>()("turn-runner/Messages", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const chats = yield* ChatsRepo
    const repo = yield* MessagesRepo

    const inTransaction = <A, E>(effect: Effect.Effect<A, E>) =>
      sql.withTransaction(effect).pipe(Effect.catchTag("SqlError", Effect.die))

    const noMessage = (chatId: ChatId, messageId: MessageId) =>
      new NotFound({ message: `message ${messageId} does not exist in chat ${chatId}` })

    const list = Effect.fn("Messages.list")(function*(chatId: ChatId) {
      yield* orNoChat(chatId, chats.findChat(chatId))
      return yield* repo.listMessages(chatId)
    })

    /**
     * Selects one of an assistant message's variants; refused while a run writes into that
     * message (it selected its own variant, and would be shown without it).
     */
    const selectVariant = Effect.fn("Messages.selectVariant")(function*(chatId: ChatId, messageId: MessageId, variantId: VariantId) {
      return yield* inTransaction(Effect.gen(function*() {
        yield* orNoChat(chatId, chats.findChat(chatId))
        const message = yield* repo.lockMessage(chatId, messageId)
        if (Option.isNone(message)) return yield* noMessage(chatId, messageId)
        const owner = yield* repo.messageOfVariant(variantId)
        if (Option.isNone(owner)) return yield* new NotFound({ message: `variant ${variantId} does not exist` })
        if (owner.value !== messageId) {
          return yield* new ValidationError({ message: `variant ${variantId} is not a variant of message ${messageId}` })
        }
        if (message.value.role !== "assistant") {
          return yield* new ValidationError({ message: `message ${messageId} is a user message: only an assistant message's variant can be selected` })
        }
        const writing = yield* repo.writingRun(messageId)
        if (Option.isSome(writing)) {
          return yield* new ChatBusy({ message: `a running turn writes message ${messageId}`, details: { runId: writing.value } })
        }
        yield* repo.selectVariant(messageId, variantId)
        const [selected] = yield* repo.listMessages(chatId, messageId)
        return selected!
      }))
    })

    /** Removes the message and every later one; refused while a turn runs in the chat. */
    const rewind = Effect.fn("Messages.rewind")(function*(chatId: ChatId, messageId: MessageId) {
      yield* inTransaction(Effect.gen(function*() {
        yield* lockIdleChat(chats, chatId)
        const message = yield* repo.lockMessage(chatId, messageId)
        if (Option.isNone(message)) return yield* noMessage(chatId, messageId)
        yield* repo.deleteFrom(chatId, message.value.position)
      }))
    })

    return { list, selectVariant, rewind } as const
  }),
  dependencies: [ChatsRepo.Default, MessagesRepo.Default]
}) {}
