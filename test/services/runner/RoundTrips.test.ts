import { expect, layer } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Deferred, Effect, Exit, Fiber, Layer, Schedule, Tracer } from "effect"
import { BuiltinStepsLive, servicesWith } from "../../../src/AppLayer.ts"
import type { ChatId, MessageId } from "../../../src/domain/Ids.ts"
import { Chats } from "../../../src/services/Chats.ts"
import { ChatModel } from "../../../src/services/llm/ChatModel.ts"
import { Turns } from "../../../src/services/runner/Turns.ts"
import { uuidv7At } from "../../../src/services/Uuid.ts"
import { testConfig } from "../../support/TestConfig.ts"
import { testDatabases } from "../../support/TestDatabase.ts"

/** Every SQL statement started, in order (each is an `sql.execute` span of `@effect/sql`). */
const statements: Array<string> = []
/** Called as a turn's start statement begins, while set. */
let onStartStatement: (() => void) | undefined
const base = Effect.runSync(Effect.tracer)
const recordingTracer = Tracer.make({
  span: (name, parent, context, links, startTime, kind, options) => {
    const span = base.span(name, parent, context, links, startTime, kind, options)
    if (name !== "sql.execute") return span
    const attribute = span.attribute.bind(span)
    statements.push("")
    const at = statements.length - 1
    span.attribute = (key, value) => {
      if (key === "db.query.text") {
        statements[at] = String(value)
        if (String(value).includes("INSERT INTO pipeline_runs")) onStartStatement?.()
      }
      attribute(key, value)
    }
    return span
  },
  context: base.context
})

/** A model that notes how many statements had started when the run called it, then answers at once. */
class Called extends Effect.Service<Called>()("test/Called", {
  effect: Effect.map(Deferred.make<number>(), (deferred) => ({ deferred }))
}) {}

/** With `settings.hang`, the model says one word and then nothing more, until it is interrupted. */
const countingModel = Layer.effect(
  ChatModel,
  Effect.map(Called, ({ deferred }) =>
    ChatModel.of({
      provider: "test",
      model: "counting",
      stream: (_prompt, settings, sink) =>
        Effect.suspend(() => {
          Deferred.unsafeDone(deferred, Effect.succeed(statements.length))
          sink.delta("ok")
          if (settings.hang === true) return Effect.never
          sink.finish("stop", null)
          return Effect.void
        })
    }))
)

for (const database of testDatabases) {
  const services = servicesWith(BuiltinStepsLive).pipe(
    Layer.provide(countingModel),
    Layer.provideMerge(Called.Default),
    Layer.provide(testConfig({ leaseTtlMs: 600_000 })),
    Layer.provideMerge(database.layer),
    Layer.provide(Layer.setTracer(recordingTracer))
  )

  layer(services, { timeout: 60_000, excludeTestServices: true })(`database round trips of a turn on ${database.name}`, (it) => {
    it.effect("a turn waits for one statement before the model is called: the start, with the checks, the writes and the history", () =>
      Effect.gen(function*() {
        const chat = yield* (yield* Chats).create({ systemPrompt: "Be brief." })
        // Let the start-up sweep finish, so only the turn's own statements are counted.
        yield* Effect.sleep("200 millis")
        const before = statements.length
        yield* (yield* Turns).sendMessage(chat.id as ChatId, {
          userMessageId: uuidv7At(Date.now()) as MessageId,
          content: "Hello",
          settings: {},
          onBusy: "reject",
          abortOnDisconnect: false
        })
        const atModel = yield* Deferred.await((yield* Called).deferred)
        const issued = statements.slice(before, atModel)
        expect(issued, issued.join("\n---\n")).toHaveLength(1)
        expect(issued[0]).toContain("INSERT INTO pipeline_runs")
      }).pipe(Effect.withTracer(recordingTracer)))

    it.effect("an abort closes the run, its steps, its generation, its text and its journal in one statement", () =>
      Effect.gen(function*() {
        const chat = yield* (yield* Chats).create({})
        const { run } = yield* (yield* Turns).sendMessage(chat.id as ChatId, {
          userMessageId: uuidv7At(Date.now()) as MessageId,
          content: "Hello",
          settings: { hang: true },
          onBusy: "reject",
          abortOnDisconnect: false
        })
        // The rows of the run's start are written behind; let them land.
        yield* Effect.sleep("300 millis")
        const before = statements.length
        yield* run.abort("user")
        const issued = statements.slice(before)
        expect(issued, issued.join("\n---\n")).toHaveLength(1)
        for (const table of ["pipeline_step_runs", "llm_generations", "message_variants", "pipeline_runs", "pipeline_run_events"]) {
          expect(issued[0]).toContain(table)
        }
      }).pipe(Effect.withTracer(recordingTracer)))

    it.effect("a caller interrupted while its start statement runs still has its run launched: it ends done, not left running", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const chat = yield* (yield* Chats).create({})
        const statementStarted = yield* Deferred.make<void>()
        onStartStatement = () => Deferred.unsafeDone(statementStarted, Exit.void)
        const caller = yield* Effect.fork((yield* Turns).sendMessage(chat.id as ChatId, {
          userMessageId: uuidv7At(Date.now()) as MessageId,
          content: "Hello",
          settings: {},
          onBusy: "reject",
          abortOnDisconnect: false
        }))
        yield* Deferred.await(statementStarted)
        onStartStatement = undefined
        // A client gone while the statement runs: the caller ends interrupted, once its run is launched.
        expect(Exit.isInterrupted(yield* Fiber.interrupt(caller))).toBe(true)
        const status = sql<{ readonly status: string }>`SELECT status FROM pipeline_runs WHERE chat_id = ${chat.id}`.pipe(
          Effect.map((rows) => rows[0]?.status)
        )
        yield* status.pipe(
          Effect.repeat({ until: (status) => status === "done", schedule: Schedule.spaced("20 millis") }),
          Effect.timeout("5 seconds")
        )
        expect(yield* status).toBe("done")
      }).pipe(Effect.withTracer(recordingTracer)))
  })
}
