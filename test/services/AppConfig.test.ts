import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, LogLevel, Option, Redacted } from "effect"
import { execFile } from "node:child_process"
import { appConfig } from "../../src/services/AppConfig.ts"

const read = (env: Record<string, string>) =>
  Effect.either(Effect.withConfigProvider(appConfig, ConfigProvider.fromMap(new Map(Object.entries(env)))))

const errorOf = (env: Record<string, string>) =>
  Effect.map(read(env), (result) => Either.isLeft(result) ? String(result.left) : "no error")

describe("configuration (spec 90)", () => {
  it.effect("defaults to the table of spec 90", () =>
    Effect.gen(function*() {
      const config = Either.getOrThrow(yield* read({}))
      expect(config).toMatchObject({
        port: 3000,
        host: "127.0.0.1",
        dataDir: "./.data",
        llm: { provider: "local", baseUrl: "https://api.openai.com/v1", apiKey: undefined, model: "local-echo" },
        leaseTtlMs: 15_000,
        runTimeoutMs: 600_000,
        llmIdleTimeoutMs: 60_000,
        flushIntervalMs: 250,
        deltaCoalesceMs: 0,
        sseKeepaliveMs: 15_000,
        shutdownGraceMs: 10_000,
        storePromptSnapshots: false,
        logLevel: LogLevel.Info
      })
      expect(Option.isNone(config.databaseUrl)).toBe(true)
    }))

  it.effect("reads every variable", () =>
    Effect.gen(function*() {
      const config = Either.getOrThrow(yield* read({
        PORT: "8080",
        HOST: "0.0.0.0",
        DATABASE_URL: "postgres://u:p@db/x",
        LLM_PROVIDER: "openai",
        OPENAI_BASE_URL: "http://127.0.0.1:11434/v1/",
        OPENAI_API_KEY: "sk-1",
        LLM_MODEL: "llama3",
        FLUSH_INTERVAL_MS: "100",
        STORE_PROMPT_SNAPSHOTS: "true",
        LOG_LEVEL: "Debug"
      }))
      expect(config.port).toBe(8080)
      expect(config.llm).toMatchObject({ provider: "openai", baseUrl: "http://127.0.0.1:11434/v1", model: "llama3" })
      expect(Redacted.value(config.llm.apiKey!)).toBe("sk-1")
      expect(String(config.llm.apiKey)).not.toContain("sk-1")
      expect(Redacted.value(Option.getOrThrow(config.databaseUrl))).toBe("postgres://u:p@db/x")
      expect(config.storePromptSnapshots).toBe(true)
      expect(config.logLevel).toBe(LogLevel.Debug)
    }))

  it.effect("a bad value names its variable", () =>
    Effect.gen(function*() {
      expect(yield* errorOf({ PORT: "abc" })).toContain("PORT")
      expect(yield* errorOf({ LLM_PROVIDER: "claude" })).toContain("LLM_PROVIDER")
      expect(yield* errorOf({ FLUSH_INTERVAL_MS: "0" })).toContain("FLUSH_INTERVAL_MS")
      expect(yield* errorOf({ OPENAI_BASE_URL: "not a url" })).toContain("OPENAI_BASE_URL")
      expect(yield* errorOf({ STORE_PROMPT_SNAPSHOTS: "maybe" })).toContain("STORE_PROMPT_SNAPSHOTS")
    }))

  it.effect("CORS_ORIGINS: none by default, a list of origins, or * for any; anything else names the variable", () =>
    Effect.gen(function*() {
      expect(Either.getOrThrow(yield* read({})).corsOrigins).toEqual([])
      expect(Either.getOrThrow(yield* read({ CORS_ORIGINS: " https://app.example, http://localhost:5173/ " })).corsOrigins)
        .toEqual(["https://app.example", "http://localhost:5173"])
      expect(Either.getOrThrow(yield* read({ CORS_ORIGINS: "*" })).corsOrigins).toEqual(["*"])
      for (const bad of ["app.example", "https://app.example/path", "ftp://app.example", "https://app.example?x=1"]) {
        expect(yield* errorOf({ CORS_ORIGINS: bad })).toContain("CORS_ORIGINS")
      }
    }))

  it.effect("openai needs OPENAI_API_KEY unless the server is on loopback", () =>
    Effect.gen(function*() {
      expect(yield* errorOf({ LLM_PROVIDER: "openai" })).toContain("OPENAI_API_KEY")
      expect(yield* errorOf({ LLM_PROVIDER: "openai", OPENAI_BASE_URL: "http://localhost:8000/v1" })).toBe("no error")
    }))

  it("a bad value stops start-up with one line naming the variable", async () => {
    const { code, stderr, stdout } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, ["--import", "tsx", "src/main.ts"], { env: { ...process.env, PORT: "abc", DATA_DIR: "memory" } }, (error, stdout, stderr) =>
        resolve({ code: error?.code === undefined ? 0 : Number(error.code), stdout, stderr }))
    })
    expect(code).toBe(1)
    expect(stdout).toBe("")
    expect(stderr.trim().split("\n")).toHaveLength(1)
    expect(stderr).toContain("PORT")
  })
})
