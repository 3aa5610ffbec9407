import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect } from "effect"
import { Chats } from "../services/Chats.ts"
import { Api } from "./Api.ts"

export const ChatsHttp = HttpApiBuilder.group(Api, "chats", (handlers) =>
  Effect.map(Chats, (chats) =>
    handlers
      .handle("createChat", ({ payload }) => chats.create(payload))
      .handle("getChat", ({ path }) => chats.get(path.chatId))
      .handle("listMessages", ({ path }) => Effect.map(chats.messages(path.chatId), (messages) => ({ messages })))))
