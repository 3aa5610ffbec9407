/**
 * A client process of the benchmark: it opens the streams and timestamps their frames
 * (`FrameClient.ts`) on the orchestrator's orders, so that the client's work runs on an event loop
 * of its own, apart from the upstream's and the orchestrator's. Times are `process.hrtime`
 * microseconds, the machine's monotonic clock, which every process of the benchmark reads.
 *
 * Forked by `Clients.ts` with an IPC channel (`serialization: "advanced"`). Each message is a
 * command `{ id, command, args }`; the answer is `{ id, value }` or `{ id, error }`. Commands run
 * concurrently (a group of streams stays open while others are asked about it).
 */
import * as Http from "node:http"
import { type ArmSpec, type Plan, regenerateBody, requestOf, turnBody } from "./Arms.ts"
import { createChat } from "./Arms.ts"
import { json, micros, open, type OpenStream, runEvents, type StreamResult, wire } from "./FrameClient.ts"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

interface KnownArm {
  readonly spec: ArmSpec
  readonly agent: Http.Agent
  chats: ReadonlyArray<string>
}

const arms = new Map<string, KnownArm>()
/** Open streams by group, each under its index in the group. */
const groups = new Map<string, Map<number, OpenStream>>()

const armOf = (name: string) => {
  const arm = arms.get(name)
  if (arm === undefined) throw new Error(`unknown arm ${name}`)
  return arm
}

const groupOf = (name: string) => {
  const group = groups.get(name)
  if (group === undefined) throw new Error(`unknown group ${name}`)
  return group
}

/** How long a stream may take to end: what its plan takes, and 30 s more. */
const deadlineOf = (plan: Plan) => plan.ttftMs + (plan.tps > 0 ? (plan.tokens * 1000) / plan.tps : 0) + 30_000

const streamOn = (arm: KnownArm, slot: number, plan: Plan) => {
  const { url, body, dialect, headers } = requestOf(arm.spec, arm.chats, slot, plan)
  return open(arm.agent, url, body, dialect, deadlineOf(plan), headers)
}

/** A string field of a frame's JSON data (`runId`, `assistantMessageId`), if it has one. */
const fieldOf = (data: string | undefined, key: string): string | undefined => {
  try {
    const value = JSON.parse(data ?? "{}")?.[key]
    return typeof value === "string" ? value : undefined
  } catch {
    return undefined
  }
}

const isOk = (result: StreamResult, tokens: number) =>
  result.error === undefined && result.ended && result.tokens.length === tokens

// ---------------------------------------------------------------------------------------------

export interface TurnsResult {
  readonly turns: number
  readonly failed: number
  readonly errors: ReadonlyArray<string>
  readonly startedAt: number
  readonly endedAt: number
}

export interface MixedResult {
  readonly counts: Record<string, { ok: number; failed: number }>
  readonly errors: ReadonlyArray<string>
}

/** The kinds of turn of the soak, in the order each client cycles through them. */
const mix = ["short", "long", "short", "regenerate", "short", "abort", "short", "long", "short", "disconnect"] as const

