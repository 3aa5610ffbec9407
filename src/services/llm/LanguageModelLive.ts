import type { LanguageModel } from "@effect/ai"
import { Effect, Layer } from "effect"
import { AppConfig } from "../AppConfig.ts"
import { ChatModel, fromLanguageModel } from "./ChatModel.ts"
import * as LocalModel from "./LocalModel.ts"
import * as OpenAiChatModel from "./OpenAiChatModel.ts"

/** Any `@effect/ai` model Layer as the generation's model, recorded as `provider` and `model`. */
export const provide = (
  info: { readonly provider: string; readonly model: string },
  model: Layer.Layer<LanguageModel.LanguageModel>
): Layer.Layer<ChatModel> => fromLanguageModel(info).pipe(Layer.provide(model))

/** The model `LLM_PROVIDER` names. */
export const LanguageModelLive: Layer.Layer<ChatModel, never, AppConfig> = Layer.unwrapEffect(Effect.map(AppConfig, ({ llm }) => {
  switch (llm.provider) {
    case "local":
      return provide({ provider: "local", model: llm.model }, LocalModel.layer({ model: llm.model }))
    case "openai":
      return OpenAiChatModel.layer({ baseUrl: llm.baseUrl, apiKey: llm.apiKey, model: llm.model, maxRetries: llm.maxRetries })
  }
}))

export { ChatModel }
