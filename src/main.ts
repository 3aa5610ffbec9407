import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { ConfigError, Console, Effect, Layer, Logger } from "effect"
import { createServer } from "node:http"
import { AppLive } from "./AppLayer.ts"
import { AppConfig } from "./services/AppConfig.ts"
import { DatabaseLive } from "./services/db/Database.ts"

const ServerLive = Layer.unwrapEffect(Effect.map(AppConfig, ({ host, port }) =>
  AppLive.pipe(
    Layer.provide(NodeHttpServer.layer(createServer, { port, host })),
    Layer.provide(DatabaseLive)
  )))

const main = Effect.gen(function*() {
  const config = yield* AppConfig
  return yield* Layer.launch(ServerLive).pipe(Logger.withMinimumLogLevel(config.logLevel))
}).pipe(
  Effect.provide(AppConfig.Default),
  // A bad setting stops start-up with one line naming the variable (spec 90).
  Effect.catchIf(ConfigError.isConfigError, (error) =>
    Console.error(`turn-runner: invalid configuration: ${error}`).pipe(
      Effect.zipRight(Effect.sync(() => process.exit(1)))
    ))
)

NodeRuntime.runMain(main, { disablePrettyLogger: true })
