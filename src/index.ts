/**
 * The library entry: what another Effect program embeds. The runner and its Layers, the step
 * tags to plug custom `pre`/`post` steps into, the domain, the HTTP contract and a typed client.
 */
import { HttpApiClient } from "@effect/platform"
import { Api } from "./http/Api.ts"

export * from "./domain/ApiErrors.ts"
export * from "./domain/Chat.ts"
export * from "./domain/Generation.ts"
export * from "./domain/Ids.ts"
export * from "./domain/Prompt.ts"
export * from "./domain/Run.ts"
export * from "./domain/RunEvent.ts"

export { AppLive, appWith, BuiltinStepsLive, ServicesLive, servicesWith } from "./AppLayer.ts"
export { Api } from "./http/Api.ts"
export { HttpLive } from "./http/Server.ts"
export { AppConfig, appConfig } from "./services/AppConfig.ts"
export { Chats } from "./services/Chats.ts"
export { ChatsRepo } from "./services/ChatsRepo.ts"
export { Messages } from "./services/Messages.ts"
export { MessagesRepo } from "./services/MessagesRepo.ts"
export { DatabaseLive } from "./services/db/Database.ts"
export * as PgliteClient from "./services/db/PgliteClient.ts"
export { Generations } from "./services/Generations.ts"
export type { GenerateRequest, GenerationEvent, GenerationSink } from "./services/Generations.ts"
export { Journal } from "./services/journal/Journal.ts"
export type { JournalEntry } from "./services/journal/Journal.ts"
export { LiveRuns } from "./services/runner/LiveRuns.ts"
export { GenerationSettings } from "./services/llm/GenerationSettings.ts"
export { ChatModel, fromLanguageModel } from "./services/llm/ChatModel.ts"
export type { ModelSink } from "./services/llm/ChatModel.ts"
export { LanguageModelLive, provide as provideModel } from "./services/llm/LanguageModelLive.ts"
export * as LocalModel from "./services/llm/LocalModel.ts"
export * as OpenAiChatModel from "./services/llm/OpenAiChatModel.ts"
export { PostStep, PostStepLive } from "./services/runner/PostStep.ts"
export { PreStep, PreStepLive } from "./services/runner/PreStep.ts"
export { StepFailed } from "./services/runner/RunContext.ts"
export type { RunContext, StepProgram, StepResult } from "./services/runner/RunContext.ts"
export { RunEvents } from "./services/runner/RunEvents.ts"
export { Runner } from "./services/runner/Runner.ts"
export { Runs } from "./services/runner/Runs.ts"
export { Sweeper, SweeperLoop } from "./services/runner/Sweeper.ts"
export { Instance } from "./services/Instance.ts"
export { Turns } from "./services/runner/Turns.ts"

/** A typed client for a running server, from the same `HttpApi` the server implements. */
export const makeClient = (baseUrl: string) => HttpApiClient.make(Api, { baseUrl })
