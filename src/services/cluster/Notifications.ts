import { Context, Deferred, Duration, Effect, Exit, Layer, Option, Schedule } from "effect"
import type { Redacted } from "effect"
import { Redacted as R } from "effect"
import pg from "pg"
import { AppConfig } from "../AppConfig.ts"

/**
 * The instances sharing one Postgres signal each other through it (spec 50): one listening
 * connection per instance, on a few fixed channels, for the whole process. Payloads carry ids and
 * small events; a lost signal only delays things, since what it announces is stored first (an
 * abort request on the run row, events in the journal).
 *
 * The connection is its own (`pg.Client`), not one of the pool's: a dropped connection is noticed
 * (its `error` and `end`), reconnected with backoff, listened on again, and then every `onListening`
 * hook catches up on what may have been missed. On the embedded database there is one process by
 * nature, and nothing to listen to.
 */

export const channels = {
  /** `<runId> <reason>`: stored on the run row first (`RunsRepo.requestAbort`). */
  abort: "turn_runner_abort",
  /** `<runId>`: an instance follows the run; its owner publishes its events (`Relay`). */
  follow: "turn_runner_follow",
  /** A run's events for followers elsewhere (`Relay`). */
  events: "turn_runner_events"
} as const

export type Channel = typeof channels[keyof typeof channels]

/** `off`: the embedded database, one process; the others say whether signals arrive right now. */
export type NotificationsStatus = "listening" | "reconnecting" | "off"

export class Notifications extends Context.Tag("turn-runner/Notifications")<Notifications, {
  /** `handler` gets each payload sent on `channel` by any instance (this one included), synchronously. */
  readonly on: (channel: Channel, handler: (payload: string) => void) => void
  /**
   * Sends on `channel` over the listening connection, in order; dropped while it is down. The
   * promise settles once the signal has left (or was dropped), for a sender that must know.
   */
  readonly send: (channel: Channel, payload: string) => Promise<void>
  /** Called each time the instance listens again after a drop: catch up on what was missed. */
  readonly onListening: (hook: () => void) => void
  readonly status: () => NotificationsStatus
}>() {}

/** Postgres' limit on a payload is 8000 bytes; senders stay under this. */
export const maxPayloadBytes = 7900

/** One process, nobody to signal: nothing is ever received, and followers read the journal. */
export const off: Layer.Layer<Notifications> = Layer.succeed(Notifications, {
  on: () => {},
  send: () => Promise.resolve(),
  onListening: () => {},
  status: () => "off"
})

/** After a drop: 100 ms, doubling, at most 5 s apart. */
const reconnecting = Schedule.exponential(Duration.millis(100)).pipe(Schedule.union(Schedule.spaced(Duration.seconds(5))))

/** Only the message: a driver's error can carry connection details. */
const messageOf = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

/** The listening connection on the Postgres at `url`. */
export const listening = (url: Redacted.Redacted) =>
  Layer.scoped(
    Notifications,
    Effect.gen(function*() {
      const handlers = new Map<string, Array<(payload: string) => void>>()
      const hooks: Array<() => void> = []
      let client: pg.Client | undefined
      let listened = false
      const first = yield* Deferred.make<void>()

      // What is sent while a send is in flight leaves with the next one, in one statement: one
      // round trip for many signals, in the order they were sent.
      interface Outbox {
        readonly channels: Array<string>
        readonly payloads: Array<string>
        readonly sent: Array<() => void>
      }
      const empty = (): Outbox => ({ channels: [], payloads: [], sent: [] })
      let outbox = empty()
      let sending = false
      const pump = () => {
        if (sending || outbox.channels.length === 0) return
        const batch = outbox
        outbox = empty()
        const connection = client
        if (connection === undefined) return batch.sent.forEach((sent) => sent())
        sending = true
        connection.query("SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)", [batch.channels, batch.payloads])
          .catch(() => undefined)
          .finally(() => {
            sending = false
            batch.sent.forEach((sent) => sent())
            pump()
          })
      }

      const dispatch = (channel: string, payload: string) => {
        for (const handler of handlers.get(channel) ?? []) handler(payload)
      }

      /** One connection's life: connect, listen, catch up, and fail once it is lost. */
      const session = Effect.gen(function*() {
        const connection = new pg.Client({ connectionString: R.value(url), application_name: "turn-runner-listener" })
        const lost = yield* Deferred.make<never, Error>()
        connection.on("error", (error) => Deferred.unsafeDone(lost, Exit.fail(error)))
        connection.on("end", () => Deferred.unsafeDone(lost, Exit.fail(new Error("the connection ended"))))
        connection.on("notification", (message) => dispatch(message.channel, message.payload ?? ""))
        yield* Effect.acquireRelease(
          Effect.tryPromise(() => connection.connect()),
          () => Effect.promise(() => connection.end().catch(() => undefined))
        )
        yield* Effect.tryPromise(() => connection.query(Object.values(channels).map((channel) => `LISTEN ${channel}`).join("; ")))
        client = connection
        if (listened) {
          yield* Effect.logInfo("notifications: listening again; catching up")
          for (const hook of hooks) hook()
        }
        listened = true
        Deferred.unsafeDone(first, Exit.void)
        const cause = yield* Effect.flip(Deferred.await(lost))
        yield* Effect.logWarning("notifications: the listening connection was lost; reconnecting").pipe(
          Effect.annotateLogs({ error: messageOf(cause) })
        )
      }).pipe(
        Effect.scoped,
        Effect.ensuring(Effect.sync(() => (client = undefined))),
        Effect.tapError((cause) =>
          Effect.logWarning("notifications: cannot listen; trying again").pipe(Effect.annotateLogs({ error: messageOf(cause) })))
      )
      // Each loss starts over: at once, then 100 ms, 200 ms, … at most 5 s apart.
      yield* session.pipe(Effect.retry(reconnecting), Effect.forever, Effect.forkScoped)
      // Ready once listening, so an instance that answers /health hears the others; a database
      // that is not there yet is the migrations' problem, and the connection keeps trying.
      yield* Deferred.await(first).pipe(Effect.timeout(Duration.seconds(5)), Effect.ignore)

      return {
        on: (channel, handler) => {
          const list = handlers.get(channel) ?? []
          list.push(handler)
          handlers.set(channel, list)
        },
        send: (channel, payload) =>
          new Promise<void>((sent) => {
            if (client === undefined) return sent()
            outbox.channels.push(channel)
            outbox.payloads.push(payload)
            outbox.sent.push(sent)
            pump()
          }),
        onListening: (hook) => void hooks.push(hook),
        status: () => (client === undefined ? "reconnecting" : "listening")
      }
    })
  )

/** Listening when `DATABASE_URL` names a Postgres the instances share; `off` on the embedded database. */
export const NotificationsLive: Layer.Layer<Notifications, never, AppConfig> = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) => Option.match(config.databaseUrl, { onNone: () => off, onSome: listening }))
)
