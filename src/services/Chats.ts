import { Clock, Effect, Option } from "effect"
import { NotFound } from "../domain/ApiErrors.ts"
import { Chat } from "../domain/Chat.ts"
import type { CreateChat } from "../domain/Chat.ts"
import type { ChatId } from "../domain/Ids.ts"
import { ChatsRepo } from "./ChatsRepo.ts"
import { makeId } from "./Uuid.ts"

/** The chat use cases the API offers: create one, read it, read its history. */
export class Chats extends Effect.Service<Chats>()("turn-runner/Chats", {
  effect: Effect.gen(function*() {
    const repo = yield* ChatsRepo

    const create = Effect.fn("Chats.create")(function*(input: CreateChat) {
      const chat = new Chat({
        id: yield* makeId<ChatId>(),
        title: input.title ?? null,
        systemPrompt: input.systemPrompt ?? null,
        createdAt: new Date(yield* Clock.currentTimeMillis)
      })
      yield* repo.insertChat(chat)
      return chat
    })

    const get = Effect.fn("Chats.get")(function*(id: ChatId) {
      return yield* repo.findChat(id).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new NotFound({ message: `chat ${id} does not exist` })),
          onSome: Effect.succeed
        }))
      )
    })

    const messages = Effect.fn("Chats.messages")(function*(id: ChatId) {
      yield* get(id)
      return yield* repo.listMessages(id)
    })

    return { create, get, messages } as const
  }),
  dependencies: [ChatsRepo.Default]
}) {}
