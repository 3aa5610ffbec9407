import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Option, Sink, Stream } from "effect"
import { spawnSync } from "node:child_process"
import { descendants, startNpmStart, startServer } from "../support/ServerProcess.ts"
import { parseSse } from "../support/SseClient.ts"

interface Event {
  readonly type: string
  readonly abortReason?: string
}

const postJson = (baseUrl: string, path: string, body: unknown) =>
  Effect.tryPromise(() =>
    fetch(baseUrl + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
      .then(async (response) => ({ status: response.status, body: await response.json() as any })))

/** A streaming turn, read until its first delta (so it is live); the rest of its events, as they come. */
const liveTurn = (baseUrl: string, maxTokens: number) =>
  Effect.gen(function*() {
    const chat = (yield* postJson(baseUrl, "/chats", {})).body
    const response = yield* Effect.tryPromise(() =>
      fetch(`${baseUrl}/chats/${chat.id}/messages`, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "text/event-stream" },
        body: JSON.stringify({ userMessageId: crypto.randomUUID(), content: "Go on", settings: { max_tokens: maxTokens, local: { tokenDelayMs: 20 } } })
      }))
    const events = parseSse(Stream.fromAsyncIterable(response.body!, (error) => new Error(String(error)))).pipe(
      Stream.filterMap((message) => message._tag === "Event" ? Option.some(JSON.parse(message.data) as Event) : Option.none())
    )
    const [head, rest] = yield* Stream.peel(events, Sink.collectAllUntil((event: Event) => event.type === "llm.stream.delta"))
    return { chatId: chat.id as string, seen: Chunk.toArray(head), rest }
  })

describe("graceful shutdown", () => {
  it.live("on SIGTERM (twice): new turns get 503, live runs finish within the grace or end aborted (shutdown), exit 0", () =>
    Effect.gen(function*() {
      const server = yield* startServer({ DATA_DIR: "memory", SHUTDOWN_GRACE_MS: "1500", LOG_LEVEL: "Info" })
      const idleChat = (yield* postJson(server.baseUrl, "/chats", {})).body.id as string
      const short = yield* liveTurn(server.baseUrl, 30) // about 0.6 s: finishes within the grace
      const long = yield* liveTurn(server.baseUrl, 3000) // about 60 s: outlives it
      const signalledAt = performance.now()
      server.child.kill("SIGTERM")
      server.child.kill("SIGTERM")
      // The signal arrives asynchronously: wait for the server to say it is draining.
      for (let i = 0; i < 200 && !server.output().includes("draining"); i++) yield* Effect.sleep("10 millis")
      const refused = yield* postJson(server.baseUrl, `/chats/${idleChat}/messages`, { userMessageId: crypto.randomUUID(), content: "One more" })
      expect(refused).toMatchObject({ status: 503, body: { code: "shutting_down" } })
      const [shortEnd, longEnd] = yield* Effect.all([Stream.runCollect(short.rest), Stream.runCollect(long.rest)], { concurrency: 2 })
      expect(Chunk.toArray(shortEnd).at(-1)).toMatchObject({ type: "pipeline.run.done" })
      expect(Chunk.toArray(longEnd).at(-1)).toMatchObject({ type: "pipeline.run.aborted", abortReason: "shutdown" })
      expect(yield* Effect.promise(() => server.exited)).toBe(0)
      yield* Effect.logInfo(`SIGTERM → exit in ${Math.round(performance.now() - signalledAt)} ms (grace 1500 ms)`)
    }).pipe(Effect.scoped), 90_000)

  it.live("`npm start` hands SIGTERM to the service: a live run ends aborted (shutdown), npm exits 0, no process is left", () =>
    Effect.gen(function*() {
      const server = yield* startNpmStart({ DATA_DIR: "memory", SHUTDOWN_GRACE_MS: "200", LOG_LEVEL: "Info" })
      // One process under npm, the service itself: no shell or launcher in between to lose the signal.
      const tree = descendants(server.child.pid!)
      expect(tree).toHaveLength(1)
      const long = yield* liveTurn(server.baseUrl, 3000)
      server.child.kill("SIGTERM")
      expect(Chunk.toArray(yield* Stream.runCollect(long.rest)).at(-1)).toMatchObject({ type: "pipeline.run.aborted", abortReason: "shutdown" })
      expect(yield* Effect.promise(() => server.exited)).toBe(0)
      expect(server.output()).toContain("shutting down on SIGTERM")
      expect(tree.filter((pid) => spawnSync("kill", ["-0", String(pid)]).status === 0)).toEqual([])
    }).pipe(Effect.scoped), 120_000)
})
