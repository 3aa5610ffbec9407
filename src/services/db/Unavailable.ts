import { Cause, Duration, Effect, Schedule } from "effect"

/**
 * Whether a failure means the database cannot be reached (connection refused, reset, closed,
 * the server shutting down), as opposed to a statement that is wrong. The first is answered 503
 * `database_unavailable`; the second is a bug, 500 `internal_error`.
 */
const connectionCodes = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EAI_AGAIN", "57P01", "57P02", "57P03"])

const connectionMessage = /connection terminated|connection error|timeout exceeded when trying to connect|not queryable|ECONNREFUSED|ECONNRESET/i

const causeOf = (error: unknown): unknown =>
  typeof error === "object" && error !== null && "cause" in error ? error.cause : undefined

export const isDatabaseUnavailable = (error: unknown): boolean => {
  if (typeof error !== "object" || error === null || !("_tag" in error) || error._tag !== "SqlError") return false
  for (let cause = causeOf(error); cause !== undefined && cause !== null; cause = causeOf(cause)) {
    if (typeof cause !== "object") break
    const code = "code" in cause ? String(cause.code) : ""
    if (connectionCodes.has(code) || code.startsWith("08")) return true
    if ("message" in cause && connectionMessage.test(String(cause.message))) return true
  }
  return false
}

/**
 * Retries a write that must happen (closing a run, a step, a generation) while the database is
 * unreachable, with a bounded backoff (about 10 s in all); past that the sweeper is the last resort.
 */
export const durably = <A, E, R>(write: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  write.pipe(
    Effect.sandbox,
    Effect.retry({
      while: (cause) => isDatabaseUnavailable(Cause.squash(cause)),
      schedule: Schedule.exponential(Duration.millis(100)).pipe(
        Schedule.union(Schedule.spaced(Duration.seconds(2))),
        Schedule.intersect(Schedule.recurs(10))
      )
    }),
    Effect.unsandbox
  )
