/**
 * The benchmark's client: opens one Server-Sent Events stream and timestamps every frame as its
 * bytes arrive (load tools see responses, not frames). Plain `node:http`, so that its own cost is
 * small and the same for every arm. Times are `process.hrtime` in microseconds: the machine's
 * monotonic clock, so the client processes (`client.ts`), the upstream and the orchestrator all
 * read the same one.
 */
import * as Http from "node:http"
import type * as Net from "node:net"
import * as Zlib from "node:zlib"

export const micros = () => Number(process.hrtime.bigint() / 1000n)

/** How an arm's frames read: which carry a token, which ends the stream. */
export interface Dialect {
  readonly isToken: (event: string, data: string) => boolean
  readonly isEnd: (event: string, data: string) => boolean
}

/** The upstream's own protocol (arms A and B): a `data:` chunk per token, `[DONE]` at the end. */
export const chatCompletions: Dialect = {
  isToken: (_event, data) => data.startsWith("{") && data.includes(`"content":`),
  isEnd: (_event, data) => data === "[DONE]"
}

/** This service's run events (arm C): a `llm.stream.delta` per token, a terminal run event at the end. */
export const runEvents: Dialect = {
  isToken: (event) => event === "llm.stream.delta",
  isEnd: (event) => event === "pipeline.run.done" || event === "pipeline.run.error" || event === "pipeline.run.aborted"
}

export interface StreamResult {
  readonly sentAt: number
  /** When each token frame arrived. */
  readonly tokens: Array<number>
  /** The `data` of the first frame (arm C: `pipeline.run.started`, which names the run). */
  readonly first: string | undefined
  /** The `event` (arm C) or `data` (arms A, B) of the last frame. */
  readonly last: string | undefined
  readonly ended: boolean
  readonly error: string | undefined
  readonly endedAt: number
}

export interface OpenStream {
  readonly result: Promise<StreamResult>
  /** Resolves with the first frame's `data`. */
  readonly first: Promise<string>
  /** Resolves when the first token arrives. */
  readonly firstToken: Promise<void>
  readonly destroy: () => void
}

/**
 * Splits SSE text into frames: feed it the text as it arrives; `onFrame` gets each frame's
 * `event` (empty when it has none) and `data`. Comments and keep-alives are skipped.
 */
export const frameReader = (onFrame: (event: string, data: string) => void) => {
  let buffer = ""
  return (part: string) => {
    buffer += part
    let boundary: number
    while ((boundary = buffer.indexOf("\n\n")) !== -1) {
      const frame = buffer.slice(0, boundary)
      buffer = buffer.slice(boundary + 2)
      let event = ""
      let data = ""
      for (const line of frame.split("\n")) {
        if (line.startsWith("data: ")) data = data === "" ? line.slice(6) : `${data}\n${line.slice(6)}`
        else if (line.startsWith("event: ")) event = line.slice(7)
      }
      if (event === "" && data === "") continue
      onFrame(event, data)
    }
  }
}

/**
 * Opens one stream. With `timeoutMs`, a stream that has not ended by then is closed and fails
 * (a service that never sends its last frame must not hang the benchmark).
 */
export const open = (
  agent: Http.Agent,
  url: URL,
  body: unknown,
  dialect: Dialect,
  timeoutMs?: number,
  headers: Readonly<Record<string, string>> = {}
): OpenStream => {
  const tokens: Array<number> = []
  let first: string | undefined
  let last: string | undefined
  let ended = false
  let resolveFirst!: (data: string) => void
  let resolveFirstToken!: () => void
  const firstFrame = new Promise<string>((resolve) => (resolveFirst = resolve))
  const firstToken = new Promise<void>((resolve) => (resolveFirstToken = resolve))
  // No body: a GET of an event stream (`GET /runs/{id}/events`).
  const payload = body === undefined ? undefined : JSON.stringify(body)
  let request: Http.ClientRequest | undefined
  const sentAt = micros()
  const result = new Promise<StreamResult>((resolve) => {
    let timer: NodeJS.Timeout | undefined
    const done = (error: string | undefined) => {
      clearTimeout(timer)
      resolve({ sentAt, tokens, first, last, ended, error, endedAt: micros() })
    }
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => {
        done(`no end after ${Math.round(timeoutMs / 1000)} s (${tokens.length} tokens, last frame ${last})`)
        request?.destroy()
      }, Math.min(timeoutMs, 2 ** 31 - 1))
    }
    request = Http.request(url, {
      agent,
      method: payload === undefined ? "GET" : "POST",
      headers: payload === undefined
        ? { ...headers, accept: "text/event-stream" }
        : { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(payload), accept: "text/event-stream" }
    }, (response) => {
      response.setEncoding("utf8")
      if (response.statusCode !== 200) {
        let text = ""
        response.on("data", (part: string) => (text += part))
        response.on("end", () => done(`status ${response.statusCode}: ${text.slice(0, 300)}`))
        return
      }
      let at = 0
      const read = frameReader((event, data) => {
        if (first === undefined) {
          first = data
          resolveFirst(data)
        }
        last = event === "" ? data : event
        if (dialect.isToken(event, data)) {
          if (tokens.length === 0) resolveFirstToken()
          tokens.push(at)
        } else if (dialect.isEnd(event, data)) {
          ended = true
        }
      })
      response.on("data", (part: string) => {
        at = micros()
        read(part)
      })
      response.on("end", () => done(ended ? undefined : "the stream ended before its last frame"))
      response.on("error", (error) => done(error.message))
      response.on("close", () => done(ended ? undefined : "the connection closed before the last frame"))
    })
    request.on("error", (error) => done(error.message))
    request.end(payload)
  })
  return {
    result,
    first: firstFrame,
    firstToken,
    destroy: () => request?.destroy()
  }
}

