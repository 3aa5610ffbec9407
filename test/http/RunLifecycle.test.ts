import { HttpClientRequest } from "@effect/platform"
import { expect, layer } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Stream } from "effect"
import { ChatsRepo } from "../../src/services/ChatsRepo.ts"
import { PostStepLive } from "../../src/services/runner/PostStep.ts"
import { PreStepLive } from "../../src/services/runner/PreStep.ts"
import { uuidv7At } from "../../src/services/Uuid.ts"
import { checkInvariants } from "../support/Invariants.ts"
import { collectEvents, openSse, readAll } from "../support/SseClient.ts"
import type { JsonEvent, SseFrame } from "../support/SseClient.ts"
import { testConfig } from "../support/TestConfig.ts"
import type { TestDatabase } from "../support/TestDatabase.ts"
import { testDatabases } from "../support/TestDatabase.ts"
import { getJson, postJson, send, testServer } from "../support/TestServer.ts"
import { block, die, fail, scriptedSettings, TestSteps, testSteps } from "../support/TestSteps.ts"
import type { Scripts } from "../support/TestSteps.ts"

// Short enough for the "timed out" row; a stalled model is otherwise aborted long before it
// (and should an abort never come, the run still ends, so the test fails on statuses, not a hang).
const overrides = { llmIdleTimeoutMs: 2_000 }

/** The app with the scripted steps (around the built-in ones) and their controls. */
const suiteLayer = (database: TestDatabase) => {
  // `database.layer` is the server's own: a Layer used twice in one build is built once.
  const builtin = Layer.merge(PreStepLive, PostStepLive).pipe(
    Layer.provide(ChatsRepo.Default),
    Layer.provide(Layer.merge(testConfig(overrides), database.layer))
  )
  return Layer.unwrapEffect(Effect.map(testSteps(builtin), ({ controls, steps }) =>
    Layer.merge(controls, testServer(database, overrides, { pre: steps, post: steps }))))
}

// Model settings (spec 90, the `local` model's knobs).
const fast = { max_tokens: 8, local: { tokenDelayMs: 0 } }
/** Three tokens, then silence until the run is aborted. */
const stalling = { max_tokens: 20, local: { tokenDelayMs: 0, stallAfterTokens: 3 } }
const slow = { max_tokens: 60, local: { tokenDelayMs: 20 } }

interface ErrorInfo {
  readonly code: string
  readonly message: string
}

interface Snapshot {
  readonly run: {
    readonly id: string
    readonly chatId: string
    readonly status: string
    readonly abortReason: string | null
    readonly error: ErrorInfo | null
    readonly generationId: string | null
    readonly assistantMessageId: string
    readonly assistantVariantId: string
    readonly finishedAt: string | null
  }
  readonly steps: ReadonlyArray<{ readonly stepType: string; readonly status: string; readonly error: ErrorInfo | null }>
  readonly generation: { readonly id: string; readonly status: string; readonly error: ErrorInfo | null } | null
}

interface EventData {
  readonly type: string
  readonly seq: number
  readonly runId: string
  readonly stepType?: string
  readonly status?: string
  readonly content?: string
  readonly error?: ErrorInfo
  readonly abortReason?: string
  readonly generationId: string | null
}

const dataOf = (event: JsonEvent) => event.data as EventData

const turnRequest = (chatId: string, body: { readonly settings: object; readonly abortOnDisconnect?: boolean }) =>
  HttpClientRequest.post(`/chats/${chatId}/messages`).pipe(
    HttpClientRequest.bodyUnsafeJson({ userMessageId: uuidv7At(Date.now()), content: "Tell me about otters", ...body })
  )

const newChat = Effect.map(postJson("/chats", { title: "run lifecycle" }), ({ body }) => (body as { readonly id: string }).id)

