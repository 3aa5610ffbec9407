import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { ErrorInfo, GenerationStatus, Usage } from "../domain/Generation.ts"
import type { ChatId, GenerationId, MessageId, RunId, StepRunId, VariantId } from "../domain/Ids.ts"
import type { PromptDraft } from "../domain/Prompt.ts"
import type { AbortReason, RunStatus, StepStatus } from "../domain/Run.ts"
import type { EventRecord } from "../domain/RunEventJson.ts"
import { prepared } from "./db/Prepared.ts"

/** A step row as it should be: inserted, or (while it is `running`) updated to this. */
export interface StepState {
  readonly id: StepRunId
  readonly runId: RunId
  readonly stepType: string
  readonly position: number
  readonly status: StepStatus
  readonly label: string
  readonly output: unknown
  readonly error: ErrorInfo | null
  readonly startedAt: Date
  readonly finishedAt: Date | null
}

/** A generation row as it should be: inserted, or (while it is `streaming`) updated to this. */
export interface GenerationState {
  readonly id: GenerationId
  readonly runId: RunId | null
  readonly stepRunId: StepRunId | null
  readonly chatId: ChatId
  readonly assistantMessageId: MessageId
  readonly variantId: VariantId
  readonly status: GenerationStatus
  readonly provider: string
  readonly model: string
  readonly params: Readonly<Record<string, unknown>>
  readonly promptHash: string
  readonly promptSnapshot: PromptDraft | null
  /** Each prompt message's role, length and hash (its text only in `promptSnapshot`). */
  readonly promptMessages: ReadonlyArray<{ readonly role: string; readonly length: number; readonly hash: string }>
  readonly finishReason: string | null
  readonly usage: Usage | null
  readonly error: ErrorInfo | null
  /** Upstream requests made (spec 90). */
  readonly attempts: number
  readonly startedAt: Date
  readonly finishedAt: Date | null
}

/** What changes on a run row after its start: the generation it links to, and how it ended. */
export interface RunUpdate {
  readonly generationId?: GenerationId | undefined
  readonly outcome?: {
    readonly status: Exclude<RunStatus, "running">
    readonly abortReason: AbortReason | null
    readonly error: ErrorInfo | null
    readonly finishedAt: Date
    /** When the run was asked to stop here, and why (an earlier request, stored by any instance, is kept). */
    readonly abortRequested: { readonly at: Date; readonly reason: AbortReason } | null
  } | undefined
}

/** A variant's text so far, the generation filling it, and the final text `post` gave it (which wins). */
export interface VariantUpdate {
  readonly content?: string | undefined
  readonly generationId?: GenerationId | undefined
  readonly finalContent?: string | undefined
}

/** What one write carries, for any number of runs. */
export interface Batch {
  readonly steps: Map<StepRunId, StepState>
  readonly generations: Map<GenerationId, GenerationState>
  readonly runs: Map<RunId, RunUpdate>
  readonly variants: Map<VariantId, VariantUpdate>
  readonly events: Array<{ readonly runId: RunId; readonly record: EventRecord }>
}

export const emptyBatch = (): Batch => ({ steps: new Map(), generations: new Map(), runs: new Map(), variants: new Map(), events: [] })

export const isEmpty = (batch: Batch) =>
  batch.steps.size === 0 && batch.generations.size === 0 && batch.runs.size === 0 && batch.variants.size === 0 &&
  batch.events.length === 0

const json = (rows: Iterable<object>) => JSON.stringify([...rows])

/** The journal rows one statement carries at most, when a batch is split (`write`). */
const maxEventsPerStatement = 256

/** Resumes in the event loop's next turn: the sockets that became readable meanwhile are read first. */
const nextTurn = Effect.async<void>((resume) => void setImmediate(() => resume(Effect.void)))

/**
 * Writes a batch in one statement, one sub-statement per table that has something to write. Rows
 * already closed (by a sweeper, say) stay as they are; a journal row already written is kept, so a
 * repeated write changes nothing. Rows written together are checked together (a generation and
 * its step row may arrive in the same batch). Journal rows are not checked against their run (see
 * migration 0009): a run's events are all written before its row closes, and only a closed run is
 * ever deleted.
 */
