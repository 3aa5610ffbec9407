/**
 * The benchmark's arms: what a client talks to. A and B speak the upstream's own protocol (A
 * directly, B through the bare proxy); C is this service, whose turn route streams run events.
 */
import { randomUUID } from "node:crypto"
import * as Http from "node:http"
import type { Child } from "./Processes.ts"
import { chatCompletions, json, type OpenStream, open, runEvents } from "./FrameClient.ts"

/** How the upstream answers one request. */
export interface Plan {
  readonly tokens: number
  readonly ttftMs: number
  readonly tps: number
  /** Names the request at the upstream, which then records when its connection closed. */
  readonly id?: string
}

export interface Arm {
  readonly name: string
  /** The process whose CPU time and memory count for this arm (none for A). */
  readonly process: Child | undefined
  /** Gets `count` fresh slots ready (arm C: chats); a slot takes one turn at a time. */
  readonly prepare: (count: number) => Promise<void>
  readonly stream: (slot: number, plan: Plan) => OpenStream
  /** Arm C: aborts a run, answering once it is terminal. */
  readonly abort?: (runId: string) => Promise<{ readonly status: number; readonly body: any }>
}

const agentOf = () => new Http.Agent({ keepAlive: true, maxSockets: Infinity })

const upstreamBody = (plan: Plan) => ({
  model: "bench",
  messages: [{ role: "user", content: "Say something." }],
  stream: true,
  ...settingsOf(plan)
})

const settingsOf = (plan: Plan) => ({
  max_tokens: plan.tokens,
  bench_ttft_ms: plan.ttftMs,
  bench_tps: plan.tps,
  ...(plan.id === undefined ? {} : { bench_id: plan.id })
})

/** Arms A and B: the Chat Completions protocol at `base`. */
export const direct = (name: string, base: URL, process: Child | undefined): Arm => {
  const agent = agentOf()
  const url = new URL("/v1/chat/completions", base)
  return {
    name,
    process,
    prepare: async () => {},
    stream: (_slot, plan) => open(agent, url, upstreamBody(plan), chatCompletions)
  }
}

/** Arm C: the service. Each slot is a chat of its own; a turn streams its run's events. */
export const service = (name: string, child: Child): Arm => {
  const agent = agentOf()
  let chats: Array<string> = []
  return {
    name,
    process: child,
    prepare: async (count) => {
      chats = []
      const created: Array<string> = new Array(count)
      let next = 0
      const worker = async () => {
        while (next < count) {
          const i = next++
          const answer = await json(agent, new URL("/chats", child.url), "POST", { title: `bench ${i}` })
          if (answer.status !== 201 && answer.status !== 200) throw new Error(`POST /chats answered ${answer.status}`)
          created[i] = answer.body.id
        }
      }
      await Promise.all(Array.from({ length: 16 }, worker))
      chats = created
    },
    stream: (slot, plan) =>
      open(agent, new URL(`/chats/${chats[slot % chats.length]}/messages`, child.url), {
        userMessageId: randomUUID(),
        content: "Say something.",
        settings: settingsOf(plan),
        abortOnDisconnect: true
      }, runEvents),
    abort: (runId) => json(agent, new URL(`/runs/${runId}/abort`, child.url), "POST")
  }
}