/** Starts a turn in the background (202) and gives its first snapshot. */
const startTurn = (settings: object) =>
  Effect.gen(function*() {
    const answer = yield* send(turnRequest(yield* newChat, { settings }))
    expect(answer.status).toBe(202)
    return answer.body as Snapshot
  })

/** Starts a turn in streaming mode and reads its stream to the end. */
const streamTurn = (settings: object) =>
  Effect.gen(function*() {
    const answer = yield* readToEnd(turnRequest(yield* newChat, { settings }))
    expect(answer.status).toBe(200)
    return { runId: dataOf(answer.events[0]!).runId, events: answer.events }
  })

const eventsRequest = (runId: string, resume: { readonly lastEventId?: string; readonly after?: number } = {}) => {
  const request = HttpClientRequest.get(`/runs/${runId}/events`).pipe(
    resume.after === undefined ? (r) => r : HttpClientRequest.setUrlParam("after", String(resume.after))
  )
  return resume.lastEventId === undefined ? request : HttpClientRequest.setHeader(request, "last-event-id", resume.lastEventId)
}

/**
 * Reads a stream to its end, which must come within a few seconds (the runs here last at most
 * ~1.5 s): a stream that never ends fails the test with a message rather than a timeout.
 */
const readToEnd = (request: HttpClientRequest.HttpClientRequest) =>
  readAll(request).pipe(
    Effect.timeoutFail({
      duration: "10 seconds",
      onTimeout: () => new Error(`${request.method} ${request.url} did not end within 10 s of its run`)
    }),
    Effect.orDie
  )

/** `GET /runs/{runId}/events` read to its end (for a live run: until its terminal event). */
const runEvents = (runId: string, resume: { readonly lastEventId?: string; readonly after?: number } = {}) =>
  Effect.gen(function*() {
    const answer = yield* readToEnd(eventsRequest(runId, resume))
    expect(answer.status).toBe(200)
    return answer.events
  })

/** Reads a run's stream until `done` holds for the events so far, then disconnects. */
const readUntil = (request: HttpClientRequest.HttpClientRequest, done: (events: ReadonlyArray<EventData>) => boolean) =>
  Effect.gen(function*() {
    const { messages, status } = yield* openSse(request)
    expect(status).toBe(200)
    const seen: Array<EventData> = []
    const frames = yield* messages.pipe(
      Stream.filter((message): message is SseFrame => message._tag === "Event"),
      Stream.tap((frame) => Effect.sync(() => seen.push(JSON.parse(frame.data) as EventData))),
      Stream.takeUntil(() => done(seen)),
      Stream.runCollect
    )
    return yield* collectEvents(Stream.fromChunk(frames))
  }).pipe(
    Effect.scoped,
    Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error(`${request.method} ${request.url}: the awaited event did not come within 10 s`) }),
    Effect.orDie
  )

const deltaCount = (events: ReadonlyArray<EventData>) => events.filter((event) => event.type === "llm.stream.delta").length

const getRun = (runId: string) =>
  Effect.gen(function*() {
    const answer = yield* getJson(`/runs/${runId}`)
    expect(answer.status).toBe(200)
    return answer.body as Snapshot
  })

const abortRun = (runId: string) => postJson(`/runs/${runId}/abort`, {})

/** The status-agreement row of a snapshot (spec 10). */
const statuses = (snapshot: Snapshot) => {
  const step = (type: string) => snapshot.steps.find((s) => s.stepType === type)?.status
  return { run: snapshot.run.status, pre: step("pre"), llm: step("llm"), post: step("post"), generation: snapshot.generation?.status ?? null }
}

