import { Chunk, Deferred, Effect, Fiber, Stream } from "effect"
import type { Scope } from "effect"
import { parseSse } from "./SseClient.ts"
import type { SseFrame } from "./SseClient.ts"

/**
 * Talking to server processes over real HTTP (`fetch`), for the tests of several instances on one
 * database (spec 50): JSON requests, and event streams read by a real SSE parser in the background.
 */

export interface Answer {
  readonly status: number
  readonly body: any
}

export const request = (baseUrl: string, method: string, path: string, body?: unknown): Effect.Effect<Answer, Error> =>
  Effect.tryPromise({
    try: async () => {
      const response = await fetch(baseUrl + path, {
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) })
      })
      const text = await response.text()
      return { status: response.status, body: text === "" ? undefined : JSON.parse(text) }
    },
    catch: (error) => new Error(`${method} ${path}: ${String(error)}`)
  })

export const post = (baseUrl: string, path: string, body?: unknown) => request(baseUrl, "POST", path, body ?? {})
export const get = (baseUrl: string, path: string) => request(baseUrl, "GET", path)

export interface Followed {
  /** Completes with the first event of `type`. */
  readonly first: (type: string) => Effect.Effect<SseFrame & { readonly json: any }>
  /** Every event, once the stream ended. */
  readonly all: Effect.Effect<ReadonlyArray<SseFrame & { readonly json: any }>, Error>
  /** Drops the connection, as a closed tab does. */
  readonly disconnect: Effect.Effect<void>
}

/**
 * Opens an event stream (`GET`, or a turn request in streaming mode when `body` is given) and reads
 * it in the background until it ends or the scope closes.
 */
export const follow = (baseUrl: string, path: string, body?: unknown): Effect.Effect<Followed, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const controller = new AbortController()
    yield* Effect.addFinalizer(() => Effect.sync(() => controller.abort()))
    const response = yield* Effect.tryPromise({
      try: () =>
        fetch(baseUrl + path, {
          method: body === undefined ? "GET" : "POST",
          headers: { accept: "text/event-stream", ...(body === undefined ? {} : { "content-type": "application/json" }) },
          signal: controller.signal,
          ...(body === undefined ? {} : { body: JSON.stringify(body) })
        }),
      catch: (error) => new Error(`${path}: ${String(error)}`)
    })
    if (response.status !== 200) return yield* Effect.fail(new Error(`${path}: ${response.status} ${await_(response)}`))
    const seen: Array<SseFrame & { readonly json: any }> = []
    const waiters: Array<{ readonly type: string; readonly found: Deferred.Deferred<SseFrame & { readonly json: any }> }> = []
    const bytes = Stream.fromAsyncIterable(response.body!, (error) => new Error(String(error)))
    const reader = yield* parseSse(bytes).pipe(
      Stream.filter((message): message is SseFrame => message._tag === "Event"),
      Stream.map((frame) => ({ ...frame, json: JSON.parse(frame.data) })),
      Stream.tap((frame) =>
        Effect.sync(() => {
          seen.push(frame)
          for (const waiter of waiters) if (waiter.type === frame.event) Deferred.unsafeDone(waiter.found, Effect.succeed(frame))
        })
      ),
      Stream.runCollect,
      Effect.map(Chunk.toReadonlyArray),
      Effect.timeout("60 seconds"),
      Effect.forkScoped
    )
    return {
      first: (type) =>
        Effect.suspend(() => {
          const found = seen.find((frame) => frame.event === type)
          if (found !== undefined) return Effect.succeed(found)
          const deferred = Deferred.unsafeMake<SseFrame & { readonly json: any }>(reader.id())
          waiters.push({ type, found: deferred })
          return Deferred.await(deferred)
        }),
      all: Effect.mapError(Fiber.join(reader), (error) => new Error(String(error))),
      disconnect: Effect.sync(() => controller.abort())
    }
  })

const await_ = (response: Response) => response.statusText

/** Waits until `condition` holds, reading every 20 ms, for at most `seconds`. */
export const eventually = <A, E, R>(read: Effect.Effect<A, E, R>, condition: (value: A) => boolean, seconds = 20) =>
  Effect.gen(function*() {
    const deadline = Date.now() + seconds * 1000
    while (true) {
      const value = yield* read
      if (condition(value)) return value
      if (Date.now() > deadline) return yield* Effect.dieMessage(`condition not met in ${seconds} s: ${JSON.stringify(value)}`)
      yield* Effect.sleep("20 millis")
    }
  })
