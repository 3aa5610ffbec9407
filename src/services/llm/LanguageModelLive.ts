import { LanguageModel } from "@effect/ai"
import { NodeHttpClient } from "@effect/platform-node"
import { Context, Effect, Layer } from "effect"
import { AppConfig } from "../AppConfig.ts"
import * as LocalModel from "./LocalModel.ts"
import * as OpenAiChatModel from "./OpenAiChatModel.ts"

/** Which provider and default model stand behind `LanguageModel`, as recorded on each generation. */
export class ModelInfo extends Context.Tag("turn-runner/ModelInfo")<ModelInfo, {
  readonly provider: string
  readonly model: string
}>() {}

/** A model Layer with its `ModelInfo`: how a provider (built-in or an embedder's own) is plugged in. */
export const provide = (
  info: Context.Tag.Service<ModelInfo>,
  model: Layer.Layer<LanguageModel.LanguageModel>
): Layer.Layer<LanguageModel.LanguageModel | ModelInfo> => Layer.merge(model, Layer.succeed(ModelInfo, info))

/** The model `LLM_PROVIDER` names. */
export const LanguageModelLive = Layer.unwrapEffect(Effect.map(AppConfig, ({ llm }) => {
  switch (llm.provider) {
    case "local":
      return provide({ provider: "local", model: llm.model }, LocalModel.layer({ model: llm.model }))
    case "openai":
      return provide(
        { provider: "openai", model: llm.model },
        OpenAiChatModel.layer({ baseUrl: llm.baseUrl, apiKey: llm.apiKey, model: llm.model }).pipe(
          Layer.provide(NodeHttpClient.layerUndici)
        )
      )
  }
}))
