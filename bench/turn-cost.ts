/**
 * The CPU a turn costs the runner itself, without HTTP: 500 turns of 10 tokens from a model that
 * answers at once, 16 at a time, through `Turns` and `Runs.events`, after 100 to warm up.
 * `[DATABASE_URL=postgres://…] node --import tsx bench/turn-cost.ts` prints turns per second and
 * milliseconds of CPU per turn (the process's own: on Postgres the server's work is not in it).
 */
import { Effect, Layer, Logger, LogLevel, Option, Redacted, Stream } from "effect"
import { BuiltinStepsLive, servicesWith } from "../src/AppLayer.ts"
import type { ChatId, MessageId } from "../src/domain/Ids.ts"
import { AppConfig } from "../src/services/AppConfig.ts"
import { Chats } from "../src/services/Chats.ts"
import { clientLayer } from "../src/services/db/Database.ts"
import { ChatModel } from "../src/services/llm/ChatModel.ts"
import { Runs } from "../src/services/runner/Runs.ts"
import { Turns } from "../src/services/runner/Turns.ts"
import { uuidv7At } from "../src/services/Uuid.ts"

// One owner, 16 turns at a time and hundreds a minute: spec 85's limits would refuse it.
process.env.MAX_LIVE_RUNS_PER_OWNER ??= "1000000"
process.env.TURN_RATE_PER_OWNER ??= "100000000"
process.env.LOG_LEVEL ??= "warn"

/** A model that answers ten words at once. */
const model = Layer.succeed(ChatModel, ChatModel.of({
  provider: "test",
  model: "instant",
  stream: (_prompt, _settings, sink) =>
    Effect.sync(() => {
      for (let i = 0; i < 10; i++) sink.delta(` w${i}`)
      sink.finish("stop", null)
    })
}))
// Postgres from DATABASE_URL, or an in-memory PGlite.
const db = clientLayer(Option.map(Option.fromNullable(process.env.DATABASE_URL), Redacted.make), "memory")
const services = servicesWith(BuiltinStepsLive).pipe(Layer.provide(model), Layer.provideMerge(db), Layer.provideMerge(AppConfig.Default))

const main = Effect.gen(function*() {
  const chats = yield* Chats
  const turns = yield* Turns
  const runs = yield* Runs
  const ids: Array<ChatId> = []
  for (let i = 0; i < 600; i++) ids.push((yield* chats.create({})).id as ChatId)
  const one = (chatId: ChatId) => Effect.gen(function*() {
    const { run } = yield* turns.sendMessage(chatId, { userMessageId: uuidv7At(Date.now()) as MessageId, content: "hi", settings: {}, onBusy: "reject", abortOnDisconnect: false })
    yield* Stream.runDrain(yield* runs.events(run.runId, 0))
  })
  for (let i = 0; i < 100; i++) yield* one(ids[i]!)
  const c0 = process.cpuUsage(); const t0 = performance.now()
  yield* Effect.forEach(ids.slice(100), one, { concurrency: 16 })
  const c = process.cpuUsage(c0); const n = 500
  console.log(JSON.stringify({ turnsPerSec: n / ((performance.now() - t0) / 1000), cpuMsPerTurn: (c.user + c.system) / 1000 / n }))
}).pipe(Logger.withMinimumLogLevel(LogLevel.Warning))
Effect.runPromise(Effect.provide(main, services).pipe(Effect.scoped) as Effect.Effect<void>).then(() => process.exit(0), (e) => { console.error(e); process.exit(1) })
