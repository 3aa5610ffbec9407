import { HttpApi, HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { DatabaseUnavailable, InternalError, NotFound, PayloadTooLarge, ValidationError } from "../domain/ApiErrors.ts"
import { Chat, CreateChat, Message } from "../domain/Chat.ts"
import { ChatId } from "../domain/Ids.ts"

/** The HTTP contract (spec 70); handlers live apart, in the `*Http.ts` files beside it. */

export class SystemGroup extends HttpApiGroup.make("system")
  .add(
    HttpApiEndpoint.get("health", "/health")
      .addSuccess(Schema.Struct({ status: Schema.Literal("ok") }))
      .addError(DatabaseUnavailable)
      .annotate(OpenApi.Summary, "Liveness plus a database round trip")
  ) {}

const ChatPath = Schema.Struct({ chatId: ChatId })

export class ChatsGroup extends HttpApiGroup.make("chats")
  .add(
    HttpApiEndpoint.post("createChat", "/chats")
      .setPayload(CreateChat)
      .addSuccess(Chat, { status: 201 })
      .annotate(OpenApi.Summary, "Create a chat")
  )
  .add(
    HttpApiEndpoint.get("getChat", "/chats/:chatId")
      .setPath(ChatPath)
      .addSuccess(Chat)
      .annotate(OpenApi.Summary, "One chat")
  )
  .add(
    HttpApiEndpoint.get("listMessages", "/chats/:chatId/messages")
      .setPath(ChatPath)
      .addSuccess(Schema.Struct({ messages: Schema.Array(Message) }))
      .annotate(OpenApi.Summary, "The history: every message with its selected content and its variants")
  )
  .addError(NotFound) {}

export class Api extends HttpApi.make("turn-runner")
  .add(SystemGroup)
  .add(ChatsGroup)
  .addError(ValidationError)
  .addError(NotFound)
  .addError(PayloadTooLarge)
  .addError(DatabaseUnavailable)
  .addError(InternalError)
  .annotate(OpenApi.Title, "Turn runner")
  .annotate(OpenApi.Description, "A chat backend in which every chat turn is an observable, idempotent, abortable run.") {}
