import { HttpServerResponse } from "@effect/platform"
import { Chunk, Effect, Mailbox, Stream } from "effect"

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

const encoder = new TextEncoder()

/**
 * The bytes of an SSE response: the framed events, plus a keep-alive comment after every
 * `keepAliveMs` in which nothing was sent (the idle timer restarts after each event and each
 * keep-alive). It ends, or fails, with `events`; a non-positive period turns keep-alives off.
 *
 * Two fibers per response and none per event: one pumps `events` into a mailbox (noting the time
 * of the last write), the other sleeps until the connection has been idle for a whole period.
 * (`Stream.merge` would fork a fiber for every pull.) Whatever piled up in the mailbox leaves as
 * one `Uint8Array`, so a burst of tokens costs one socket write.
 */
export const toSseBody = <E>(
  events: Stream.Stream<SseEvent, E>,
  options: { readonly keepAliveMs: number }
): Stream.Stream<Uint8Array, E> =>
  Effect.gen(function*() {
    // Bounded, so a slow client slows the pump down instead of growing memory.
    const mailbox = yield* Mailbox.make<string, E>(16)
    const clock = yield* Effect.clock
    let lastSentAt = clock.unsafeCurrentTimeMillis()
    const markSent = () => {
      lastSentAt = clock.unsafeCurrentTimeMillis()
    }

    yield* events.pipe(
      Stream.runForEachChunk((chunk) => {
        if (Chunk.isEmpty(chunk)) return Effect.void
        markSent()
        let frames = ""
        for (const event of chunk) frames += encodeEvent(event)
        return mailbox.offer(frames)
      }),
      Mailbox.into(mailbox),
      Effect.forkScoped
    )

    if (options.keepAliveMs > 0) {
      const idleKeepAlive = Effect.gen(function*() {
        while (true) {
          const idleMs = clock.unsafeCurrentTimeMillis() - lastSentAt
          if (idleMs >= options.keepAliveMs) {
            markSent()
            return keepAlive
          }
          yield* Effect.sleep(options.keepAliveMs - idleMs)
        }
      })
      // After the end, `offer` is refused, so no keep-alive can trail the last event; a defect
      // here fails the body rather than silently stopping the keep-alives.
      yield* Effect.forever(Effect.flatMap(idleKeepAlive, (frame) => mailbox.offer(frame))).pipe(
        Mailbox.into(mailbox),
        Effect.forkScoped
      )
    }

    return Mailbox.toStream(mailbox)
  }).pipe(
    Stream.unwrapScoped,
    Stream.mapChunks((frames) => Chunk.isEmpty(frames) ? Chunk.empty() : Chunk.of(encoder.encode(Chunk.join(frames, ""))))
  )

/** Serves an SSE body with the headers of spec 60 (no caching, no proxy buffering). */
export const sseResponse = (
  body: Stream.Stream<Uint8Array, never>,
  init?: { readonly status?: number; readonly headers?: Record<string, string> }
): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.stream(body, {
    status: init?.status ?? 200,
    contentType: "text/event-stream",
    headers: {
      "cache-control": "no-cache",
      "x-accel-buffering": "no",
      connection: "keep-alive",
      ...init?.headers
    }
  })
