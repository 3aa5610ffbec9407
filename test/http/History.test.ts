import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { uuidv7At } from "../../src/services/Uuid.ts"
import { chatRowCounts, runRowCounts } from "../support/Fixtures.ts"
import { checkInvariants } from "../support/Invariants.ts"
import { testDatabases } from "../support/TestDatabase.ts"
import { del, getJson, putJson, testServer } from "../support/TestServer.ts"
import type { MessageJson, SnapshotJson } from "../support/Turns.ts"
import {
  abortRun,
  completedTurn,
  finished,
  lingering,
  messagesOf,
  newChat,
  quick,
  regenerate,
  sendMessage,
  snapshotOf,
  withLiveTurn
} from "../support/Turns.ts"

/** A chat's history (spec 75): choosing an answer's variant ("swipe"), and rewinding. */

const selectedVariantPath = (chatId: string, messageId: string) => `/chats/${chatId}/messages/${messageId}/selected-variant`
const messagePath = (chatId: string, messageId: string) => `/chats/${chatId}/messages/${messageId}`

const regenerated = (chatId: string, messageId: string) =>
  Effect.flatMap(
    regenerate(chatId, messageId, { requestId: crypto.randomUUID(), settings: quick() }),
    ({ body }) => finished((body as SnapshotJson).run.id)
  )

/** A chat whose answer has two variants, the second selected. */
const swipeable = Effect.gen(function*() {
  const chatId = yield* newChat
  const first = yield* completedTurn(chatId, "First question")
  const second = yield* regenerated(chatId, first.run.assistantMessageId)
  return { chatId, messageId: first.run.assistantMessageId, userMessageId: first.run.userMessageId!, first, second }
})

const selectionOf = (chatId: string) => Effect.map(messagesOf(chatId), (messages) => messages.map((message) => message.selectedVariantId))

