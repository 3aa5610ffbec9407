import { SqlClient } from "@effect/sql"
import { Array as Arr, Effect, Option } from "effect"
import type { ErrorInfo } from "../domain/Generation.ts"
import type { ChatId, GenerationId, MessageId, RunId, StepRunId, VariantId } from "../domain/Ids.ts"
import type { PromptDraft } from "../domain/Prompt.ts"
import { Run, RunSnapshot, StepRun, turnStopTtlMs } from "../domain/Run.ts"
import { RunReport } from "../domain/RunReport.ts"
import type { AbortReason, RunStatus, StepStatus, Trigger } from "../domain/Run.ts"
import { generationColumns, generationFromRow } from "./GenerationsRepo.ts"
import type { GenerationRow } from "./GenerationsRepo.ts"

interface RunRow {
  readonly id: RunId
  readonly chatId: ChatId
  readonly pipelineId: string
  readonly pipelineName: string
  readonly trigger: Trigger
  readonly status: RunStatus
  readonly idempotencyKey: string
  readonly userMessageId: MessageId | null
  readonly assistantMessageId: MessageId
  readonly assistantVariantId: VariantId
  readonly generationId: GenerationId | null
  readonly abortReason: AbortReason | null
  readonly errorCode: string | null
  readonly errorMessage: string | null
  readonly startedAt: Date
  readonly finishedAt: Date | null
  readonly traceId: string | null
}

interface StepRow {
  readonly id: StepRunId
  readonly runId: RunId
  readonly stepType: string
  readonly position: number
  readonly status: StepStatus
  readonly label: string | null
  readonly output: unknown
  readonly errorCode: string | null
  readonly errorMessage: string | null
  readonly startedAt: Date
  readonly finishedAt: Date | null
}

const errorOf = (code: string | null, message: string | null): ErrorInfo | null =>
  code === null ? null : { code, message: message ?? "" }

const runFromRow = ({ errorCode, errorMessage, ...row }: RunRow) => new Run({ ...row, error: errorOf(errorCode, errorMessage) })

const stepFromRow = ({ errorCode, errorMessage, ...row }: StepRow) =>
  new StepRun({
    ...row,
    durationMs: row.finishedAt === null ? null : row.finishedAt.getTime() - row.startedAt.getTime(),
    error: errorOf(errorCode, errorMessage)
  })

/** A row read through JSON: its timestamps arrive as text. */
type Dated<Row> = { readonly [K in keyof Row]: Row[K] extends Date ? string : Row[K] extends Date | null ? string | null : Row[K] }

const dated = <Row extends { readonly startedAt: Date; readonly finishedAt: Date | null }>(row: Dated<Row>): Row =>
  ({ ...row, startedAt: new Date(row.startedAt as string), finishedAt: row.finishedAt === null ? null : new Date(row.finishedAt as string) }) as unknown as Row

const runColumns = `r.id, r.chat_id AS "chatId", r.pipeline_id AS "pipelineId", r.pipeline_name AS "pipelineName",
  r.trigger, r.status, r.idempotency_key AS "idempotencyKey", r.user_message_id AS "userMessageId",
  r.assistant_message_id AS "assistantMessageId", r.assistant_variant_id AS "assistantVariantId",
  r.generation_id AS "generationId", r.abort_reason AS "abortReason", r.error_code AS "errorCode",
  r.error_message AS "errorMessage", r.started_at AS "startedAt", r.finished_at AS "finishedAt", r.trace_id AS "traceId"`

type SnapshotRow = RunRow & { readonly steps: ReadonlyArray<Dated<StepRow>>; readonly generation: Dated<GenerationRow> | null }

const snapshotOf = ({ generation, steps, ...run }: SnapshotRow) =>
  new RunSnapshot({
    run: runFromRow(run),
    steps: steps.map((step) => stepFromRow(dated(step))),
    generation: generation === null ? null : generationFromRow(dated(generation))
  })

