import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { ConfigError, Console, Context, Deferred, Effect, Exit, Fiber, Layer, Logger } from "effect"
import { createServer } from "node:http"
import { ServicesLive } from "./AppLayer.ts"
import { appWith } from "./http/Server.ts"
import { AppConfig } from "./services/AppConfig.ts"
import { DatabaseLive } from "./services/db/Database.ts"
import { TracingLive } from "./services/observability/Tracing.ts"
import { Runner } from "./services/runner/Runner.ts"

// The services first, then the listening socket: a request that arrived before the app is
// served would wait, unanswered, on a socket nobody reads. The app is given the services built
// here, and sees them through its handlers only (`appWith`: a request runs in the server's own,
// small context); the drain below gets them beside it.
const ServerLive = Layer.unwrapEffect(Effect.map(AppConfig, ({ host, port }) =>
  ServicesLive.pipe(
    Layer.flatMap((services) =>
      Layer.merge(
        Layer.succeedContext(services),
        appWith(Layer.succeedContext(services)).pipe(Layer.provide(NodeHttpServer.layer(createServer, { port, host })))
      )
    ),
    Layer.provide(DatabaseLive),
    // Outermost: built first and closed last, so the spans of the shutdown are exported too.
    Layer.provide(TracingLive)
  )))

/**
 * The first SIGTERM/SIGINT. Later ones are ignored until the graceful shutdown is done: `npm start`
 * and a terminal's Ctrl-C often deliver the signal twice, and the second must not cut it short.
 */
const firstSignal = Effect.gen(function*() {
  const received = yield* Deferred.make<NodeJS.Signals>()
  const onSignal = (signal: NodeJS.Signals) => Deferred.unsafeDone(received, Exit.succeed(signal))
  yield* Effect.acquireRelease(
    Effect.sync(() => process.on("SIGTERM", onSignal).on("SIGINT", onSignal)),
    () => Effect.sync(() => process.off("SIGTERM", onSignal).off("SIGINT", onSignal))
  )
  return yield* Deferred.await(received)
})

const main = Effect.gen(function*() {
  const config = yield* AppConfig
  yield* Effect.scoped(Effect.gen(function*() {
    const signal = yield* Effect.fork(firstSignal)
    const services = yield* Layer.build(ServerLive)
    yield* Effect.logInfo(`shutting down on ${yield* Fiber.join(signal)}`)
    // Runs finish (or are aborted) while the HTTP server still answers, with 503 for new turns.
    yield* Context.get(services, Runner).drain
  })).pipe(Logger.withMinimumLogLevel(config.logLevel))
}).pipe(
  Effect.provide(AppConfig.Default),
  // A bad setting stops start-up with one line naming the variable (spec 90).
  Effect.catchIf(ConfigError.isConfigError, (error) =>
    Effect.zipRight(Console.error(`turn-runner: invalid configuration: ${error}`), Effect.sync(() => process.exit(1)))),
  Effect.tapErrorCause((cause) => Effect.logError("the server stopped with an error", cause))
)

// Not `NodeRuntime.runMain`: its signal handlers interrupt the program at once, with no drain.
Effect.runPromiseExit(main).then((exit) => process.exit(Exit.isSuccess(exit) ? 0 : 1))
