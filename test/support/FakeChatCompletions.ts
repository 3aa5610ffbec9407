import { Deferred, Effect, Exit, FiberId } from "effect"
import type { Scope } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"

/**
 * A fake OpenAI-compatible Chat Completions server on loopback (real HTTP, random port), so the
 * `openai` provider is tested against the wire protocol rather than against its own schema.
 */

export interface ReceivedRequest {
  readonly method: string
  readonly url: string
  readonly headers: Http.IncomingHttpHeaders
  /** The parsed JSON body, or the raw text when it is not JSON. */
  readonly body: unknown
  /** When the request arrived (`Date.now()`). */
  readonly receivedAt: number
}

/** What the fake answers to a request. */
export type Script =
  | {
    readonly _tag: "Stream"
    /** Each becomes one `data:` event; a string is sent verbatim (for malformed payloads). */
    readonly events: ReadonlyArray<unknown>
    readonly delayMs: number
    /** Go silent after this many events and never end the response. */
    readonly stallAfter: number | undefined
    /** Destroy the connection after this many events. */
    readonly dropAfter: number | undefined
  }
  | { readonly _tag: "Status"; readonly status: number; readonly body: unknown }
  /** Any status, headers and body, sent verbatim. */
  | { readonly _tag: "Raw"; readonly status: number; readonly headers: Readonly<Record<string, string>>; readonly body: string }
  /** Destroy the connection before any response. */
  | { readonly _tag: "HangUp" }

export const stream = (
  events: ReadonlyArray<unknown>,
  options: {
    readonly delayMs?: number
    readonly stallAfter?: number
    readonly dropAfter?: number
    /** End with `data: [DONE]` (the default) or just end the response. */
    readonly done?: boolean
  } = {}
): Script => ({
  _tag: "Stream",
  events: options.done === false ? events : [...events, "[DONE]"],
  delayMs: options.delayMs ?? 0,
  stallAfter: options.stallAfter,
  dropAfter: options.dropAfter
})

export const status = (status: number, body: unknown): Script => ({ _tag: "Status", status, body })

export const hangUp: Script = { _tag: "HangUp" }

export const raw = (status: number, headers: Readonly<Record<string, string>>, body: string): Script => ({ _tag: "Raw", status, headers, body })

export interface Usage {
  readonly prompt_tokens: number
  readonly completion_tokens: number
  readonly total_tokens: number
}

/**
 * The chunks a server sends for `texts`: a role chunk, one chunk per text, a finish chunk, and
 * the usage either on that last choice chunk or (OpenAI's `include_usage`) in a `choices: []` chunk.
 */
export const textChunks = (
  texts: ReadonlyArray<string>,
  options: { readonly finishReason?: string; readonly usage?: Usage; readonly usageIn?: "last-choice" | "separate" } = {}
): Array<unknown> => {
  const base = { id: "chatcmpl-fake", object: "chat.completion.chunk", created: 1_700_000_000, model: "fake-model" }
  const choice = (delta: object, finish_reason: string | null) => ({ ...base, choices: [{ index: 0, delta, finish_reason }] })
  const last = choice({}, options.finishReason ?? "stop")
  const usageIn = options.usageIn ?? "last-choice"
  return [
    choice({ role: "assistant", content: "" }, null),
    ...texts.map((content) => choice({ content }, null)),
    options.usage !== undefined && usageIn === "last-choice" ? { ...last, usage: options.usage } : last,
    ...(options.usage !== undefined && usageIn === "separate" ? [{ ...base, choices: [], usage: options.usage }] : [])
  ]
}

export interface FakeChatCompletions {
  /** Ends in `/v1`, like a provider's base URL. */
  readonly baseUrl: string
  readonly requests: Effect.Effect<ReadonlyArray<ReceivedRequest>>
  /** From now on, the nth request gets the nth script (the last one repeats); requests are forgotten. */
  readonly answer: (...scripts: ReadonlyArray<Script>) => Effect.Effect<void>
  /** Completes once `count` requests have arrived (since the last `answer`). */
  readonly received: (count: number) => Effect.Effect<void>
  readonly openSockets: Effect.Effect<number>
  /** Completed when the last open client socket closes: the observable effect of an aborted request. */
  readonly socketClosed: Deferred.Deferred<void>
}

