import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect } from "effect"
import type { Scope } from "effect"
import { Readable } from "node:stream"
import * as Zlib from "node:zlib"
import { isTerminal } from "../domain/RunEvent.ts"
import * as Metrics from "../services/observability/Metrics.ts"
import { acquireForScope } from "../services/ScopedResource.ts"
import type { Follower } from "../services/runner/RunEvents.ts"
import { encodeEvent, keepAlive, sseHeaders } from "./Sse.ts"

/**
 * A run's events as an SSE response. The follower writes each batch of events, framed, into the
 * response body as it is delivered (for a live run, in the very pass that read the model's
 * chunk: no fiber and no stream stage per token), with a keep-alive comment whenever nothing was
 * sent for `keepAliveMs`. The subscription belongs to the request's scope, which closes once the
 * terminal event is written or the client goes away. With `gzip` the body is compressed, each
 * write flushed at once (the envelope repeats in every event, so a delta costs a few dozen bytes
 * on the wire). With `onDisconnect`, a client that goes away before the terminal event triggers
 * it (the `abortOnDisconnect` of a turn request).
 */
export const runEventsResponse = (
  subscribe: (follower: Follower) => Effect.Effect<void, never, Scope.Scope>,
  options: {
    readonly keepAliveMs: number
    readonly gzip: boolean
    readonly onDisconnect?: Effect.Effect<void> | undefined
    /** Counts the open streams (spec 85, `MAX_SSE_CLIENTS`). */
    readonly streams: { readonly opened: () => void; readonly closed: () => void }
  }
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, Scope.Scope> =>
  Effect.gen(function*() {
    let delivered = false
    /** Set once the body ended or was destroyed: nothing more may be pushed into it. */
    let done = false
    const push = (text: string | null) => {
      if (done) return
      if (text === null) done = true
      body.push(text)
    }
    // Closed with the request's scope.
    const body = yield* acquireForScope(
      () => {
        Metrics.move(Metrics.sseClients, 1)
        options.streams.opened()
        return new Readable({ read() {} })
      },
      (body) =>
        Effect.suspend(() => {
          done = true
          body.destroy()
          Metrics.move(Metrics.sseClients, -1)
          options.streams.closed()
          return delivered || options.onDisconnect === undefined ? Effect.void : options.onDisconnect
        })
    )
    yield* subscribe({
      events: (entries) => {
        let frames = ""
        for (const entry of entries) {
          if (isTerminal(entry.type)) delivered = true
          frames += encodeEvent({ id: entry.seq, event: entry.type, data: entry.json })
        }
        push(frames)
      },
      end: () => push(null),
      keepAlive: { everyMs: options.keepAliveMs, send: () => push(keepAlive) }
    })
    return options.gzip
      ? HttpServerResponse.raw(body.pipe(Zlib.createGzip({ flush: Zlib.constants.Z_SYNC_FLUSH })), {
        contentType: "text/event-stream",
        headers: { ...sseHeaders, "content-encoding": "gzip", vary: "accept-encoding" }
      })
      : HttpServerResponse.raw(body, { contentType: "text/event-stream", headers: { ...sseHeaders, vary: "accept-encoding" } })
  })

/** Whether the client takes a gzip-compressed answer (`Accept-Encoding`, a `q=0` refuses it). */
export const acceptsGzip = (acceptEncoding: string | undefined) =>
  acceptEncoding?.split(",").some((part) => {
    const [coding, ...params] = part.trim().toLowerCase().split(";")
    return (coding === "gzip" || coding === "x-gzip") && !params.some((param) => /^\s*q=0(\.0*)?\s*$/.test(param))
  }) ?? false

export const wantsEventStream = (accept: string | undefined) => accept?.includes("text/event-stream") ?? false
