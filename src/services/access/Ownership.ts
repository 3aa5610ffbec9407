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

    /** Passes when `read` names `owner`; otherwise `what` does not exist, as far as the caller can tell. */
    const owned = (read: Effect.Effect<ReadonlyArray<{ readonly owner: string }>, unknown>, owner: string, what: string) =>
      read.pipe(
        Effect.orDie,
        Effect.flatMap((rows) => rows[0]?.owner === owner ? Effect.void : Effect.fail(new NotFound({ message: `${what} does not exist` })))
      )

    const chat = (chatId: ChatId, owner: string) =>
      owned(sql`SELECT owner FROM chats WHERE id = ${chatId}`, owner, `chat ${chatId}`)

    const run = (runId: RunId, owner: string) =>
      owned(sql`SELECT owner FROM pipeline_runs WHERE id = ${runId}`, owner, `run ${runId}`)

    const generation = (generationId: GenerationId, owner: string) =>
      owned(
        sql`SELECT r.owner FROM llm_generations g JOIN pipeline_runs r ON r.id = g.run_id WHERE g.id = ${generationId}`,
        owner,
        `generation ${generationId}`
      )

    return { chat, run, generation } as const
  })
}) {}
