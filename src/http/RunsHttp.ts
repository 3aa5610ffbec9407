import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { Effect, Schema } from "effect"
import { ValidationError } from "../domain/ApiErrors.ts"
import { AppConfig } from "../services/AppConfig.ts"
import { RunEvents } from "../services/runner/RunEvents.ts"
import { Runs } from "../services/runner/Runs.ts"
import { Api } from "./Api.ts"
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
    return handlers
      .handle("listRuns", ({ path, urlParams }) =>
        Effect.map(runs.list(path.chatId, { status: urlParams.status, limit: urlParams.limit }), (list) => ({ runs: list })))
      .handle("getRun", ({ path }) => runs.snapshot(path.runId))
      .handle("getRunReport", ({ path }) => runs.report(path.runId))
      .handle("runEvents", ({ path, urlParams }) =>
        Effect.gen(function*() {
          const request = yield* HttpServerRequest.HttpServerRequest
          const after = yield* resumeAfter(request.headers["last-event-id"], urlParams.after)
          yield* runs.exists(path.runId)
          return runEventsResponse((options) => events.follow(path.runId, after, options), {
            keepAliveMs: config.sseKeepaliveMs,
            gzip: acceptsGzip(request.headers["accept-encoding"])
          })
        }))
      .handle("abortRun", ({ path }) => runs.abort(path.runId, "user"))
      .handle("abortGeneration", ({ path }) => runs.abortGeneration(path.generationId, "user"))
  }))
