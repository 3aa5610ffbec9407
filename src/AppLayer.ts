import { Layer } from "effect"
import { HttpLive } from "./http/Server.ts"
import { Chats } from "./services/Chats.ts"
import { Generations } from "./services/Generations.ts"
import { LanguageModelLive } from "./services/llm/LanguageModelLive.ts"

/** Every service of the product over the configured model; needs `AppConfig` and a `SqlClient`. */
export const ServicesLive = Layer.mergeAll(Chats.Default, Generations.Default).pipe(
  Layer.provideMerge(LanguageModelLive)
)

/** The HTTP API over the services; needs an `HttpServer`, `AppConfig` and a `SqlClient`. */
export const AppLive = HttpLive.pipe(Layer.provide(ServicesLive))
