import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import type { HttpServerResponse } from "@effect/platform/HttpServerResponse"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import { Effect } from "effect"
import type { IncomingMessage } from "node:http"
import { PayloadTooLarge, ValidationError } from "../domain/ApiErrors.ts"

/** Request bodies larger than this are refused with 413 before anything is parsed (spec 70). */
export const maxBodyBytes = 1024 * 1024

const tooLarge = new PayloadTooLarge({ message: `the request body is larger than ${maxBodyBytes} bytes` })

const hasBody = (request: HttpServerRequest.HttpServerRequest) =>
  Number(request.headers["content-length"] ?? 0) > 0 || request.headers["transfer-encoding"] !== undefined

const utf8 = new TextDecoder("utf-8", { fatal: true })

/**
 * Reads the body up to the limit. Past it, the rest is drained unread rather than the socket
 * destroyed, so the client still reads the 413.
 */
const readBody = (incoming: IncomingMessage) =>
  Effect.async<Buffer | undefined, ValidationError>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const cleanup = () => {
      incoming.off("data", onData).off("end", onEnd).off("error", onError)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size <= maxBodyBytes) return void chunks.push(chunk)
      cleanup()
      incoming.resume()
      resume(Effect.succeed(undefined))
    }
    const onEnd = () => {
      cleanup()
      resume(Effect.succeed(Buffer.concat(chunks)))
    }
    const onError = () => {
      cleanup()
      resume(Effect.fail(new ValidationError({ message: "the request body could not be read" })))
    }
    incoming.on("data", onData).on("end", onEnd).on("error", onError)
    return Effect.sync(cleanup)
  })

/**
 * The body rules of spec 70, before any route sees the request: JSON only, at most 1 MiB,
 * valid UTF-8, no NUL characters (Postgres cannot store them). The routes then read the body
 * this checked, already decoded.
 */
export const checkedBody = <E, R>(app: Effect.Effect<HttpServerResponse, E, R>) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    Effect.gen(function*() {
      if (Number(request.headers["content-length"] ?? 0) > maxBodyBytes) return yield* tooLarge
      if (!hasBody(request)) return yield* app
      const contentType = request.headers["content-type"]?.toLowerCase() ?? "application/json"
      if (!contentType.includes("application/json")) {
        return yield* new ValidationError({ message: `the request body must be application/json, not ${contentType.split(";")[0]}` })
      }
      const bytes = yield* readBody(NodeHttpServerRequest.toIncomingMessage(request))
      if (bytes === undefined) return yield* tooLarge
      let text: string
      try {
        text = utf8.decode(bytes)
      } catch {
        return yield* new ValidationError({ message: "the request body is not valid UTF-8" })
      }
      // A JSON `\u0000` escape, or a raw NUL byte: text and jsonb columns cannot hold either.
      if (text.includes("\u0000") || /(?<!\\)(?:\\\\)*\\u0000/.test(text)) {
        return yield* new ValidationError({ message: "the request body must not contain NUL characters" })
      }
      const json = Effect.try({
        try: (): unknown => (text === "" ? null : JSON.parse(text)),
        catch: () => new ValidationError({ message: "the request body is not valid JSON" })
      })
      // A copy of its own: `bytes` may be a slice of Node's 8 KiB buffer pool, which a request
      // open for a whole stream would otherwise keep.
      const body = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)
      const checked: HttpServerRequest.HttpServerRequest = Object.create(request, {
        text: { get: () => Effect.succeed(text) },
        json: { get: () => json },
        arrayBuffer: { get: () => Effect.succeed(body) }
      })
      return yield* Effect.provideService(app, HttpServerRequest.HttpServerRequest, checked)
    }))
