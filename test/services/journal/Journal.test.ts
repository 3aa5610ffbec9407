import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Context, Deferred, Effect, Layer } from "effect"
import { servicesWith } from "../../../src/AppLayer.ts"
import type { ChatId, MessageId } from "../../../src/domain/Ids.ts"
import { LanguageModelLive } from "../../../src/services/llm/LanguageModelLive.ts"
import { Journal } from "../../../src/services/journal/Journal.ts"
import { PostStepLive } from "../../../src/services/runner/PostStep.ts"
import { PreStep, PreStepLive } from "../../../src/services/runner/PreStep.ts"
import { Runs } from "../../../src/services/runner/Runs.ts"
import { Turns } from "../../../src/services/runner/Turns.ts"
import { uuidv7At } from "../../../src/services/Uuid.ts"
import { WriteBehind } from "../../../src/services/WriteBehind.ts"
import { seedChat } from "../../support/Fixtures.ts"
import { testConfig } from "../../support/TestConfig.ts"
import { testDatabases } from "../../support/TestDatabase.ts"
import type { TestDatabase } from "../../support/TestDatabase.ts"

/** Holds `pre` until the test opens it. */
class Gate extends Context.Tag("test/Gate")<Gate, Deferred.Deferred<void>>() {}

const gatedPre = Layer.effect(
  PreStep,
  Effect.gen(function*() {
    const builtin = yield* PreStep
    const gate = yield* Gate
    return { ...builtin, run: (context) => Effect.zipRight(Deferred.await(gate), builtin.run(context)) }
  })
).pipe(Layer.provide(PreStepLive))

const suite = (database: TestDatabase) => {
  const gate = Layer.effect(Gate, Deferred.make<void>())
  return servicesWith(Layer.merge(gatedPre, PostStepLive)).pipe(
    Layer.provide(LanguageModelLive),
    // The journal is written only when asked: the interval never comes during the test.
    Layer.provide(testConfig({ flushIntervalMs: 600_000 })),
    Layer.provideMerge(gate),
    Layer.provideMerge(database.layer)
  )
}

for (const database of testDatabases) {
  layer(suite(database), { timeout: 60_000, excludeTestServices: true })(`the journal read back on ${database.name}`, (it) => {
    it.effect("events journaled before the generation existed do not name it, even once the run row does", () =>
      Effect.gen(function*() {
        const chat = yield* seedChat
        const started = yield* (yield* Turns).sendMessage(chat.chatId as ChatId, {
          userMessageId: uuidv7At(Date.now()) as MessageId,
          content: "Hello",
          settings: { max_tokens: 1000, local: { tokenDelayMs: 20 } },
          onBusy: "reject",
          abortOnDisconnect: false
        })
        const runId = started.run.runId
        // pipeline.run.started and pre's pipeline.step.started are journaled; the generation is not started.
        yield* (yield* WriteBehind).flush
        yield* Deferred.succeed(yield* Gate, undefined)
        // The generation's row and the run's link to it are written at once; its first event is not.
        const sql = yield* SqlClient.SqlClient
        while ((yield* sql<{ readonly g: string | null }>`SELECT generation_id AS g FROM pipeline_runs WHERE id = ${runId}`)[0]?.g == null) {
          yield* Effect.sleep("5 millis")
        }
        const early = yield* (yield* Journal).read(runId, 0)
        expect(early.map((entry) => entry.type)).toEqual(["pipeline.run.started", "pipeline.step.started"])
        for (const entry of early) expect(JSON.parse(entry.json)).toMatchObject({ generationId: null })
        yield* (yield* Runs).abort(runId, "user")
      }))
  })
}
