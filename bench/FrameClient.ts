/**
 * The benchmark's client: opens one Server-Sent Events stream and timestamps every frame as its
 * bytes arrive (load tools see responses, not frames). Plain `node:http`, so that its own cost is
 * small and the same for every arm. Times are `process.hrtime` in microseconds.
 */
import * as Http from "node:http"

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

export const open = (agent: Http.Agent, url: URL, body: unknown, dialect: Dialect): OpenStream => {
  const tokens: Array<number> = []
  let first: string | undefined
  let last: string | undefined
  let ended = false
  let resolveFirst!: (data: string) => void
  let resolveFirstToken!: () => void
  const firstFrame = new Promise<string>((resolve) => (resolveFirst = resolve))
  const firstToken = new Promise<void>((resolve) => (resolveFirstToken = resolve))
  const payload = JSON.stringify(body)
  let request: Http.ClientRequest | undefined
  const sentAt = micros()
  const result = new Promise<StreamResult>((resolve) => {
    const done = (error: string | undefined) =>
      resolve({ sentAt, tokens, first, last, ended, error, endedAt: micros() })
    request = Http.request(url, {
      agent,
      method: "POST",
      headers: {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(payload),
        accept: "text/event-stream"
      }
    }, (response) => {
      response.setEncoding("utf8")
      if (response.statusCode !== 200) {
        let text = ""
        response.on("data", (part: string) => (text += part))
        response.on("end", () => done(`status ${response.statusCode}: ${text.slice(0, 300)}`))
        return
      }
      let buffer = ""
      response.on("data", (part: string) => {
        const at = micros()
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
        }
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

/** A JSON request (setting up chats, aborting runs); resolves with the status and the parsed body. */
export const json = (agent: Http.Agent, url: URL, method: "GET" | "POST", body?: unknown) =>
  new Promise<{ readonly status: number; readonly body: any }>((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const request = Http.request(url, {
      agent,
      method,
      headers: payload === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }
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
