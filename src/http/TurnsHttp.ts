import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect, Schema } from "effect"
import { RunSnapshot } from "../domain/Run.ts"
import { AppConfig } from "../services/AppConfig.ts"
import { Runs } from "../services/runner/Runs.ts"
import { Access } from "../services/access/Access.ts"
import { Limits } from "../services/access/Limits.ts"
import type { TurnError, TurnStarted } from "../services/runner/Turns.ts"
import { Turns } from "../services/runner/Turns.ts"
import { TurnStops } from "../services/runner/TurnStops.ts"
import { Api } from "./Api.ts"
import { CurrentOwner } from "./Authentication.ts"
import { ownChat, withRetryAfter } from "./AuthenticationHttp.ts"
import { acceptsGzip, runEventsResponse, wantsEventStream } from "./RunEventsSse.ts"

const encodeSnapshot = Schema.encode(RunSnapshot)

export const TurnsHttp = HttpApiBuilder.group(Api, "turns", (handlers) =>
  Effect.gen(function*() {
    const turns = yield* Turns
    const stops = yield* TurnStops
    const runs = yield* Runs
    const config = yield* AppConfig
    const limits = yield* Limits
    const access = yield* Access

    /**
     * A turn of the caller's, answered as it asked (spec 70): with `Accept: text/event-stream`,
     * the run's events from `seq 1` (a duplicate too), if the instance has room for one more stream
     * (spec 85); otherwise 202 with the run's current snapshot and its events token, marked
     * `Idempotent-Replayed` for a duplicate. A refusal that says when to come back says it in
     * `Retry-After` too.
     */
    const turn = (start: (owner: string) => Effect.Effect<TurnStarted, TurnError>, abortOnDisconnect: boolean) =>
      Effect.gen(function*() {
        const owner = yield* CurrentOwner
        const request = yield* HttpServerRequest.HttpServerRequest
        if (wantsEventStream(request.headers.accept)) {
          yield* limits.eventStreams.room
          const started = yield* start(owner)
          return yield* runEventsResponse((follower) => started.run.subscribe(0, follower), {
            keepAliveMs: config.sseKeepaliveMs,
            gzip: acceptsGzip(request.headers["accept-encoding"]),
            onDisconnect: abortOnDisconnect ? started.run.abortInBackground("client_disconnect") : undefined,
            streams: limits.eventStreams
          })
        }
        const started = yield* start(owner)
        const snapshot = yield* runs.snapshot(started.run.runId)
        const answer = yield* access.withEventsToken(owner, new RunSnapshot({ ...snapshot, deduplicated: started.deduplicated }))
        const body = yield* encodeSnapshot(answer).pipe(Effect.orDie)
        return yield* HttpServerResponse.json(body, {
          status: 202,
          headers: started.deduplicated ? { "idempotent-replayed": "true" } : {}
        }).pipe(Effect.orDie)
      }).pipe(withRetryAfter)

    return handlers
      .handle("sendMessage", ({ path, payload }) =>
        turn((owner) => turns.sendMessage(path.chatId, payload, owner), payload.abortOnDisconnect))
      .handle("regenerate", ({ path, payload }) =>
        turn((owner) => turns.regenerate(path.chatId, path.assistantMessageId, payload, owner), payload.abortOnDisconnect))
      .handle("abortTurn", ({ path, payload }) => ownChat(path.chatId, () => stops.stop(path.chatId, payload)))
  }))
