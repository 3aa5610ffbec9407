/**
 * The benchmark's trace backend: accepts OTLP/HTTP exports (any body) as a collector would, counts
 * them, and answers `GET /stats` with `{requests, bytes}`. Plain Node, so it costs the machine
 * little. Run as a child process: `node --import tsx bench/otlp-sink.ts`; prints `listening <port>`.
 */
import * as Http from "node:http"
import type { AddressInfo } from "node:net"

let requests = 0
let bytes = 0

const server = Http.createServer((request, response) => {
  if (request.method === "GET" && request.url === "/stats") {
    response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ requests, bytes }))
    return
  }
  request.on("data", (part: Buffer) => (bytes += part.length))
  request.on("end", () => {
    requests++
    response.writeHead(200, { "content-type": "application/x-protobuf" }).end()
  })
})

server.listen(0, "127.0.0.1", () => console.log(`listening ${(server.address() as AddressInfo).port}`))
