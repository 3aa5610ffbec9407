import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Schema } from "effect"
import type { ChatId, MessageId, RunId, VariantId } from "../domain/Ids.ts"
import { PromptMessage } from "../domain/Prompt.ts"
import { builtinPipeline } from "../domain/Run.ts"
import type { Trigger } from "../domain/Run.ts"
import { prepared } from "./db/Prepared.ts"

/** What every new turn writes on its run row. */
export interface NewTurn {
  readonly chatId: ChatId
  readonly runId: RunId
  readonly trigger: Trigger
  readonly idempotencyKey: string
  readonly fingerprint: string
  readonly settings: Readonly<Record<string, unknown>>
  readonly assistantMessageId: MessageId
  readonly assistantVariantId: VariantId
  readonly ownerInstance: string
  readonly leaseExpiresAt: Date
  readonly startedAt: Date
  /** The trace the turn's request belongs to, when one is recorded (spec 95). */
  readonly traceId: string | null
  /** Whose the turn is: the chat must be theirs (spec 85), and the run will be. */
  readonly owner: string
  /** The most runs the owner may have running (`MAX_LIVE_RUNS_PER_OWNER`). */
  readonly liveRunsPerOwner: number
  /** The most history messages the turn reads (`MAX_PROMPT_MESSAGES`). */
  readonly historyLimit: number
  /** False: only read what the checks need, write nothing (a server that is draining). */
  readonly create: boolean
  /** A stop of this turn recorded after this instant is still in force (spec 75). */
  readonly stopsSince: Date
}

/**
 * What the start statement saw, and whether it started the turn (`created`). When it did, the
 * chat's system prompt and the history before the assistant message come with it.
 */
const StartRow = Schema.Struct({
  chatFound: Schema.Boolean,
  systemPrompt: Schema.NullOr(Schema.String),
  existingRunId: Schema.NullOr(Schema.String),
  existingFingerprint: Schema.NullOr(Schema.String),
  runningRunId: Schema.NullOr(Schema.String),
  /** user_message: the message id is taken already; regenerate: the target is missing. */
  conflict: Schema.Boolean,
  /** regenerate: the target is not the chat's latest assistant message. */
  notLatest: Schema.Boolean,
  created: Schema.Boolean,
  /** The owner has `liveRunsPerOwner` runs running already. */
  ownerAtLimit: Schema.Boolean,
  /** When the client stopped this turn before it arrived (spec 75): it starts already stopped. */
  stopRequestedAt: Schema.NullOr(Schema.DateFromSelf),
  position: Schema.NullOr(Schema.Int),
  earlierMessages: Schema.Int,
  history: Schema.NullOr(Schema.Array(PromptMessage))
})
export type StartRow = typeof StartRow.Type

const decodeStart = Schema.decodeUnknown(Schema.Array(StartRow))

/**
 * Starting a turn in one statement (spec 10, "The flow of a turn"): every check the start needs
 * (the chat, the idempotency key, a running turn, the message id or the regenerate target), and,
 * when they all pass, the turn's messages and variants, its run row, the read of the history the
 * prompt is built from, and the stop its client recorded before it arrived (spec 75), used up, all
 * at once: one round trip, one transaction. A race with a twin is
 * settled by the unique constraints (the statement fails with a unique violation).
 */
