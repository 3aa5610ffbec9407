import { SqlClient } from "@effect/sql"
import { Clock, Effect, Option, Schema } from "effect"
import { ChatBusy, NotFound, ValidationError } from "../domain/ApiErrors.ts"
import { Chat, ChatCursor, ChatPage } from "../domain/Chat.ts"
import type { CreateChat, UpdateChat } from "../domain/Chat.ts"
import type { ChatId } from "../domain/Ids.ts"
import { ChatsRepo } from "./ChatsRepo.ts"
import { makeId } from "./Uuid.ts"

const encodeCursor = Schema.encode(ChatCursor)
const decodeCursor = Schema.decodeUnknown(ChatCursor)

const noChat = (id: ChatId) => new NotFound({ message: `chat ${id} does not exist` })

/** The chat, or 404 `not_found`. */
export const orNoChat = <A>(id: ChatId, read: Effect.Effect<Option.Option<A>>) =>
  Effect.flatMap(read, Option.match({ onNone: () => Effect.fail(noChat(id)), onSome: Effect.succeed }))

/**
 * Inside a transaction: the chat locked against new turns, and none running (spec 75: what
 * rewrites a chat's history waits for no turn, it refuses with 409 `chat_busy`).
 */
export const lockIdleChat = (repo: ChatsRepo, id: ChatId) =>
  Effect.gen(function*() {
    if (!(yield* repo.lockChat(id))) return yield* noChat(id)
    const running = yield* repo.activeRun(id)
    if (Option.isSome(running)) {
      return yield* new ChatBusy({ message: `chat ${id} has a running turn`, details: { runId: running.value } })
    }
  })

/** The chat use cases the API offers: create one, read it, list them, change one, delete one. */
export class Chats extends Effect.Service<Chats>()("turn-runner/Chats", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const repo = yield* ChatsRepo

    const create = Effect.fn("Chats.create")(function*(input: CreateChat) {
      const createdAt = new Date(yield* Clock.currentTimeMillis)
      const chat = new Chat({
        id: yield* makeId<ChatId>(),
        title: input.title ?? null,
        systemPrompt: input.systemPrompt ?? null,
        createdAt,
        activeRunId: null,
        lastMessageAt: null,
        lastActivityAt: createdAt
      })
      yield* repo.insertChat(chat)
      return chat
    })

    const get = Effect.fn("Chats.get")(function*(id: ChatId) {
      return yield* orNoChat(id, repo.findChat(id))
    })

    /** A page of chats, most recently active first, after `cursor`, the `nextCursor` of the page before (spec 75). */
    const list = Effect.fn("Chats.list")(function*(options: { readonly limit: number; readonly cursor?: string | undefined }) {
      const after = options.cursor === undefined ? undefined : yield* decodeCursor(options.cursor).pipe(
        Effect.mapError(() => new ValidationError({ message: "cursor: not a nextCursor this API gave" }))
      )
      const { chats, next } = yield* repo.listChats({ limit: options.limit, after })
      return new ChatPage({ chats, nextCursor: next === undefined ? null : yield* Effect.orDie(encodeCursor(next)) })
    })

    const update = Effect.fn("Chats.update")(function*(id: ChatId, changes: UpdateChat) {
      return yield* orNoChat(id, repo.updateChat(id, changes))
    })

    /** The chat and everything of it, at once; refused while a turn runs in it. */
    const remove = Effect.fn("Chats.remove")(function*(id: ChatId) {
      yield* sql.withTransaction(Effect.zipRight(lockIdleChat(repo, id), repo.deleteChat(id))).pipe(
        Effect.catchTag("SqlError", Effect.die)
      )
    })

    return { create, get, list, update, remove } as const
  }),
  dependencies: [ChatsRepo.Default]
}) {}
