import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect, Schema } from "effect"
import { RunSnapshot } from "../domain/Run.ts"
import { AppConfig } from "../services/AppConfig.ts"
import { Runs } from "../services/runner/Runs.ts"
import type { TurnStarted } from "../services/runner/Turns.ts"
import { Turns } from "../services/runner/Turns.ts"
import { Api } from "./Api.ts"
import { acceptsGzip, runEventsResponse, wantsEventStream } from "./RunEventsSse.ts"

const encodeSnapshot = Schema.encode(RunSnapshot)

export const TurnsHttp = HttpApiBuilder.group(Api, "turns", (handlers) =>
  Effect.gen(function*() {
    const turns = yield* Turns
    const runs = yield* Runs
    const config = yield* AppConfig

    /**
     * Streaming mode attaches to the run's events from `seq 1` (a duplicate too); otherwise 202
     * with the run's current snapshot, marked `Idempotent-Replayed` for a duplicate (spec 70).
     */
    const answer = (started: TurnStarted, abortOnDisconnect: boolean) =>
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        if (wantsEventStream(request.headers.accept)) {
          return runEventsResponse((options) => started.run.follow(0, options), {
            keepAliveMs: config.sseKeepaliveMs,
            gzip: acceptsGzip(request.headers["accept-encoding"]),
            onDisconnect: abortOnDisconnect ? started.run.abortInBackground("client_disconnect") : undefined
          })
        }
        const snapshot = yield* runs.snapshot(started.run.runId)
        const body = yield* encodeSnapshot(new RunSnapshot({ ...snapshot, deduplicated: started.deduplicated })).pipe(Effect.orDie)
        return yield* HttpServerResponse.json(body, {
          status: 202,
          headers: started.deduplicated ? { "idempotent-replayed": "true" } : {}
        }).pipe(Effect.orDie)
      })

    return handlers
      .handle("sendMessage", ({ path, payload }) =>
        Effect.flatMap(turns.sendMessage(path.chatId, payload), (started) => answer(started, payload.abortOnDisconnect)))
      .handle("regenerate", ({ path, payload }) =>
        Effect.flatMap(
          turns.regenerate(path.chatId, path.assistantMessageId, payload),
          (started) => answer(started, payload.abortOnDisconnect)
        ))
  }))
