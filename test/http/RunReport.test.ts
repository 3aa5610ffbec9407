import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { testDatabases } from "../support/TestDatabase.ts"
import { getJson, testServer } from "../support/TestServer.ts"
import type { SnapshotJson } from "../support/Turns.ts"
import { abortRun, dataOf, finished, liveTurn, newChat, quick, runEvents, sendMessage } from "../support/Turns.ts"

/**
 * `GET /runs/{runId}/report` (spec 95): the debug report of one turn, read back from its rows and
 * journal, against what the turn's own answers and events said.
 */

interface ReportJson {
  readonly snapshot: SnapshotJson
  readonly traceId: string | null
  readonly ending: { readonly status: string; readonly step: string | null; readonly reason: string | null; readonly durationMs: number; readonly summary: string } | null
  readonly start: { readonly trigger: string; readonly idempotencyKey: string; readonly requestFingerprint: string; readonly duplicateRequests: number; readonly settings: unknown }
  readonly prompt: {
    readonly hash: string | null
    readonly messages: ReadonlyArray<{ readonly role: string; readonly length: number; readonly hash: string; readonly content?: string }> | null
    readonly textStored: boolean
    readonly pre: any
  }
  readonly generation: {
    readonly provider: string
    readonly model: string
    readonly attempts: number
    readonly timeToFirstTokenMs: number | null
    readonly deltas: number
    readonly deltasPerSecond: number | null
    readonly usage: unknown
    readonly finishReason: string | null
  } | null
  readonly journal: { readonly events: number; readonly firstSeq: number | null; readonly lastSeq: number | null; readonly byType: Record<string, number> }
  readonly ownership: { readonly ownerInstance: string | null; readonly leaseExpiresAt: string | null; readonly abortRequest: { readonly at: string; readonly reason: string } | null }
}

const reportOf = (runId: string) => Effect.map(getJson(`/runs/${runId}/report`), (answer) => ({ status: answer.status, body: answer.body as ReportJson }))

const turnIn = (chatId: string, content: string, settings: object = quick(6)) => {
  const request = { userMessageId: crypto.randomUUID(), content, settings }
  return Effect.map(sendMessage(chatId, request), ({ body }) => ({ request, runId: (body as SnapshotJson).run.id }))
}

