/**
 * The orchestrator's side of the client processes (`client.ts`): one probe process, which opens
 * one stream at a time (time to first token, gaps, bytes on the wire), and `BENCH_CLIENTS` load
 * processes (default 2), over which many streams are spread, stream `i` to process
 * `i % BENCH_CLIENTS`. The orchestrator itself opens no stream: its event loop stays free to
 * read `/proc` and to time aborts.
 */
import { type ChildProcess, fork } from "node:child_process"
import type { ArmSpec, Plan } from "./Arms.ts"
import type { Commands, MixedResult, TurnsResult } from "./client.ts"
import { micros, type StreamResult, type WireResult } from "./FrameClient.ts"
import { cpuMicros, rssBytes } from "./Processes.ts"

type Args<K extends keyof Commands> = Parameters<Commands[K]>[0]
type Value<K extends keyof Commands> = Awaited<ReturnType<Commands[K]>>

interface Worker {
  readonly child: ChildProcess
  readonly call: <K extends keyof Commands>(command: K, args: Args<K>) => Promise<Value<K>>
  readonly stop: () => Promise<void>
}

const startWorker = (name: string): Promise<Worker> =>
  new Promise((resolve, reject) => {
    const child = fork(new URL("./client.ts", import.meta.url).pathname, [], {
      execArgv: ["--import", "tsx"],
      serialization: "advanced",
      stdio: ["ignore", "inherit", "inherit", "ipc"]
    })
    const pending = new Map<number, { resolve: (value: any) => void; reject: (error: Error) => void }>()
    let next = 0
    const exited = new Promise<void>((done) => child.on("exit", () => done()))
    const worker: Worker = {
      child,
      call: (command, args) =>
        new Promise((resolve, reject) => {
          const id = next++
          pending.set(id, { resolve, reject })
          child.send({ id, command, args })
        }),
      stop: async () => {
        if (child.exitCode !== null || child.signalCode !== null) return
        child.disconnect()
        const timeout = setTimeout(() => child.kill("SIGKILL"), 5000)
        await exited
        clearTimeout(timeout)
      }
    }
    child.on("message", (message: { id: number; value?: unknown; error?: string; ready?: true }) => {
      if (message.ready === true) return resolve(worker)
      const waiting = pending.get(message.id)
      pending.delete(message.id)
      if (message.error !== undefined) waiting?.reject(new Error(`${name}: ${message.error}`))
      else waiting?.resolve(message.value)
    })
    child.on("exit", (code, signal) => {
      for (const waiting of pending.values()) waiting.reject(new Error(`${name} exited (${code ?? signal})`))
      pending.clear()
    })
    child.on("error", reject)
    child.on("exit", (code, signal) => reject(new Error(`${name} exited at start-up (${code ?? signal})`)))
  })

/** Streams opened together, spread over the load processes. */
export interface Streams {
  readonly count: number
  /** How many have their first token, waiting at most `timeoutMs` for all of them. */
  readonly streaming: (timeoutMs: number) => Promise<number>
  /** The `data` of stream `index`'s first frame (arm C: `pipeline.run.started`, which names the run). */
  readonly first: (index: number) => Promise<string>
  /** Every stream's result in order, once all ended. */
  readonly results: () => Promise<Array<StreamResult>>
  /** Closes every stream (arm C aborts their runs). */
  readonly destroy: () => Promise<void>
}

export interface Clients {
  /** How many load processes there are. */
  readonly load: number
  /** Tells every client process of `arm` and its chats (one per slot). */
  readonly register: (arm: ArmSpec, chats: ReadonlyArray<string>) => Promise<void>
  /** One stream, from the probe process, to its end. */
  readonly stream: (arm: ArmSpec, slot: number, plan: Plan) => Promise<StreamResult>
  /**
   * `count` streams, stream `i` on slot `firstSlot + i` (default 0), started `startsPerSecond` a
   * second in all; with `idPrefix`, the upstream knows stream `i` as `${idPrefix}-${i}`. Resolves
   * once all are sent.
   */
  readonly open: (
    arm: ArmSpec,
    options: {
      readonly count: number
      readonly startsPerSecond: number
      readonly plan: Plan
      readonly firstSlot?: number
      readonly idPrefix?: string
    }
  ) => Promise<Streams>
  /** Followers of the runs `runIds` on `arm` (`GET /runs/{id}/events`), spread over the load processes; their results in order. */
  readonly follow: (arm: ArmSpec, runIds: ReadonlyArray<string>) => Promise<{ readonly results: () => Promise<Array<StreamResult>> }>
  /** `concurrency` clients sending turns back to back for `durationMs`, or until `maxTurns` were sent. */
  readonly turns: (
    arm: ArmSpec,
    options: { readonly concurrency: number; readonly durationMs: number; readonly maxTurns?: number; readonly plan: Plan }
  ) => Promise<TurnsResult>
  /** The soak's mixed turns from `concurrency` clients for `durationMs`. */
  readonly mixed: (arm: ArmSpec, options: { readonly concurrency: number; readonly durationMs: number }) => Promise<MixedResult>
  /** One stream from the probe process on a connection of its own, its bytes on the wire counted. */
  readonly wire: (arm: ArmSpec, slot: number, plan: Plan, gzip: boolean) => Promise<WireResult>
  /** CPU time of every client process so far, in microseconds. */
  readonly cpuMicros: () => number
  readonly rssBytes: () => number
  readonly stop: () => Promise<void>
}

