import { HttpClientRequest, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Clock, Deferred, Effect, Fiber, Option, Stream, TestClock } from "effect"
import { encodeEvent, keepAlive, type SseEvent, sseResponse } from "../../src/http/Sse.ts"
import * as Feed from "../../src/services/runner/Feed.ts"
import { collectEvents, openSse, parseSse, type SseFrame, type SseMessage } from "../support/SseClient.ts"

const event = (id: number): SseEvent => ({ id, event: "llm.stream.delta", data: JSON.stringify({ seq: id }) })

/** `event` emitted `ms` after the previous part of the stream ended. */
const after = (ms: number, sseEvent: SseEvent) => Stream.fromEffect(Effect.as(Effect.sleep(ms), sseEvent))

/** Runs a body under the TestClock, noting the virtual time at which each piece of text was emitted. */
const timeline = (body: Stream.Stream<Uint8Array>) =>
  body.pipe(
    Stream.decodeText(),
    Stream.mapEffect((text) => Effect.map(Clock.currentTimeMillis, (at) => [at, text] as const)),
    Stream.runCollect,
    Effect.map(Chunk.toReadonlyArray),
    Effect.fork
  )

const encoder = new TextEncoder()

/**
 * An SSE body as the run's followers build it: frames fed from outside (here from `events`) into a
 * `Feed` whose heartbeat is the keep-alive comment.
 */
const toSseBody = <E>(events: Stream.Stream<SseEvent, E>, options: { readonly keepAliveMs: number }) =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const feed = yield* Feed.make({ heartbeat: { everyMs: options.keepAliveMs, value: keepAlive } })
    const failed = yield* Deferred.make<never, E>()
    yield* events.pipe(
      Stream.runForEach((event) => Effect.sync(() => feed.offer(encodeEvent(event)))),
      Effect.matchCauseEffect({ onSuccess: () => Effect.sync(feed.end), onFailure: (cause) => Deferred.failCause(failed, cause) }),
      Effect.forkScoped
    )
    return Stream.merge(feed.stream, Stream.fromEffect(Deferred.await(failed)), { haltStrategy: "either" })
  })).pipe(Stream.map((text) => encoder.encode(text)))

/** Parses the given network chunks and drops `receivedAt`, which depends on real time. */
const parse = (...chunks: ReadonlyArray<string | Uint8Array>) =>
  parseSse(Stream.fromIterable(chunks.map((chunk) => (typeof chunk === "string" ? encoder.encode(chunk) : chunk)))).pipe(
    Stream.map(({ receivedAt: _, ...message }) => message),
    Stream.runCollect,
    Effect.map(Chunk.toReadonlyArray)
  )

/** Every byte in its own network chunk: each boundary falls somewhere awkward. */
const byteByByte = (text: string) => Array.from(encoder.encode(text), (byte) => Uint8Array.of(byte))

describe("encodeEvent", () => {
  it("writes id, event and data lines and a blank line", () => {
    expect(encodeEvent({ id: 7, event: "llm.stream.delta", data: "{\"content\":\"Hel\"}" })).toBe(
      "id: 7\nevent: llm.stream.delta\ndata: {\"content\":\"Hel\"}\n\n"
    )
  })

  it("splits data with line breaks into several data lines", () => {
    expect(encodeEvent({ id: 1, event: "x", data: "a\nb\r\nc\rd" })).toBe("id: 1\nevent: x\ndata: a\ndata: b\ndata: c\ndata: d\n\n")
  })

  it("writes the keep-alive as a comment", () => {
    expect(keepAlive).toBe(": keep-alive\n\n")
  })
})

