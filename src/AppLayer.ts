import { Layer } from "effect"
import { HttpLive } from "./http/Server.ts"
import { Chats } from "./services/Chats.ts"
import { ChatsRepo } from "./services/ChatsRepo.ts"
import { PostStep, PostStepLive } from "./services/runner/PostStep.ts"
import { PreStep, PreStepLive } from "./services/runner/PreStep.ts"
import { Runner } from "./services/runner/Runner.ts"
import { Runs } from "./services/runner/Runs.ts"
import { Turns } from "./services/runner/Turns.ts"
import { RunsRepo } from "./services/RunsRepo.ts"
import { Generations } from "./services/Generations.ts"
import { LanguageModelLive } from "./services/llm/LanguageModelLive.ts"

/** Every service of the product over the configured model; needs `AppConfig` and a `SqlClient`. */
/** The built-in steps; a library user provides their own `PreStep` / `PostStep` Layers instead. */
export const BuiltinStepsLive = Layer.merge(PreStepLive, PostStepLive).pipe(Layer.provide(ChatsRepo.Default))

/** Every service of the product over the given steps; needs `AppConfig`, a `SqlClient`, a model. */
export const servicesWith = <E, R>(steps: Layer.Layer<PreStep | PostStep, E, R>) => {
  const runner = Runner.Default.pipe(Layer.provide(steps))
  return Layer.mergeAll(Chats.Default, Turns.Default, Runs.Default).pipe(
    Layer.provideMerge(runner),
    Layer.provide(Layer.mergeAll(ChatsRepo.Default, RunsRepo.Default, Generations.Default))
  )
}

/** Every service of the product over the configured model; needs `AppConfig` and a `SqlClient`. */
export const ServicesLive = servicesWith(BuiltinStepsLive).pipe(Layer.provide(LanguageModelLive))

/** The HTTP API over the given services. */
export const appWith = <E, R>(services: Layer.Layer<Chats | Turns | Runs | Runner, E, R>) =>
  HttpLive.pipe(Layer.provide(services))

/** The HTTP API over the services; needs an `HttpServer`, `AppConfig` and a `SqlClient`. */
export const AppLive = appWith(ServicesLive)
