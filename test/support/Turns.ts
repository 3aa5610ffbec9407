import { HttpClientRequest } from "@effect/platform"
import { expect } from "@effect/vitest"
import { Deferred, Effect, Fiber, Stream } from "effect"
import { count } from "./Fixtures.ts"
import type { JsonEvent } from "./SseClient.ts"
import { openSse, readAll } from "./SseClient.ts"
import { getJson, postJson, send } from "./TestServer.ts"

/** Turns through the real HTTP API (spec 70), and the shapes their answers have. */

export interface ErrorJson {
  readonly code: string
  readonly message: string
}

export interface RunJson {
  readonly id: string
  readonly chatId: string
  readonly pipelineId: string
  readonly pipelineName: string
  readonly trigger: string
  readonly status: string
  readonly idempotencyKey: string
  readonly userMessageId: string | null
  readonly assistantMessageId: string
  readonly assistantVariantId: string
  readonly generationId: string | null
  readonly abortReason: string | null
  readonly error: ErrorJson | null
  readonly startedAt: string
  readonly finishedAt: string | null
}

export interface StepJson {
  readonly id: string
  readonly runId: string
  readonly stepType: string
  readonly position: number
  readonly status: string
  readonly label: string | null
  readonly startedAt: string
  readonly finishedAt: string | null
  readonly durationMs: number | null
}

export interface GenerationJson {
  readonly id: string
  readonly runId: string | null
  readonly status: string
  readonly provider: string
  readonly model: string
  readonly finishReason: string | null
  readonly usage: { readonly promptTokens: number; readonly completionTokens: number } | null
  readonly error: ErrorJson | null
  readonly attempts: number
}

export interface SnapshotJson {
  readonly run: RunJson
  readonly steps: ReadonlyArray<StepJson>
  readonly generation: GenerationJson | null
  readonly deduplicated?: boolean
}

export interface VariantJson {
  readonly id: string
  readonly content: string
  readonly createdAt: string
  readonly generationId: string | null
}

export interface MessageJson {
  readonly id: string
  readonly chatId: string
  readonly role: string
  readonly position: number
  readonly selectedVariantId: string
  readonly content: string
  readonly variants: ReadonlyArray<VariantJson>
}

/** The envelope plus whatever the event type adds (spec 60). */
export interface EventJson {
  readonly type: string
  readonly seq: number
  readonly at: string
  readonly [field: string]: unknown
}

/** `local` model settings (spec 90): a short answer, streamed without delay. */
export const quick = (maxTokens = 4) => ({ max_tokens: maxTokens, local: { tokenDelayMs: 0 } })

/** A run that streams long enough (about 40 s) to still be live until the test aborts it. */
export const lingering = { max_tokens: 2000, local: { tokenDelayMs: 20 } }

/** Bounds every wait on the server, so a stream that never ends fails the test instead of hanging it. */
const bounded = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.timeout(effect, "20 seconds")

export const newChat = Effect.map(
  postJson("/chats", { title: "turns", systemPrompt: "Be brief." }),
  ({ body }) => (body as { readonly id: string }).id
)

export const messagesPath = (chatId: string) => `/chats/${chatId}/messages`
export const regeneratePath = (chatId: string, messageId: string) => `/chats/${chatId}/messages/${messageId}/regenerate`

export const sendMessage = (chatId: string, body: unknown) => postJson(messagesPath(chatId), body)

export const regenerate = (chatId: string, messageId: string, body: unknown) => postJson(regeneratePath(chatId, messageId), body)

/** A turn request with `Accept: text/event-stream`, read to the end of the response. */
export const streamTurn = (path: string, body: unknown) =>
  bounded(readAll(HttpClientRequest.post(path).pipe(HttpClientRequest.bodyUnsafeJson(body))))

/** `GET /runs/{runId}/events`, read to the end of the response. */
export const runEvents = (runId: string) => bounded(readAll(HttpClientRequest.get(`/runs/${runId}/events`)))

export const snapshotOf = (runId: string) => Effect.map(getJson(`/runs/${runId}`), ({ body }) => body as SnapshotJson)

/** Waits for the run's terminal event (by reading its stream to the end), then reads its snapshot. */
export const finished = (runId: string) => Effect.zipRight(runEvents(runId), snapshotOf(runId))

export const abortRun = (runId: string) => bounded(send(HttpClientRequest.post(`/runs/${runId}/abort`)))

