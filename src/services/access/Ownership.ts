import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { NotFound } from "../../domain/ApiErrors.ts"
import type { ChatId, GenerationId, RunId } from "../../domain/Ids.ts"

/**
 * Isolation (spec 85): a chat, run or generation of another owner does not exist for the caller,
 * so it answers exactly as an unknown id does (404 `not_found`, the same message), and a caller
 * learns nothing of other owners' ids. The HTTP layer asks here before it hands a request to the
 * services, which know nothing of owners beyond the chats' and runs' own column.
 */
export class Ownership extends Effect.Service<Ownership>()("turn-runner/Ownership", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const mine = (rows: ReadonlyArray<{ readonly owner: string }>, owner: string) => rows.length > 0 && rows[0]!.owner === owner

    const chat = (chatId: ChatId, owner: string) =>
      sql<{ readonly owner: string }>`SELECT owner FROM chats WHERE id = ${chatId}`.pipe(
        Effect.orDie,
        Effect.flatMap((rows) => mine(rows, owner) ? Effect.void : Effect.fail(new NotFound({ message: `chat ${chatId} does not exist` })))
      )

    const run = (runId: RunId, owner: string) =>
      sql<{ readonly owner: string }>`SELECT owner FROM pipeline_runs WHERE id = ${runId}`.pipe(
        Effect.orDie,
        Effect.flatMap((rows) => mine(rows, owner) ? Effect.void : Effect.fail(new NotFound({ message: `run ${runId} does not exist` })))
      )

    const generation = (generationId: GenerationId, owner: string) =>
      sql<{ readonly owner: string }>`SELECT r.owner FROM llm_generations g JOIN pipeline_runs r ON r.id = g.run_id WHERE g.id = ${generationId}`.pipe(
        Effect.orDie,
        Effect.flatMap((rows) =>
          mine(rows, owner) ? Effect.void : Effect.fail(new NotFound({ message: `generation ${generationId} does not exist` }))
        )
      )

    return { chat, run, generation } as const
  })
}) {}
