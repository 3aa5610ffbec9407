/**
 * Arm B: the cost of any Node hop. A bare passthrough proxy, in plain Node: each request goes to
 * `UPSTREAM_URL` as it came (method, path, headers, body) and the answer comes back piped, with no
 * parsing. A client that goes away closes the upstream request too.
 *
 * Run as a child process: `UPSTREAM_URL=http://127.0.0.1:<port> node --import tsx bench/proxy.ts`;
 * prints `listening <port>`.
 */
import * as Http from "node:http"
import type { AddressInfo } from "node:net"

const upstream = new URL(process.env.UPSTREAM_URL ?? "http://127.0.0.1:8080")
const agent = new Http.Agent({ keepAlive: true, maxSockets: Infinity })

const server = Http.createServer((request, response) => {
  const forward = Http.request({
    agent,
    host: upstream.hostname,
    port: upstream.port,
    method: request.method,
    path: request.url,
    headers: { ...request.headers, host: upstream.host }
  }, (answer) => {
    response.writeHead(answer.statusCode ?? 502, answer.headers)
    answer.pipe(response)
  })
  forward.on("error", () => response.destroy())
  response.on("close", () => {
    if (!response.writableFinished) forward.destroy()
  })
  request.pipe(forward)
})
server.keepAliveTimeout = 60_000
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  console.log(`listening ${(server.address() as AddressInfo).port}`)
})
process.on("SIGTERM", () => process.exit(0))
