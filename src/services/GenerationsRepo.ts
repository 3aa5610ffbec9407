import { SqlClient } from "@effect/sql"
import { Array as Arr, Effect, Option } from "effect"
import { Generation } from "../domain/Generation.ts"
import type { GenerationStatus } from "../domain/Generation.ts"
import type { GenerationId, RunId } from "../domain/Ids.ts"

export interface GenerationRow {
  readonly id: GenerationId
  readonly runId: RunId | null
  readonly status: GenerationStatus
  readonly provider: string
  readonly model: string
  readonly startedAt: Date
  readonly finishedAt: Date | null
  readonly finishReason: string | null
  readonly promptTokens: number | null
  readonly completionTokens: number | null
  readonly errorCode: string | null
  readonly errorMessage: string | null
  readonly attempts: number
}

export const generationFromRow = (row: GenerationRow): Generation =>
  new Generation({
    id: row.id,
    runId: row.runId,
    status: row.status,
    provider: row.provider,
    model: row.model,
    startedAt: row.startedAt,
    finishedAt: row.finishedAt,
    finishReason: row.finishReason,
    usage: row.promptTokens === null && row.completionTokens === null
      ? null
      : { promptTokens: row.promptTokens ?? 0, completionTokens: row.completionTokens ?? 0 },
    error: row.errorCode === null ? null : { code: row.errorCode, message: row.errorMessage ?? "" },
    attempts: row.attempts
  })

export const generationColumns = `g.id, g.run_id AS "runId", g.status, g.provider, g.model, g.started_at AS "startedAt",
  g.finished_at AS "finishedAt", g.finish_reason AS "finishReason", g.prompt_tokens AS "promptTokens",
  g.completion_tokens AS "completionTokens", g.error_code AS "errorCode", g.error_message AS "errorMessage", g.attempts`

/** Reading `llm_generations` rows (they are written by the write-behind, `BatchRepo`). */
export class GenerationsRepo extends Effect.Service<GenerationsRepo>()("turn-runner/GenerationsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const find = (id: GenerationId) =>
      sql<GenerationRow>`SELECT ${sql.literal(generationColumns)} FROM llm_generations g WHERE g.id = ${id}`.pipe(
        Effect.map((rows) => Option.map(Arr.head(rows), generationFromRow)),
        Effect.orDie
      )

    return { find } as const
  })
}) {}
