import type { HttpServerResponse } from "@effect/platform"
import { Effect, Stream } from "effect"
import { isTerminal } from "../domain/RunEvent.ts"
import type { JournalEntry } from "../services/runner/EventLog.ts"
import { sseResponse, toSseBody } from "./Sse.ts"

/**
 * A run's events as an SSE response. With `onDisconnect`, a client that goes away before the
 * terminal event triggers it (the `abortOnDisconnect` of a turn request).
 */
export const runEventsResponse = (
  events: Stream.Stream<JournalEntry>,
  options: { readonly keepAliveMs: number; readonly onDisconnect?: Effect.Effect<void> | undefined }
): HttpServerResponse.HttpServerResponse => {
  let delivered = false
  const framed = events.pipe(
    Stream.map(({ event, json }) => {
      if (isTerminal(event.type)) delivered = true
      return { id: event.seq, event: event.type, data: json }
    }),
    Stream.ensuring(Effect.suspend(() => delivered || options.onDisconnect === undefined ? Effect.void : options.onDisconnect))
  )
  return sseResponse(toSseBody(framed, { keepAliveMs: options.keepAliveMs }))
}

export const wantsEventStream = (accept: string | undefined) => accept?.includes("text/event-stream") ?? false
