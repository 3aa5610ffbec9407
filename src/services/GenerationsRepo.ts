import { SqlClient } from "@effect/sql"
import { Array as Arr, Effect, Option } from "effect"
import { Generation } from "../domain/Generation.ts"
import type { ErrorInfo, GenerationStatus, Usage } from "../domain/Generation.ts"
import type { ChatId, GenerationId, MessageId, RunId, StepRunId, VariantId } from "../domain/Ids.ts"
import type { PromptDraft } from "../domain/Prompt.ts"

export interface NewGeneration {
  readonly id: GenerationId
  readonly runId: RunId | null
  readonly stepRunId: StepRunId | null
  readonly chatId: ChatId
  readonly assistantMessageId: MessageId
  readonly variantId: VariantId
  readonly provider: string
  readonly model: string
  readonly params: Readonly<Record<string, unknown>>
  readonly promptHash: string
  readonly promptSnapshot: PromptDraft | null
  readonly startedAt: Date
}

export interface GenerationOutcome {
  readonly status: Exclude<GenerationStatus, "streaming">
  readonly finishReason: string | null
  readonly usage: Usage | null
  readonly error: ErrorInfo | null
  readonly finishedAt: Date
}

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
    error: row.errorCode === null ? null : { code: row.errorCode, message: row.errorMessage ?? "" }
  })

export const generationColumns = `g.id, g.run_id AS "runId", g.status, g.provider, g.model, g.started_at AS "startedAt",
  g.finished_at AS "finishedAt", g.finish_reason AS "finishReason", g.prompt_tokens AS "promptTokens",
  g.completion_tokens AS "completionTokens", g.error_code AS "errorCode", g.error_message AS "errorMessage"`

/** The `llm_generations` rows. */
export class GenerationsRepo extends Effect.Service<GenerationsRepo>()("turn-runner/GenerationsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    /** The row, `streaming`, and the variant's link to it, in one transaction. */
    /** The row, linked from its variant and (for a run's `llm` step) its run, in one statement. */
    const insert = (generation: NewGeneration) =>
      sql`WITH generation AS (
            INSERT INTO llm_generations (id, run_id, step_run_id, chat_id, assistant_message_id, variant_id, status,
                                         provider, model, params, prompt_hash, prompt_snapshot, started_at)
            VALUES (${generation.id}, ${generation.runId}, ${generation.stepRunId}, ${generation.chatId},
                    ${generation.assistantMessageId}, ${generation.variantId}, 'streaming', ${generation.provider},
                    ${generation.model}, ${JSON.stringify(generation.params)}::jsonb, ${generation.promptHash},
                    ${generation.promptSnapshot === null ? null : JSON.stringify(generation.promptSnapshot)}::jsonb,
                    ${generation.startedAt})
            RETURNING id, variant_id, run_id
          ), variant AS (
            UPDATE message_variants SET generation_id = generation.id FROM generation WHERE message_variants.id = generation.variant_id
          )
          UPDATE pipeline_runs SET generation_id = generation.id FROM generation WHERE pipeline_runs.id = generation.run_id`.pipe(
        Effect.asVoid,
        Effect.orDie
      )

    /** Closes a `streaming` row; a row already closed (by a sweeper, say) is left as it is. */
    const finish = (id: GenerationId, outcome: GenerationOutcome) =>
      sql`UPDATE llm_generations
          SET status = ${outcome.status}, finish_reason = ${outcome.finishReason},
              prompt_tokens = ${outcome.usage?.promptTokens ?? null},
              completion_tokens = ${outcome.usage?.completionTokens ?? null},
              error_code = ${outcome.error?.code ?? null}, error_message = ${outcome.error?.message ?? null},
              finished_at = ${outcome.finishedAt}
          WHERE id = ${id} AND status = 'streaming'`.pipe(Effect.asVoid, Effect.orDie)

    const find = (id: GenerationId) =>
      sql<GenerationRow>`SELECT ${sql.literal(generationColumns)} FROM llm_generations g WHERE g.id = ${id}`.pipe(
        Effect.map((rows) => Option.map(Arr.head(rows), generationFromRow)),
        Effect.orDie
      )

    return { insert, finish, find } as const
  })
}) {}
