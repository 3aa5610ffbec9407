import type { HttpServerResponse } from "@effect/platform"
import { Chunk, Effect, Stream } from "effect"
import { isTerminal } from "../domain/RunEvent.ts"
import type { JournalEntry } from "../services/journal/Journal.ts"
import type { FollowOptions } from "../services/runner/RunEvents.ts"
import { encodeEvent, keepAlive, sseResponse } from "./Sse.ts"

const encoder = new TextEncoder()

/**
 * A run's events as an SSE response: `follow` gets the frames already encoded (one string per
 * event, a keep-alive comment whenever nothing was sent for `keepAliveMs`), and whatever piled up
 * leaves as one write. With `onDisconnect`, a client that goes away before the terminal event
 * triggers it (the `abortOnDisconnect` of a turn request).
 */
export const runEventsResponse = (
  follow: (options: FollowOptions<string>) => Stream.Stream<string>,
  options: { readonly keepAliveMs: number; readonly onDisconnect?: Effect.Effect<void> | undefined }
): HttpServerResponse.HttpServerResponse => {
  let delivered = false
  const frames = follow({
    encode: (entry: JournalEntry) => {
      if (isTerminal(entry.type)) delivered = true
      return encodeEvent({ id: entry.seq, event: entry.type, data: entry.json })
    },
    heartbeat: { everyMs: options.keepAliveMs, value: keepAlive }
  })
  return sseResponse(frames.pipe(
    Stream.mapChunks((chunk) => Chunk.of(encoder.encode(Chunk.join(chunk, "")))),
    Stream.ensuring(Effect.suspend(() => delivered || options.onDisconnect === undefined ? Effect.void : options.onDisconnect))
  ))
}

export const wantsEventStream = (accept: string | undefined) => accept?.includes("text/event-stream") ?? false
