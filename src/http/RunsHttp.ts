import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect, Schema } from "effect"
import { ValidationError } from "../domain/ApiErrors.ts"
import { Access } from "../services/access/Access.ts"
import { Limits } from "../services/access/Limits.ts"
import { AppConfig } from "../services/AppConfig.ts"
import { RunEvents } from "../services/runner/RunEvents.ts"
import { Runs } from "../services/runner/Runs.ts"
import { Api } from "./Api.ts"
import { ownChat, ownGeneration, ownRun, withRetryAfter } from "./AuthenticationHttp.ts"
import { acceptsGzip, runEventsResponse } from "./RunEventsSse.ts"

const decodeSeq = Schema.decodeUnknownEither(Schema.NumberFromString.pipe(Schema.int(), Schema.nonNegative()))

/** `Last-Event-ID` (what a reconnecting `EventSource` sends) wins over `?after=`. */
const resumeAfter = (header: string | undefined, after: number | undefined) =>
  header === undefined
    ? Effect.succeed(after ?? 0)
    : Effect.mapError(decodeSeq(header.trim()), () =>
      new ValidationError({ message: "Last-Event-ID must be the non-negative integer seq of an event" }))

export const RunsHttp = HttpApiBuilder.group(Api, "runs", (handlers) =>
  Effect.gen(function*() {
    const runs = yield* Runs
    const events = yield* RunEvents
    const config = yield* AppConfig
    const limits = yield* Limits
    const access = yield* Access
    return handlers
      .handle("listRuns", ({ path, urlParams }) =>
        ownChat(path.chatId, () =>
          Effect.map(runs.list(path.chatId, { status: urlParams.status, limit: urlParams.limit }), (list) => ({ runs: list }))))
      .handle("getRun", ({ path }) =>
        ownRun(path.runId, (owner) => Effect.flatMap(runs.snapshot(path.runId), (snapshot) => access.withEventsToken(owner, snapshot))))
      .handle("getRunReport", ({ path }) => ownRun(path.runId, () => runs.report(path.runId)))
      .handle("runEvents", ({ path, urlParams }) =>
        ownRun(path.runId, () =>
          Effect.gen(function*() {
            const request = yield* HttpServerRequest.HttpServerRequest
            const after = yield* resumeAfter(request.headers["last-event-id"], urlParams.after)
            // Past a finished run's terminal event: 204, the one answer that stops an `EventSource` (spec 60).
            if (!(yield* runs.hasEventsAfter(path.runId, after))) return HttpServerResponse.empty({ status: 204 })
            yield* limits.eventStreams.room
            return yield* runEventsResponse((follower) => events.subscribe(path.runId, after, follower), {
              keepAliveMs: config.sseKeepaliveMs,
              gzip: acceptsGzip(request.headers["accept-encoding"]),
              streams: limits.eventStreams
            })
          })).pipe(withRetryAfter))
      .handle("abortRun", ({ path }) => ownRun(path.runId, () => runs.abort(path.runId, "user")))
      .handle("abortGeneration", ({ path }) => ownGeneration(path.generationId, () => runs.abortGeneration(path.generationId, "user")))
  }))