/** `n` parts of `total` as even as can be (the first ones larger). */
const split = (total: number, n: number) => Array.from({ length: n }, (_, k) => Math.floor(total / n) + (k < total % n ? 1 : 0))

export const startClients = async (load = Number(process.env.BENCH_CLIENTS ?? 2)): Promise<Clients> => {
  const probe = await startWorker("probe client")
  const loaders = await Promise.all(Array.from({ length: Math.max(1, load) }, (_, k) => startWorker(`load client ${k}`)))
  const all = [probe, ...loaders]
  let groups = 0
  return {
    load: loaders.length,
    register: async (arm, chats) => {
      await Promise.all(all.map((worker) => worker.call("register", { arm, chats })))
    },
    stream: (arm, slot, plan) => probe.call("stream", { arm: arm.name, slot, plan }),
    open: async (arm, { count, startsPerSecond, plan, firstSlot = 0, idPrefix }) => {
      const group = `group-${groups++}`
      const startAt = micros() + 20_000
      await Promise.all(loaders.map((worker, w) =>
        worker.call("open", {
          group,
          arm: arm.name,
          indices: Array.from({ length: count }, (_, i) => i).filter((i) => i % loaders.length === w),
          startAt,
          startsPerSecond,
          plan,
          firstSlot,
          ...(idPrefix === undefined ? {} : { idPrefix })
        })
      ))
      const owner = (index: number) => loaders[index % loaders.length]!
      return {
        count,
        streaming: async (timeoutMs) => {
          const counts = await Promise.all(loaders.map((worker) => worker.call("streaming", { group, timeoutMs })))
          return counts.reduce((sum, n) => sum + n, 0)
        },
        first: (index) => owner(index).call("first", { group, index }),
        results: async () => {
          const parts = await Promise.all(loaders.map((worker) => worker.call("results", { group })))
          const results: Array<StreamResult> = new Array(count)
          for (const part of parts) for (const [i, result] of part) results[i] = result
          return results
        },
        destroy: async () => {
          await Promise.all(loaders.map((worker) => worker.call("destroy", { group })))
        }
      }
    },
    follow: async (arm, runIds) => {
      const group = `group-${groups++}`
      await Promise.all(loaders.map((worker, w) =>
        worker.call("follow", { group, arm: arm.name, runIds, indices: runIds.map((_, i) => i).filter((i) => i % loaders.length === w) })
      ))
      return {
        results: async () => {
          const parts = await Promise.all(loaders.map((worker) => worker.call("results", { group })))
          const results: Array<StreamResult> = new Array(runIds.length)
          for (const part of parts) for (const [i, result] of part) results[i] = result
          return results
        }
      }
    },
    turns: async (arm, { concurrency, durationMs, maxTurns = Number.MAX_SAFE_INTEGER, plan }) => {
      const clients = split(concurrency, loaders.length)
      const quotas = split(Math.min(maxTurns, Number.MAX_SAFE_INTEGER / 2), loaders.length)
      const parts = await Promise.all(loaders.map((worker, w) =>
        worker.call("turns", {
          arm: arm.name,
          clients: clients[w]!,
          durationMs,
          maxTurns: quotas[w]!,
          plan,
          slotBase: w,
          slotStride: loaders.length
        })
      ))
      return {
        turns: parts.reduce((sum, part) => sum + part.turns, 0),
        failed: parts.reduce((sum, part) => sum + part.failed, 0),
        errors: [...new Set(parts.flatMap((part) => part.errors))].slice(0, 3),
        startedAt: Math.min(...parts.map((part) => part.startedAt)),
        endedAt: Math.max(...parts.map((part) => part.endedAt))
      }
    },
    mixed: async (arm, { concurrency, durationMs }) => {
      const clients = split(concurrency, loaders.length)
      const parts = await Promise.all(loaders.map((worker, w) => worker.call("mixed", { arm: arm.name, clients: clients[w]!, durationMs })))
      const counts: MixedResult["counts"] = {}
      for (const part of parts) {
        for (const [kind, { ok, failed }] of Object.entries(part.counts)) {
          counts[kind] = { ok: (counts[kind]?.ok ?? 0) + ok, failed: (counts[kind]?.failed ?? 0) + failed }
        }
      }
      return { counts, errors: [...new Set(parts.flatMap((part) => part.errors))].slice(0, 5) }
    },
    wire: (arm, slot, plan, gzip) => probe.call("wire", { arm: arm.name, slot, plan, gzip }),
    cpuMicros: () => all.reduce((sum, worker) => sum + cpuMicros(worker.child.pid!), 0),
    rssBytes: () => all.reduce((sum, worker) => sum + rssBytes(worker.child.pid!), 0),
    stop: async () => {
      await Promise.all(all.map((worker) => worker.stop()))
    }
  }
}
