import { Effect } from "effect"
import type { Scope } from "effect"
import { createConnection, createServer, type Socket } from "node:net"

/**
 * A TCP proxy on loopback in front of a real server, to make that server unreachable and then
 * reachable again without stopping it: `cut` drops every connection and refuses new ones.
 */
export const tcpProxy = (target: { readonly host: string; readonly port: number }) =>
  Effect.gen(function*() {
    const sockets = new Set<Socket>()
    let open = true
    const server = createServer((client) => {
      if (!open) return void client.destroy()
      const upstream = createConnection(target)
      for (const socket of [client, upstream]) {
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
        socket.on("error", () => {
          client.destroy()
          upstream.destroy()
        })
      }
      client.pipe(upstream).pipe(client)
    })
    const port = yield* Effect.acquireRelease(
      Effect.async<number>((resume) => {
        server.listen(0, "127.0.0.1", () => {
          const address = server.address()
          resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
        })
      }),
      () => Effect.async<void>((resume) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resume(Effect.void))
      })
    )
    return {
      port,
      cut: Effect.sync(() => {
        open = false
        for (const socket of sockets) socket.destroy()
      }),
      restore: Effect.sync(() => {
        open = true
      })
    }
  }) satisfies Effect.Effect<unknown, never, Scope.Scope>
