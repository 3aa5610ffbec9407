import { Config, ConfigError, Effect, Either, LogLevel, Option, Redacted } from "effect"

/** A duration in milliseconds: a positive integer. */
const millis = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.validate({ message: "Expected a positive integer number of milliseconds", validation: (n) => n > 0 }),
    Config.withDefault(fallback)
  )

const loopbackHosts = new Set(["127.0.0.1", "localhost", "[::1]", "::1"])

const isLoopback = (url: URL) => loopbackHosts.has(url.hostname)

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

const positive = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.validate({ message: "Expected a positive integer", validation: (n) => n > 0 }),
    Config.withDefault(fallback)
  )

/**
 * Who may call (spec 85): `AUTH` is `none` by default only on a loopback `HOST` (checked with the
 * whole configuration, below); elsewhere it must be chosen. `jwt` needs a key source (`JWT_JWKS_URL`, or `JWT_SECRET` for HS256) and the issuer and
 * audience its tokens must name.
 */
const access = Config.all({
  auth: Config.option(Config.literal("none", "api_key", "jwt")("AUTH")),
  jwksUrl: Config.option(Config.url("JWT_JWKS_URL")),
  jwtSecret: Config.option(Config.redacted("JWT_SECRET")),
  issuer: Config.option(Config.nonEmptyString("JWT_ISSUER")),
  audience: Config.option(Config.nonEmptyString("JWT_AUDIENCE")),
  metricsToken: Config.option(Config.redacted("METRICS_TOKEN"))
}).pipe(
  Config.mapOrFail(({ audience, auth, issuer, jwksUrl, jwtSecret, metricsToken }) => {
    if (Option.isSome(auth) && auth.value === "jwt") {
      if (Option.isNone(jwksUrl) === Option.isNone(jwtSecret)) {
        return Either.left(ConfigError.MissingData(["JWT_JWKS_URL"], "Expected exactly one of JWT_JWKS_URL and JWT_SECRET to be set when AUTH=jwt"))
      }
      if (Option.isSome(jwtSecret) && Buffer.byteLength(Redacted.value(jwtSecret.value)) < 32) {
        return Either.left(ConfigError.InvalidData(["JWT_SECRET"], "Expected JWT_SECRET to hold at least 32 bytes (HS256)"))
      }
      if (Option.isNone(issuer) || Option.isNone(audience)) {
        return Either.left(ConfigError.MissingData([Option.isNone(issuer) ? "JWT_ISSUER" : "JWT_AUDIENCE"], "Expected JWT_ISSUER and JWT_AUDIENCE to be set when AUTH=jwt"))
      }
    }
    return Either.right({
      auth,
      jwt: {
        jwksUrl: Option.getOrUndefined(jwksUrl),
        secret: Option.getOrUndefined(jwtSecret),
        issuer: Option.getOrElse(issuer, () => ""),
        audience: Option.getOrElse(audience, () => "")
      },
      metricsToken: Option.getOrUndefined(metricsToken)
    })
  })
)

/** How much one caller, and one instance, may start and hold open (spec 85, "Limits"). */
const limits = Config.all({
  liveRunsPerOwner: positive("MAX_LIVE_RUNS_PER_OWNER", 4),
  liveRuns: positive("MAX_LIVE_RUNS", 1000),
  sseClients: positive("MAX_SSE_CLIENTS", 5000),
  turnsPerMinutePerOwner: positive("TURN_RATE_PER_OWNER", 60)
})

/** An origin as a browser sends it in `Origin` (scheme, host, port), or undefined for anything more or else. */
const originOf = (value: string) => {
  const url = URL.canParse(value) ? new URL(value) : undefined
  const bare = url !== undefined && (url.protocol === "http:" || url.protocol === "https:") && url.pathname === "/" &&
    url.search === "" && url.hash === "" && url.username === "" && url.password === ""
  return bare ? url.origin : undefined
}

/**
 * `CORS_ORIGINS` (spec 75): comma-separated origins (`https://app.example`), or `*` for any; unset
 * or empty = none, and then no CORS header at all.
 */
const corsOrigins = Config.string("CORS_ORIGINS").pipe(
  Config.withDefault(""),
  Config.mapOrFail((text) => {
    const origins: Array<string> = []
    for (const value of text.split(",").map((part) => part.trim()).filter((part) => part !== "")) {
      if (value === "*") return Either.right(["*"])
      const origin = originOf(value)
      if (origin === undefined) {
        return Either.left(ConfigError.InvalidData(["CORS_ORIGINS"], `Expected "*" or origins like https://app.example (scheme, host and port only), not ${JSON.stringify(value)}`))
      }
      origins.push(origin)
    }
    return Either.right(origins as ReadonlyArray<string>)
  })
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
  access,
  limits,
  corsOrigins,
  logLevel: Config.logLevel("LOG_LEVEL").pipe(Config.withDefault(LogLevel.Info))
}).pipe(
  Config.mapOrFail(({ access, ...config }) =>
    Option.isNone(access.auth) && !loopbackHosts.has(config.host)
      ? Either.left(ConfigError.MissingData(
        ["AUTH"],
        `Expected AUTH to be set (api_key, jwt, or none to serve without authentication) when HOST=${config.host} is not a loopback address`
      ))
      : Either.right({ ...config, access: { ...access, auth: Option.getOrElse(access.auth, () => "none" as const) } })
  )
)

export type AppConfigShape = Config.Config.Success<typeof appConfig>

/** The service's configuration (spec 90). Tests provide it with `AppConfig.make({...})`. */
export class AppConfig extends Effect.Service<AppConfig>()("turn-runner/AppConfig", {
  effect: appConfig
}) {}