interface ReportRow {
  readonly requestFingerprint: string
  readonly duplicateRequests: number
  readonly settings: unknown
  readonly ownerInstance: string | null
  readonly leaseExpiresAt: Date | null
  readonly abortRequestedAt: Date | null
  readonly abortRequestedReason: AbortReason | null
  readonly promptHash: string | null
  readonly promptMessages: ReadonlyArray<{ readonly role: string; readonly length: number; readonly hash: string }> | null
  readonly promptSnapshot: PromptDraft | null
  readonly preOutput: unknown
  readonly events: number
  readonly firstSeq: number | null
  readonly lastSeq: number | null
  readonly deltas: number
  readonly firstDeltaAt: Date | null
  readonly lastDeltaAt: Date | null
  readonly byType: Record<string, number>
}

const round = (value: number) => Math.round(value * 10) / 10

/** The prompt's messages: their text only from the snapshot (stored when STORE_PROMPT_SNAPSHOTS=true). */
const promptOf = (row: ReportRow) =>
  row.promptMessages === null ? null : row.promptMessages.map((message, i) => {
    const content = row.promptSnapshot?.messages[i]?.content
    return content === undefined ? message : { ...message, content }
  })

/** A statement's row as the report: the snapshot, and the figures derived from the rest. */
const reportOf = ({ requestFingerprint, duplicateRequests, settings, ownerInstance, leaseExpiresAt, abortRequestedAt,
  abortRequestedReason, promptHash, promptMessages, promptSnapshot, preOutput, events, firstSeq, lastSeq, deltas, firstDeltaAt,
  lastDeltaAt, byType, ...snapshotRow }: SnapshotRow & ReportRow): RunReport => {
  const row = { requestFingerprint, duplicateRequests, settings, ownerInstance, leaseExpiresAt, abortRequestedAt, abortRequestedReason,
    promptHash, promptMessages, promptSnapshot, preOutput, events, firstSeq, lastSeq, deltas, firstDeltaAt, lastDeltaAt, byType }
  const snapshot = snapshotOf(snapshotRow)
  const generation = snapshot.generation
  const pace = row.firstDeltaAt !== null && row.lastDeltaAt !== null && row.deltas > 1
    ? row.deltas / Math.max((row.lastDeltaAt.getTime() - row.firstDeltaAt.getTime()) / 1000, 0.001)
    : null
  return new RunReport({
    snapshot,
    traceId: snapshot.run.traceId,
    start: {
      trigger: snapshot.run.trigger,
      idempotencyKey: snapshot.run.idempotencyKey,
      requestFingerprint: row.requestFingerprint,
      duplicateRequests: row.duplicateRequests,
      settings: row.settings
    },
    prompt: {
      hash: row.promptHash,
      messages: promptOf(row),
      textStored: row.promptSnapshot !== null,
      pre: row.preOutput ?? null
    },
    generation: generation === null ? null : {
      provider: generation.provider,
      model: generation.model,
      attempts: generation.attempts,
      timeToFirstTokenMs: row.firstDeltaAt === null ? null : row.firstDeltaAt.getTime() - snapshot.run.startedAt.getTime(),
      deltas: row.deltas,
      deltasPerSecond: pace === null ? null : round(pace),
      usage: generation.usage,
      finishReason: generation.finishReason,
      error: generation.error
    },
    journal: { events: row.events, firstSeq: row.firstSeq, lastSeq: row.lastSeq, byType: row.byType },
    ownership: {
      ownerInstance: row.ownerInstance,
      leaseExpiresAt: row.leaseExpiresAt,
      abortRequest: row.abortRequestedAt === null || row.abortRequestedReason === null
        ? null
        : { at: row.abortRequestedAt, reason: row.abortRequestedReason }
    }
  })
}

/** An abort asked for by a request to any instance, stored on the run (spec 50). */
export interface AbortRequest {
  readonly runId: RunId
  readonly reason: AbortReason
}

/** The notification channel of abort requests: `<runId> <reason>`. */
export const abortChannel = "turn_runner_abort"

