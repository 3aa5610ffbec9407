import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { Chats } from "../services/Chats.ts"
import { Messages } from "../services/Messages.ts"
import { Api } from "./Api.ts"

export const ChatsHttp = HttpApiBuilder.group(Api, "chats", (handlers) =>
  Effect.gen(function*() {
    const chats = yield* Chats
    const messages = yield* Messages
    return handlers
      .handle("createChat", ({ payload }) => chats.create(payload))
      .handle("listChats", ({ urlParams }) => chats.list(urlParams))
      .handle("getChat", ({ path }) => chats.get(path.chatId))
      .handle("updateChat", ({ path, payload }) => chats.update(path.chatId, payload))
      .handle("deleteChat", ({ path }) => chats.remove(path.chatId))
      .handle("listMessages", ({ path }) => Effect.map(messages.list(path.chatId), (list) => ({ messages: list })))
      .handle("selectVariant", ({ path, payload }) => messages.selectVariant(path.chatId, path.messageId, payload.variantId))
      .handle("rewind", ({ path }) => messages.rewind(path.chatId, path.messageId))
  }))
