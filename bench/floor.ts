/**
 * Arm F: the floor of this stack, what any implementation of the service on it costs before it
 * keeps anything. It speaks arm B's protocol (each request goes to `UPSTREAM_URL` as it came) but
 * is built as the service is: an `@effect/platform-node` HTTP server (router, request logger), a
 * fiber per run forked with an empty context, the three spans spec 95 keeps open while a turn
 * streams (`turn.run`, `turn.step llm`, the model call's, made by hand and ended by one finalizer:
 * the fewest frames they can cost), and each upstream chunk parsed and framed as one SSE event
 * with the envelope's size, pushed into the body the platform pipes to the client. Nothing is
 * written anywhere: no database, no journal, no event log for later readers.
 *
 * Run as a child process: `UPSTREAM_URL=http://127.0.0.1:<port> node --import tsx bench/floor.ts`;
 * prints `listening <port>`.
 */
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Context, Effect, FiberRef, Layer, Runtime } from "effect"
import * as Http from "node:http"
import { Readable } from "node:stream"

const upstream = new URL(process.env.UPSTREAM_URL ?? "http://127.0.0.1:8080")
const agent = new Http.Agent({ keepAlive: true, maxSockets: Infinity })

/** An envelope of the service's size (its eleven ids and names), without its closing brace. */
const envelope = JSON.stringify({
  chatId: crypto.randomUUID(),
  runId: crypto.randomUUID(),
  pipelineId: crypto.randomUUID(),
  pipelineName: "chat",
  trigger: "user_message",
  userMessageId: crypto.randomUUID(),
  assistantMessageId: crypto.randomUUID(),
  assistantVariantId: crypto.randomUUID(),
  generationId: crypto.randomUUID(),
  stepRunId: crypto.randomUUID(),
  stepType: "llm"
}).slice(0, -1)

/** The upstream's answer, each chunk's content framed into `body`; resumes when the upstream ends. */
const stream = (payload: string, body: Readable) =>
  Effect.async<void>((resume) => {
    let seq = 0
    let rest = ""
    const forward = Http.request({
      agent,
      host: upstream.hostname,
      port: upstream.port,
      method: "POST",
      path: "/v1/chat/completions",
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }
    }, (answer) => {
      answer.setEncoding("utf8")
      answer.on("data", (text: string) => {
        const lines = (rest + text).split("\n")
        rest = lines.pop()!
        let frames = ""
        for (const line of lines) {
          if (!line.startsWith("data: ") || line === "data: [DONE]") continue
          const content = JSON.parse(line.slice(6)).choices?.[0]?.delta?.content
          if (typeof content !== "string") continue
          seq++
          frames += `id: ${seq}\nevent: llm.stream.delta\ndata: ${envelope},"seq":${seq},"at":${Date.now()},"content":${
            JSON.stringify(content)
          }}\n\n`
        }
        if (frames !== "") body.push(frames)
      })
      answer.on("end", () => {
        body.push("data: [DONE]\n\n")
        body.push(null)
        resume(Effect.void)
      })
    })
    forward.on("error", () => resume(Effect.void))
    forward.end(payload)
    return Effect.sync(() => forward.destroy())
  })

/** A run: its spans made, the answer streamed, one finalizer ending the spans and the body. */
const run = (payload: string, body: Readable) =>
  Effect.gen(function*() {
    const run = yield* Effect.makeSpan("turn.run", {
      attributes: { "turn.run_id": crypto.randomUUID(), "turn.chat_id": crypto.randomUUID(), "turn.trigger": "user_message" }
    })
    const step = yield* Effect.makeSpan("turn.step llm", {
      parent: run,
      attributes: { "turn.step.type": "llm", "turn.step_run_id": crypto.randomUUID() }
    })
    const call = yield* Effect.makeSpan("chat bench", {
      parent: step,
      kind: "client",
      attributes: {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "bench",
        "gen_ai.conversation.id": crypto.randomUUID(),
        "server.address": upstream.hostname,
        "server.port": Number(upstream.port)
      }
    })
    return yield* stream(payload, body).pipe(Effect.onExit((exit) =>
      Effect.sync(() => {
        if (!body.destroyed) body.push(null)
        for (const span of [call, step, run]) span.end(process.hrtime.bigint(), exit)
      })
    ))
  })

const app = Effect.gen(function*() {
  // As the service forks its runs: with the server's fiber refs and an empty context.
  const runFork = Runtime.runFork(yield* Effect.locally(Effect.runtime<never>(), FiberRef.currentContext, Context.empty()))
  return HttpRouter.empty.pipe(
    HttpRouter.post(
      "/v1/chat/completions",
      Effect.gen(function*() {
        const payload = yield* (yield* HttpServerRequest.HttpServerRequest).text
        const body = new Readable({ read() {} })
        const fiber = runFork(run(payload, body))
        // A client that goes away aborts its run.
        body.on("close", () => fiber.unsafeInterruptAsFork(fiber.id()))
        // As the service's `Runner.launch` does: the run's request to the upstream leaves first.
        yield* Effect.async<void>((resume) => void process.nextTick(() => resume(Effect.void)))
        return HttpServerResponse.raw(body, { contentType: "text/event-stream", headers: { "cache-control": "no-cache" } })
      }).pipe(Effect.orDie)
    )
  )
})

Layer.unwrapEffect(Effect.map(app, (router) => HttpServer.serve(router, HttpMiddleware.logger))).pipe(
  Layer.provideMerge(NodeHttpServer.layer(() => Http.createServer({ keepAliveTimeout: 60_000 }), {
    port: Number(process.env.PORT ?? 0),
    host: "127.0.0.1"
  })),
  Layer.tap((context) =>
    Effect.sync(() => {
      const address = Context.get(context, HttpServer.HttpServer).address
      console.log(`listening ${address._tag === "TcpAddress" ? address.port : 0}`)
    })
  ),
  Layer.launch,
  NodeRuntime.runMain
)
process.on("SIGTERM", () => process.exit(0))