/** The events as readable lines: type, then step and status or error code; a run of deltas is one line. */
const outline = (events: ReadonlyArray<JsonEvent>) =>
  events.map(dataOf).reduce<Array<string>>((lines, event) => {
    const line = event.type === "pipeline.step.started"
      ? `${event.type} ${event.stepType}`
      : event.type === "pipeline.step.done"
      ? `${event.type} ${event.stepType} ${event.status}`
      : event.type === "llm.stream.done"
      ? `${event.type} ${event.status}`
      : event.type === "llm.stream.error" || event.type === "pipeline.run.error"
      ? `${event.type} ${event.error?.code}`
      : event.type === "pipeline.run.aborted"
      ? `${event.type} ${event.abortReason}`
      : event.type === "llm.stream.delta"
      ? "llm.stream.delta…"
      : event.type
    return lines.at(-1) === line && line === "llm.stream.delta…" ? lines : [...lines, line]
  }, [])

/** Every stream: `id` = `seq` = 1, 2, … without a gap, `event` = `type`, one run, one terminal event at the end. */
const expectWellFormed = (events: ReadonlyArray<JsonEvent>, firstSeq = 1) => {
  expect(events.map((event) => dataOf(event).seq)).toEqual(events.map((_, i) => firstSeq + i))
  for (const event of events) {
    expect(event.id).toBe(String(dataOf(event).seq))
    expect(event.event).toBe(dataOf(event).type)
    expect(dataOf(event).runId).toBe(dataOf(events[0]!).runId)
  }
  const terminal = events.filter((event) => /^pipeline\.run\.(done|aborted|error)$/.test(event.event))
  expect(terminal).toHaveLength(1)
  expect(events.at(-1)).toBe(terminal[0])
}

/** What a reader of the wire sees, arrival times left out. */
const wire = (events: ReadonlyArray<JsonEvent>) => events.map(({ data, event, id }) => ({ id, event, data }))

const textOf = (events: ReadonlyArray<JsonEvent>) =>
  events.map(dataOf).filter((event) => event.type === "llm.stream.delta").map((event) => event.content).join("")

/** The current content of the run's assistant variant, as the history shows it. */
const variantContent = (snapshot: Snapshot) =>
  Effect.gen(function*() {
    const { body } = yield* getJson(`/chats/${snapshot.run.chatId}/messages`)
    const messages = (body as { readonly messages: ReadonlyArray<{ readonly id: string; readonly variants: ReadonlyArray<{ readonly id: string; readonly content: string }> }> }).messages
    return messages.find((m) => m.id === snapshot.run.assistantMessageId)?.variants.find((v) => v.id === snapshot.run.assistantVariantId)?.content
  })