/** `pipeline_runs`, `pipeline_step_runs` and the event journal `pipeline_run_events`. */
export class RunsRepo extends Effect.Service<RunsRepo>()("turn-runner/RunsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    /**
     * Moves the leases of `runIds` (live ones: a run whose finalization failed must let its lease
     * lapse so that the sweeper closes it) ahead, in one statement for all; answers the abort
     * requests stored on them (spec 50: a request whose signal was lost is found here, at the
     * latest one renewal later), and the stops recorded for them by a client whose stop raced
     * their start (spec 75).
     */
    const renewLeases = (runIds: ReadonlyArray<RunId>, leaseExpiresAt: Date) =>
      runIds.length === 0
        ? Effect.succeed([])
        : sql<AbortRequest>`WITH renewed AS (
            UPDATE pipeline_runs SET lease_expires_at = ${leaseExpiresAt}
            WHERE id IN ${sql.in(runIds)} AND status = 'running'
            RETURNING id, chat_id, idempotency_key, started_at, abort_requested_reason),
          requests AS (
            SELECT id AS "runId", COALESCE(abort_requested_reason, CASE WHEN EXISTS (
                SELECT 1 FROM turn_stops s WHERE s.chat_id = renewed.chat_id AND s.idempotency_key = renewed.idempotency_key
                  AND s.requested_at > renewed.started_at - ${turnStopTtlMs} * interval '1 millisecond') THEN 'user' END) AS reason
            FROM renewed)
          SELECT "runId", reason FROM requests WHERE reason IS NOT NULL`.pipe(Effect.orDie)

    /**
     * Stores an abort request on a running run and signals its owner, wherever it runs (spec 50):
     * `pg_notify` in the same statement, so the signal leaves only if the request was written.
     * An earlier request is kept. Answers whether the run was still running.
     */
    const requestAbort = (runId: RunId, reason: AbortReason, at: Date) =>
      sql<{ readonly runId: RunId }>`WITH requested AS (
          UPDATE pipeline_runs SET abort_requested_at = COALESCE(abort_requested_at, ${at}),
            abort_requested_reason = COALESCE(abort_requested_reason, ${reason})
          WHERE id = ${runId} AND status = 'running'
          RETURNING id, abort_requested_reason)
        SELECT id AS "runId", pg_notify(${abortChannel}, id::text || ' ' || abort_requested_reason) FROM requested`.pipe(
        Effect.map((rows) => rows.length > 0),
        Effect.orDie
      )

    const find = (runId: RunId) =>
      sql<RunRow>`SELECT ${sql.literal(runColumns)} FROM pipeline_runs r WHERE r.id = ${runId}`.pipe(
        Effect.map((rows) => Option.map(Arr.head(rows), runFromRow)),
        Effect.orDie
      )

    /** The run's steps and generation, as JSON columns of a statement on `pipeline_runs r`. */
    const stepsAndGeneration = sql.literal(`
      (SELECT COALESCE(json_agg(s ORDER BY s.position), '[]'::json) FROM (
         SELECT id, run_id AS "runId", step_type AS "stepType", position, status, label, output,
                error_code AS "errorCode", error_message AS "errorMessage", started_at AS "startedAt",
                finished_at AS "finishedAt"
         FROM pipeline_step_runs WHERE run_id = r.id) s) AS steps,
      (SELECT to_json(g) FROM (SELECT ${generationColumns} FROM llm_generations g WHERE g.run_id = r.id) g) AS generation`)

    /**
     * The run with its steps and generation, read in one statement: one consistent state, never a
     * run that does not yet name a generation whose row the same answer shows.
     */
    const snapshot = (runId: RunId) =>
      sql<SnapshotRow>`SELECT ${sql.literal(runColumns)}, ${stepsAndGeneration} FROM pipeline_runs r WHERE r.id = ${runId}`.pipe(
        Effect.map((rows) => Option.map(Arr.head(rows), snapshotOf)),
        Effect.orDie
      )

    /**
     * The run report (spec 95), read in one statement with the snapshot it shows: how the run
     * started, its prompt, its generation's pace, its journal (as journaled so far) and who owns it.
     */
    const report = (runId: RunId) =>
      sql<SnapshotRow & ReportRow>`
        SELECT ${sql.literal(runColumns)}, ${stepsAndGeneration},
          r.request_fingerprint AS "requestFingerprint", r.duplicate_requests AS "duplicateRequests", r.settings,
          r.owner_instance AS "ownerInstance", r.lease_expires_at AS "leaseExpiresAt",
          r.abort_requested_at AS "abortRequestedAt", r.abort_requested_reason AS "abortRequestedReason",
          g.prompt_hash AS "promptHash", g.prompt_messages AS "promptMessages", g.prompt_snapshot AS "promptSnapshot",
          (SELECT s.output FROM pipeline_step_runs s WHERE s.run_id = r.id AND s.step_type = 'pre') AS "preOutput",
          j.events, j."firstSeq", j."lastSeq", j.deltas, j."firstDeltaAt", j."lastDeltaAt", b."byType"
        FROM pipeline_runs r
        LEFT JOIN llm_generations g ON g.run_id = r.id
        CROSS JOIN LATERAL (
          SELECT count(*)::int AS events, min(e.seq) AS "firstSeq", max(e.seq) AS "lastSeq",
                 (count(*) FILTER (WHERE e.type = 'llm.stream.delta'))::int AS deltas,
                 min(e.at) FILTER (WHERE e.type = 'llm.stream.delta') AS "firstDeltaAt",
                 max(e.at) FILTER (WHERE e.type = 'llm.stream.delta') AS "lastDeltaAt"
          FROM pipeline_run_events e WHERE e.run_id = r.id) j
        CROSS JOIN LATERAL (
          SELECT COALESCE(json_object_agg(t.type, t.n), '{}'::json) AS "byType"
          FROM (SELECT e.type, count(*)::int AS n FROM pipeline_run_events e WHERE e.run_id = r.id GROUP BY e.type) t) b
        WHERE r.id = ${runId}`.pipe(
        Effect.map((rows) => Option.map(Arr.head(rows), reportOf)),
        Effect.orDie
      )

    const listForChat = (chatId: ChatId, options: { readonly status: RunStatus | undefined; readonly limit: number }) =>
      sql<RunRow>`SELECT ${sql.literal(runColumns)} FROM pipeline_runs r
                  WHERE r.chat_id = ${chatId} ${options.status === undefined ? sql`` : sql`AND r.status = ${options.status}`}
                  ORDER BY r.started_at DESC, r.id DESC LIMIT ${options.limit}`.pipe(
        Effect.map((rows) => rows.map(runFromRow)),
        Effect.orDie
      )

    /**
     * The run's last journaled event, if the run exists: a finished run's is its terminal event
     * (read from the end of the journal's primary key, however long the run was).
     */
    const lastEvent = (runId: RunId) =>
      sql<{ readonly seq: number | null; readonly type: string | null }>`
        SELECT e.seq, e.type FROM pipeline_runs r
        LEFT JOIN LATERAL (SELECT seq, type FROM pipeline_run_events WHERE run_id = r.id ORDER BY seq DESC LIMIT 1) e ON true
        WHERE r.id = ${runId}`.pipe(
        Effect.map(Arr.head),
        Effect.orDie
      )

    const runOfGeneration = (generationId: GenerationId) =>
      sql<{ readonly runId: RunId | null }>`SELECT run_id AS "runId" FROM llm_generations WHERE id = ${generationId}`.pipe(
        Effect.map((rows) => Option.flatMapNullable(Arr.head(rows), (row) => row.runId)),
        Effect.orDie
      )

    return {
      renewLeases,
      requestAbort,
      find,
      snapshot,
      report,
      listForChat,
      lastEvent,
      runOfGeneration
    } as const
  })
}) {}