export class BatchRepo extends Effect.Service<BatchRepo>()("turn-runner/BatchRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const steps = (rows: Iterable<StepState>) =>
      sql`steps AS (
        INSERT INTO pipeline_step_runs (id, run_id, step_type, position, status, label, output, error_code, error_message,
                                        started_at, finished_at)
        SELECT x.id, x.run_id, x.step_type, x.position, x.status, x.label, x.output, x.error_code, x.error_message,
               x.started_at, x.finished_at
        FROM json_to_recordset(${json([...rows].map((step) => ({
        id: step.id,
        run_id: step.runId,
        step_type: step.stepType,
        position: step.position,
        status: step.status,
        label: step.label,
        output: step.output ?? null,
        error_code: step.error?.code ?? null,
        error_message: step.error?.message ?? null,
        started_at: step.startedAt,
        finished_at: step.finishedAt
      })))}::json) AS x(id uuid, run_id uuid, step_type text, position integer, status text, label text, output jsonb,
                        error_code text, error_message text, started_at timestamptz, finished_at timestamptz)
        ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, output = EXCLUDED.output, error_code = EXCLUDED.error_code,
          error_message = EXCLUDED.error_message, finished_at = EXCLUDED.finished_at
        WHERE pipeline_step_runs.status = 'running'
      )`

    const generations = (rows: Iterable<GenerationState>) =>
      sql`generations AS (
        INSERT INTO llm_generations (id, run_id, step_run_id, chat_id, assistant_message_id, variant_id, status, provider, model,
                                     params, prompt_hash, prompt_snapshot, prompt_messages, finish_reason, prompt_tokens,
                                     completion_tokens, error_code, error_message, attempts, started_at, finished_at)
        SELECT x.id, x.run_id, x.step_run_id, x.chat_id, x.assistant_message_id, x.variant_id, x.status, x.provider, x.model,
               x.params, x.prompt_hash, x.prompt_snapshot, x.prompt_messages, x.finish_reason, x.prompt_tokens,
               x.completion_tokens, x.error_code, x.error_message, x.attempts, x.started_at, x.finished_at
        FROM json_to_recordset(${json([...rows].map((g) => ({
        id: g.id,
        run_id: g.runId,
        step_run_id: g.stepRunId,
        chat_id: g.chatId,
        assistant_message_id: g.assistantMessageId,
        variant_id: g.variantId,
        status: g.status,
        provider: g.provider,
        model: g.model,
        params: g.params,
        prompt_hash: g.promptHash,
        prompt_snapshot: g.promptSnapshot,
        prompt_messages: g.promptMessages,
        finish_reason: g.finishReason,
        prompt_tokens: g.usage?.promptTokens ?? null,
        completion_tokens: g.usage?.completionTokens ?? null,
        error_code: g.error?.code ?? null,
        error_message: g.error?.message ?? null,
        attempts: g.attempts,
        started_at: g.startedAt,
        finished_at: g.finishedAt
      })))}::json) AS x(id uuid, run_id uuid, step_run_id uuid, chat_id uuid, assistant_message_id uuid, variant_id uuid,
                        status text, provider text, model text, params jsonb, prompt_hash text, prompt_snapshot jsonb,
                        prompt_messages jsonb,
                        finish_reason text, prompt_tokens integer, completion_tokens integer, error_code text,
                        error_message text, attempts integer, started_at timestamptz, finished_at timestamptz)
        ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, finish_reason = EXCLUDED.finish_reason,
          prompt_tokens = EXCLUDED.prompt_tokens, completion_tokens = EXCLUDED.completion_tokens,
          error_code = EXCLUDED.error_code, error_message = EXCLUDED.error_message, attempts = EXCLUDED.attempts,
          finished_at = EXCLUDED.finished_at
        WHERE llm_generations.status = 'streaming'
      )`

    const variants = (rows: Map<VariantId, VariantUpdate>) =>
      sql`variants AS (
        UPDATE message_variants v SET content = COALESCE(x.final_content, x.content, v.content),
          generation_id = COALESCE(x.generation_id, v.generation_id)
        FROM json_to_recordset(${
        json([...rows].map(([id, update]) => ({
          id,
          content: update.content ?? null,
          final_content: update.finalContent ?? null,
          generation_id: update.generationId ?? null
        })))
      }::json) AS x(id uuid, content text, final_content text, generation_id uuid)
        WHERE v.id = x.id
      )`

    const runs = (rows: Map<RunId, RunUpdate>) =>
      sql`runs AS (
        UPDATE pipeline_runs r SET generation_id = COALESCE(x.generation_id, r.generation_id),
          status = COALESCE(x.status, r.status), abort_reason = COALESCE(x.abort_reason, r.abort_reason),
          error_code = COALESCE(x.error_code, r.error_code), error_message = COALESCE(x.error_message, r.error_message),
          finished_at = COALESCE(x.finished_at, r.finished_at),
          abort_requested_at = COALESCE(r.abort_requested_at, x.abort_requested_at),
          abort_requested_reason = COALESCE(r.abort_requested_reason, x.abort_requested_reason),
          lease_expires_at = CASE WHEN x.status IS NULL THEN r.lease_expires_at END
        FROM json_to_recordset(${json([...rows].map(([id, update]) => ({
        id,
        generation_id: update.generationId ?? null,
        status: update.outcome?.status ?? null,
        abort_reason: update.outcome?.abortReason ?? null,
        error_code: update.outcome?.error?.code ?? null,
        error_message: update.outcome?.error?.message ?? null,
        finished_at: update.outcome?.finishedAt ?? null,
        abort_requested_at: update.outcome?.abortRequested?.at ?? null,
        abort_requested_reason: update.outcome?.abortRequested?.reason ?? null
      })))}::json) AS x(id uuid, generation_id uuid, status text, abort_reason text, error_code text, error_message text,
                        finished_at timestamptz, abort_requested_at timestamptz, abort_requested_reason text)
        WHERE r.id = x.id AND r.status = 'running'
      )`

    const events = (rows: Batch["events"]) =>
      sql`events AS (
        INSERT INTO pipeline_run_events (run_id, seq, type, at, data)
        SELECT x.r, x.s, x.t::run_event_type, to_timestamp(x.a / 1000.0), x.d FROM json_to_recordset(${
        json(rows.map(({ record, runId }) => ({ r: runId, s: record.seq, t: record.type, a: record.at, d: record.data })))
      }::json) AS x(r uuid, s integer, t text, a float8, d text)
        ON CONFLICT (run_id, seq) DO NOTHING
      )`

    /** The whole batch in one statement (nothing for an empty batch). */
    const statement = (batch: Batch) => {
      const parts = [
        ...(batch.steps.size > 0 ? [steps(batch.steps.values())] : []),
        ...(batch.generations.size > 0 ? [generations(batch.generations.values())] : []),
        ...(batch.variants.size > 0 ? [variants(batch.variants)] : []),
        ...(batch.runs.size > 0 ? [runs(batch.runs)] : []),
        ...(batch.events.length > 0 ? [events(batch.events)] : [])
      ]
      return parts.length === 0
        ? Effect.void
        : sql`${sql.unsafe(prepared)} WITH ${sql.csv(parts)} SELECT 1`.pipe(Effect.asVoid, Effect.orDie, Effect.withSpan("BatchRepo.write"))
    }

    /**
     * The batch, in one statement when its journal is small. A large one (hundreds of live
     * streams) is written in slices of `maxEventsPerStatement` events, the event loop turning
     * between them, so that no stream waits for the whole of it (PGlite writes in the process's
     * own thread). The events of runs whose rows change go with the rows, in the last statement:
     * a run is never closed before its last events are journaled, nor are they journaled long
     * before it is. Slices written before a failure are written again with the rest, and change
     * nothing (`ON CONFLICT DO NOTHING`).
     */
    const write = (batch: Batch): Effect.Effect<void> => {
      if (batch.events.length <= maxEventsPerStatement) return statement(batch)
      const alone = batch.events.filter(({ runId }) => !batch.runs.has(runId))
      const withRows = batch.events.filter(({ runId }) => batch.runs.has(runId))
      const slices: Array<Batch["events"]> = []
      while (alone.length > maxEventsPerStatement) slices.push(alone.splice(0, maxEventsPerStatement))
      return Effect.zipRight(
        Effect.forEach(slices, (events) => Effect.zipRight(statement({ ...emptyBatch(), events }), nextTurn), { discard: true }),
        statement({ ...batch, events: [...alone, ...withRows] })
      )
    }

    return { write } as const
  })
}) {}