export interface WireResult {
  /** `content-encoding` of the answer (`identity` when it has none). */
  readonly encoding: string
  /** Every byte read from the connection: status line, headers, chunk framing and the (compressed) body. */
  readonly bytes: number
  /** Token frames after decompression. */
  readonly tokens: number
  readonly ended: boolean
  readonly error: string | undefined
}

/**
 * One streamed request on a connection of its own, counting the bytes on the wire before any
 * decompression; with `gzip`, it sends `Accept-Encoding: gzip` (otherwise `identity`).
 */
export const wire = (url: URL, body: unknown, dialect: Dialect, gzip: boolean, timeoutMs: number) =>
  new Promise<WireResult>((resolve) => {
    const payload = JSON.stringify(body)
    let tokens = 0
    let ended = false
    let encoding = "identity"
    let socket: Net.Socket | undefined
    let settled = false
    const done = (error: string | undefined) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve({ encoding, bytes: socket?.bytesRead ?? 0, tokens, ended, error })
    }
    const timer = setTimeout(() => {
      done(`no end after ${Math.round(timeoutMs / 1000)} s`)
      request.destroy()
    }, timeoutMs)
    const request = Http.request(url, {
      agent: false,
      method: "POST",
      headers: {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(payload),
        accept: "text/event-stream",
        "accept-encoding": gzip ? "gzip" : "identity"
      }
    }, (response) => {
      encoding = String(response.headers["content-encoding"] ?? "identity")
      if (response.statusCode !== 200 || (encoding !== "gzip" && encoding !== "identity")) {
        response.resume()
        response.on("end", () => done(`status ${response.statusCode}, content-encoding ${encoding}`))
        return
      }
      const body: NodeJS.ReadableStream = encoding === "gzip"
        ? response.pipe(Zlib.createGunzip({ flush: Zlib.constants.Z_SYNC_FLUSH }))
        : response
      body.setEncoding("utf8")
      const read = frameReader((event, data) => {
        if (dialect.isToken(event, data)) tokens++
        else if (dialect.isEnd(event, data)) ended = true
      })
      body.on("data", (part: string) => read(part))
      body.on("end", () => done(ended ? undefined : "the stream ended before its last frame"))
      body.on("error", (error: Error) => done(error.message))
      response.on("error", (error) => done(error.message))
    })
    request.on("socket", (s) => (socket = s))
    request.on("error", (error) => done(error.message))
    request.end(payload)
  })

/** A JSON request (setting up chats, aborting runs); resolves with the status and the parsed body. */
export const json = (agent: Http.Agent, url: URL, method: "GET" | "POST", body?: unknown, headers: Record<string, string> = {}) =>
  new Promise<{ readonly status: number; readonly body: any }>((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const request = Http.request(url, {
      agent,
      method,
      headers: {
        ...headers,
        ...(payload === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(payload) })
      }
    }, (response) => {
      let text = ""
      response.setEncoding("utf8")
      response.on("data", (part: string) => (text += part))
      response.on("end", () => {
        try {
          resolve({ status: response.statusCode ?? 0, body: text === "" ? undefined : JSON.parse(text) })
        } catch (error) {
          reject(error)
        }
      })
    })
    request.on("error", reject)
    request.end(payload)
  })
