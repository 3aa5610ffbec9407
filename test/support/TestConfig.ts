import { ConfigProvider, Effect, Layer } from "effect"
import { AppConfig, appConfig } from "../../src/services/AppConfig.ts"
import type { AppConfigShape } from "../../src/services/AppConfig.ts"

/** The defaults of spec 90, as a service would read them from an empty environment. */
export const defaultConfig: AppConfigShape = Effect.runSync(
  Effect.withConfigProvider(appConfig, ConfigProvider.fromMap(new Map()))
)

/** An `AppConfig` with the defaults, an in-memory database, and the given overrides. */
export const testConfig = (overrides: Partial<AppConfigShape> = {}): Layer.Layer<AppConfig> =>
  Layer.succeed(AppConfig, AppConfig.make({ ...defaultConfig, dataDir: "memory", ...overrides }))
