/**
 * The benchmark's model: a lean OpenAI-compatible Chat Completions server on loopback, in plain
 * Node so that it costs as little as possible. Each request says how to answer in its body (the
 * service forwards a turn's `settings` to the model as they are):
 *
 * - `max_tokens`: how many tokens (one chunk each);
 * - `bench_ttft_ms`: the delay before the first token;
 * - `bench_tps`: tokens per second (0: all at once);
 * - `bench_id`: a name under which the time the connection closed is kept, for `GET /closed/{id}`.
 *
 * Tokens are due on a fixed schedule from the request's arrival (no drift); a connection that
 * closes early stops its schedule. Times are `process.hrtime` in microseconds, the machine's
 * monotonic clock, which the benchmark's client reads too.
 *
 * Run as a child process: `node --import tsx bench/upstream.ts`; prints `listening <port>`.
 */
import * as Http from "node:http"
import type { AddressInfo } from "node:net"

const micros = () => Number(process.hrtime.bigint() / 1000n)

/** When each named request's connection closed before its answer ended (aborts). */
const closed = new Map<string, number>()
let open = 0

const chunk = (content: string) =>
  `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench","choices":[{"index":0,"delta":{"content":${
    JSON.stringify(content)
  }},"finish_reason":null}]}\n\n`

const finish = (tokens: number) =>
  `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":${tokens},"total_tokens":${
    tokens + 8
  }}}\n\ndata: [DONE]\n\n`

/** A token of the answer: short words, as a tokenizer's pieces are. */
const token = (i: number) => (i === 0 ? "tok" : ` t${i % 100}`)

interface Plan {
  readonly tokens: number
  readonly ttftMs: number
  readonly tps: number
  readonly id: string | undefined
}

const planOf = (body: string): Plan => {
  const request = JSON.parse(body) as Record<string, unknown>
  const number = (value: unknown, fallback: number) => (typeof value === "number" && Number.isFinite(value) ? value : fallback)
  return {
    tokens: number(request.max_tokens, 16),
    ttftMs: number(request.bench_ttft_ms, 0),
    tps: number(request.bench_tps, 0),
    id: typeof request.bench_id === "string" ? request.bench_id : undefined
  }
}

const answer = (plan: Plan, response: Http.ServerResponse, arrivedAt: number) => {
  response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
  let next = 0
  let timer: NodeJS.Timeout | undefined
  let ended = false
  open++
  response.on("close", () => {
    open--
    if (timer !== undefined) clearTimeout(timer)
    if (!ended && plan.id !== undefined) closed.set(plan.id, micros())
  })
  const dueAt = (i: number) => arrivedAt + plan.ttftMs * 1000 + (plan.tps > 0 ? (i * 1_000_000) / plan.tps : 0)
  const send = () => {
    timer = undefined
    const now = micros()
    // Every token that is due leaves now (several, if this process fell behind), in one write.
    let out = ""
    while (next < plan.tokens && dueAt(next) <= now) out += chunk(token(next++))
    if (next === plan.tokens) {
      ended = true
      response.end(out + finish(plan.tokens))
      return
    }
    if (out !== "") response.write(out)
    timer = setTimeout(send, Math.max(0, (dueAt(next) - micros()) / 1000))
  }
  if (plan.ttftMs <= 0 && plan.tps <= 0) send()
  else timer = setTimeout(send, Math.max(0, (dueAt(0) - micros()) / 1000))
}

const server = Http.createServer((request, response) => {
  const arrivedAt = micros()
  if (request.method === "GET" && request.url?.startsWith("/closed/")) {
    const at = closed.get(decodeURIComponent(request.url.slice("/closed/".length)))
    response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ closedAt: at ?? null }))
    return
  }
  if (request.method === "GET" && request.url === "/open") {
    response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ open }))
    return
  }
  if (request.method !== "POST" || !request.url?.endsWith("/chat/completions")) {
    response.writeHead(404).end()
    return
  }
  let body = ""
  request.setEncoding("utf8")
  request.on("data", (part: string) => (body += part))
  request.on("end", () => {
    let plan: Plan
    try {
      plan = planOf(body)
    } catch {
      response.writeHead(400, { "content-type": "application/json" }).end(`{"error":{"message":"the body is not JSON"}}`)
      return
    }
    answer(plan, response, arrivedAt)
  })
})
server.keepAliveTimeout = 60_000
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  console.log(`listening ${(server.address() as AddressInfo).port}`)
})
process.on("SIGTERM", () => process.exit(0))