for (const database of testDatabases) {
  layer(testServer(database), { timeout: 60_000, excludeTestServices: true })(`the history on ${database.name}`, (it) => {
    it.effect("PUT selected-variant selects an earlier answer: 200 with the message, its content the variant's", () =>
      Effect.gen(function*() {
        const { chatId, first, messageId, second } = yield* swipeable
        const before = (yield* messagesOf(chatId))[1]!
        expect(before.selectedVariantId).toBe(second.run.assistantVariantId)
        const firstText = before.variants.find((variant) => variant.id === first.run.assistantVariantId)!.content
        const answer = yield* putJson(selectedVariantPath(chatId, messageId), { variantId: first.run.assistantVariantId })
        expect(answer.status).toBe(200)
        const message = answer.body as MessageJson
        expect(message).toMatchObject({ id: messageId, chatId, role: "assistant", selectedVariantId: first.run.assistantVariantId, content: firstText })
        expect(message.variants.map((variant) => variant.id)).toEqual([first.run.assistantVariantId, second.run.assistantVariantId])
        expect((yield* messagesOf(chatId))[1]).toEqual(message)
        // And back: selecting the selected one again changes nothing.
        yield* putJson(selectedVariantPath(chatId, messageId), { variantId: second.run.assistantVariantId })
        const again = yield* putJson(selectedVariantPath(chatId, messageId), { variantId: second.run.assistantVariantId })
        expect(again.body).toMatchObject({ selectedVariantId: second.run.assistantVariantId })
      }))

    it.effect("a variant of another message, or a user message, is 400 validation_error; nothing changes", () =>
      Effect.gen(function*() {
        const { chatId, first, messageId, userMessageId } = yield* swipeable
        const later = yield* completedTurn(chatId, "Second question")
        const userVariant = (yield* messagesOf(chatId))[0]!.selectedVariantId
        const before = yield* selectionOf(chatId)
        const refused = [
          yield* putJson(selectedVariantPath(chatId, messageId), { variantId: later.run.assistantVariantId }),
          yield* putJson(selectedVariantPath(chatId, messageId), { variantId: userVariant }),
          yield* putJson(selectedVariantPath(chatId, userMessageId), { variantId: userVariant }),
          yield* putJson(selectedVariantPath(chatId, userMessageId), { variantId: first.run.assistantVariantId })
        ]
        for (const answer of refused) {
          expect(answer.status).toBe(400)
          expect(answer.body).toMatchObject({ code: "validation_error", message: expect.any(String) })
        }
        expect(yield* selectionOf(chatId)).toEqual(before)
      }))

    it.effect("an unknown chat, message or variant is 404 not_found; a bad id or body is 400", () =>
      Effect.gen(function*() {
        const { chatId, first, messageId } = yield* swipeable
        const otherChat = yield* newChat
        const before = yield* selectionOf(chatId)
        const variantId = first.run.assistantVariantId
        for (const [path, body] of [
          [selectedVariantPath(uuidv7At(0), messageId), { variantId }],
          [selectedVariantPath(chatId, uuidv7At(0)), { variantId }],
          [selectedVariantPath(otherChat, messageId), { variantId }],
          [selectedVariantPath(chatId, messageId), { variantId: uuidv7At(0) }]
        ] as const) {
          expect(yield* putJson(path, body)).toMatchObject({ status: 404, body: { code: "not_found" } })
        }
        for (const [path, body] of [
          [selectedVariantPath(chatId, messageId), {}],
          [selectedVariantPath(chatId, messageId), { variantId: "v1" }],
          [selectedVariantPath(chatId, "not-a-uuid"), { variantId }]
        ] as const) {
          expect(yield* putJson(path, body)).toMatchObject({ status: 400, body: { code: "validation_error" } })
        }
        expect(yield* selectionOf(chatId)).toEqual(before)
      }))

    it.effect("while a run writes the message it is 409 chat_busy naming the run; another message of the chat may be chosen", () =>
      Effect.gen(function*() {
        const { chatId, first, messageId } = yield* swipeable
        // A regenerate of the answer: that run writes into the message.
        const live = (yield* regenerate(chatId, messageId, { requestId: crypto.randomUUID(), settings: lingering })).body as SnapshotJson
        const before = yield* selectionOf(chatId)
        const busy = yield* putJson(selectedVariantPath(chatId, messageId), { variantId: first.run.assistantVariantId })
        expect(busy.status).toBe(409)
        expect(busy.body).toMatchObject({ code: "chat_busy", message: expect.any(String), details: { runId: live.run.id } })
        expect(yield* selectionOf(chatId)).toEqual(before)
        yield* abortRun(live.run.id)
        expect((yield* putJson(selectedVariantPath(chatId, messageId), { variantId: first.run.assistantVariantId })).status).toBe(200)

        // A new turn writes its own answer, not this one.
        const other = yield* swipeable
        yield* withLiveTurn(other.chatId, () =>
          Effect.gen(function*() {
            const answer = yield* putJson(selectedVariantPath(other.chatId, other.messageId), { variantId: other.first.run.assistantVariantId })
            expect(answer).toMatchObject({ status: 200, body: { selectedVariantId: other.first.run.assistantVariantId } })
          }))
      }))

    it.effect("DELETE a message rewinds: it and every later message go, with the runs that wrote them; earlier ones stay", () =>
      Effect.gen(function*() {
        const chatId = yield* newChat
        const one = yield* completedTurn(chatId, "One")
        const two = yield* completedTurn(chatId, "Two")
        const twoAgain = yield* regenerated(chatId, two.run.assistantMessageId)
        const three = yield* completedTurn(chatId, "Three")
        const keptBefore = yield* runRowCounts([one.run.id])
        const answer = yield* del(messagePath(chatId, two.run.userMessageId!))
        expect(answer.status).toBe(204)
        expect(answer.text).toBe("")
        const messages = yield* messagesOf(chatId)
        expect(messages.map((message) => message.id)).toEqual([one.run.userMessageId, one.run.assistantMessageId])
        expect(yield* runRowCounts([two.run.id, twoAgain.run.id, three.run.id])).toEqual({ pipelineRuns: 0, stepRuns: 0, generations: 0, events: 0 })
        expect(yield* runRowCounts([one.run.id])).toEqual(keptBefore)
        expect(yield* chatRowCounts(chatId)).toMatchObject({ chatMessages: 2, messageVariants: 2, pipelineRuns: 1, generations: 1 })
        expect((yield* getJson(`/runs/${three.run.id}`)).status).toBe(404)
        const runs = (yield* getJson(`/chats/${chatId}/runs`)).body as { readonly runs: ReadonlyArray<{ readonly id: string }> }
        expect(runs.runs.map((run) => run.id)).toEqual([one.run.id])
        const chat = (yield* getJson(`/chats/${chatId}`)).body as { readonly lastMessageAt: string }
        expect(chat.lastMessageAt).toBe(one.run.startedAt)
      }))

    it.effect("after a rewind the chat goes on: the now latest answer regenerates, a new turn follows it, a removed message's id starts anew", () =>
      Effect.gen(function*() {
        const chatId = yield* newChat
        const one = yield* completedTurn(chatId, "One")
        const twoRequest = { userMessageId: crypto.randomUUID(), content: "Two", settings: quick() }
        const two = yield* finished(((yield* sendMessage(chatId, twoRequest)).body as SnapshotJson).run.id)
        expect((yield* del(messagePath(chatId, two.run.userMessageId!))).status).toBe(204)

        const again = yield* regenerated(chatId, one.run.assistantMessageId)
        expect(again.run).toMatchObject({ status: "done", trigger: "regenerate", assistantMessageId: one.run.assistantMessageId })
        // The same request as before the rewind: its run went with its messages, so it is a new turn.
        const resent = (yield* sendMessage(chatId, twoRequest))
        expect(resent.status).toBe(202)
        const redone = yield* finished((resent.body as SnapshotJson).run.id)
        expect(redone.run.id).not.toBe(two.run.id)
        expect(redone.run.status).toBe("done")
        expect((resent.body as SnapshotJson).deduplicated).toBe(false)
        const messages = yield* messagesOf(chatId)
        expect(messages.map((message) => [message.position, message.role, message.content.slice(0, 14)])).toEqual([
          [0, "user", "One"],
          [1, "assistant", expect.any(String)],
          [2, "user", "Two"],
          [3, "assistant", "You said: “Two"]
        ])
        expect(messages[1]!.variants).toHaveLength(2)
      }))

    it.effect("rewinding an answer keeps its question; rewinding the first message empties the chat, which stays", () =>
      Effect.gen(function*() {
        const chatId = yield* newChat
        const one = yield* completedTurn(chatId, "One")
        expect((yield* del(messagePath(chatId, one.run.assistantMessageId))).status).toBe(204)
        expect((yield* messagesOf(chatId)).map((message) => message.id)).toEqual([one.run.userMessageId])
        expect(yield* runRowCounts([one.run.id])).toEqual({ pipelineRuns: 0, stepRuns: 0, generations: 0, events: 0 })
        // The latest message is a user message now: a regenerate is refused, a new turn is not.
        const refused = yield* regenerate(chatId, one.run.userMessageId!, { requestId: crypto.randomUUID() })
        expect(refused.body).toMatchObject({ code: "not_latest_assistant_message" })
        const next = yield* completedTurn(chatId, "Again")
        expect(next.run.status).toBe("done")
        expect((yield* del(messagePath(chatId, one.run.userMessageId!))).status).toBe(204)
        expect(yield* messagesOf(chatId)).toEqual([])
        expect(yield* chatRowCounts(chatId)).toEqual({
          chats: 1, chatMessages: 0, messageVariants: 0, pipelineRuns: 0, stepRuns: 0, generations: 0, events: 0
        })
        expect((yield* getJson(`/chats/${chatId}`)).body).toMatchObject({ id: chatId, lastMessageAt: null, activeRunId: null })
      }))

    it.effect("while a turn runs in the chat a rewind is 409 chat_busy naming the run, and deletes nothing", () =>
      Effect.gen(function*() {
        const chatId = yield* newChat
        const one = yield* completedTurn(chatId, "One")
        yield* withLiveTurn(chatId, (runId) =>
          Effect.gen(function*() {
            const messages = yield* messagesOf(chatId)
            const answer = yield* del(messagePath(chatId, one.run.userMessageId!))
            expect(answer.status).toBe(409)
            expect(answer.body).toMatchObject({ code: "chat_busy", details: { runId } })
            expect((yield* messagesOf(chatId)).map((message) => message.id)).toEqual(messages.map((message) => message.id))
            expect((yield* snapshotOf(runId)).run.status).toBe("running")
          }))
      }))

    it.effect("rewinding an unknown message, or one of another chat, is 404; a bad id is 400", () =>
      Effect.gen(function*() {
        const chatId = yield* newChat
        const one = yield* completedTurn(chatId)
        const otherChat = yield* newChat
        expect(yield* del(messagePath(chatId, uuidv7At(0)))).toMatchObject({ status: 404, body: { code: "not_found" } })
        expect(yield* del(messagePath(otherChat, one.run.userMessageId!))).toMatchObject({ status: 404, body: { code: "not_found" } })
        expect(yield* del(messagePath(uuidv7At(0), one.run.userMessageId!))).toMatchObject({ status: 404, body: { code: "not_found" } })
        expect(yield* del(messagePath(chatId, "nope"))).toMatchObject({ status: 400, body: { code: "validation_error" } })
        expect(yield* messagesOf(chatId)).toHaveLength(2)
      }))

    it.effect("the database satisfies every invariant of the spec", () => checkInvariants)
  })
}
