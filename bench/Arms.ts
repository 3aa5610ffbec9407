/**
 * The benchmark's arms: what a client talks to. A and B speak the upstream's own protocol (A
 * directly, B through the bare proxy); C is this service, whose turn route streams run events.
 *
 * An arm's streams are opened by the client processes (`client.ts`), which know it by its
 * `ArmSpec` and its chats; the orchestrator keeps the rest (its processes, setting up chats,
 * aborting runs).
 */
import { randomUUID } from "node:crypto"
import * as Http from "node:http"
import type { Clients } from "./Clients.ts"
import { chatCompletions, type Dialect, json, runEvents } from "./FrameClient.ts"
import type { Child } from "./Processes.ts"

/** How the upstream answers one request. */
export interface Plan {
  readonly tokens: number
  readonly ttftMs: number
  readonly tps: number
  /** Names the request at the upstream, which then records when its connection closed. */
  readonly id?: string
}

/** What a client process needs to know of an arm: plain data, sent over IPC. */
export interface ArmSpec {
  readonly name: string
  readonly kind: "direct" | "service"
  readonly url: string
  /** `Authorization` sent with every request (a service with `AUTH=api_key`). */
  readonly authorization?: string | undefined
}

export interface Arm extends ArmSpec {
  /** The processes whose CPU time and memory count for this arm (none for A). */
  readonly process: Child | undefined
  /** Gets `count` fresh slots ready in every client process (arm C: chats); a slot takes one turn at a time. */
  readonly prepare: (count: number) => Promise<void>
  /** Arm C: aborts a run, answering once it is terminal. */
  readonly abort?: (runId: string) => Promise<{ readonly status: number; readonly body: any }>
}

const settingsOf = (plan: Plan) => ({
  max_tokens: plan.tokens,
  bench_ttft_ms: plan.ttftMs,
  bench_tps: plan.tps,
  ...(plan.id === undefined ? {} : { bench_id: plan.id })
})

/** One streamed request of an arm: where it goes, what it sends, how its frames read. */
export interface StreamRequest {
  readonly url: URL
  readonly body: unknown
  readonly dialect: Dialect
  readonly headers: Readonly<Record<string, string>>
}

/** A turn on slot `slot` (arm C: on the slot's chat) that the upstream answers as `plan` says. */
export const requestOf = (arm: ArmSpec, chats: ReadonlyArray<string>, slot: number, plan: Plan): StreamRequest =>
  arm.kind === "direct"
    ? {
      url: new URL("/v1/chat/completions", arm.url),
      body: { model: "bench", messages: [{ role: "user", content: "Say something." }], stream: true, ...settingsOf(plan) },
      dialect: chatCompletions,
      headers: {}
    }
    : {
      url: new URL(`/chats/${chats[slot % chats.length]}/messages`, arm.url),
      body: turnBody(plan),
      dialect: runEvents,
      headers: headersOf(arm)
    }

/** The headers every request of the arm carries. */
export const headersOf = (arm: ArmSpec): Record<string, string> => arm.authorization === undefined ? {} : { authorization: arm.authorization }

/** The body of a turn request (arm C), `abortOnDisconnect` on. */
export const turnBody = (plan: Plan) => ({
  userMessageId: randomUUID(),
  content: "Say something.",
  settings: settingsOf(plan),
  abortOnDisconnect: true
})

/** The body of a regenerate request (arm C). */
export const regenerateBody = (plan: Plan) => ({ requestId: randomUUID(), settings: settingsOf(plan), abortOnDisconnect: true })

const agentOf = () => new Http.Agent({ keepAlive: true, maxSockets: Infinity })

/** Arms A and B: the Chat Completions protocol at `base`. */
export const direct = (name: string, base: URL, process: Child | undefined, clients: Clients): Arm => {
  const spec: ArmSpec = { name, kind: "direct", url: base.href }
  return { ...spec, process, prepare: () => clients.register(spec, []) }
}

/** Creates a chat (arm C); resolves with its id. */
export const createChat = async (agent: Http.Agent, base: URL | string, title: string, headers: Record<string, string> = {}): Promise<string> => {
  const answer = await json(agent, new URL("/chats", base), "POST", { title }, headers)
  if (answer.status !== 201 && answer.status !== 200) throw new Error(`POST /chats answered ${answer.status}`)
  return answer.body.id
}

/** Arm C: the service. Each slot is a chat of its own; a turn streams its run's events. */
export const service = (name: string, child: Child, clients: Clients, authorization?: string): Arm => {
  const agent = agentOf()
  const spec: ArmSpec = { name, kind: "service", url: child.url.href, authorization }
  return {
    ...spec,
    process: child,
    prepare: async (count) => {
      const chats: Array<string> = new Array(count)
      let next = 0
      const worker = async () => {
        while (next < count) {
          const i = next++
          chats[i] = await createChat(agent, child.url, `bench ${i}`, headersOf(spec))
        }
      }
      await Promise.all(Array.from({ length: 16 }, worker))
      await clients.register(spec, chats)
    },
    abort: (runId) => json(agent, new URL(`/runs/${runId}/abort`, child.url), "POST", undefined, headersOf(spec))
  }
}

/** The service as every arm C runs it, against `upstream`. */
export const serviceEnv = (upstream: Child) => ({
  LLM_PROVIDER: "openai",
  OPENAI_BASE_URL: new URL("/v1", upstream.url).href,
  LLM_MODEL: "bench",
  SHUTDOWN_GRACE_MS: "0",
  // The benchmark is one owner opening hundreds of streams: spec 85's per-owner and per-instance
  // limits (4 live runs an owner, 60 turns a minute, 1000 live runs) would refuse it.
  MAX_LIVE_RUNS_PER_OWNER: "1000000",
  MAX_LIVE_RUNS: "1000000",
  MAX_SSE_CLIENTS: "1000000",
  TURN_RATE_PER_OWNER: "100000000"
})
