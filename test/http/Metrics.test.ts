import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { testDatabases } from "../support/TestDatabase.ts"
import { getJson, testServer } from "../support/TestServer.ts"
import type { SnapshotJson } from "../support/Turns.ts"
import { abortRun, dataOf, finished, liveTurn, newChat, quick, runEvents, sendMessage } from "../support/Turns.ts"

/**
 * `GET /metrics` (spec 95): the Prometheus text exposition format, read after known turns. The
 * metrics are the process's, so each test compares two readings.
 */

/** The samples of a text exposition: `name{label="value",…}` → value. */
const parse = (text: string) => {
  const samples = new Map<string, number>()
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line)
    if (match === null) throw new Error(`not a sample line: ${line}`)
    const labels = match[2] === undefined
      ? ""
      : [...match[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map(([, key, value]) => `${key}=${value}`).sort().join(",")
    samples.set(labels === "" ? match[1]! : `${match[1]}{${labels}}`, Number(match[3]))
  }
  return samples
}

const scrape = Effect.map(getJson("/metrics"), ({ headers, status, text }) => {
  expect(status).toBe(200)
  expect(headers["content-type"]).toBe("text/plain; version=0.0.4; charset=utf-8")
  return parse(text)
})

/** How much each of `keys` grew between two scrapes. */
const growth = (before: Map<string, number>, after: Map<string, number>, keys: ReadonlyArray<string>) =>
  Object.fromEntries(keys.map((key) => [key, (after.get(key) ?? 0) - (before.get(key) ?? 0)]))

for (const database of testDatabases) {
  layer(testServer(database), { timeout: 60_000, excludeTestServices: true })(`GET /metrics on ${database.name}`, (it) => {
    it.effect("counts runs, turn requests, deltas, tokens and durations exactly, beside the process metrics", () =>
      Effect.gen(function*() {
        const before = yield* scrape
        const chatId = yield* newChat
        const snapshots: Array<SnapshotJson> = []
        let deltas = 0
        for (const content of ["One", "Two"]) {
          const request = { userMessageId: crypto.randomUUID(), content, settings: quick(5) }
          const runId = ((yield* sendMessage(chatId, request)).body as SnapshotJson).run.id
          snapshots.push(yield* finished(runId))
          deltas += dataOf((yield* runEvents(runId)).events).filter((event) => event.type === "llm.stream.delta").length
          if (content === "Two") expect((yield* sendMessage(chatId, request)).status).toBe(202) // a duplicate
        }
        const live = yield* liveTurn(chatId)
        const busy = yield* sendMessage(chatId, { userMessageId: crypto.randomUUID(), content: "Busy?", settings: quick() })
        expect(busy.status).toBe(409)
        // The gauge follows the live runs (it read 0 throughout before a fix).
        expect((yield* scrape).get("turn_runner_runs_live")).toBe(1)
        yield* abortRun(live)
        const aborted = yield* finished(live)
        const invalid = yield* sendMessage(chatId, { userMessageId: "not-a-uuid", content: "" })
        expect(invalid.status).toBe(400)
        deltas += dataOf((yield* runEvents(live)).events).filter((event) => event.type === "llm.stream.delta").length
        const after = yield* scrape

        expect(growth(before, after, [
          "turn_runner_runs_started_total{trigger=user_message}",
          "turn_runner_runs_finished_total{reason=none,status=done}",
          "turn_runner_runs_finished_total{reason=user,status=aborted}",
          "turn_runner_turn_requests_total{outcome=started,trigger=user_message}",
          "turn_runner_turn_requests_total{outcome=deduplicated,trigger=user_message}",
          "turn_runner_turn_requests_total{outcome=rejected_busy,trigger=user_message}",
          "turn_runner_turn_requests_total{outcome=invalid,trigger=user_message}",
          "turn_runner_run_duration_seconds_count{status=done}",
          "turn_runner_run_duration_seconds_count{status=aborted}",
          "turn_runner_time_to_first_token_seconds_count{provider=local}",
          "turn_runner_stream_deltas_total{provider=local}"
        ])).toEqual({
          "turn_runner_runs_started_total{trigger=user_message}": 3,
          "turn_runner_runs_finished_total{reason=none,status=done}": 2,
          "turn_runner_runs_finished_total{reason=user,status=aborted}": 1,
          "turn_runner_turn_requests_total{outcome=started,trigger=user_message}": 3,
          "turn_runner_turn_requests_total{outcome=deduplicated,trigger=user_message}": 1,
          "turn_runner_turn_requests_total{outcome=rejected_busy,trigger=user_message}": 1,
          "turn_runner_turn_requests_total{outcome=invalid,trigger=user_message}": 1,
          "turn_runner_run_duration_seconds_count{status=done}": 2,
          "turn_runner_run_duration_seconds_count{status=aborted}": 1,
          "turn_runner_time_to_first_token_seconds_count{provider=local}": 3,
          "turn_runner_stream_deltas_total{provider=local}": deltas
        })
        const usage = (type: "promptTokens" | "completionTokens") =>
          [...snapshots, aborted].reduce((sum, snapshot) => sum + (snapshot.generation?.usage?.[type] ?? 0), 0)
        expect(growth(before, after, ["turn_runner_usage_tokens_total{provider=local,type=input}", "turn_runner_usage_tokens_total{provider=local,type=output}"]))
          .toEqual({
            "turn_runner_usage_tokens_total{provider=local,type=input}": usage("promptTokens"),
            "turn_runner_usage_tokens_total{provider=local,type=output}": usage("completionTokens")
          })
        expect(after.get("turn_runner_runs_live")).toBe(0)
        expect(after.has("turn_runner_sse_clients")).toBe(true)
        expect(after.get("turn_runner_journal_write_seconds_count")).toBeGreaterThan(before.get("turn_runner_journal_write_seconds_count") ?? 0)
        expect(after.get("turn_runner_run_duration_seconds_bucket{le=+Inf,status=done}")).toBe(after.get("turn_runner_run_duration_seconds_count{status=done}"))
        for (const name of ["process_cpu_seconds_total", "process_resident_memory_bytes", "nodejs_eventloop_lag_seconds"]) {
          expect(after.get(name)).toBeGreaterThanOrEqual(0)
        }
        // Labels are bounded sets: no id ever appears.
        expect([...after.keys()].join("\n")).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-/)
      }))
  })
}

layer(testServer(testDatabases[0]!, { metricsEnabled: false }), { timeout: 60_000, excludeTestServices: true })("METRICS_ENABLED=false", (it) => {
  it.effect("GET /metrics is 404 not_found", () =>
    Effect.gen(function*() {
      const { body, status } = yield* getJson("/metrics")
      expect(status).toBe(404)
      expect(body).toMatchObject({ code: "not_found" })
    }))
})