for (const database of testDatabases) {
  layer(testServer(database), { timeout: 60_000, excludeTestServices: true })(`the run report on ${database.name}`, (it) => {
    it.effect("a finished turn: its snapshot, start, prompt (without text), generation, journal and owner", () =>
      Effect.gen(function*() {
        const chatId = yield* newChat
        const { request, runId } = yield* turnIn(chatId, "Hello there")
        const snapshot = yield* finished(runId)
        const events = dataOf((yield* runEvents(runId)).events)
        const { body, status } = yield* reportOf(runId)
        expect(status).toBe(200)
        expect(body.snapshot).toEqual(snapshot)
        expect(body.traceId).toBeNull()
        expect(body.start).toMatchObject({
          trigger: "user_message",
          idempotencyKey: `user_message:${request.userMessageId}`,
          duplicateRequests: 0,
          settings: request.settings
        })
        expect(body.start.requestFingerprint).toMatch(/^[0-9a-f]{64}$/)
        // The chat's system prompt, then the user's message: roles, lengths and hashes, no text.
        expect(body.prompt.textStored).toBe(false)
        expect(body.prompt.hash).toMatch(/^[0-9a-f]{64}$/)
        expect(body.prompt.messages?.map(({ length, role }) => ({ role, length }))).toEqual([
          { role: "system", length: "Be brief.".length },
          { role: "user", length: "Hello there".length }
        ])
        for (const message of body.prompt.messages ?? []) {
          expect(message.hash).toMatch(/^[0-9a-f]{16}$/)
          expect(message).not.toHaveProperty("content")
        }
        expect(JSON.stringify(body)).not.toContain("Hello there")
        expect(body.prompt.pre).toMatchObject({ messageCount: 1, droppedMessages: 0, promptHash: body.prompt.hash })
        const deltas = events.filter((event) => event.type === "llm.stream.delta")
        expect(body.generation).toMatchObject({ provider: "local", model: "local-echo", attempts: 1, deltas: deltas.length, finishReason: "stop" })
        expect(body.generation?.timeToFirstTokenMs).toBeGreaterThanOrEqual(0)
        expect(body.generation?.deltasPerSecond).toBeGreaterThan(0)
        const byType: Record<string, number> = {}
        for (const event of events) byType[event.type] = (byType[event.type] ?? 0) + 1
        expect(body.journal).toEqual({ events: events.length, firstSeq: 1, lastSeq: events.length, byType })
        expect(body.ownership.ownerInstance).toEqual(expect.any(String))
        expect(body.ownership.abortRequest).toBeNull()
        expect(body.ending).toMatchObject({ status: "done", step: null, reason: null })
        expect(body.ending?.durationMs).toBe(Date.parse(snapshot.run.finishedAt!) - Date.parse(snapshot.run.startedAt))
        expect(body.ending?.summary).toMatch(new RegExp(`^done in [\\d.]+ s: the model finished \\(stop\\) after ${deltas.length} deltas$`))
      }))

    it.effect("a failed run says in which step and why", () =>
      Effect.gen(function*() {
        const chatId = yield* newChat
        const { runId } = yield* turnIn(chatId, "Fail please", { ...quick(6), local: { tokenDelayMs: 0, failAfterTokens: 2 } })
        const snapshot = yield* finished(runId)
        expect(snapshot.run.status).toBe("error")
        const { ending } = (yield* reportOf(runId)).body
        expect(ending).toMatchObject({ status: "error", step: "llm", reason: snapshot.run.error!.code })
        expect(ending?.summary).toContain(`failed in the llm step with ${snapshot.run.error!.code} (${snapshot.run.error!.message})`)
        expect(ending?.summary).toMatch(/after 2 deltas$/)
      }))

    it.effect("a running run has no ending yet", () =>
      Effect.gen(function*() {
        const runId = yield* liveTurn(yield* newChat)
        expect((yield* reportOf(runId)).body.ending).toBeNull()
        yield* abortRun(runId)
      }))

    it.effect("counts the repeated requests the run answered", () =>
      Effect.gen(function*() {
        const chatId = yield* newChat
        const { request, runId } = yield* turnIn(chatId, "Once")
        yield* finished(runId)
        for (let i = 0; i < 2; i++) expect((yield* sendMessage(chatId, request)).status).toBe(202)
        expect((yield* reportOf(runId)).body.start.duplicateRequests).toBe(2)
      }))

    it.effect("an aborted run names the abort request: when and why", () =>
      Effect.gen(function*() {
        const chatId = yield* newChat
        const runId = yield* liveTurn(chatId)
        yield* abortRun(runId)
        const { ownership, snapshot } = (yield* reportOf(runId)).body
        expect(snapshot.run.status).toBe("aborted")
        expect(ownership.abortRequest).toMatchObject({ reason: "user" })
        expect(Date.parse(ownership.abortRequest!.at)).toBeLessThanOrEqual(Date.parse(snapshot.run.finishedAt!))
        const { ending } = (yield* reportOf(runId)).body
        expect(ending).toMatchObject({ status: "aborted", step: "llm", reason: "user" })
        expect(ending?.summary).toMatch(/^aborted \(user\) in the llm step, [\d.]+ s after the start, after \d+ deltas?$/)
      }))

    it.effect("an unknown run is 404 not_found", () =>
      Effect.gen(function*() {
        const { body, status } = yield* getJson(`/runs/${crypto.randomUUID()}/report`)
        expect(status).toBe(404)
        expect(body).toMatchObject({ code: "not_found" })
      }))
  })

  layer(testServer(database, { storePromptSnapshots: true }), { timeout: 60_000, excludeTestServices: true })(
    `the run report with STORE_PROMPT_SNAPSHOTS=true on ${database.name}`,
    (it) => {
      it.effect("shows the prompt's text", () =>
        Effect.gen(function*() {
          const chatId = yield* newChat
          const { runId } = yield* turnIn(chatId, "Hello there")
          yield* finished(runId)
          const { prompt } = (yield* reportOf(runId)).body
          expect(prompt.textStored).toBe(true)
          expect(prompt.messages?.map(({ content, role }) => ({ role, content }))).toEqual([
            { role: "system", content: "Be brief." },
            { role: "user", content: "Hello there" }
          ])
        }))
    }
  )
}
