import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { eventually, follow, get, post } from "../support/Instances.ts"
import { freePort, startServer } from "../support/ServerProcess.ts"

/**
 * A real Prometheus server (Debian's `prometheus`, which `.ci/run` installs) scrapes the service's
 * `GET /metrics`, and its own HTTP API answers with the counters of the turns the test made.
 */

const prometheusBinary = "/usr/bin/prometheus"

const startPrometheus = (target: string) =>
  Effect.gen(function*() {
    const port = yield* freePort
    const dir = mkdtempSync(join(tmpdir(), "turn-runner-prometheus-"))
    writeFileSync(join(dir, "prometheus.yml"), `global:
  scrape_interval: 1s
scrape_configs:
  - job_name: turn-runner
    static_configs:
      - targets: ["${target}"]
`)
    let output = ""
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(prometheusBinary, [
          `--config.file=${join(dir, "prometheus.yml")}`,
          `--storage.tsdb.path=${join(dir, "data")}`,
          `--web.listen-address=127.0.0.1:${port}`
        ], { stdio: ["ignore", "pipe", "pipe"] })
      ),
      (child) =>
        Effect.sync(() => {
          child.kill("SIGKILL")
          rmSync(dir, { recursive: true, force: true })
        })
    )
    child.stdout?.on("data", (chunk) => (output += chunk))
    child.stderr?.on("data", (chunk) => (output += chunk))
    return { baseUrl: `http://127.0.0.1:${port}`, output: () => output }
  })

/** The value of an instant query, or null while Prometheus has none. */
const query = (baseUrl: string, promql: string) =>
  Effect.map(get(baseUrl, `/api/v1/query?query=${encodeURIComponent(promql)}`), ({ body }) => {
    const result = body?.data?.result?.[0]?.value?.[1]
    return result === undefined ? null : Number(result)
  }).pipe(Effect.orElseSucceed(() => null))

describe.runIf(existsSync(prometheusBinary))("a real Prometheus scraping GET /metrics", () => {
  it.live("its HTTP API reports the runs the service started and finished", () =>
    Effect.gen(function*() {
      const server = yield* startServer({ DATA_DIR: "memory" })
      for (let i = 0; i < 3; i++) {
        const chatId = (yield* post(server.baseUrl, "/chats", {})).body.id as string
        const stream = yield* follow(server.baseUrl, `/chats/${chatId}/messages`, {
          userMessageId: crypto.randomUUID(),
          content: `Turn ${i}`,
          settings: { max_tokens: 4, local: { tokenDelayMs: 0 } }
        })
        expect((yield* stream.all).at(-1)?.json.type).toBe("pipeline.run.done")
      }
      const prometheus = yield* startPrometheus(new URL(server.baseUrl).host)
      const up = yield* eventually(query(prometheus.baseUrl, `up{job="turn-runner"}`), (value) => value === 1, 30)
      expect(up).toBe(1)
      expect(yield* eventually(query(prometheus.baseUrl, `sum(turn_runner_runs_finished_total{status="done"})`), (value) => value !== null, 30))
        .toBe(3)
      expect(yield* query(prometheus.baseUrl, `sum(turn_runner_runs_started_total{trigger="user_message"})`)).toBe(3)
      expect(yield* query(prometheus.baseUrl, `turn_runner_runs_live`)).toBe(0)
      expect(yield* query(prometheus.baseUrl, `process_resident_memory_bytes > 0`)).toBeGreaterThan(0)
    }).pipe(Effect.scoped), 120_000)
})
