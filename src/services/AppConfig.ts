import { Config, ConfigError, Effect, Either, LogLevel, Option } from "effect"

/** A duration in milliseconds: a positive integer. */
const millis = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.validate({ message: "Expected a positive integer number of milliseconds", validation: (n) => n > 0 }),
    Config.withDefault(fallback)
  )

const isLoopback = (url: URL) => ["127.0.0.1", "localhost", "[::1]", "::1"].includes(url.hostname)

const llm = Config.all({
  provider: Config.literal("local", "openai")("LLM_PROVIDER").pipe(Config.withDefault("local" as const)),
  baseUrl: Config.url("OPENAI_BASE_URL").pipe(Config.withDefault(new URL("https://api.openai.com/v1"))),
  apiKey: Config.option(Config.redacted("OPENAI_API_KEY")),
  model: Config.option(Config.nonEmptyString("LLM_MODEL")),
  maxRetries: Config.integer("LLM_MAX_RETRIES").pipe(
    Config.validate({ message: "Expected a non-negative integer", validation: (n) => n >= 0 }),
    Config.withDefault(2)
  )
}).pipe(
  Config.mapOrFail((llm) =>
    llm.provider === "openai" && Option.isNone(llm.apiKey) && !isLoopback(llm.baseUrl)
      ? Either.left(ConfigError.MissingData(["OPENAI_API_KEY"], "Expected OPENAI_API_KEY to be set when LLM_PROVIDER=openai and OPENAI_BASE_URL is not a loopback address"))
      : Either.right({
        provider: llm.provider,
        baseUrl: llm.baseUrl.href.replace(/\/+$/, ""),
        apiKey: Option.getOrUndefined(llm.apiKey),
        model: Option.getOrElse(llm.model, () => llm.provider === "local" ? "local-echo" : "gpt-4o-mini"),
        maxRetries: llm.maxRetries
      })
  )
)

/** Every setting of spec 90, read once and validated as a whole. */
export const appConfig = Config.all({
  port: Config.port("PORT").pipe(Config.withDefault(3000)),
  host: Config.string("HOST").pipe(Config.withDefault("127.0.0.1")),
  databaseUrl: Config.option(Config.redacted("DATABASE_URL")),
  dataDir: Config.nonEmptyString("DATA_DIR").pipe(Config.withDefault("./.data")),
  llm,
  leaseTtlMs: millis("LEASE_TTL_MS", 15_000),
  runTimeoutMs: millis("RUN_TIMEOUT_MS", 600_000),
  llmIdleTimeoutMs: millis("LLM_IDLE_TIMEOUT_MS", 60_000),
  flushIntervalMs: millis("FLUSH_INTERVAL_MS", 250),
  deltaCoalesceMs: Config.integer("DELTA_COALESCE_MS").pipe(
    Config.validate({ message: "Expected a non-negative integer number of milliseconds", validation: (n) => n >= 0 }),
    Config.withDefault(0)
  ),
  sseKeepaliveMs: millis("SSE_KEEPALIVE_MS", 15_000),
  shutdownGraceMs: Config.integer("SHUTDOWN_GRACE_MS").pipe(
    Config.validate({ message: "Expected a non-negative integer number of milliseconds", validation: (n) => n >= 0 }),
    Config.withDefault(10_000)
  ),
  maxPromptMessages: Config.integer("MAX_PROMPT_MESSAGES").pipe(
    Config.validate({ message: "Expected a positive integer", validation: (n) => n > 0 }),
    Config.withDefault(200)
  ),
  maxPromptChars: Config.integer("MAX_PROMPT_CHARS").pipe(
    Config.validate({ message: "Expected a positive integer", validation: (n) => n > 0 }),
    Config.withDefault(200_000)
  ),
  storePromptSnapshots: Config.boolean("STORE_PROMPT_SNAPSHOTS").pipe(Config.withDefault(false)),
  metricsEnabled: Config.boolean("METRICS_ENABLED").pipe(Config.withDefault(true)),
  logLevel: Config.logLevel("LOG_LEVEL").pipe(Config.withDefault(LogLevel.Info))
})

export type AppConfigShape = Config.Config.Success<typeof appConfig>

/** The service's configuration (spec 90). Tests provide it with `AppConfig.make({...})`. */
export class AppConfig extends Effect.Service<AppConfig>()("turn-runner/AppConfig", {
  effect: appConfig
}) {}