const parse = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

const listen = (server: Http.Server) =>
  Effect.async<number>((resume) => {
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as AddressInfo).port)))
  })

const close = (server: Http.Server) =>
  Effect.async<void>((resume) => {
    server.closeAllConnections()
    server.close(() => resume(Effect.void))
  })

/**
 * Starts the fake for the current scope; closing the scope stops it and drops its sockets. The
 * nth request gets the nth script, the last one repeating.
 */
export const start = (...initial: ReadonlyArray<Script>): Effect.Effect<FakeChatCompletions, never, Scope.Scope> =>
  Effect.gen(function*() {
    const socketClosed = yield* Deferred.make<void>()
    let scripts = initial
    let received: Array<ReceivedRequest> = []
    let waiters: Array<{ readonly count: number; readonly arrived: Deferred.Deferred<void> }> = []
    const timers = new Set<NodeJS.Timeout>()
    let openSockets = 0

    const answer = (res: Http.ServerResponse, script: Script) => {
      switch (script._tag) {
        case "HangUp":
          return res.socket?.destroy()
        case "Status":
          res.writeHead(script.status, { "content-type": "application/json" })
          return res.end(JSON.stringify(script.body))
        case "Raw":
          res.writeHead(script.status, script.headers)
          return res.end(script.body)
        case "Stream": {
          res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
          res.flushHeaders()
          const send = (i: number) => {
            if (i === script.stallAfter) return // silent from here on, the response stays open
            if (i === script.dropAfter) return res.socket?.destroy()
            const event = script.events[i]
            if (i >= script.events.length) return res.end()
            res.write(`data: ${typeof event === "string" ? event : JSON.stringify(event)}\n\n`)
            const timer = setTimeout(() => {
              timers.delete(timer)
              send(i + 1)
            }, script.delayMs)
            timers.add(timer)
          }
          return send(0)
        }
      }
    }

    const server = Http.createServer((req, res) => {
      let text = ""
      req.setEncoding("utf8")
      req.on("data", (chunk: string) => (text += chunk))
      req.on("end", () => {
        const index = received.length
        received.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: parse(text), receivedAt: Date.now() })
        for (const waiter of waiters) if (waiter.count <= received.length) Deferred.unsafeDone(waiter.arrived, Exit.void)
        waiters = waiters.filter((waiter) => waiter.count > received.length)
        answer(res, scripts[Math.min(index, scripts.length - 1)]!)
      })
    })
    server.on("connection", (socket) => {
      openSockets++
      socket.on("close", () => {
        openSockets--
        if (openSockets === 0) Deferred.unsafeDone(socketClosed, Exit.void)
      })
    })

    const port = yield* Effect.acquireRelease(listen(server), () =>
      Effect.suspend(() => {
        timers.forEach(clearTimeout)
        return close(server)
      }))

    return {
      baseUrl: `http://127.0.0.1:${port}/v1`,
      requests: Effect.sync(() => [...received]),
      answer: (...next) =>
        Effect.sync(() => {
          scripts = next
          received = []
        }),
      received: (count) =>
        Effect.suspend(() => {
          if (received.length >= count) return Effect.void
          const arrived = Deferred.unsafeMake<void>(FiberId.none)
          waiters.push({ count, arrived })
          return Deferred.await(arrived)
        }),
      openSockets: Effect.sync(() => openSockets),
      socketClosed
    }
  })

/** A loopback URL on which nothing listens: a port that was just bound and released. */
export const closedPortUrl: Effect.Effect<string> = Effect.gen(function*() {
  const server = Http.createServer()
  const port = yield* listen(server)
  yield* close(server)
  return `http://127.0.0.1:${port}/v1`
})
