import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect } from "effect"
import { Chats } from "../services/Chats.ts"
import { Messages } from "../services/Messages.ts"
import { Api } from "./Api.ts"
import { CurrentOwner } from "./Authentication.ts"
import { ownChat } from "./AuthenticationHttp.ts"

export const ChatsHttp = HttpApiBuilder.group(Api, "chats", (handlers) =>
  Effect.gen(function*() {
    const chats = yield* Chats
    const messages = yield* Messages
    return handlers
      .handle("createChat", ({ payload }) => Effect.flatMap(CurrentOwner, (owner) => chats.create(payload, owner)))
      .handle("listChats", ({ urlParams }) => Effect.flatMap(CurrentOwner, (owner) => chats.list(urlParams, owner)))
      .handle("getChat", ({ path }) => ownChat(path.chatId, () => chats.get(path.chatId)))
      .handle("updateChat", ({ path, payload }) => ownChat(path.chatId, () => chats.update(path.chatId, payload)))
      .handle("deleteChat", ({ path }) => ownChat(path.chatId, () => chats.remove(path.chatId)))
      .handle("listMessages", ({ path }) => ownChat(path.chatId, () => Effect.map(messages.list(path.chatId), (list) => ({ messages: list }))))
      .handle("selectVariant", ({ path, payload }) =>
        ownChat(path.chatId, () => messages.selectVariant(path.chatId, path.messageId, payload.variantId)))
      .handle("rewind", ({ path }) => ownChat(path.chatId, () => messages.rewind(path.chatId, path.messageId)))
  }))
