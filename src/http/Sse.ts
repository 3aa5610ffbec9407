/** One event on the wire (spec 60): `id` is the run's `seq`, `event` its type, `data` its JSON. */
export interface SseEvent {
  readonly id: number
  readonly event: string
  readonly data: string
}

/** Frames one event. A `data` with line breaks becomes several `data:` lines, which a client joins back with `\n`. */
export const encodeEvent = (event: SseEvent): string =>
  `id: ${event.id}\nevent: ${event.event}\ndata: ${
    // JSON never holds a raw line break, so the split is rarely needed.
    event.data.includes("\n") || event.data.includes("\r") ? event.data.split(/\r\n|\r|\n/).join("\ndata: ") : event.data
  }\n\n`

/** A comment line: ignored by `EventSource`, it only keeps proxies and idle timeouts from closing the connection. */
export const keepAlive = ": keep-alive\n\n"

/** The headers of an SSE answer beside its content type (spec 60): no caching, no proxy buffering. */
export const sseHeaders = {
  "cache-control": "no-cache",
  "x-accel-buffering": "no",
  connection: "keep-alive"
} as const