const commands = {
  /** Knows `arm` from now on (a new one, if its address changed), with these chats (arm C), one per slot. */
  register: async ({ arm, chats }: { arm: ArmSpec; chats: ReadonlyArray<string> }) => {
    const known = arms.get(arm.name)
    if (known !== undefined && known.spec.url === arm.url) known.chats = chats
    else {
      known?.agent.destroy()
      arms.set(arm.name, { spec: arm, agent: new Http.Agent({ keepAlive: true, maxSockets: Infinity }), chats })
    }
  },

  /** One stream, to its end. */
  stream: ({ arm, slot, plan }: { arm: string; slot: number; plan: Plan }) => streamOn(armOf(arm), slot, plan).result,

  /**
   * Opens the streams `indices` of a group, index `i` due at `startAt + i / startsPerSecond`, on
   * slot `firstSlot + i`; with `idPrefix`, the upstream knows stream `i` as `${idPrefix}-${i}`.
   * Answers once every stream is sent.
   */
  open: async (
    { group, arm, indices, startAt, startsPerSecond, plan, firstSlot, idPrefix }: {
      group: string
      arm: string
      indices: ReadonlyArray<number>
      startAt: number
      startsPerSecond: number
      plan: Plan
      firstSlot: number
      idPrefix?: string
    }
  ) => {
    const known = armOf(arm)
    const streams = new Map<number, OpenStream>()
    groups.set(group, streams)
    for (const i of indices) {
      const due = startAt + (i * 1_000_000) / startsPerSecond
      const wait = (due - micros()) / 1000
      if (wait > 0) await sleep(wait)
      streams.set(i, streamOn(known, firstSlot + i, idPrefix === undefined ? plan : { ...plan, id: `${idPrefix}-${i}` }))
    }
    return streams.size
  },

  /** Follows the runs `runIds` (`GET /runs/{id}/events` on `arm`), each under its index in a new group. */
  follow: async ({ group, arm, runIds, indices }: { group: string; arm: string; runIds: ReadonlyArray<string>; indices: ReadonlyArray<number> }) => {
    const known = armOf(arm)
    const streams = new Map<number, OpenStream>()
    groups.set(group, streams)
    for (const i of indices) streams.set(i, open(known.agent, new URL(`/runs/${runIds[i]}/events`, known.spec.url), undefined, runEvents, 120_000))
    return streams.size
  },

  /** How many streams of the group got their first token, waiting at most `timeoutMs` for all of them. */
  streaming: async ({ group, timeoutMs }: { group: string; timeoutMs: number }) => {
    let count = 0
    const each = [...groupOf(group).values()].map((stream) => Promise.race([stream.firstToken.then(() => count++), stream.result]))
    await Promise.race([Promise.all(each), sleep(timeoutMs)])
    return count
  },

  /** The `data` of the first frame of stream `index` (arm C: names the run); `{}` if it ended with none. */
  first: ({ group, index }: { group: string; index: number }) => {
    const stream = groupOf(group).get(index)
    if (stream === undefined) throw new Error(`no stream ${index} in ${group}`)
    return Promise.race([stream.first, stream.result.then(() => "{}")])
  },

  /** Every stream's result, once all ended; the group is forgotten. */
  results: async ({ group }: { group: string }) => {
    const streams = groupOf(group)
    const results = await Promise.all([...streams].map(async ([i, stream]) => [i, await stream.result] as const))
    groups.delete(group)
    return results
  },

  /** Closes every stream of the group (arm C aborts their runs) and forgets it. */
  destroy: async ({ group }: { group: string }) => {
    for (const stream of groupOf(group).values()) stream.destroy()
    groups.delete(group)
  },

  /**
   * `clients` loops, each sending turns back to back for `durationMs` (or until `maxTurns` turns
   * were sent in all); turn `k` takes slot `slotBase + k * slotStride`.
   */
  turns: async (
    { arm, clients, durationMs, maxTurns, plan, slotBase, slotStride }: {
      arm: string
      clients: number
      durationMs: number
      maxTurns: number
      plan: Plan
      slotBase: number
      slotStride: number
    }
  ): Promise<TurnsResult> => {
    const known = armOf(arm)
    let next = 0
    let turns = 0
    let failed = 0
    const errors = new Set<string>()
    const startedAt = micros()
    const until = startedAt + durationMs * 1000
    const client = async () => {
      while (micros() < until && next < maxTurns) {
        const result = await streamOn(known, slotBase + next++ * slotStride, plan).result
        if (isOk(result, plan.tokens)) turns++
        else {
          failed++
          errors.add(result.error ?? `${result.tokens.length} of ${plan.tokens} tokens`)
        }
      }
    }
    await Promise.all(Array.from({ length: clients }, client))
    return { turns, failed, errors: [...errors].slice(0, 3), startedAt, endedAt: micros() }
  },

  /**
   * The soak's load (arm C): `clients` loops for `durationMs`, each cycling through short turns,
   * long streamed turns, regenerates, aborted turns and turns whose client goes away; each loop
   * moves to a chat of its own every ten turns (and after a client went away, as the run may still
   * be closing).
   */
  mixed: async ({ arm, clients, durationMs }: { arm: string; clients: number; durationMs: number }): Promise<MixedResult> => {
    const known = armOf(arm)
    const counts: Record<string, { ok: number; failed: number }> = Object.fromEntries(mix.map((kind) => [kind, { ok: 0, failed: 0 }]))
    const errors = new Set<string>()
    const until = micros() + durationMs * 1000
    const count = (kind: string, ok: boolean, error?: string) => {
      counts[kind]![ok ? "ok" : "failed"]++
      if (!ok) errors.add(`${kind}: ${error}`)
    }
    const client = async (c: number) => {
      let chat = ""
      let turnsInChat = 10
      let assistant: string | undefined
      for (let k = c; micros() < until; k++) {
        if (turnsInChat >= 10) {
          chat = await createChat(known.agent, known.spec.url, `soak ${c}`)
          turnsInChat = 0
          assistant = undefined
        }
        turnsInChat++
        // A chat's first turn cannot be a regenerate: it is a short turn then.
        const kind = mix[k % mix.length] === "regenerate" && assistant === undefined ? "short" : mix[k % mix.length]!
        const send = (plan: Plan, timeoutMs = deadlineOf(plan)) =>
          kind === "regenerate"
            ? open(known.agent, new URL(`/chats/${chat}/messages/${assistant}/regenerate`, known.spec.url), regenerateBody(plan), runEvents, timeoutMs)
            : open(known.agent, new URL(`/chats/${chat}/messages`, known.spec.url), turnBody(plan), runEvents, timeoutMs)
        if (kind === "short" || kind === "long" || kind === "regenerate") {
          const plan = kind === "long" ? { tokens: 200, ttftMs: 0, tps: 100 } : { tokens: 10, ttftMs: 0, tps: 0 }
          const result = await send(plan).result
          count(kind, isOk(result, plan.tokens), result.error ?? `${result.tokens.length} of ${plan.tokens} tokens`)
          assistant = fieldOf(result.first, "assistantMessageId") ?? assistant
        } else {
          const stream = send({ tokens: 1_000_000, ttftMs: 0, tps: 50 }, 30_000)
          await Promise.race([stream.firstToken, stream.result])
          await sleep(300)
          if (kind === "abort") {
            const runId = fieldOf(await Promise.race([stream.first, stream.result.then(() => "{}")]), "runId")
            const answer = runId === undefined
              ? { status: 0 }
              : await json(known.agent, new URL(`/runs/${runId}/abort`, known.spec.url), "POST")
            const result = await stream.result
            count(kind, answer.status === 200 && result.last === "pipeline.run.aborted", result.error ?? `abort answered ${answer.status}, last ${result.last}`)
          } else {
            stream.destroy()
            const result = await stream.result
            count(kind, result.tokens.length > 0, result.error)
            turnsInChat = 10
          }
        }
      }
    }
    await Promise.all(Array.from({ length: clients }, (_, c) => client(c)))
    return { counts, errors: [...errors].slice(0, 5) }
  },

  /** One stream on a connection of its own, its bytes on the wire counted (`FrameClient.wire`). */
  wire: ({ arm, slot, plan, gzip }: { arm: string; slot: number; plan: Plan; gzip: boolean }) => {
    const known = armOf(arm)
    const { url, body, dialect } = requestOf(known.spec, known.chats, slot, plan)
    return wire(url, body, dialect, gzip, deadlineOf(plan))
  }
}

export type Commands = typeof commands

process.on("message", (message: { id: number; command: keyof Commands; args: any }) => {
  const run = async () => (commands[message.command] as (args: unknown) => Promise<unknown>)(message.args)
  run().then(
    (value) => process.send!({ id: message.id, value }),
    (error) => process.send!({ id: message.id, error: error instanceof Error ? error.stack ?? error.message : String(error) })
  )
})
process.on("disconnect", () => process.exit(0))
process.send!({ ready: true })
