import * as OtelMetrics from "@effect/opentelemetry/Metrics"
import * as OtelResource from "@effect/opentelemetry/Resource"
import { PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { Effect } from "effect"
import { collectDefaultMetrics, Registry } from "prom-client"

/** Node's own figures (CPU, resident memory, event-loop lag, heap, GC), one registry per process. */
let processRegistry: Registry | undefined
const processMetrics = () => {
  if (processRegistry === undefined) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry })
  }
  return processRegistry
}

/**
 * `GET /metrics` (spec 95): every Effect metric of the process (`Metrics.ts`), read through
 * `@effect/opentelemetry`'s bridge and written by OpenTelemetry's maintained Prometheus serializer,
 * then the process metrics `prom-client` collects. Nothing is exported or served elsewhere.
 */
export class Prometheus extends Effect.Service<Prometheus>()("turn-runner/Prometheus", {
  effect: Effect.gen(function*() {
    const producer = yield* OtelMetrics.makeProducer
    // Neither `target_info` nor an `otel_scope_name` label on every series: only the metrics.
    const serializer = new PrometheusSerializer(undefined, false, undefined, true, true)
    const registry = processMetrics()
    const render = Effect.promise(async () => {
      const { resourceMetrics } = await producer.collect()
      return `${serializer.serialize(resourceMetrics)}\n${await registry.metrics()}`
    })
    return { render } as const
  }),
  dependencies: [OtelResource.layer({ serviceName: "turn-runner" })]
}) {}
