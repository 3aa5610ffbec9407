import { Effect } from "effect"
import type { Scope } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import protobuf from "protobufjs"

/**
 * An OTLP/HTTP trace receiver on loopback: what a collector (Jaeger, Tempo, the OpenTelemetry
 * Collector) is to the service. It decodes both encodings the exporter may send: protobuf, with
 * protobufjs over the official message definitions (the subset of `opentelemetry-proto` that traces
 * use, field numbers as published), and JSON.
 */

const proto = `
syntax = "proto3";
package opentelemetry.proto;
message AnyValue {
  oneof value {
    string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4;
    ArrayValue array_value = 5; KeyValueList kvlist_value = 6; bytes bytes_value = 7;
  }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
message KeyValue { string key = 1; AnyValue value = 2; }
message InstrumentationScope { string name = 1; string version = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4; }
message Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; }
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message Status { string message = 2; int32 code = 3; }
message Span {
  bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4; fixed32 flags = 16;
  string name = 5; int32 kind = 6; fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9; uint32 dropped_attributes_count = 10;
  repeated Event events = 11; uint32 dropped_events_count = 12;
  repeated Link links = 13; uint32 dropped_links_count = 14; Status status = 15;
  message Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4; }
  message Link { bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; repeated KeyValue attributes = 4; uint32 dropped_attributes_count = 5; fixed32 flags = 6; }
}
`

const ExportTraceServiceRequest = protobuf.parse(proto, { keepCase: false }).root.lookupType("opentelemetry.proto.ExportTraceServiceRequest")

/** Span kinds as OTLP numbers them. */
export const SpanKind = { internal: 1, server: 2, client: 3 } as const

export interface ReceivedSpan {
  readonly traceId: string
  readonly spanId: string
  /** Empty for a root span. */
  readonly parentSpanId: string
  readonly name: string
  readonly kind: number
  readonly startNanos: bigint
  readonly endNanos: bigint
  readonly attributes: Readonly<Record<string, unknown>>
  /** 0 unset, 1 ok, 2 error. */
  readonly statusCode: number
  readonly resource: Readonly<Record<string, unknown>>
  /** The encoding it arrived in. */
  readonly contentType: string
}

interface Json {
  readonly [key: string]: any
}

const valueOf = (value: Json | undefined): unknown => {
  if (value === undefined || value === null) return undefined
  if ("stringValue" in value) return value.stringValue
  if ("boolValue" in value) return value.boolValue
  if ("intValue" in value) return Number(value.intValue)
  if ("doubleValue" in value) return Number(value.doubleValue)
  if ("arrayValue" in value) return (value.arrayValue.values ?? []).map(valueOf)
  if ("kvlistValue" in value) return attributesOf(value.kvlistValue.values)
  if ("bytesValue" in value) return value.bytesValue
  return undefined
}

const attributesOf = (list: ReadonlyArray<Json> | undefined): Record<string, unknown> =>
  Object.fromEntries((list ?? []).map((pair) => [pair.key, valueOf(pair.value)]))

/** Protobuf's bytes as the hex that OTLP/JSON and `traceparent` use. */
const hex = (bytes: unknown) =>
  bytes === undefined || bytes === null ? "" : typeof bytes === "string" ? bytes : Buffer.from(bytes as Uint8Array).toString("hex")

const spansOf = (request: Json, contentType: string): Array<ReceivedSpan> =>
  (request.resourceSpans ?? []).flatMap((resourceSpans: Json) => {
    const resource = attributesOf(resourceSpans.resource?.attributes)
    return (resourceSpans.scopeSpans ?? []).flatMap((scopeSpans: Json) =>
      (scopeSpans.spans ?? []).map((span: Json): ReceivedSpan => ({
        traceId: hex(span.traceId),
        spanId: hex(span.spanId),
        parentSpanId: hex(span.parentSpanId),
        name: span.name,
        kind: Number(span.kind ?? 0),
        startNanos: BigInt(String(span.startTimeUnixNano ?? 0)),
        endNanos: BigInt(String(span.endTimeUnixNano ?? 0)),
        attributes: attributesOf(span.attributes),
        statusCode: Number(span.status?.code ?? 0),
        resource,
        contentType
      }))
    )
  })

const decode = (body: Buffer, contentType: string): Json =>
  contentType.startsWith("application/x-protobuf")
    ? ExportTraceServiceRequest.toObject(ExportTraceServiceRequest.decode(body), { longs: String, defaults: false })
    : JSON.parse(body.toString("utf8"))

export interface OtlpReceiver {
  /** The base URL to give as `OTEL_EXPORTER_OTLP_ENDPOINT`. */
  readonly endpoint: string
  /** The paths requests arrived on. */
  readonly paths: () => ReadonlyArray<string>
  readonly spans: () => ReadonlyArray<ReceivedSpan>
  /** Waits until `found` returns a value for the spans received so far (checked on every arrival). */
  readonly until: <A>(found: (spans: ReadonlyArray<ReceivedSpan>) => A | undefined) => Effect.Effect<A>
}

export const start: Effect.Effect<OtlpReceiver, never, Scope.Scope> = Effect.gen(function*() {
  const spans: Array<ReceivedSpan> = []
  const paths: Array<string> = []
  const arrived = new Set<() => void>()
  const server = Http.createServer((request, response) => {
    const parts: Array<Buffer> = []
    request.on("data", (part: Buffer) => parts.push(part))
    request.on("end", () => {
      const contentType = request.headers["content-type"] ?? ""
      try {
        paths.push(request.url ?? "")
        spans.push(...spansOf(decode(Buffer.concat(parts), contentType), contentType))
        response.writeHead(200, { "content-type": "application/json" }).end("{}")
      } catch (error) {
        response.writeHead(400, { "content-type": "text/plain" }).end(String(error))
      }
      for (const wake of arrived) wake()
    })
  })
  yield* Effect.acquireRelease(
    Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
    () => Effect.async<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
  )
  const until = <A>(found: (spans: ReadonlyArray<ReceivedSpan>) => A | undefined): Effect.Effect<A> =>
    Effect.async<A>((resume) => {
      const check = () => {
        const value = found(spans)
        if (value === undefined) return false
        arrived.delete(check)
        resume(Effect.succeed(value))
        return true
      }
      if (!check()) arrived.add(check)
      return Effect.sync(() => arrived.delete(check))
    })
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    paths: () => paths,
    spans: () => spans,
    until
  }
})
