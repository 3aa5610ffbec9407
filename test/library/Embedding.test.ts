import { expect, layer } from "@effect/vitest"
import { Chunk, Effect, Layer, Stream } from "effect"
import { randomUUID } from "node:crypto"
import {
  Chats,
  LanguageModelLive,
  MessageId,
  PostStepLive,
  PreStep,
  Runs,
  SendMessage,
  servicesWith,
  Turns
} from "../../src/index.ts"
import { testConfig } from "../support/TestConfig.ts"
import { pglite } from "../support/TestDatabase.ts"

/** A program that embeds the runner brings its own `pre`: here, a fixed persona and no history. */
const PersonaPre = Layer.succeed(PreStep, {
  label: "Summoning the pirate",
  run: (context) =>
    Effect.succeed({
      value: { messages: [{ role: "system", content: "Talk like a pirate." }, { role: "user", content: `Run ${context.runId}` }] },
      // A step may say more than a row keeps (8 KiB): `settings.verbose` makes it.
      output: context.settings.verbose === true ? { persona: "pirate", notes: "arr ".repeat(5000) } : { persona: "pirate" }
    })
})

const Embedded = servicesWith(Layer.merge(PersonaPre, PostStepLive)).pipe(
  Layer.provide(LanguageModelLive),
  Layer.provide(testConfig()),
  Layer.provideMerge(pglite.layer)
)

layer(Embedded, { timeout: 60_000, excludeTestServices: true })("embedding the runner as a library", (it) => {
  it.effect("a custom pre step Layer replaces the built-in one without touching the runner", () =>
    Effect.gen(function*() {
      const chat = yield* (yield* Chats).create({ title: "library" })
      const started = yield* (yield* Turns).sendMessage(chat.id, SendMessage.make({
        userMessageId: MessageId.make(randomUUID()),
        content: "Ahoy",
        settings: { max_tokens: 4, local: { tokenDelayMs: 0 } }
      }))
      const events = Chunk.toArray(yield* Stream.runCollect(started.run.events))
      expect(events.at(-1)?.type).toBe("pipeline.run.done")
      expect(events[1]).toMatchObject({ type: "pipeline.step.started", stepType: "pre", label: "Summoning the pirate" })
      const snapshot = yield* (yield* Runs).snapshot(started.run.runId)
      expect(snapshot.steps[0]).toMatchObject({ stepType: "pre", status: "done", output: { persona: "pirate" } })
      // The model saw the custom prompt: the local model quotes the last user message.
      const text = events.flatMap((event) => event.type === "llm.stream.delta" ? [event.content] : []).join("")
      expect(text).toContain(`Run ${started.run.runId}`)
    }))

  it.effect("a step output larger than a row keeps is recorded as its size, and the run ends done", () =>
    Effect.gen(function*() {
      const chat = yield* (yield* Chats).create({ title: "verbose" })
      const started = yield* (yield* Turns).sendMessage(chat.id, SendMessage.make({
        userMessageId: MessageId.make(randomUUID()),
        content: "Ahoy",
        settings: { max_tokens: 2, local: { tokenDelayMs: 0 }, verbose: true }
      }))
      const events = Chunk.toArray(yield* Stream.runCollect(started.run.events))
      expect(events.at(-1)?.type).toBe("pipeline.run.done")
      const snapshot = yield* (yield* Runs).snapshot(started.run.runId)
      expect(snapshot.run.status).toBe("done")
      expect(snapshot.steps[0]).toMatchObject({ stepType: "pre", status: "done", output: { truncated: true } })
    }))
})
