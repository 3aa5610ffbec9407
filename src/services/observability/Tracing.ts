import { Config, Context, Effect, FiberRef, Layer, Option, Tracer } from "effect"
import type { ConfigError, Exit } from "effect"

/**
 * Traces (spec 95): the spans the service makes are Effect's own (`Effect.fn`, `withSpan`), and
 * this Layer exports them over OTLP/HTTP with `@effect/opentelemetry`'s exporter when an endpoint
 * is configured through OpenTelemetry's standard variables. Unset, there is no exporter and no cost
 * (spec 95): the tracer is disabled, so a span is a no-op, with no ids, no attributes, nothing kept
 * for as long as a turn streams.
 */

const protocols = ["http/protobuf", "http/json"] as const

/** OpenTelemetry's environment variables for the trace exporter (the ones this service honours). */
export const tracingConfig = Config.all({
  endpoint: Config.option(Config.url("OTEL_EXPORTER_OTLP_ENDPOINT")),
  tracesEndpoint: Config.option(Config.url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
  protocol: Config.literal(...protocols)("OTEL_EXPORTER_OTLP_PROTOCOL").pipe(Config.withDefault("http/protobuf" as const)),
  serviceName: Config.nonEmptyString("OTEL_SERVICE_NAME").pipe(Config.withDefault("turn-runner")),
  // `key=value,…`; values are URL-encoded in OpenTelemetry's format (an API key's `=` is `%3D`).
  headers: Config.option(Config.string("OTEL_EXPORTER_OTLP_HEADERS")),
  exportIntervalMs: Config.integer("OTEL_BSP_SCHEDULE_DELAY").pipe(
    Config.validate({ message: "Expected a positive integer number of milliseconds", validation: (n) => n > 0 }),
    Config.withDefault(5_000)
  )
})

/** The traces URL: the signal's own endpoint as given, or the general one with `/v1/traces`. */
const tracesUrl = (config: Config.Config.Success<typeof tracingConfig>) =>
  Option.orElse(
    Option.map(config.tracesEndpoint, (url) => url.href),
    () => Option.map(config.endpoint, (url) => `${url.href.replace(/\/+$/, "")}/v1/traces`)
  )

const headersOf = (input: string): Record<string, string> =>
  Object.fromEntries(input.split(",").flatMap((pair) => {
    const at = pair.indexOf("=")
    return at <= 0 ? [] : [[decodeURIComponent(pair.slice(0, at).trim()), decodeURIComponent(pair.slice(at + 1).trim())]]
  }))

/**
 * The OTLP trace exporter when configured (honouring `OTEL_RESOURCE_ATTRIBUTES`); otherwise the
 * tracer disabled, and the exporter's modules not even loaded.
 */
export const TracingLive: Layer.Layer<never, ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.gen(function*() {
    const config = yield* tracingConfig
    const url = tracesUrl(config)
    if (Option.isNone(url)) return Layer.setTracerEnabled(false)
    const [OtlpTracer, OtlpSerialization, FetchHttpClient] = yield* Effect.promise(() =>
      Promise.all([
        import("@effect/opentelemetry/OtlpTracer"),
        import("@effect/opentelemetry/OtlpSerialization"),
        import("@effect/platform/FetchHttpClient")
      ])
    )
    return OtlpTracer.layer({
      url: url.value,
      resource: { serviceName: config.serviceName },
      headers: Option.getOrUndefined(Option.map(config.headers, headersOf)),
      exportInterval: config.exportIntervalMs
    }).pipe(
      Layer.provide(config.protocol === "http/json" ? OtlpSerialization.layerJson : OtlpSerialization.layerProtobuf),
      Layer.provide(FetchHttpClient.layer)
    )
  })
)

/** Effect's built-in tracer, which records nothing outside the process. */
const builtin = Effect.runSync(Effect.tracer)

/**
 * The current span when a tracer records it (ours, or an embedding program's own), so that a trace
 * id is only named, and a `traceparent` only sent, when the trace exists somewhere.
 */
export const recordedSpan: Effect.Effect<Option.Option<Tracer.AnySpan>> = Effect.flatMap(Effect.tracer, (tracer) => {
  return tracer === builtin ? Effect.succeedNone : Effect.option(Effect.currentParentSpan)
})

/** The W3C `traceparent` header of a span (spec 95: the upstream request joins the trace). */
export const traceparentOf = (span: Tracer.AnySpan) =>
  `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`

/** A span open in the current fiber, the parent of what the fiber does until it is closed. */
export interface OpenSpan {
  readonly span: Tracer.Span
  /** Ends the span with how its work ended, and makes its parent the current span again. */
  readonly close: (exit: Exit.Exit<unknown, unknown>) => Effect.Effect<void>
}

/** The span a disabled tracer makes: it records nothing, so one serves every caller. */
const noopSpan = Effect.runSync(Effect.makeSpan("noop", { captureStackTrace: false }).pipe(Effect.withTracerEnabled(false)))
const noopOpenSpan: OpenSpan = { span: noopSpan, close: () => Effect.void }

/**
 * `Effect.withSpan` in two halves, for the spans a run's fiber keeps open while it streams (the
 * run, its step, its generation): opened as one step of the fiber, closed from the finalizer the
 * work already has, so that a span costs the fiber no frame of its own while it is open. Its
 * creation site is fixed, so no stack trace is captured. With the tracer disabled (no exporter)
 * nothing is made and the fiber's context is left as it is: an open stream keeps no span.
 */
export const openSpan = (name: string, options: Omit<Tracer.SpanOptions, "captureStackTrace">): Effect.Effect<OpenSpan> =>
  Effect.flatMap(FiberRef.get(FiberRef.currentTracerEnabled), (enabled) =>
    enabled
      ? Effect.flatMap(Effect.makeSpan(name, { ...options, captureStackTrace: false }), (span) =>
        Effect.map(FiberRef.getAndUpdate(FiberRef.currentContext, Context.add(Tracer.ParentSpan, span)), (parent) => ({
          span,
          close: (exit) =>
            Effect.flatMap(Effect.clock, (clock) => {
              span.end(clock.unsafeCurrentTimeNanos(), exit)
              return FiberRef.set(FiberRef.currentContext, parent)
            })
        })))
      : Effect.succeed(noopOpenSpan))
