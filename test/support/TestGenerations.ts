import { SqlClient } from "@effect/sql"
import { Effect, Layer, Redacted } from "effect"
import type { AppConfigShape } from "../../src/services/AppConfig.ts"
import { BatchRepo } from "../../src/services/BatchRepo.ts"
import { ChatsRepo } from "../../src/services/ChatsRepo.ts"
import { Generations } from "../../src/services/Generations.ts"
import { GenerationsRepo } from "../../src/services/GenerationsRepo.ts"
import type { ChatModel } from "../../src/services/llm/ChatModel.ts"
import { provide } from "../../src/services/llm/LanguageModelLive.ts"
import * as LocalModel from "../../src/services/llm/LocalModel.ts"
import * as OpenAiChatModel from "../../src/services/llm/OpenAiChatModel.ts"
import { Journal } from "../../src/services/journal/Journal.ts"
import { RunsRepo } from "../../src/services/RunsRepo.ts"
import { WriteBehind } from "../../src/services/WriteBehind.ts"
import { testConfig } from "./TestConfig.ts"

export const localModel = provide({ provider: "local", model: "local-echo" }, LocalModel.layer({ model: "local-echo" }))

export const openAiModel = (baseUrl: string, options: { readonly apiKey?: string; readonly model?: string } = {}) =>
  OpenAiChatModel.layer({
    baseUrl,
    apiKey: options.apiKey === undefined ? undefined : Redacted.make(options.apiKey),
    model: options.model ?? "fake-model"
  })

/** The generation service over the test's database, with the given model and settings. */
export const generationsLayer = <R = SqlClient.SqlClient>(
  model: Layer.Layer<ChatModel>,
  overrides: Partial<AppConfigShape> = {},
  batch: Layer.Layer<BatchRepo, never, R> = BatchRepo.Default as Layer.Layer<BatchRepo, never, R>
) =>
  Generations.DefaultWithoutDependencies.pipe(
    Layer.provideMerge(WriteBehind.DefaultWithoutDependencies),
    Layer.provideMerge(Layer.mergeAll(GenerationsRepo.Default, RunsRepo.Default, Journal.Default, ChatsRepo.Default, batch)),
    Layer.provide(model),
    Layer.provide(testConfig(overrides))
  )

export const rowOf = (generationId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(sql<Record<string, unknown>>`SELECT * FROM llm_generations WHERE id = ${generationId}`, (rows) => rows[0]!))

export const variantOf = (variantId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(sql<{ readonly content: string; readonly generation_id: string | null }>`SELECT content, generation_id FROM message_variants WHERE id = ${variantId}`, (rows) => rows[0]!))
