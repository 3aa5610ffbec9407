import { ConfigProvider, Effect, Layer } from "effect"
import { AppConfig, appConfig } from "../../src/services/AppConfig.ts"
import type { AppConfigShape } from "../../src/services/AppConfig.ts"

/** The defaults of spec 90, as a service would read them from an empty environment. */
export const defaultConfig: AppConfigShape = Effect.runSync(
  Effect.withConfigProvider(appConfig, ConfigProvider.fromMap(new Map()))
)

/**
 * Limits no test of anything else reaches (a test of the limits sets its own): many turns, one
 * owner, a few seconds.
 */
export const generousLimits: AppConfigShape["limits"] = {
  liveRunsPerOwner: 100_000,
  liveRuns: 100_000,
  sseClients: 100_000,
  turnsPerMinutePerOwner: 1_000_000
}

/** An `AppConfig` with the defaults, an in-memory database, generous limits, and the given overrides. */
export const testConfig = (overrides: Partial<AppConfigShape> = {}): Layer.Layer<AppConfig> =>
  Layer.succeed(AppConfig, AppConfig.make({ ...defaultConfig, dataDir: "memory", limits: generousLimits, ...overrides }))
