import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import {
  ChatBusy,
  DatabaseUnavailable,
  IdempotencyKeyReused,
  InternalError,
  NotFound,
  NotLatestAssistantMessage,
  Overloaded,
  PayloadTooLarge,
  ShuttingDown,
  TooManyRuns,
  TurnRateLimited,
  Unauthorized,
  ValidationError
} from "../domain/ApiErrors.ts"
import { Chat, ChatPage, CreateChat, Message, SelectVariant, UpdateChat } from "../domain/Chat.ts"
import { ChatId, GenerationId, MessageId, RunId } from "../domain/Ids.ts"
import { AbortTurn, AbortTurnAnswer, Regenerate, Run, RunSnapshot, RunStatus, SendMessage } from "../domain/Run.ts"
import { RunReport } from "../domain/RunReport.ts"
import { Authentication } from "./Authentication.ts"

/** The HTTP contract (spec 70); handlers live apart, in the `*Http.ts` files beside it. */

export class SystemGroup extends HttpApiGroup.make("system")
  .add(
    HttpApiEndpoint.get("health", "/health")
      .addSuccess(Schema.Struct({
        status: Schema.Literal("ok"),
        /** Whether signals from the other instances arrive (spec 50); `off` on the embedded database. */
        notifications: Schema.Literal("listening", "reconnecting", "off")
      }))
      .addError(DatabaseUnavailable)
      .annotate(OpenApi.Summary, "Liveness plus a database round trip")
  )
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(HttpApiSchema.Text({ contentType: "text/plain; version=0.0.4; charset=utf-8" }))
      .addError(NotFound)
      .addError(Unauthorized)
      .annotate(OpenApi.Summary, "Prometheus metrics (text exposition format); 404 when METRICS_ENABLED=false, 401 without METRICS_TOKEN when one is set")
  ) {}

const ChatPath = Schema.Struct({ chatId: ChatId })
const MessagePath = Schema.Struct({ chatId: ChatId, messageId: MessageId })

