import { Layer } from "effect"
import { Chats } from "./services/Chats.ts"
import { NotificationsLive } from "./services/cluster/Notifications.ts"
import { Relay } from "./services/cluster/Relay.ts"
import { ChatsRepo } from "./services/ChatsRepo.ts"
import { Messages } from "./services/Messages.ts"
import { MessagesRepo } from "./services/MessagesRepo.ts"
import { Generations } from "./services/Generations.ts"
import { Instance } from "./services/Instance.ts"
import { LanguageModelLive } from "./services/llm/LanguageModelLive.ts"
import { PostStep, PostStepLive } from "./services/runner/PostStep.ts"
import { PreStep, PreStepLive } from "./services/runner/PreStep.ts"
import { BatchRepo } from "./services/BatchRepo.ts"
import { Journal } from "./services/journal/Journal.ts"
import { LiveRuns } from "./services/runner/LiveRuns.ts"
import { RunEvents } from "./services/runner/RunEvents.ts"
import { Runner } from "./services/runner/Runner.ts"
import { Runs } from "./services/runner/Runs.ts"
import { Access } from "./services/access/Access.ts"
import { Limits } from "./services/access/Limits.ts"
import { Ownership } from "./services/access/Ownership.ts"
import { Sweeper, SweeperLoop } from "./services/runner/Sweeper.ts"
import { Turns } from "./services/runner/Turns.ts"
import { TurnStops } from "./services/runner/TurnStops.ts"
import { RunsRepo } from "./services/RunsRepo.ts"
import { WriteBehind } from "./services/WriteBehind.ts"

/** The built-in steps; a library user provides their own `PreStep` / `PostStep` Layers instead. */
export const BuiltinStepsLive = Layer.merge(PreStepLive, PostStepLive)

/**
 * Every service of the product over the given steps, with the lease renewal and the sweeper
 * running; needs `AppConfig`, a `SqlClient` and a model.
 */
export const servicesWith = <E, R>(steps: Layer.Layer<PreStep | PostStep, E, R>) => {
  const base = Layer.mergeAll(
    ChatsRepo.Default,
    MessagesRepo.Default,
    RunsRepo.Default,
    Journal.Default,
    BatchRepo.Default,
    WriteBehind.Default,
    Generations.Default,
    Instance.Default,
    LiveRuns.Default,
    NotificationsLive,
    Limits.Default,
    Access.Default,
    Ownership.Default
  )
  const core = Relay.Default.pipe(Layer.provideMerge(base))
  const runner = Runner.Default.pipe(Layer.provide(steps))
  const sweeping = SweeperLoop.pipe(Layer.provideMerge(Sweeper.Default))
  return Layer.mergeAll(Chats.Default, Messages.Default, Turns.Default, TurnStops.Default, sweeping).pipe(
    Layer.provideMerge(Runs.Default),
    Layer.provideMerge(runner),
    Layer.provideMerge(RunEvents.Default),
    Layer.provideMerge(core)
  )
}

/** Every service of the product over the configured model; needs `AppConfig` and a `SqlClient`. */
export const ServicesLive = servicesWith(BuiltinStepsLive).pipe(Layer.provide(LanguageModelLive))
