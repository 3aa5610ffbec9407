import { SqlClient } from "@effect/sql"
import { Array as Arr, Effect, Option } from "effect"
import type { ChatId, RunId } from "../domain/Ids.ts"

/**
 * `turn_stops`: stops asked for by a turn's idempotency key before its run existed (spec 75). The
 * turn's start reads and removes them (`TurnsRepo`); the runner's lease renewal finds those that
 * raced a start (`RunsRepo.renewLeases`).
 */
export class TurnStopsRepo extends Effect.Service<TurnStopsRepo>()("turn-runner/TurnStopsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    /**
     * In one statement: the run of the key if there is one; otherwise the stop recorded (again,
     * at `at`). The chat's expired stops are removed on the way.
     */
    const record = (chatId: ChatId, key: string, at: Date, expiredBefore: Date) =>
      sql<{ readonly chatFound: boolean; readonly runId: RunId | null }>`
        WITH chat AS (SELECT id FROM chats WHERE id = ${chatId}),
        existing AS (SELECT id FROM pipeline_runs WHERE chat_id = ${chatId} AND idempotency_key = ${key}),
        expired AS (DELETE FROM turn_stops WHERE chat_id = ${chatId} AND idempotency_key <> ${key} AND requested_at <= ${expiredBefore}),
        recorded AS (
          INSERT INTO turn_stops (chat_id, idempotency_key, requested_at)
          SELECT id, ${key}, ${at} FROM chat WHERE NOT EXISTS (SELECT 1 FROM existing)
          ON CONFLICT (chat_id, idempotency_key) DO UPDATE SET requested_at = EXCLUDED.requested_at)
        SELECT EXISTS (SELECT 1 FROM chat) AS "chatFound", (SELECT id FROM existing) AS "runId"`.pipe(
        Effect.map((rows) => rows[0]!),
        Effect.orDie
      )

    /** The run of the key, if it exists now. */
    const runOf = (chatId: ChatId, key: string) =>
      sql<{ readonly id: RunId }>`SELECT id FROM pipeline_runs WHERE chat_id = ${chatId} AND idempotency_key = ${key}`.pipe(
        Effect.map((rows) => Option.map(Arr.head(rows), (row) => row.id)),
        Effect.orDie
      )

    /** The stop of the key, once its run was found and aborted. */
    const remove = (chatId: ChatId, key: string) =>
      sql`DELETE FROM turn_stops WHERE chat_id = ${chatId} AND idempotency_key = ${key}`.pipe(Effect.asVoid, Effect.orDie)

    return { record, runOf, remove } as const
  })
}) {}
