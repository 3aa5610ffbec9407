import { expect, layer } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, TestClock } from "effect"
import type { VariantId } from "../../src/domain/Ids.ts"
import { ChatsRepo } from "../../src/services/ChatsRepo.ts"
import { Journal } from "../../src/services/journal/Journal.ts"
import type { PendingWrites } from "../../src/services/WriteBehind.ts"
import { WriteBehind } from "../../src/services/WriteBehind.ts"
import { seedChat } from "../support/Fixtures.ts"
import { pglite } from "../support/TestDatabase.ts"
import { testConfig } from "../support/TestConfig.ts"

const writeBehind = WriteBehind.DefaultWithoutDependencies.pipe(
  Layer.provideMerge(Layer.merge(ChatsRepo.Default, Journal.Default)),
  Layer.provide(testConfig({ flushIntervalMs: 250 })),
  Layer.provideMerge(pglite.layer)
)

/** A generation's text as the write-behind sees it: what is new since the last write. */
const textOf = (variantId: string) => {
  const state = { text: "", written: 0 }
  const source: PendingWrites = (batch) => {
    const content = state.text
    if (content.length === state.written) return undefined
    batch.texts.set(variantId as VariantId, content)
    return () => {
      state.written = content.length
    }
  }
  return { state, source }
}

const variants = (ids: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ readonly content: string; readonly tx: string }>`
      SELECT content, xmin::text AS tx FROM message_variants WHERE id IN ${sql.in(ids)} ORDER BY content`)

layer(writeBehind, { timeout: 60_000 })("the write-behind", (it) => {
  it.effect("writes what every registered run has pending in one statement per interval, and nothing twice", () =>
    Effect.gen(function*() {
      const writer = yield* WriteBehind
      const [a, b] = [yield* seedChat, yield* seedChat]
      const first = textOf(a.assistantVariantId)
      const second = textOf(b.assistantVariantId)
      yield* Effect.scoped(Effect.gen(function*() {
        yield* writer.register(first.source)
        yield* writer.register(second.source)
        first.state.text = "one"
        second.state.text = "two"
        yield* TestClock.adjust(250)
        const written = yield* variants([a.assistantVariantId, b.assistantVariantId])
        expect(written.map((row) => row.content)).toEqual(["one", "two"])
        // One UPDATE for both runs: both rows carry its transaction id.
        expect(new Set(written.map((row) => row.tx)).size).toBe(1)
        // Nothing new: the next interval writes nothing.
        yield* TestClock.adjust(250)
        expect((yield* variants([a.assistantVariantId])).map((row) => row.tx)).toEqual([written[0]!.tx])
        // A run's own last write takes only its own text.
        first.state.text = "one more"
        second.state.text = "two more"
        yield* writer.writeNow(first.source)
        expect((yield* variants([a.assistantVariantId, b.assistantVariantId])).map((row) => row.content)).toEqual(["one more", "two"])
      }))
      // Unregistered once its scope closed: the next interval leaves the second run's text alone.
      yield* TestClock.adjust(250)
      expect((yield* variants([b.assistantVariantId]))[0]!.content).toBe("two")
    }))
})