export const messagesOf = (chatId: string) =>
  Effect.map(getJson(messagesPath(chatId)), ({ body }) => (body as { readonly messages: ReadonlyArray<MessageJson> }).messages)

/** A finished `user_message` turn, started in JSON mode. */
export const completedTurn = (chatId: string, content = "Hello there", settings: object = quick()) =>
  Effect.gen(function*() {
    const { body, status } = yield* sendMessage(chatId, { userMessageId: crypto.randomUUID(), content, settings })
    expect(status).toBe(202)
    return yield* finished((body as SnapshotJson).run.id)
  })

/**
 * A turn that is live and streaming: started in JSON mode, and returned once its first delta
 * arrived (so its generation row exists). The caller aborts it.
 */
export const liveTurn = (chatId: string) =>
  Effect.gen(function*() {
    const { body, status } = yield* sendMessage(chatId, { userMessageId: crypto.randomUUID(), content: "Tell me a long story", settings: lingering })
    expect(status).toBe(202)
    const runId = (body as SnapshotJson).run.id
    yield* untilFirstDelta(runId)
    return runId
  })

/** Follows the run's events until its first delta, then disconnects. */
const untilFirstDelta = (runId: string) =>
  bounded(Effect.scoped(Effect.gen(function*() {
    const { messages } = yield* openSse(HttpClientRequest.get(`/runs/${runId}/events`))
    yield* messages.pipe(
      Stream.takeUntil((message) => message._tag === "Event" && message.event === "llm.stream.delta"),
      Stream.runDrain
    )
  })))

/**
 * Opens a turn's event stream and reads it to the end in the background; `firstDelta` completes
 * when its first delta has arrived, `all` gives every event once the response ended.
 */
export const streamTurnInBackground = (path: string, body: unknown) =>
  Effect.gen(function*() {
    const firstDelta = yield* Deferred.make<EventJson>()
    const { headers, messages, status } = yield* openSse(HttpClientRequest.post(path).pipe(HttpClientRequest.bodyUnsafeJson(body)))
    const events = messages.pipe(
      Stream.filter((message) => message._tag === "Event"),
      Stream.map((frame): JsonEvent => ({ id: frame.id, event: frame.event, data: JSON.parse(frame.data), receivedAt: frame.receivedAt })),
      Stream.tap((event) => event.event === "llm.stream.delta" ? Deferred.succeed(firstDelta, event.data as EventJson) : Effect.void)
    )
    const all = yield* Effect.fork(bounded(Stream.runCollect(events)))
    return { status, headers, firstDelta: bounded(Deferred.await(firstDelta)), all: Effect.map(Fiber.join(all), (chunk) => [...chunk]) }
  })

/** The rows a turn writes; a refused or deduplicated request must leave every count as it was. */
export const rowCounts = Effect.all({
  chatMessages: count("chat_messages"),
  messageVariants: count("message_variants"),
  pipelineRuns: count("pipeline_runs"),
  stepRuns: count("pipeline_step_runs"),
  generations: count("llm_generations")
})

export const dataOf = (events: ReadonlyArray<JsonEvent>) => events.map((event) => event.data as EventJson)

/** What a client sees of a stream, without the local arrival times. */
export const wire = (events: ReadonlyArray<JsonEvent>) => events.map(({ data, event, id }) => ({ id, event, data }))

/**
 * The event types in order, each step event with its step type, consecutive deltas as one
 * `llm.stream.delta…`: the ordering rules of spec 60 in a form a test can compare with a list.
 */
export const outline = (events: ReadonlyArray<EventJson>) =>
  events.reduce<Array<string>>((out, event) => {
    const label = event.type.startsWith("pipeline.step.")
      ? `${event.type} ${String(event.stepType)} ${String(event.status)}`
      : event.type === "llm.stream.done"
      ? `${event.type} ${String(event.status)}`
      : event.type === "llm.stream.delta"
      ? "llm.stream.delta…"
      : event.type
    if (out.at(-1) !== label || label !== "llm.stream.delta…") out.push(label)
    return out
  }, [])

