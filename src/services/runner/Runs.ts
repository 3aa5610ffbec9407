import { Effect, Option } from "effect"
import { NotFound } from "../../domain/ApiErrors.ts"
import type { ChatId, GenerationId, RunId } from "../../domain/Ids.ts"
import type { AbortReason, RunStatus } from "../../domain/Run.ts"
import { isTerminal } from "../../domain/RunEvent.ts"
import { ChatsRepo } from "../ChatsRepo.ts"
import { RunsRepo } from "../RunsRepo.ts"
import { asRunEvents, RunEvents } from "./RunEvents.ts"
import type { FollowOptions } from "./RunEvents.ts"
import { Runner } from "./Runner.ts"

/** Reading, following and aborting runs: what the API offers over the runner and its rows. */
export class Runs extends Effect.Service<Runs>()("turn-runner/Runs", {
  effect: Effect.gen(function*() {
    const repo = yield* RunsRepo
    const chats = yield* ChatsRepo
    const runner = yield* Runner
    const events = yield* RunEvents

    /** What `read` found of the run, or 404 `not_found`. */
    const ofRun = <A>(runId: RunId, read: Effect.Effect<Option.Option<A>>) =>
      Effect.flatMap(read, Option.match({
        onNone: () => Effect.fail(new NotFound({ message: `run ${runId} does not exist` })),
        onSome: Effect.succeed
      }))

    const snapshot = Effect.fn("Runs.snapshot")(function*(runId: RunId) {
      return yield* ofRun(runId, repo.snapshot(runId))
    })

    const list = Effect.fn("Runs.list")(
      function*(chatId: ChatId, options: { readonly status: RunStatus | undefined; readonly limit: number }) {
        if (Option.isNone(yield* chats.findChat(chatId))) return yield* new NotFound({ message: `chat ${chatId} does not exist` })
        return yield* repo.listForChat(chatId, options)
      }
    )

    const exists = Effect.fn("Runs.exists")(function*(runId: RunId) {
      if (Option.isNone(yield* repo.find(runId))) return yield* new NotFound({ message: `run ${runId} does not exist` })
    })

    /**
     * Whether the run has events after `after` to send: false once its terminal event is at or
     * before `after` (spec 60: a finished stream is not followed again).
     */
    const hasEventsAfter = Effect.fn("Runs.hasEventsAfter")(function*(runId: RunId, after: number) {
      const last = yield* ofRun(runId, repo.lastEvent(runId))
      return !(last.seq !== null && last.seq <= after && last.type !== null && isTerminal(last.type))
    })

    /** The run's events after `after`, as `options` encodes them; fails before streaming anything if the run does not exist. */
    const follow = <A>(runId: RunId, after: number, options: FollowOptions<A>) =>
      Effect.as(exists(runId), events.follow(runId, after, options))

    /** The run's events after `after`, as values (for programs that embed the runner). */
    const eventsOf = (runId: RunId, after: number) => follow(runId, after, asRunEvents)

    /** Idempotent: answers with the final snapshot once the run is terminal. */
    const abort = Effect.fn("Runs.abort")(function*(runId: RunId, reason: AbortReason) {
      yield* snapshot(runId)
      yield* runner.abort(runId, reason)
      return yield* snapshot(runId)
    })

    const abortGeneration = Effect.fn("Runs.abortGeneration")(function*(generationId: GenerationId, reason: AbortReason) {
      const runId = yield* Effect.flatMap(repo.runOfGeneration(generationId), Option.match({
        onNone: () => Effect.fail(new NotFound({ message: `generation ${generationId} does not exist` })),
        onSome: Effect.succeed
      }))
      return yield* abort(runId, reason)
    })

    /** The debug report of the run (spec 95). */
    const report = Effect.fn("Runs.report")(function*(runId: RunId) {
      return yield* ofRun(runId, repo.report(runId))
    })

    return { snapshot, report, exists, hasEventsAfter, list, events: eventsOf, follow, abort, abortGeneration } as const
  })
}) {}
