/**
 * Measures, against a running server on real Postgres: database work per turn for a short and a
 * long answer of the same duration (from pg_stat_database), and abort latency (request → the
 * answer, which comes once every status is closed). Usage:
 *   DATABASE_URL=postgres://… npm start   (in one terminal)
 *   STATS_URL=postgres://… npx tsx scripts/measure-turns.ts
 */
import pg from "pg"

const base = process.env.BASE_URL ?? "http://127.0.0.1:3000"
const stats = new pg.Client({ connectionString: process.env.STATS_URL })
await stats.connect()

const counters = async () => {
  const { rows } = await stats.query(
    "SELECT xact_commit::int AS commits, (tup_inserted + tup_updated)::int AS rows FROM pg_stat_database WHERE datname = current_database()"
  )
  return rows[0] as { commits: number; rows: number }
}
const json = async (path: string, body?: unknown) => {
  const response = await fetch(base + path, body === undefined ? {} : {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body)
  })
  return response.json() as Promise<any>
}
const waitDone = async (runId: string) => {
  const response = await fetch(`${base}/runs/${runId}/events`, { headers: { accept: "text/event-stream" } })
  await response.text()
}

const turn = async (chatId: string, settings: object) => {
  await new Promise((resolve) => setTimeout(resolve, 1000)) // let the stats collector settle
  const before = await counters()
  const t0 = performance.now()
  const started = await json(`/chats/${chatId}/messages`, { userMessageId: crypto.randomUUID(), content: "Measure me", settings })
  await waitDone(started.run.id)
  const seconds = ((performance.now() - t0) / 1000).toFixed(2)
  await new Promise((resolve) => setTimeout(resolve, 1500))
  const after = await counters()
  return { seconds, commits: after.commits - before.commits - 2, rows: after.rows - before.rows } // minus our own two stat reads
}

const chat = await json("/chats", {})
const short = await turn(chat.id, { max_tokens: 16, local: { tokenDelayMs: 62 } })
const long = await turn(chat.id, { max_tokens: 1024, local: { tokenDelayMs: 0 } })
console.log("database work per turn (commits = round-trip transactions, rows = rows written):")
console.log("  16 tokens in ~1 s:  ", short)
console.log("  1024 tokens in ~1 s:", long)

const latencies: Array<number> = []
for (let i = 0; i < 20; i++) {
  const started = await json(`/chats/${chat.id}/messages`, { userMessageId: crypto.randomUUID(), content: "Abort me", settings: { max_tokens: 5000, local: { tokenDelayMs: 5 } } })
  await new Promise((resolve) => setTimeout(resolve, 200))
  const t0 = performance.now()
  const snapshot = await json(`/runs/${started.run.id}/abort`, {})
  latencies.push(performance.now() - t0)
  if (snapshot.run.status !== "aborted") throw new Error(`run ended ${snapshot.run.status}`)
}
latencies.sort((a, b) => a - b)
console.log(`abort → terminal answer, 20 runs: p50 ${latencies[10]!.toFixed(1)} ms, max ${latencies[19]!.toFixed(1)} ms`)
await stats.end()