/** The outline of a run that succeeded (spec 60, "Ordering"). */
export const successOutline = [
  "pipeline.run.started",
  "pipeline.step.started pre running",
  "pipeline.step.done pre done",
  "pipeline.step.started llm running",
  "llm.stream.meta",
  "llm.stream.delta…",
  "llm.stream.done done",
  "pipeline.step.done llm done",
  "pipeline.step.started post running",
  "pipeline.step.done post done",
  "pipeline.run.done"
]

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const stepScoped = (type: string) => type.startsWith("pipeline.step.") || type.startsWith("llm.stream.")

/**
 * Every wire and envelope rule of spec 60 over a whole stream, against the run's final snapshot:
 * `id` = `seq` = 1..n, `event` = `type`, `at` ISO and non-decreasing, the envelope's values,
 * `generationId` null until the generation exists and then always it, step fields on step and
 * llm events naming the run's step rows, one terminal event and it is the last.
 */
export const expectWellFormedStream = (events: ReadonlyArray<JsonEvent>, snapshot: SnapshotJson) => {
  const { run } = snapshot
  const data = dataOf(events)
  expect(data.map((event) => event.seq)).toEqual(data.map((_, i) => i + 1))
  expect(events.map((event) => event.id)).toEqual(data.map((event) => String(event.seq)))
  expect(events.map((event) => event.event)).toEqual(data.map((event) => event.type))

  for (const event of data) {
    expect(typeof event.at, `at of seq ${event.seq}`).toBe("string")
    expect(new Date(event.at).toISOString(), `at of seq ${event.seq}`).toBe(event.at)
    expect(event, `envelope of seq ${event.seq}`).toMatchObject({
      chatId: run.chatId,
      runId: run.id,
      pipelineId: "builtin:default",
      pipelineName: "default",
      trigger: run.trigger,
      userMessageId: run.userMessageId,
      assistantMessageId: run.assistantMessageId,
      assistantVariantId: run.assistantVariantId
    })
    expect(event.chatId).toMatch(uuid)
    expect(event.runId).toMatch(uuid)
    expect(event.assistantMessageId).toMatch(uuid)
    expect(event.assistantVariantId).toMatch(uuid)
    expect(event, `generationId of seq ${event.seq}`).toHaveProperty("generationId")
    if (stepScoped(event.type)) {
      const step = snapshot.steps.find((s) => s.id === event.stepRunId)
      expect(step, `stepRunId of seq ${event.seq} names a step of the run`).toBeDefined()
      expect(event.stepType, `stepType of seq ${event.seq}`).toBe(step?.stepType)
    }
    if (event.type.startsWith("llm.stream.")) expect(event.stepType).toBe("llm")
  }
  for (let i = 1; i < data.length; i++) {
    expect(Date.parse(data[i]!.at), `at of seq ${i + 1}`).toBeGreaterThanOrEqual(Date.parse(data[i - 1]!.at))
  }

  // generationId: null until the generation exists, then always that generation.
  const firstSet = data.findIndex((event) => event.generationId !== null)
  const generationId = snapshot.generation?.id ?? null
  if (generationId === null) {
    expect(firstSet).toBe(-1)
  } else {
    expect(firstSet).toBeGreaterThan(0)
    for (const event of data.slice(firstSet)) expect(event.generationId, `generationId of seq ${event.seq}`).toBe(generationId)
    const meta = data.findIndex((event) => event.type === "llm.stream.meta")
    if (meta >= 0) expect(firstSet).toBeLessThanOrEqual(meta)
  }

  // Exactly one terminal event, the last one, agreeing with the run's row.
  const terminal = data.filter((event) => ["pipeline.run.done", "pipeline.run.aborted", "pipeline.run.error"].includes(event.type))
  expect(terminal).toHaveLength(1)
  expect(data.at(-1)?.type).toBe(`pipeline.run.${run.status}`)
  expect(data.at(-1)).toMatchObject({ status: run.status, finishedAt: run.finishedAt })
  expect(data[0]).toMatchObject({ type: "pipeline.run.started", status: "running" })
}

/** The deltas' contents, joined (spec 60, rule 5: the generation's raw output). */
export const deltaText = (events: ReadonlyArray<EventJson>) =>
  events.filter((event) => event.type === "llm.stream.delta").map((event) => String(event.content)).join("")

/** Runs `use` with a live turn in the chat, and aborts that turn afterwards, whatever happened. */
export const withLiveTurn = <A, E, R>(chatId: string, use: (runId: string) => Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(liveTurn(chatId), use, (runId) => Effect.ignore(abortRun(runId)))