describe("an SSE body fed to a Feed with a keep-alive heartbeat", () => {
  it.effect("frames the events and ends when they end", () =>
    Effect.gen(function*() {
      const text = yield* toSseBody(Stream.make(event(1), event(2)), { keepAliveMs: 15_000 }).pipe(
        Stream.decodeText(),
        Stream.mkString
      )
      expect(text).toBe(encodeEvent(event(1)) + encodeEvent(event(2)))
    }))

  it.effect("sends a keep-alive only after a whole idle period, restarting the timer after every write", () =>
    Effect.gen(function*() {
      const events = Stream.make(event(1)).pipe(Stream.concat(after(5_000, event(2))), Stream.concat(after(35_000, event(3))))
      const fiber = yield* timeline(toSseBody(events, { keepAliveMs: 15_000 }))
      yield* TestClock.adjust("40 seconds")
      // The body ended with the last event: nothing more, not even a keep-alive, follows it.
      expect(yield* Fiber.poll(fiber)).toEqual(Option.some(expect.anything()))
      expect(yield* Fiber.join(fiber)).toEqual([
        [0, encodeEvent(event(1))],
        [5_000, encodeEvent(event(2))],
        [20_000, keepAlive],
        [35_000, keepAlive],
        [40_000, encodeEvent(event(3))]
      ])
    }))

  it.effect("sends no keep-alive while events come faster than the period", () =>
    Effect.gen(function*() {
      const events = Stream.make(event(1)).pipe(
        Stream.concat(after(14_000, event(2))),
        Stream.concat(after(14_000, event(3))),
        Stream.concat(after(14_000, event(4)))
      )
      const fiber = yield* timeline(toSseBody(events, { keepAliveMs: 15_000 }))
      yield* TestClock.adjust("1 minute")
      const texts = (yield* Fiber.join(fiber)).map(([, text]) => text)
      expect(texts).toEqual([1, 2, 3, 4].map((id) => encodeEvent(event(id))))
    }))

  it.effect("fails with the events' failure", () =>
    Effect.gen(function*() {
      const error = yield* toSseBody(Stream.make(event(1)).pipe(Stream.concat(Stream.fail("boom"))), { keepAliveMs: 15_000 }).pipe(
        Stream.runDrain,
        Effect.flip
      )
      expect(error).toBe("boom")
    }))
})

describe("parseSse", () => {
  const frame = (fields: Partial<Omit<SseFrame, "_tag" | "receivedAt">>) => ({ _tag: "Event", id: undefined, event: "message", data: "", ...fields })

  it.effect("reads events whatever the chunk boundaries, multi-byte characters included", () =>
    Effect.gen(function*() {
      const text = "id: 1\nevent: llm.stream.delta\ndata: {\"content\":\"é€😀\"}\n\n"
      const expected = [frame({ id: "1", event: "llm.stream.delta", data: "{\"content\":\"é€😀\"}" })]
      expect(yield* parse(text)).toEqual(expected)
      expect(yield* parse(...byteByByte(text))).toEqual(expected)
      const bytes = encoder.encode(text)
      for (let cut = 1; cut < bytes.length; cut++) {
        expect(yield* parse(bytes.slice(0, cut), bytes.slice(cut))).toEqual(expected)
      }
    }))

  it.effect("accepts CRLF and lone CR line endings, even split between chunks", () =>
    Effect.gen(function*() {
      const text = "id: 1\r\nevent: a\r\ndata: x\r\n\r\nid: 2\revent: b\rdata: y\r\r"
      const expected = [frame({ id: "1", event: "a", data: "x" }), frame({ id: "2", event: "b", data: "y" })]
      expect(yield* parse(text)).toEqual(expected)
      expect(yield* parse(...byteByByte(text))).toEqual(expected)
    }))

  it.effect("joins several data lines with line feeds", () =>
    Effect.gen(function*() {
      expect(yield* parse("data: a\ndata:b\ndata\ndata:  c\n\n")).toEqual([frame({ data: "a\nb\n\n c" })])
    }))

  it.effect("reports comments apart from events", () =>
    Effect.gen(function*() {
      expect(yield* parse(": keep-alive\n\n:tight\ndata: x\n\n")).toEqual([
        { _tag: "Comment", text: "keep-alive" },
        { _tag: "Comment", text: "tight" },
        frame({ data: "x" })
      ])
    }))

  it.effect("keeps the last event id for later events, ignores ids with NUL and unknown fields", () =>
    Effect.gen(function*() {
      expect(yield* parse("id: 5\ndata: a\n\ndata: b\n\nid: 6\u0000\nfoo: bar\ndata: c\n\n")).toEqual([
        frame({ id: "5", data: "a" }),
        frame({ id: "5", data: "b" }),
        frame({ id: "5", data: "c" })
      ])
    }))

  it.effect("reports valid retry fields and dispatches nothing for an event without data", () =>
    Effect.gen(function*() {
      expect(yield* parse("retry: 3000\nretry: 1s\nevent: empty\n\ndata: x\n\n")).toEqual([
        { _tag: "Retry", millis: 3000 },
        frame({ data: "x" })
      ])
    }))

  it.effect("drops an event whose blank line never came before the end", () =>
    Effect.gen(function*() {
      expect(yield* parse("data: a\n\ndata: b\n")).toEqual([frame({ data: "a" })])
      expect(yield* parse("data: a\n\ndata: b\n\r")).toEqual([frame({ data: "a" }), frame({ data: "b" })])
      expect(yield* parse("data: a\n\ndata: b")).toEqual([frame({ data: "a" })])
    }))
})

