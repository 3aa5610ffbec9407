import { HttpClient, HttpClientRequest } from "@effect/platform"
import { Chunk, Effect, Schema, Stream } from "effect"

/**
 * What a reader of an SSE stream sees, in arrival order (`receivedAt` is `performance.now()` when
 * the network chunk that completed it was parsed, so tests can measure real delivery times):
 * - `Event`: a dispatched event. `id` is the last event ID seen so far on the stream, as
 *   `EventSource` reports it (`undefined` until some `id:` line arrived); `event` defaults to
 *   `"message"`; several `data:` lines are joined with `\n`.
 * - `Comment`: a line starting with `:`; `text` is the rest, one leading space stripped
 *   (`: keep-alive` gives `"keep-alive"`). Browsers drop these; we keep them to assert keep-alives.
 * - `Retry`: a valid `retry:` field (ASCII digits only), reported when its line arrives.
 */
export interface SseFrame {
  readonly _tag: "Event"
  readonly id: string | undefined
  readonly event: string
  readonly data: string
  readonly receivedAt: number
}
export interface SseComment {
  readonly _tag: "Comment"
  readonly text: string
  readonly receivedAt: number
}
export interface SseRetry {
  readonly _tag: "Retry"
  readonly millis: number
  readonly receivedAt: number
}
export type SseMessage = SseFrame | SseComment | SseRetry

/** The WHATWG "event stream interpretation", fed with decoded text in arbitrary pieces. */
const makeParser = () => {
  let pending = "" // the start of a line whose end has not arrived yet
  let afterCr = false // the last piece ended with `\r`: a `\n` starting the next one belongs to it
  let data = ""
  let eventType = ""
  let lastEventId: string | undefined

  const line = (text: string, receivedAt: number, out: Array<SseMessage>) => {
    if (text === "") {
      // A blank line dispatches, unless no `data:` came (then the event is silently dropped).
      if (data !== "") {
        out.push({ _tag: "Event", id: lastEventId, event: eventType || "message", data: data.slice(0, -1), receivedAt })
      }
      data = ""
      eventType = ""
      return
    }
    const colon = text.indexOf(":")
    if (colon === 0) {
      out.push({ _tag: "Comment", text: stripSpace(text.slice(1)), receivedAt })
      return
    }
    const field = colon < 0 ? text : text.slice(0, colon)
    const value = colon < 0 ? "" : stripSpace(text.slice(colon + 1))
    switch (field) {
      case "data":
        data += value + "\n"
        break
      case "event":
        eventType = value
        break
      case "id":
        if (!value.includes("\u0000")) lastEventId = value
        break
      case "retry":
        if (/^[0-9]+$/.test(value)) out.push({ _tag: "Retry", millis: Number(value), receivedAt })
        break
      // other fields are ignored, as the spec says
    }
  }

  return (piece: string): Array<SseMessage> => {
    const out: Array<SseMessage> = []
    const receivedAt = performance.now()
    let start = 0
    if (afterCr && piece.length > 0) {
      afterCr = false
      if (piece[0] === "\n") start = 1
    }
    for (let i = start; i < piece.length; i++) {
      const char = piece[i]
      if (char !== "\n" && char !== "\r") continue
      line(pending + piece.slice(start, i), receivedAt, out)
      pending = ""
      if (char === "\r") {
        if (i + 1 === piece.length) afterCr = true
        else if (piece[i + 1] === "\n") i++
      }
      start = i + 1
    }
    pending += piece.slice(start)
    return out
  }
}

const stripSpace = (value: string) => (value.startsWith(" ") ? value.slice(1) : value)

/**
 * Parses an SSE byte stream as it arrives. UTF-8 is decoded across chunk boundaries (a leading
 * BOM is dropped by the decoder); an event without its closing blank line when the stream ends is
 * never dispatched, as in a browser.
 */
export const parseSse = <E, R>(bytes: Stream.Stream<Uint8Array, E, R>): Stream.Stream<SseMessage, E, R> =>
  Stream.suspend(() => {
    const feed = makeParser()
    return bytes.pipe(
      Stream.decodeText(),
      Stream.mapChunks((pieces) => Chunk.unsafeFromArray(Chunk.toReadonlyArray(pieces).flatMap(feed)))
    )
  })

/**
 * Sends `request` with `Accept: text/event-stream` and gives the status, the headers and the
 * messages, parsed as they arrive. The connection closes when `messages` ends or is interrupted,
 * or at the latest when the scope closes (so a test can disconnect by closing its scope).
 */
export const openSse = (request: HttpClientRequest.HttpClientRequest) =>
  Effect.gen(function*() {
    const client = HttpClient.withScope(yield* HttpClient.HttpClient)
    const response = yield* client.execute(HttpClientRequest.setHeader(request, "accept", "text/event-stream"))
    return {
      status: response.status,
      headers: response.headers,
      messages: parseSse(response.stream)
    }
  })

/** An event whose `data` was parsed as JSON. */
export interface JsonEvent {
  readonly id: string | undefined
  readonly event: string
  readonly data: unknown
  readonly receivedAt: number
}

const parseJson = Schema.decode(Schema.parseJson())

/** Collects the events (comments and retries left out) until the stream ends, parsing each `data` as JSON. */
export const collectEvents = <E, R>(messages: Stream.Stream<SseMessage, E, R>) =>
  messages.pipe(
    Stream.filter((message): message is SseFrame => message._tag === "Event"),
    Stream.mapEffect((frame) => Effect.map(parseJson(frame.data), (data): JsonEvent => ({ id: frame.id, event: frame.event, data, receivedAt: frame.receivedAt }))),
    Stream.runCollect,
    Effect.map(Chunk.toReadonlyArray)
  )

/** Opens the stream and reads it to its end: status, headers, JSON events, and every comment. */
export const readAll = (request: HttpClientRequest.HttpClientRequest) =>
  Effect.gen(function*() {
    const { headers, messages, status } = yield* openSse(request)
    const all = yield* Stream.runCollect(messages).pipe(Effect.map(Chunk.toReadonlyArray))
    const events = yield* collectEvents(Stream.fromIterable(all))
    const comments = all.filter((message): message is SseComment => message._tag === "Comment")
    return { status, headers, events, comments }
  }).pipe(Effect.scoped)
