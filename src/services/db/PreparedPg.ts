import { SqlError } from "@effect/sql/SqlError"
import { PgClient } from "@effect/sql-pg"
import { Duration, Effect, Redacted } from "effect"
import { createHash } from "node:crypto"
import Pg from "pg"
import { prepared } from "./Prepared.ts"

/** A marked statement's name, from its text (the texts are few: one per statement shape). */
const names = new Map<string, string>()
const nameOf = (text: string) => {
  let name = names.get(text)
  if (name === undefined) {
    name = `turn_runner_${createHash("sha1").update(text).digest("hex").slice(0, 20)}`
    names.set(text, name)
  }
  return name
}

/**
 * A `pg` client that sends a statement beginning with `prepared` as a named prepared statement
 * (its name from its text), so each connection parses it once and, after a few runs, keeps a
 * generic plan. Any other statement goes as it does in `pg`.
 */
class PreparingClient extends Pg.Client {
  override query(config: unknown, values?: unknown, callback?: unknown): never {
    const query = super.query as (...args: ReadonlyArray<unknown>) => never
    if (typeof config === "string" && config.startsWith(prepared) && Array.isArray(values)) {
      return query.call(this, { name: nameOf(config), text: config, values }, callback)
    }
    return query.call(this, config, values, callback)
  }
}

/** `PgClient` on a pool of `PreparingClient`s: the configuration `PgClient.layer` takes, for what this service uses. */
export const layer = (options: { readonly url: Redacted.Redacted; readonly applicationName: string; readonly maxConnections: number }) =>
  PgClient.layerFromPool({
    applicationName: options.applicationName,
    acquire: Effect.acquireRelease(
      Effect.gen(function*() {
        const pool = new Pg.Pool({
          Client: PreparingClient,
          connectionString: Redacted.value(options.url),
          max: options.maxConnections,
          application_name: options.applicationName
        })
        // An idle connection that fails is dropped by the pool; the next statement gets another.
        pool.on("error", () => {})
        yield* Effect.tryPromise({
          try: () => pool.query("SELECT 1"),
          catch: (cause) => new SqlError({ cause, message: "PgClient: Failed to connect" })
        }).pipe(
          Effect.timeoutFail({
            duration: Duration.seconds(5),
            onTimeout: () => new SqlError({ cause: new Error("Connection timed out"), message: "PgClient: Connection timed out" })
          }),
          Effect.tapError(() => Effect.promise(() => pool.end()))
        )
        return pool
      }),
      (pool) => Effect.promise(() => pool.end()).pipe(Effect.interruptible, Effect.timeoutOption(1000))
    )
  })