describe("an SSE response over HTTP", () => {
  it.live("has the SSE headers and delivers each event as it happens", () =>
    Effect.gen(function*() {
      const firstReceived = yield* Deferred.make<void>()
      // The second event exists only once the client has read the first: a buffered response would hang.
      const events = Stream.make(event(1)).pipe(
        Stream.concat(Stream.fromEffect(Effect.as(Deferred.await(firstReceived), event(2))))
      )
      yield* HttpServer.serveEffect(Effect.succeed(sseResponse(toSseBody(events, { keepAliveMs: 60_000 }))))

      const { headers, messages, status } = yield* openSse(HttpClientRequest.get("/events"))
      expect(status).toBe(200)
      expect(headers).toMatchObject({
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "x-accel-buffering": "no"
      })
      const received = yield* messages.pipe(
        Stream.tap((message) => message._tag === "Event" && message.id === "1" ? Deferred.succeed(firstReceived, undefined) : Effect.void),
        collectEvents
      )
      expect(received.map(({ data, event, id }) => ({ data, event, id }))).toEqual([
        { id: "1", event: "llm.stream.delta", data: { seq: 1 } },
        { id: "2", event: "llm.stream.delta", data: { seq: 2 } }
      ])
    }).pipe(Effect.timeout("5 seconds"), Effect.scoped, Effect.provide(NodeHttpServer.layerTest)))

  it.live("sends keep-alives while the stream is idle", () =>
    Effect.gen(function*() {
      const events = Stream.make(event(1)).pipe(Stream.concat(after(300, event(2))))
      yield* HttpServer.serveEffect(Effect.succeed(sseResponse(toSseBody(events, { keepAliveMs: 50 }))))
      const { messages } = yield* openSse(HttpClientRequest.get("/events"))
      const received: ReadonlyArray<SseMessage> = yield* messages.pipe(Stream.runCollect, Effect.map(Chunk.toReadonlyArray))
      const seen = received.map((message) => message._tag === "Event" ? message.id : message._tag === "Comment" ? message.text : "retry")
      // 300 ms of silence with a 50 ms period: several keep-alives, and nothing else, between the events.
      expect(seen[0]).toBe("1")
      expect(seen.at(-1)).toBe("2")
      expect(seen.length).toBeGreaterThanOrEqual(4)
      expect(new Set(seen.slice(1, -1))).toEqual(new Set(["keep-alive"]))
    }).pipe(Effect.scoped, Effect.provide(NodeHttpServer.layerTest)))
})
