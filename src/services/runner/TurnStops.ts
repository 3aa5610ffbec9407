import { Clock, Effect, Option } from "effect"
import { NotFound } from "../../domain/ApiErrors.ts"
import type { ChatId, RunId } from "../../domain/Ids.ts"
import { idempotencyKey, turnStopTtlMs } from "../../domain/Run.ts"
import type { AbortTurn } from "../../domain/Run.ts"
import { TurnStopsRepo } from "../TurnStopsRepo.ts"
import { Runs } from "./Runs.ts"

/**
 * Stopping a turn by the client's own ids (spec 75, "Stop before the run id is known"): a turn
 * whose run exists is aborted as any run is (spec 10; wherever it runs), and the answer comes once
 * it is terminal. One whose request has not arrived yet gets its stop recorded: its run will be
 * created already aborted (`Turns`). A stop never gets lost to a turn starting at the same moment:
 * the stop looks for the run again once recorded, and what still slips between the two is found
 * by the runner's next lease renewal.
 */
export class TurnStops extends Effect.Service<TurnStops>()("turn-runner/TurnStops", {
  effect: Effect.gen(function*() {
    const repo = yield* TurnStopsRepo
    const runs = yield* Runs

    const aborted = (runId: RunId) => Effect.map(runs.abort(runId, "user"), (snapshot) => ({ run: snapshot }))

    const stop = Effect.fn("TurnStops.stop")(function*(chatId: ChatId, request: AbortTurn) {
      const key = "userMessageId" in request
        ? idempotencyKey.userMessage(request.userMessageId)
        : idempotencyKey.regenerate(request.assistantMessageId, request.requestId)
      const at = yield* Clock.currentTimeMillis
      const recorded = yield* repo.record(chatId, key, new Date(at), new Date(at - turnStopTtlMs))
      if (!recorded.chatFound) return yield* new NotFound({ message: `chat ${chatId} does not exist` })
      if (recorded.runId !== null) return yield* aborted(recorded.runId)
      // A start that had not seen the stop may have committed meanwhile.
      const raced = yield* repo.runOf(chatId, key)
      if (Option.isNone(raced)) return { run: null }
      yield* repo.remove(chatId, key)
      return yield* aborted(raced.value)
    })

    return { stop } as const
  }),
  dependencies: [TurnStopsRepo.Default]
}) {}