/** No answer or event may show a stack trace, a source path or the defect's own text (spec 30, 70). */
const expectNoInternals = (text: string, defect: string) => {
  expect(text).not.toContain(defect)
  expect(text).not.toMatch(/\bat \S+ \(|\.ts:\d+|stack|Error:/i)
}

const success = [
  "pipeline.run.started",
  "pipeline.step.started pre",
  "pipeline.step.done pre done",
  "pipeline.step.started llm",
  "llm.stream.meta",
  "llm.stream.delta…",
  "llm.stream.done done",
  "pipeline.step.done llm done",
  "pipeline.step.started post",
  "pipeline.step.done post done",
  "pipeline.run.done"
]

const preFailed = (code: string) => [
  "pipeline.run.started",
  "pipeline.step.started pre",
  "pipeline.step.done pre error",
  "pipeline.step.done llm skipped",
  "pipeline.step.done post skipped",
  `pipeline.run.error ${code}`
]

/** A turn whose steps follow `scripts`, on top of the model `settings`. */
const scripted = (scripts: Scripts, settings: Record<string, unknown> = fast) => scriptedSettings(scripts, settings)

for (const database of testDatabases) {
  layer(suiteLayer(database), { timeout: 60_000, excludeTestServices: true })(`the run lifecycle on ${database.name}`, (it) => {
    // --- Status agreement (spec 10): one test per row, statuses from GET /runs/{id} and the events.

    it.effect("success: run, steps and generation are done; the stream runs pre → llm → post → pipeline.run.done", () =>
      Effect.gen(function*() {
        const { events, runId } = yield* streamTurn(fast)
        expectWellFormed(events)
        expect(outline(events)).toEqual(success)
        const snapshot = yield* getRun(runId)
        expect(statuses(snapshot)).toEqual({ run: "done", pre: "done", llm: "done", post: "done", generation: "done" })
        expect(snapshot.run).toMatchObject({ error: null, abortReason: null, finishedAt: expect.any(String) })
        expect(yield* variantContent(snapshot)).toBe(textOf(events).trimEnd())
      }))

    it.effect("pre failed with a typed error: the run ends error with the step's code, llm and post are skipped, no generation", () =>
      Effect.gen(function*() {
        const { events, runId } = yield* streamTurn(scripted({ pre: fail("no context today", "context_unavailable") }))
        expectWellFormed(events)
        expect(outline(events)).toEqual(preFailed("context_unavailable"))
        const preDone = events.map(dataOf).find((event) => event.type === "pipeline.step.done" && event.stepType === "pre")
        expect(preDone?.error).toEqual({ code: "context_unavailable", message: "no context today" })
        const snapshot = yield* getRun(runId)
        expect(statuses(snapshot)).toEqual({ run: "error", pre: "error", llm: "skipped", post: "skipped", generation: null })
        expect(snapshot.run.error).toMatchObject({ code: "context_unavailable" })
        expect(snapshot.run.generationId).toBeNull()
        expect(snapshot.steps.find((step) => step.stepType === "pre")?.error).toMatchObject({ code: "context_unavailable" })
      }))

    it.effect("pre failed with a typed error without a code: the run ends error step_failed", () =>
      Effect.gen(function*() {
        const { events, runId } = yield* streamTurn(scripted({ pre: fail("refused") }))
        expectWellFormed(events)
        expect(outline(events)).toEqual(preFailed("step_failed"))
        const snapshot = yield* getRun(runId)
        expect(statuses(snapshot)).toEqual({ run: "error", pre: "error", llm: "skipped", post: "skipped", generation: null })
        expect(snapshot.run.error).toMatchObject({ code: "step_failed" })
      }))

    it.effect("pre died with a defect: the run ends error internal_error, and no answer or event shows the defect", () =>
      Effect.gen(function*() {
        const defect = "kaboom in a test pre step"
        const { events, runId } = yield* streamTurn(scripted({ pre: die(defect) }))
        expectWellFormed(events)
        expect(outline(events)).toEqual(preFailed("internal_error"))
        const answer = yield* getJson(`/runs/${runId}`)
        expect(statuses(answer.body as Snapshot)).toEqual({ run: "error", pre: "error", llm: "skipped", post: "skipped", generation: null })
        expect((answer.body as Snapshot).run.error).toMatchObject({ code: "internal_error" })
        expectNoInternals(answer.text, defect)
        for (const event of events) expectNoInternals(JSON.stringify(event.data), defect)
        expectNoInternals(JSON.stringify(wire(yield* runEvents(runId))), defect)
      }))

    it.effect("the LLM failed: run and llm step error llm_error, generation error, llm.stream.error before llm.stream.done {status: error}", () =>
      Effect.gen(function*() {
        const { events, runId } = yield* streamTurn({ max_tokens: 10, local: { tokenDelayMs: 0, failAfterTokens: 3 } })
        expectWellFormed(events)
        expect(outline(events)).toEqual([
          "pipeline.run.started",
          "pipeline.step.started pre",
          "pipeline.step.done pre done",
          "pipeline.step.started llm",
          "llm.stream.meta",
          "llm.stream.delta…",
          "llm.stream.error llm_error",
          "llm.stream.done error",
          "pipeline.step.done llm error",
          "pipeline.step.done post skipped",
          "pipeline.run.error llm_error"
        ])
        expect(deltaCount(events.map(dataOf))).toBe(3)
        const snapshot = yield* getRun(runId)
        expect(statuses(snapshot)).toEqual({ run: "error", pre: "done", llm: "error", post: "skipped", generation: "error" })
        expect(snapshot.run.error).toMatchObject({ code: "llm_error" })
        expect(snapshot.generation?.error).toMatchObject({ code: "llm_error" })
        expect(yield* variantContent(snapshot)).toBe(textOf(events))
      }))

    it.effect("the LLM timed out: run and llm step error upstream_timeout, generation error, llm.stream.error before llm.stream.done {status: error}", () =>
      Effect.gen(function*() {
        const { events, runId } = yield* streamTurn(stalling)
        expectWellFormed(events)
        expect(outline(events).slice(4)).toEqual([
          "llm.stream.meta",
          "llm.stream.delta…",
          "llm.stream.error upstream_timeout",
          "llm.stream.done error",
          "pipeline.step.done llm error",
          "pipeline.step.done post skipped",
          "pipeline.run.error upstream_timeout"
        ])
        const snapshot = yield* getRun(runId)
        expect(statuses(snapshot)).toEqual({ run: "error", pre: "done", llm: "error", post: "skipped", generation: "error" })
        expect(snapshot.run.error).toMatchObject({ code: "upstream_timeout" })
        expect(snapshot.generation?.error).toMatchObject({ code: "upstream_timeout" })
        expect(yield* variantContent(snapshot)).toBe(textOf(events))
      }))

    it.effect("post failed: the run ends error with post's code, pre and llm done, generation done", () =>
      Effect.gen(function*() {
        const { events, runId } = yield* streamTurn(scripted({ post: fail("cannot finish", "post_rejected") }))
        expectWellFormed(events)
        expect(outline(events)).toEqual([...success.slice(0, -2), "pipeline.step.done post error", "pipeline.run.error post_rejected"])
        const snapshot = yield* getRun(runId)
        expect(statuses(snapshot)).toEqual({ run: "error", pre: "done", llm: "done", post: "error", generation: "done" })
        expect(snapshot.run.error).toMatchObject({ code: "post_rejected" })
      }))

    it.effect("aborted during pre: run and pre aborted, llm and post skipped, no generation; the abort reaches the step", () =>
      Effect.gen(function*() {
        const steps = yield* TestSteps
        const { run } = yield* startTurn(scripted({ pre: block }))
        yield* steps.entered("pre", run.id)
        const answer = yield* abortRun(run.id)
        expect(answer.status).toBe(200)
        expect(statuses(answer.body as Snapshot)).toEqual({ run: "aborted", pre: "aborted", llm: "skipped", post: "skipped", generation: null })
        expect(Exit.isInterrupted(yield* steps.exited("pre", run.id))).toBe(true)
        const events = yield* runEvents(run.id)
        expectWellFormed(events)
        expect(outline(events)).toEqual([
          "pipeline.run.started",
          "pipeline.step.started pre",
          "pipeline.step.done pre aborted",
          "pipeline.step.done llm skipped",
          "pipeline.step.done post skipped",
          "pipeline.run.aborted user"
        ])
      }))

    it.effect("aborted during llm: run, llm step and generation aborted, post skipped; llm.stream.done {status: aborted}, no llm.stream.error", () =>
      Effect.gen(function*() {
        const { run } = yield* startTurn(stalling)
        yield* readUntil(eventsRequest(run.id), (seen) => deltaCount(seen) === 3)
        const answer = yield* abortRun(run.id)
        expect(statuses(answer.body as Snapshot)).toEqual({ run: "aborted", pre: "done", llm: "aborted", post: "skipped", generation: "aborted" })
        const events = yield* runEvents(run.id)
        expectWellFormed(events)
        expect(outline(events)).toEqual([
          "pipeline.run.started",
          "pipeline.step.started pre",
          "pipeline.step.done pre done",
          "pipeline.step.started llm",
          "llm.stream.meta",
          "llm.stream.delta…",
          "llm.stream.done aborted",
          "pipeline.step.done llm aborted",
          "pipeline.step.done post skipped",
          "pipeline.run.aborted user"
        ])
      }))

    it.effect("aborted during post: run and post aborted, pre, llm and generation done; the abort reaches the step", () =>
      Effect.gen(function*() {
        const steps = yield* TestSteps
        const { run } = yield* startTurn(scripted({ post: block }))
        yield* steps.entered("post", run.id)
        const answer = yield* abortRun(run.id)
        expect(statuses(answer.body as Snapshot)).toEqual({ run: "aborted", pre: "done", llm: "done", post: "aborted", generation: "done" })
        expect(Exit.isInterrupted(yield* steps.exited("post", run.id))).toBe(true)
        const events = yield* runEvents(run.id)
        expectWellFormed(events)
        expect(outline(events)).toEqual([...success.slice(0, -2), "pipeline.step.done post aborted", "pipeline.run.aborted user"])
      }))

    // --- Abort (spec 10, "Abort"; spec 70): every source, idempotence, unknown ids.

    it.effect("POST /runs/{runId}/abort answers once the run is terminal, with the final snapshot, and the partial text stays", () =>
      Effect.gen(function*() {
        const { run } = yield* startTurn(stalling)
        const before = yield* readUntil(eventsRequest(run.id), (seen) => deltaCount(seen) === 3)
        const answer = yield* abortRun(run.id)
        expect(answer.status).toBe(200)
        const snapshot = answer.body as Snapshot
        expect(snapshot.run).toMatchObject({ status: "aborted", abortReason: "user", error: { code: "aborted" }, finishedAt: expect.any(String) })
        expect(snapshot.generation).toMatchObject({ status: "aborted" })
        for (const step of snapshot.steps) expect(step.status).not.toBe("running")
        // The answer is the final state: nothing changes after it.
        expect(yield* getRun(run.id)).toEqual(snapshot)
        const partial = textOf(before)
        expect(partial.length).toBeGreaterThan(0)
        expect(yield* variantContent(snapshot)).toBe(partial)
        expect(textOf(yield* runEvents(run.id))).toBe(partial)
      }))

    it.effect("POST /generations/{generationId}/abort aborts the generation's run the same way", () =>
      Effect.gen(function*() {
        const { run } = yield* startTurn(stalling)
        const before = yield* readUntil(eventsRequest(run.id), (seen) => deltaCount(seen) === 3)
        const generationId = dataOf(before.at(-1)!).generationId
        expect(generationId).toEqual(expect.any(String))
        const answer = yield* postJson(`/generations/${generationId}/abort`, {})
        expect(answer.status).toBe(200)
        const snapshot = answer.body as Snapshot
        expect(snapshot.run).toMatchObject({ id: run.id, status: "aborted", abortReason: "user", generationId })
        expect(snapshot.generation).toMatchObject({ id: generationId, status: "aborted" })
        expect(yield* getRun(run.id)).toEqual(snapshot)
      }))

    it.effect("a second abort changes nothing and answers the same snapshot", () =>
      Effect.gen(function*() {
        const { run } = yield* startTurn(stalling)
        yield* readUntil(eventsRequest(run.id), (seen) => deltaCount(seen) === 3)
        const first = yield* abortRun(run.id)
        const second = yield* abortRun(run.id)
        expect(second.status).toBe(200)
        expect(second.body).toEqual(first.body)
        const byGeneration = yield* postJson(`/generations/${(first.body as Snapshot).run.generationId}/abort`, {})
        expect(byGeneration.body).toEqual(first.body)
        const events = yield* runEvents(run.id)
        expect(events.filter((event) => event.event === "pipeline.run.aborted")).toHaveLength(1)
      }))

    it.effect("aborting a finished run changes nothing and answers its snapshot", () =>
      Effect.gen(function*() {
        const { events, runId } = yield* streamTurn(fast)
        const finished = yield* getRun(runId)
        const answer = yield* abortRun(runId)
        expect(answer.status).toBe(200)
        expect(answer.body).toEqual(finished)
        expect(statuses(answer.body as Snapshot)).toEqual({ run: "done", pre: "done", llm: "done", post: "done", generation: "done" })
        expect((yield* postJson(`/generations/${finished.run.generationId}/abort`, {})).body).toEqual(finished)
        expect(wire(yield* runEvents(runId))).toEqual(wire(events))
      }))

    it.effect("aborting an unknown run or generation is 404 not_found", () =>
      Effect.gen(function*() {
        for (const path of [`/runs/${uuidv7At(0)}/abort`, `/generations/${uuidv7At(0)}/abort`]) {
          const answer = yield* postJson(path, {})
          expect(answer.status).toBe(404)
          expect(answer.body).toMatchObject({ code: "not_found", message: expect.any(String) })
        }
      }))

    it.effect("abortOnDisconnect: a streaming client that disconnects mid-stream aborts the run with client_disconnect", () =>
      Effect.gen(function*() {
        const request = turnRequest(yield* newChat, { settings: stalling, abortOnDisconnect: true })
        const before = yield* readUntil(request, (seen) => deltaCount(seen) === 3)
        const runId = dataOf(before[0]!).runId
        // The disconnect is over; the run's own stream tells when it has ended.
        const events = yield* runEvents(runId)
        expectWellFormed(events)
        expect(dataOf(events.at(-1)!)).toMatchObject({ type: "pipeline.run.aborted", abortReason: "client_disconnect" })
        expect(outline(events).slice(-4)).toEqual([
          "llm.stream.done aborted",
          "pipeline.step.done llm aborted",
          "pipeline.step.done post skipped",
          "pipeline.run.aborted client_disconnect"
        ])
        const snapshot = yield* getRun(runId)
        expect(snapshot.run).toMatchObject({ status: "aborted", abortReason: "client_disconnect", error: { code: "aborted" } })
        expect(yield* variantContent(snapshot)).toBe(textOf(before))
      }))

    it.effect("without abortOnDisconnect, a streaming client that disconnects leaves the run running to done", () =>
      Effect.gen(function*() {
        const settings = { max_tokens: 30, local: { tokenDelayMs: 20 } }
        const before = yield* readUntil(turnRequest(yield* newChat, { settings }), (seen) => deltaCount(seen) === 1)
        const runId = dataOf(before[0]!).runId
        const events = yield* runEvents(runId)
        expectWellFormed(events)
        expect(outline(events)).toEqual(success)
        expect(deltaCount(events.map(dataOf))).toBe(30)
        expect(statuses(yield* getRun(runId))).toEqual({ run: "done", pre: "done", llm: "done", post: "done", generation: "done" })
      }))

    // --- Journal and resume (spec 60).

    it.effect("a finished run's GET /runs/{runId}/events replays the original stream", () =>
      Effect.gen(function*() {
        const { events, runId } = yield* streamTurn(fast)
        expectWellFormed(events)
        expect(wire(yield* runEvents(runId))).toEqual(wire(events))
      }))

    it.effect("Last-Event-ID: n replays exactly the events with seq > n", () =>
      Effect.gen(function*() {
        const { events, runId } = yield* streamTurn(fast)
        expectWellFormed(events)
        const n = Math.floor(events.length / 2)
        const resumed = yield* runEvents(runId, { lastEventId: String(n) })
        expectWellFormed(resumed, n + 1)
        expect(wire(resumed)).toEqual(wire(events.slice(n)))
      }))

    it.effect("?after=n replays exactly the events with seq > n", () =>
      Effect.gen(function*() {
        const { events, runId } = yield* streamTurn(fast)
        expectWellFormed(events)
        const n = Math.floor(events.length / 2)
        const resumed = yield* runEvents(runId, { after: n })
        expectWellFormed(resumed, n + 1)
        expect(wire(resumed)).toEqual(wire(events.slice(n)))
      }))

    it.effect("resuming a finished run at or past its terminal event's seq is 204 No Content (what stops an EventSource)", () =>
      Effect.gen(function*() {
        const { events, runId } = yield* streamTurn(fast)
        expectWellFormed(events)
        const terminalSeq = dataOf(events.at(-1)!).seq
        for (const resume of [{ lastEventId: String(terminalSeq) }, { after: terminalSeq }, { lastEventId: String(terminalSeq + 5) }, { after: terminalSeq + 5 }]) {
          const answer = yield* send(eventsRequest(runId, resume))
          expect(answer.status).toBe(204)
          expect(answer.text).toBe("")
        }
        // One before the end is still a stream: the terminal event, then the end.
        const last = yield* runEvents(runId, { lastEventId: String(terminalSeq - 1) })
        expect(wire(last)).toEqual(wire(events.slice(-1)))
      }))

    it.effect("a live run resumed at its latest event waits for the next one: no 204 before the run is over", () =>
      Effect.gen(function*() {
        const steps = yield* TestSteps
        const { run } = yield* startTurn(scripted({ post: block }, fast))
        yield* steps.entered("post", run.id)
        const sofar = yield* readUntil(eventsRequest(run.id), (seen) => seen.at(-1)?.type === "pipeline.step.started" && seen.at(-1)?.stepType === "post")
        const resuming = yield* runEvents(run.id, { lastEventId: String(sofar.length) }).pipe(Effect.fork)
        yield* steps.release("post", run.id)
        const rest = yield* Fiber.join(resuming)
        expect(rest.map((event) => dataOf(event).type)).toEqual(["pipeline.step.done", "pipeline.run.done"])
        expect(dataOf(rest[0]!).seq).toBe(sofar.length + 1)
      }))

    it.effect("a live run resumed with Last-Event-ID in the middle continues without a gap or a duplicate", () =>
      Effect.gen(function*() {
        const steps = yield* TestSteps
        // `post` holds the run open, so it is surely live when the second client attaches.
        const { run } = yield* startTurn(scripted({ post: block }, slow))
        const n = 10
        const original = yield* readToEnd(eventsRequest(run.id)).pipe(Effect.fork)
        const firstPart = yield* readUntil(eventsRequest(run.id), (seen) => seen.length === n)
        expect(firstPart.map((event) => dataOf(event).seq)).toEqual(firstPart.map((_, i) => i + 1))
        expect(dataOf(firstPart.at(-1)!).type).toBe("llm.stream.delta")
        const resuming = yield* runEvents(run.id, { lastEventId: String(n) }).pipe(Effect.fork)
        expect((yield* getRun(run.id)).run.status).toBe("running")
        yield* steps.entered("post", run.id)
        yield* steps.release("post", run.id)
        const resumed = yield* Fiber.join(resuming)
        const whole = (yield* Fiber.join(original)).events
        expectWellFormed(whole)
        expect(deltaCount(whole.map(dataOf))).toBe(60)
        const combined = [...firstPart, ...resumed]
        expectWellFormed(combined)
        expect(wire(combined)).toEqual(wire(whole))
        expect(wire(yield* runEvents(run.id))).toEqual(wire(whole))
      }))

    it.effect("a Last-Event-ID that is not a seq is 400 validation_error", () =>
      Effect.gen(function*() {
        const { runId } = yield* streamTurn(fast)
        const answer = yield* send(eventsRequest(runId, { lastEventId: "abc" }))
        expect(answer.status).toBe(400)
        expect(answer.body).toMatchObject({ code: "validation_error", message: expect.any(String) })
      }))

    it.effect("after the suite, every run satisfies the invariants", () => checkInvariants)
  })
}
