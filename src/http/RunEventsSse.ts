import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Chunk, Effect, Stream } from "effect"
import * as Zlib from "node:zlib"
import { isTerminal } from "../domain/RunEvent.ts"
import type { JournalEntry } from "../services/journal/Journal.ts"
import * as Metrics from "../services/observability/Metrics.ts"
import type { FollowOptions } from "../services/runner/RunEvents.ts"
import { encodeEvent, keepAlive, sseResponse } from "./Sse.ts"

const encoder = new TextEncoder()

/**
 * A run's events as an SSE response: `follow` gets the frames already encoded (one string per
 * event, a keep-alive comment whenever nothing was sent for `keepAliveMs`), and whatever piled up
 * leaves as one write. With `gzip` the response is compressed, each write flushed at once (the
 * envelope repeats in every event, so a delta costs a few dozen bytes on the wire). With
 * `onDisconnect`, a client that goes away before the terminal event triggers it (the
 * `abortOnDisconnect` of a turn request).
 */
export const runEventsResponse = (
  follow: (options: FollowOptions<string>) => Stream.Stream<string>,
  options: {
    readonly keepAliveMs: number
    readonly gzip: boolean
    readonly onDisconnect?: Effect.Effect<void> | undefined
    /** Counts the open streams (spec 85, `MAX_SSE_CLIENTS`). */
    readonly streams: { readonly opened: () => void; readonly closed: () => void }
  }
): HttpServerResponse.HttpServerResponse => {
  let delivered = false
  const frames = follow({
    encode: (entry: JournalEntry) => {
      if (isTerminal(entry.type)) delivered = true
      return encodeEvent({ id: entry.seq, event: entry.type, data: entry.json })
    },
    heartbeat: { everyMs: options.keepAliveMs, value: keepAlive }
  })
  const body = Stream.suspend(() => {
    Metrics.move(Metrics.sseClients, 1)
    options.streams.opened()
    return frames
  }).pipe(
    Stream.mapChunks((chunk) => Chunk.of(encoder.encode(Chunk.join(chunk, "")))),
    Stream.ensuring(Effect.sync(() => {
      Metrics.move(Metrics.sseClients, -1)
      options.streams.closed()
    })),
    Stream.ensuring(Effect.suspend(() => delivered || options.onDisconnect === undefined ? Effect.void : options.onDisconnect))
  )
  return options.gzip
    ? sseResponse(
      NodeStream.pipeThroughSimple(body, () => Zlib.createGzip({ flush: Zlib.constants.Z_SYNC_FLUSH })).pipe(Stream.orDie),
      { headers: { "content-encoding": "gzip", vary: "accept-encoding" } }
    )
    : sseResponse(body, { headers: { vary: "accept-encoding" } })
}

/** Whether the client takes a gzip-compressed answer (`Accept-Encoding`, a `q=0` refuses it). */
export const acceptsGzip = (acceptEncoding: string | undefined) =>
  acceptEncoding?.split(",").some((part) => {
    const [coding, ...params] = part.trim().toLowerCase().split(";")
    return (coding === "gzip" || coding === "x-gzip") && !params.some((param) => /^\s*q=0(\.0*)?\s*$/.test(param))
  }) ?? false

export const wantsEventStream = (accept: string | undefined) => accept?.includes("text/event-stream") ?? false
