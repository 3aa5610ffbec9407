import { HttpClientRequest, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Exit, Scope, Stream, TestClock } from "effect"
import { runEventsResponse } from "../../src/http/RunEventsSse.ts"
import { encodeEvent, keepAlive, type SseEvent } from "../../src/http/Sse.ts"
import type { JournalEntry } from "../../src/services/journal/Journal.ts"
import { Heartbeats } from "../../src/services/runner/Heartbeats.ts"
import { collectEvents, openSse, parseSse, type SseFrame, type SseMessage } from "../support/SseClient.ts"

const event = (id: number): SseEvent => ({ id, event: "llm.stream.delta", data: JSON.stringify({ seq: id }) })

/** `event` emitted `ms` after the previous part of the stream ended. */
const after = (ms: number, sseEvent: SseEvent) => Stream.fromEffect(Effect.as(Effect.sleep(ms), sseEvent))

const encoder = new TextEncoder()

/**
 * An SSE response as the run's followers build it, its events taken from `events`: the follower is
 * fed from a fiber in the request's scope, its keep-alives kept by `Heartbeats`.
 */
const sseOf = (events: Stream.Stream<SseEvent>, options: { readonly keepAliveMs: number }) =>
  Effect.flatMap(Heartbeats, (heartbeats) => runEventsResponse((follower) =>
    Effect.gen(function*() {
      const { keepAlive } = follower
      const heartbeat = keepAlive === undefined ? undefined : yield* heartbeats.register(keepAlive.everyMs, keepAlive.send)
      yield* events.pipe(
        Stream.runForEach((event) =>
          Effect.sync(() => {
            follower.events([{ seq: event.id, type: event.event as JournalEntry["type"], json: event.data }])
            heartbeat?.touch()
          })
        ),
        Effect.zipRight(Effect.sync(follower.end)),
        Effect.forkScoped
      )
    }), { keepAliveMs: options.keepAliveMs, gzip: false, streams: { opened: () => {}, closed: () => {} } }))

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

describe("Heartbeats", () => {
  it.effect("beats only after a whole idle period, the period restarting after every touch and every beat", () =>
    Effect.gen(function*() {
      const at: Array<number> = []
      const heartbeats = yield* Heartbeats
      const heartbeat = yield* heartbeats.register(15_000, () => at.push(0))
      const times: Array<number> = []
      yield* TestClock.adjust("5 seconds")
      heartbeat.touch()
      for (let second = 5; second < 40; second++) {
        yield* TestClock.adjust("1 second")
        if (at.length > times.length) times.push(second + 1)
      }
      // Touched at 5 s: due at 20 s, then every 15 s.
      expect(times).toEqual([20, 35])
    }).pipe(Effect.scoped, Effect.provide(Heartbeats.Default)))

  it.effect("never beats while touched more often than the period", () =>
    Effect.gen(function*() {
      const at: Array<number> = []
      const heartbeats = yield* Heartbeats
      const heartbeat = yield* heartbeats.register(15_000, () => at.push(0))
      for (let i = 0; i < 4; i++) {
        yield* TestClock.adjust("14 seconds")
        heartbeat.touch()
      }
      expect(at).toEqual([])
    }).pipe(Effect.scoped, Effect.provide(Heartbeats.Default)))

  it.effect("keeps each follower's own period, a shorter one registered later included, and stops with the scope", () =>
    Effect.gen(function*() {
      const heartbeats = yield* Heartbeats
      const slow: Array<number> = []
      const fast: Array<number> = []
      yield* heartbeats.register(10_000, () => slow.push(0))
      yield* TestClock.adjust("1 second")
      const scope = yield* Scope.make()
      yield* heartbeats.register(2_000, () => fast.push(0)).pipe(Scope.extend(scope))
      yield* TestClock.adjust("3 seconds") // 4 s: fast beat at 3 s
      expect([slow.length, fast.length]).toEqual([0, 1])
      yield* Scope.close(scope, Exit.void)
      yield* TestClock.adjust("7 seconds") // 11 s: slow beat at 10 s, fast no more
      expect([slow.length, fast.length]).toEqual([1, 1])
    }).pipe(Effect.scoped, Effect.provide(Heartbeats.Default)))

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
      yield* HttpServer.serveEffect(sseOf(events, { keepAliveMs: 60_000 }))

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
    }).pipe(Effect.timeout("5 seconds"), Effect.scoped, Effect.provide([NodeHttpServer.layerTest, Heartbeats.Default])))

  it.live("sends keep-alives while the stream is idle", () =>
    Effect.gen(function*() {
      const events = Stream.make(event(1)).pipe(Stream.concat(after(300, event(2))))
      yield* HttpServer.serveEffect(sseOf(events, { keepAliveMs: 50 }))
      const { messages } = yield* openSse(HttpClientRequest.get("/events"))
      const received: ReadonlyArray<SseMessage> = yield* messages.pipe(Stream.runCollect, Effect.map(Chunk.toReadonlyArray))
      const seen = received.map((message) => message._tag === "Event" ? message.id : message._tag === "Comment" ? message.text : "retry")
      // 300 ms of silence with a 50 ms period: several keep-alives, and nothing else, between the events.
      expect(seen[0]).toBe("1")
      expect(seen.at(-1)).toBe("2")
      expect(seen.length).toBeGreaterThanOrEqual(4)
      expect(new Set(seen.slice(1, -1))).toEqual(new Set(["keep-alive"]))
    }).pipe(Effect.scoped, Effect.provide([NodeHttpServer.layerTest, Heartbeats.Default])))
})
