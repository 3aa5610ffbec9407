import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer } from "effect"
import { TracingLive } from "../../../src/services/observability/Tracing.ts"

/** `TracingLive` under the given environment variables only. */
const tracingWith = (env: Record<string, string>) =>
  TracingLive.pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))))

describe("tracing (spec 95)", () => {
  it.effect("with no exporter configured there is no cost: a span is a no-op, with no ids and no attributes", () =>
    Effect.gen(function*() {
      const span = yield* Effect.makeSpan("turn.run", { attributes: { "turn.run_id": "r" } })
      expect(span.spanId).toBe("noop")
      expect(span.traceId).toBe("noop")
      expect(span.attributes.size).toBe(0)
    }).pipe(Effect.provide(tracingWith({}))))

  it.effect("with an endpoint, spans are real ones, with ids", () =>
    Effect.gen(function*() {
      const span = yield* Effect.makeSpan("turn.run")
      expect(span.spanId).toMatch(/^[0-9a-f]{16}$/)
      expect(span.traceId).toMatch(/^[0-9a-f]{32}$/)
    }).pipe(Effect.scoped, Effect.provide(tracingWith({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9/" }))))
})
