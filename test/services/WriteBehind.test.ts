import { expect, layer } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, TestClock } from "effect"
import type { VariantId } from "../../src/domain/Ids.ts"
import { BatchRepo } from "../../src/services/BatchRepo.ts"
import type { Batch } from "../../src/services/BatchRepo.ts"
import { WriteBehind } from "../../src/services/WriteBehind.ts"
import { seedChat } from "../support/Fixtures.ts"
import { pglite } from "../support/TestDatabase.ts"
import { testConfig } from "../support/TestConfig.ts"

const writeBehind = WriteBehind.DefaultWithoutDependencies.pipe(
  Layer.provideMerge(BatchRepo.Default),
  Layer.provide(testConfig({ flushIntervalMs: 250 })),
  Layer.provideMerge(pglite.layer)
)

/** A generation's text as the write-behind sees it: what is new since the last write. */
const textOf = (variantId: string) => {
  const state = { text: "", written: 0 }
  const source = {
    closed: false,
    take: (batch: Batch, rowsOnly: boolean) => {
      const content = state.text
      if (rowsOnly || content.length === state.written) return undefined
      batch.variants.set(variantId as VariantId, { content })
      return () => {
        state.written = content.length
      }
    }
  }
  return { state, source }
}

const variants = (ids: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ readonly content: string; readonly tx: string }>`
      SELECT content, xmin::text AS tx FROM message_variants WHERE id IN ${sql.in(ids)} ORDER BY content`)

layer(writeBehind, { timeout: 60_000 })("the write-behind", (it) => {
  it.effect("writes what every source has pending in one statement per interval, nothing twice, and drops a closed source after its last write", () =>
    Effect.gen(function*() {
      const writer = yield* WriteBehind
      const [a, b] = [yield* seedChat, yield* seedChat]
      const first = textOf(a.assistantVariantId)
      const second = textOf(b.assistantVariantId)
      yield* writer.add(first.source)
      yield* writer.add(second.source)
      first.state.text = "one"
      second.state.text = "two"
      // A kick writes rows only: the text waits for the interval.
      writer.soon()
      yield* TestClock.adjust(1)
      expect((yield* variants([a.assistantVariantId])).map((row) => row.content)).toEqual([""])
      yield* TestClock.adjust(249)
      const written = yield* variants([a.assistantVariantId, b.assistantVariantId])
      expect(written.map((row) => row.content)).toEqual(["one", "two"])
      // One statement for both sources: both rows carry its transaction id.
      expect(new Set(written.map((row) => row.tx)).size).toBe(1)
      // Nothing new: the next interval writes nothing.
      yield* TestClock.adjust(250)
      expect((yield* variants([a.assistantVariantId])).map((row) => row.tx)).toEqual([written[0]!.tx])
      // A flush writes everything pending now; a closed source is dropped after it.
      first.state.text = "one more"
      first.source.closed = true
      yield* writer.flush
      expect((yield* variants([a.assistantVariantId]))[0]!.content).toBe("one more")
      first.state.text = "one more, never written"
      second.state.text = "two more"
      yield* TestClock.adjust(250)
      expect((yield* variants([a.assistantVariantId, b.assistantVariantId])).map((row) => row.content)).toEqual(["one more", "two more"])
    }))

  it.effect("a source the database refuses is dropped and logged, and holds no other source back", () =>
    Effect.gen(function*() {
      const writer = yield* WriteBehind
      const chat = yield* seedChat
      const good = textOf(chat.assistantVariantId)
      // A step row of a run that does not exist: its foreign key refuses the whole batch.
      let refusedTakes = 0
      let pending = true
      const bad = {
        closed: false,
        take: (batch: Batch) => {
          if (!pending) return undefined
          refusedTakes++
          batch.steps.set(chat.assistantVariantId as never, {
            id: chat.assistantVariantId as never,
            runId: chat.userMessageId as never,
            stepType: "pre",
            position: 0,
            status: "done",
            label: "pre",
            output: null,
            error: null,
            startedAt: new Date(0),
            finishedAt: new Date(0)
          })
          return () => {
            pending = false
          }
        }
      }
      yield* writer.add(bad)
      yield* writer.add(good.source)
      good.state.text = "written anyway"
      yield* writer.flush
      expect((yield* variants([chat.assistantVariantId]))[0]!.content).toBe("written anyway")
      // Tried in the batch, then alone, then dropped: the next writes do not try it again.
      expect(refusedTakes).toBe(2)
      yield* writer.flush
      yield* writer.flush
      expect(refusedTakes).toBe(2)
    }))
})