export class TurnsRepo extends Effect.Service<TurnsRepo>()("turn-runner/TurnsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const runInsert = (turn: NewTurn, userMessageId: MessageId | null) =>
      sql`INSERT INTO pipeline_runs (id, chat_id, pipeline_id, pipeline_name, trigger, status, idempotency_key,
                                     request_fingerprint, user_message_id, assistant_message_id, assistant_variant_id,
                                     settings, owner_instance, lease_expires_at, started_at, trace_id, owner)
          SELECT ${turn.runId}::uuid, ${turn.chatId}::uuid, ${builtinPipeline.id}, ${builtinPipeline.name}, ${turn.trigger}, 'running',
                 ${turn.idempotencyKey}, ${turn.fingerprint}, ${userMessageId}::uuid, ${turn.assistantMessageId}::uuid,
                 ${turn.assistantVariantId}::uuid, ${JSON.stringify(turn.settings)}::jsonb, ${turn.ownerInstance},
                 ${turn.leaseExpiresAt}::timestamptz, ${turn.startedAt}::timestamptz, ${turn.traceId}::text,
                 ${turn.owner}::text
          FROM go RETURNING id`

    /** The history before `position`: the newest `historyLimit` messages, oldest first, and how many are older. */
    const history = (turn: NewTurn) =>
      sql`history AS (
            SELECT m.position, m.role, v.content FROM chat_messages m JOIN message_variants v ON v.id = m.selected_variant_id, go
            WHERE m.chat_id = ${turn.chatId} AND m.position < go.before ORDER BY m.position DESC LIMIT ${turn.historyLimit}
          )`

    const outcome = sql`
      SELECT EXISTS (SELECT 1 FROM chat) AS "chatFound", (SELECT system_prompt FROM chat) AS "systemPrompt",
             (SELECT id FROM existing) AS "existingRunId", (SELECT request_fingerprint FROM existing) AS "existingFingerprint",
             (SELECT id FROM running) AS "runningRunId", EXISTS (SELECT 1 FROM conflict) AS conflict,
             EXISTS (SELECT 1 FROM not_latest) AS "notLatest", EXISTS (SELECT 1 FROM run) AS created,
             EXISTS (SELECT 1 FROM owner_at_limit) AS "ownerAtLimit",
             (SELECT requested_at FROM stop) AS "stopRequestedAt",
             (SELECT position FROM go) AS position,
             GREATEST(COALESCE((SELECT before FROM go), 0) - (SELECT count(*) FROM history), 0)::int AS "earlierMessages",
             (SELECT json_agg(json_build_object('role', role, 'content', content) ORDER BY position) FROM history) AS history`

    const checks = (turn: NewTurn) =>
      sql`chat AS (SELECT system_prompt FROM chats WHERE id = ${turn.chatId} AND owner = ${turn.owner}),
          owner_at_limit AS (SELECT 1 WHERE (SELECT count(*) FROM pipeline_runs
                                             WHERE owner = ${turn.owner} AND status = 'running') >= ${turn.liveRunsPerOwner}),
          existing AS (SELECT id, request_fingerprint FROM pipeline_runs
                       WHERE chat_id = ${turn.chatId} AND idempotency_key = ${turn.idempotencyKey}),
          running AS (SELECT id FROM pipeline_runs WHERE chat_id = ${turn.chatId} AND status = 'running'),
          stop AS (SELECT requested_at FROM turn_stops
                   WHERE chat_id = ${turn.chatId} AND idempotency_key = ${turn.idempotencyKey} AND requested_at > ${turn.stopsSince})`

    /** A started turn has used its stop (an expired one goes too). */
    const stopUsed = (turn: NewTurn) =>
      sql`stop_used AS (DELETE FROM turn_stops WHERE chat_id = ${turn.chatId} AND idempotency_key = ${turn.idempotencyKey}
                        AND EXISTS (SELECT 1 FROM run))`

    /** A `user_message` turn: the user's message and an empty assistant answer after the chat's last message. */
    const startUserMessage = (
      turn: NewTurn,
      user: { readonly messageId: MessageId; readonly variantId: VariantId; readonly content: string }
    ): Effect.Effect<StartRow, SqlError> =>
      sql`${sql.unsafe(prepared)} WITH ${checks(turn)},
          conflict AS (SELECT 1 FROM chat_messages WHERE id = ${user.messageId}),
          not_latest AS (SELECT 1 WHERE false),
          go AS (
            SELECT COALESCE((SELECT MAX(position) + 1 FROM chat_messages WHERE chat_id = ${turn.chatId}), 0) AS position,
                   COALESCE((SELECT MAX(position) + 1 FROM chat_messages WHERE chat_id = ${turn.chatId}), 0) AS before
            WHERE ${turn.create}::boolean AND EXISTS (SELECT 1 FROM chat) AND NOT EXISTS (SELECT 1 FROM existing)
              AND NOT EXISTS (SELECT 1 FROM running) AND NOT EXISTS (SELECT 1 FROM owner_at_limit) AND NOT EXISTS (SELECT 1 FROM conflict)
          ),
          messages AS (
            INSERT INTO chat_messages (id, chat_id, role, position, selected_variant_id, created_at)
            SELECT ${user.messageId}::uuid, ${turn.chatId}::uuid, 'user', go.position, ${user.variantId}::uuid, ${turn.startedAt}::timestamptz FROM go
            UNION ALL
            SELECT ${turn.assistantMessageId}::uuid, ${turn.chatId}::uuid, 'assistant', go.position + 1, ${turn.assistantVariantId}::uuid,
                   ${turn.startedAt}::timestamptz FROM go
          ),
          variants AS (
            INSERT INTO message_variants (id, message_id, content, created_at)
            SELECT ${user.variantId}::uuid, ${user.messageId}::uuid, ${user.content}::text, ${turn.startedAt}::timestamptz FROM go
            UNION ALL
            SELECT ${turn.assistantVariantId}::uuid, ${turn.assistantMessageId}::uuid, '', ${turn.startedAt}::timestamptz FROM go
          ),
          run AS (${runInsert(turn, user.messageId)}),
          ${stopUsed(turn)},
          ${history(turn)}
          ${outcome}`.pipe(Effect.flatMap(decodeStart), Effect.map((rows) => rows[0]!), Effect.catchTag("ParseError", Effect.die))

    /** A `regenerate` turn: a new, selected, empty variant of the chat's latest (assistant) message. */
    const startRegenerate = (turn: NewTurn): Effect.Effect<StartRow, SqlError> =>
      sql`${sql.unsafe(prepared)} WITH ${checks(turn)},
          target AS (SELECT position FROM chat_messages WHERE id = ${turn.assistantMessageId} AND chat_id = ${turn.chatId}),
          conflict AS (SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM target)),
          latest AS (SELECT id, role FROM chat_messages WHERE chat_id = ${turn.chatId} ORDER BY position DESC LIMIT 1),
          not_latest AS (SELECT 1 FROM latest WHERE latest.id <> ${turn.assistantMessageId} OR latest.role <> 'assistant'),
          go AS (
            SELECT target.position, target.position AS before FROM target
            WHERE ${turn.create}::boolean AND EXISTS (SELECT 1 FROM chat) AND NOT EXISTS (SELECT 1 FROM existing)
              AND NOT EXISTS (SELECT 1 FROM running) AND NOT EXISTS (SELECT 1 FROM owner_at_limit) AND NOT EXISTS (SELECT 1 FROM not_latest)
          ),
          variant AS (
            INSERT INTO message_variants (id, message_id, content, created_at)
            SELECT ${turn.assistantVariantId}::uuid, ${turn.assistantMessageId}::uuid, '', ${turn.startedAt}::timestamptz FROM go
          ),
          selected AS (
            UPDATE chat_messages SET selected_variant_id = ${turn.assistantVariantId} FROM go WHERE id = ${turn.assistantMessageId}
          ),
          run AS (${runInsert(turn, null)}),
          ${stopUsed(turn)},
          ${history(turn)}
          ${outcome}`.pipe(Effect.flatMap(decodeStart), Effect.map((rows) => rows[0]!), Effect.catchTag("ParseError", Effect.die))

    /** One more repeated request answered by the run (the run report counts them). */
    const countDuplicate = (runId: RunId) =>
      sql`UPDATE pipeline_runs SET duplicate_requests = duplicate_requests + 1 WHERE id = ${runId}`.pipe(Effect.asVoid)

    return { startUserMessage, startRegenerate, countDuplicate } as const
  })
}) {}