export class ChatsGroup extends HttpApiGroup.make("chats")
  .add(
    HttpApiEndpoint.post("createChat", "/chats")
      .setPayload(CreateChat)
      .addSuccess(Chat, { status: 201 })
      .annotate(OpenApi.Summary, "Create a chat")
  )
  .add(
    HttpApiEndpoint.get("listChats", "/chats")
      .setUrlParams(Schema.Struct({
        limit: Schema.optionalWith(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 100)), { default: () => 20 }),
        cursor: Schema.optional(Schema.String.pipe(Schema.maxLength(200)))
      }))
      .addSuccess(ChatPage)
      .annotate(OpenApi.Summary, "Chats, most recently active first")
      .annotate(OpenApi.Description, "`nextCursor` (null on the last page) is the `cursor` of the next page.")
  )
  .add(
    HttpApiEndpoint.get("getChat", "/chats/:chatId")
      .setPath(ChatPath)
      .addSuccess(Chat)
      .annotate(OpenApi.Summary, "One chat")
  )
  .add(
    HttpApiEndpoint.patch("updateChat", "/chats/:chatId")
      .setPath(ChatPath)
      .setPayload(UpdateChat)
      .addSuccess(Chat)
      .annotate(OpenApi.Summary, "Change a chat's title or system prompt (a field left out stays, null clears it)")
  )
  .add(
    HttpApiEndpoint.del("deleteChat", "/chats/:chatId")
      .setPath(ChatPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(ChatBusy)
      .annotate(OpenApi.Summary, "Delete a chat and everything of it; refused while a turn runs in it")
  )
  .add(
    HttpApiEndpoint.get("listMessages", "/chats/:chatId/messages")
      .setPath(ChatPath)
      .addSuccess(Schema.Struct({ messages: Schema.Array(Message) }))
      .annotate(OpenApi.Summary, "The history: every message with its selected content and its variants")
  )
  .add(
    HttpApiEndpoint.put("selectVariant", "/chats/:chatId/messages/:messageId/selected-variant")
      .setPath(MessagePath)
      .setPayload(SelectVariant)
      .addSuccess(Message)
      .addError(ChatBusy)
      .annotate(OpenApi.Summary, "Choose which variant of an assistant message is in the history; refused while a turn writes that message")
  )
  .add(
    HttpApiEndpoint.del("rewind", "/chats/:chatId/messages/:messageId")
      .setPath(MessagePath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(ChatBusy)
      .annotate(OpenApi.Summary, "Rewind: delete the message and every later one, with the turns that wrote them; refused while a turn runs")
  )
  .addError(NotFound)
  .middleware(Authentication) {}

/** The run's events as Server-Sent Events (spec 60), answered when the client accepts them. */
const EventStream = HttpApiSchema.Text({ contentType: "text/event-stream" })

const turnDescription = "With `Accept: text/event-stream` the answer is the run's event stream; " +
  "otherwise 202 and the run's snapshot (`Idempotent-Replayed: true` when the request repeated an earlier one)."

export class TurnsGroup extends HttpApiGroup.make("turns")
  .add(
    HttpApiEndpoint.post("sendMessage", "/chats/:chatId/messages")
      .setPath(ChatPath)
      .setPayload(SendMessage)
      .addSuccess(RunSnapshot, { status: 202 })
      .addSuccess(EventStream)
      .annotate(OpenApi.Summary, "Start a user_message turn")
      .annotate(OpenApi.Description, turnDescription)
  )
  .add(
    HttpApiEndpoint.post("regenerate", "/chats/:chatId/messages/:assistantMessageId/regenerate")
      .setPath(Schema.Struct({ chatId: ChatId, assistantMessageId: MessageId }))
      .setPayload(Regenerate)
      .addSuccess(RunSnapshot, { status: 202 })
      .addSuccess(EventStream)
      .annotate(OpenApi.Summary, "Start a regenerate turn: a new answer variant for the latest assistant message")
      .annotate(OpenApi.Description, turnDescription)
  )
  .add(
    HttpApiEndpoint.post("abortTurn", "/chats/:chatId/turns/abort")
      .setPath(ChatPath)
      .setPayload(AbortTurn)
      .addSuccess(AbortTurnAnswer)
      .annotate(OpenApi.Summary, "Stop a turn by the client's own ids, even before its request arrived")
      .annotate(
        OpenApi.Description,
        "`{userMessageId}` or `{assistantMessageId, requestId}`, as in the turn request. If the turn's run exists it is aborted " +
          "and the answer comes once it is terminal; otherwise the stop is recorded (`run: null`), and the turn request arriving " +
          "with those ids within 10 minutes creates its run already aborted."
      )
  )
  .addError(NotFound)
  .addError(ChatBusy)
  .addError(IdempotencyKeyReused)
  .addError(NotLatestAssistantMessage)
  .addError(ShuttingDown)
  .addError(TooManyRuns)
  .addError(TurnRateLimited)
  .addError(Overloaded)
  .middleware(Authentication) {}

const RunPath = Schema.Struct({ runId: RunId })

/** A non-negative integer in a query string. */
const Seq = Schema.NumberFromString.pipe(Schema.int(), Schema.nonNegative())

export class RunsGroup extends HttpApiGroup.make("runs")
  .add(
    HttpApiEndpoint.get("listRuns", "/chats/:chatId/runs")
      .setPath(ChatPath)
      .setUrlParams(Schema.Struct({
        status: Schema.optional(RunStatus),
        limit: Schema.optionalWith(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 100)), { default: () => 20 })
      }))
      .addSuccess(Schema.Struct({ runs: Schema.Array(Run) }))
      .annotate(OpenApi.Summary, "Runs of a chat, newest first")
  )
  .add(
    HttpApiEndpoint.get("getRun", "/runs/:runId")
      .setPath(RunPath)
      .addSuccess(RunSnapshot)
      .annotate(OpenApi.Summary, "One run with its steps and generation")
  )
  .add(
    HttpApiEndpoint.get("getRunReport", "/runs/:runId/report")
      .setPath(RunPath)
      .addSuccess(RunReport)
      .annotate(OpenApi.Summary, "The run's debug report: its start, prompt, generation, journal and ownership")
  )
  .add(
    HttpApiEndpoint.get("runEvents", "/runs/:runId/events")
      .setPath(RunPath)
      .setUrlParams(Schema.Struct({ after: Schema.optional(Seq) }))
      .addSuccess(EventStream)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(Overloaded)
      .annotate(OpenApi.Summary, "The run's event stream, resumable with Last-Event-ID or ?after=")
      .annotate(OpenApi.Description, "204 when the run is finished and its terminal event is at or before the resume point.")
  )
  .add(
    HttpApiEndpoint.post("abortRun", "/runs/:runId/abort")
      .setPath(RunPath)
      .addSuccess(RunSnapshot)
      .annotate(OpenApi.Summary, "Abort a run; answers once it is terminal")
  )
  .add(
    HttpApiEndpoint.post("abortGeneration", "/generations/:generationId/abort")
      .setPath(Schema.Struct({ generationId: GenerationId }))
      .addSuccess(RunSnapshot)
      .annotate(OpenApi.Summary, "Abort the run of a generation; answers once it is terminal")
  )
  .addError(NotFound)
  .middleware(Authentication) {}

export class Api extends HttpApi.make("turn-runner")
  .add(SystemGroup)
  .add(ChatsGroup)
  .add(TurnsGroup)
  .add(RunsGroup)
  .addError(ValidationError)
  .addError(NotFound)
  .addError(PayloadTooLarge)
  .addError(DatabaseUnavailable)
  .addError(InternalError)
  .annotate(OpenApi.Title, "Turn runner")
  .annotate(OpenApi.Description, "A chat backend in which every chat turn is an observable, idempotent, abortable run.") {}
