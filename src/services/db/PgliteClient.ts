import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient, SqlError, Statement } from "@effect/sql"
import type { SqlConnection } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { parse, PGlite, protocol, types } from "@electric-sql/pglite"
import { Effect, Layer, Stream } from "effect"
import { mkdir } from "node:fs/promises"
import { prepared } from "./Prepared.ts"

/**
 * A `SqlClient` over an embedded PGlite, so code written against `SqlClient` runs unchanged on
 * PGlite and on `@effect/sql-pg`.
 *
 * PGlite is a single backend shared by every fiber, so a one-permit semaphore stands in for the
 * connection pool: a statement holds the permit while it runs, a transaction (or `sql.reserve`)
 * holds it from BEGIN to COMMIT/ROLLBACK. Statements inside a transaction reuse the transaction's
 * connection without asking for the permit again (`Client.make` looks the connection up in the
 * fiber's context), so they do not deadlock.
 *
 * A statement marked `prepared` (`Prepared.ts`) is parsed and described once, under a name, and
 * then only bound and executed: PGlite's `query` parses, describes, binds, describes and executes
 * every time, in six calls into the backend, where a prepared one takes one call and no parsing.
 */
export interface PgliteClientOptions {
  /** `"memory"` for an in-memory database, otherwise a directory (created if missing). */
  readonly dataDir: string
  readonly transformQueryNames?: ((name: string) => string) | undefined
  readonly transformResultNames?: ((name: string) => string) | undefined
  /** Statements before the tables are first analyzed (then twice as many each time); 1000 by default. */
  readonly analyzeAfter?: number | undefined
}

/**
 * The schema's tables analyzed, each from a sample of 3000 rows (the planner needs their size more
 * than their histograms): 8 ms for 50k runs, 26 ms for a million journal rows.
 */
const analyzeTables = `DO $$
  DECLARE name text;
  BEGIN
    SET LOCAL default_statistics_target = 10;
    FOR name IN SELECT quote_ident(relname) FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r' LOOP
      EXECUTE 'ANALYZE ' || name;
    END LOOP;
  END $$`

type TransformRows = (<A extends object>(rows: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined

const failed = (cause: unknown, message = "Failed to execute statement") => new SqlError.SqlError({ cause, message })

// As `pg` does: int8 stays a string (it may not fit a double); json, timestamptz and the rest use
// PGlite's parsers (parsed JSON, Date, numbers).
const parsers = { [types.INT8]: (value: string) => value }

// PGlite serializes by the parameter type the server infers (jsonb -> JSON.stringify, timestamptz
// -> ISO), but falls back to `toString()` where the type is text or unknown. `pg` sends objects as
// JSON there, so do the same; JSON text passes through PGlite's json serializer unchanged.
const toParam = (value: unknown): unknown =>
  value !== null && typeof value === "object" && !(value instanceof Date) && !Array.isArray(value) &&
    !ArrayBuffer.isView(value)
    ? JSON.stringify(value, (_, v) => (typeof v === "bigint" ? v.toString() : v))
    : value

export const make = (options: PgliteClientOptions) =>
  Effect.gen(function*() {
    const db = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          if (options.dataDir !== "memory") await mkdir(options.dataDir, { recursive: true })
          return PGlite.create(options.dataDir === "memory" ? { parsers } : { dataDir: options.dataDir, parsers })
        },
        catch: (cause) => failed(cause, "PgliteClient: failed to start PGlite")
      }),
      // PGlite's close waits for its own query queue, so a query left running by an interrupted
      // fiber finishes first.
      (db) => Effect.ignoreLogged(Effect.tryPromise(() => db.close()))
    )

    // PGlite cannot cancel a query: on interruption wait for it to settle, so whoever holds the
    // permit keeps it until the backend is idle again.
    const run = <A>(query: () => Promise<A>) =>
      Effect.async<A, SqlError.SqlError>((resume) => {
        const promise = query()
        promise.then((a) => resume(Effect.succeed(a)), (cause) => resume(Effect.fail(failed(cause))))
        return Effect.promise(() => promise.then(() => undefined, () => undefined))
      })

    const params = (values: ReadonlyArray<unknown>) => values.map(toParam)

    const { serialize } = protocol
    const statements = new Map<string, { readonly name: string; readonly paramTypes: ReadonlyArray<number> }>()
    const describe = async (text: string) => {
      const name = `prepared_${statements.size + 1}`
      const { messages } = await db.execProtocol(
        Buffer.concat([serialize.parse({ name, text }), serialize.describe({ type: "S", name }), serialize.sync()]),
        { syncToFs: false }
      )
      const statement = { name, paramTypes: parse.parseDescribeStatementResults(messages) }
      statements.set(text, statement)
      return statement
    }
    // Values serialized by the parameter types the server inferred, as PGlite's `query` does.
    const queryPrepared = (text: string, values: ReadonlyArray<unknown>) =>
      db.runExclusive(async () => {
        const { name, paramTypes } = statements.get(text) ?? await describe(text)
        const bound = params(values).map((value, i) => {
          if (value === null || value === undefined) return null
          const serializer = db.serializers[paramTypes[i]!]
          return serializer ? serializer(value) : String(value)
        })
        const { messages } = await db.execProtocol(Buffer.concat([
          serialize.bind({ statement: name, values: bound }),
          serialize.describe({ type: "P" }),
          serialize.execute({}),
          serialize.sync()
        ]))
        return parse.parseResults(messages, db.parsers)[0]!.rows as Array<object>
      })

    // PGlite runs no autovacuum, so nothing tells the planner that a table grew, and a prepared
    // statement keeps the plan made while its tables were small: a join over a sequential scan of
    // every row (8.6 ms a statement at 50k rows, against 0.4 once analyzed). So the tables are
    // analyzed after `analyzeAfter` statements, then after twice as many, and so on; that also has
    // every prepared statement planned again. It runs as part of the statement that reaches the
    // count, with its permit.
    let executed = 0
    let analyzeAt = options.analyzeAfter ?? 1000
    const maintained = <A>(statement: Effect.Effect<A, SqlError.SqlError>) => {
      if (++executed < analyzeAt) return statement
      analyzeAt *= 2
      return Effect.tap(statement, () => Effect.ignoreLogged(run(() => db.exec(analyzeTables))))
    }

    // Without parameters use the simple protocol (multi-statement SQL, as `pg` does for `[]`);
    // several statements yield an array of row arrays, again as `pg`.
    const rows = (sql: string, values: ReadonlyArray<unknown>): Effect.Effect<ReadonlyArray<object>, SqlError.SqlError> =>
      maintained(
        values.length === 0
          ? Effect.map(run(() => db.exec(sql)), (results) =>
            results.length === 1 ? results[0]!.rows : results.map((r) => r.rows))
          : sql.startsWith(prepared)
          ? run(() => queryPrepared(sql, values))
          : Effect.map(run(() => db.query<object>(sql, params(values))), (result) => result.rows)
      )

    const execute = (sql: string, values: ReadonlyArray<unknown>, transformRows: TransformRows) =>
      transformRows ? Effect.map(rows(sql, values), transformRows) : rows(sql, values)

    // The wait for the permit inherits its caller's interruptibility: a statement in a finalizer of
    // an interrupted fiber (closing a row after an abort) must still run, so never force it open.
    const semaphore = yield* Effect.makeSemaphore(1)
    const permitted = semaphore.withPermits(1)

    /** The backend as a transaction holds it: its permit taken for the whole transaction. */
    const held: SqlConnection.Connection = {
      execute,
      executeUnprepared: execute,
      executeRaw: (sql, values) => run(() => db.query(sql, params(values))),
      executeValues: (sql, values) =>
        Effect.map(
          run(() => db.query<ReadonlyArray<unknown>>(sql, params(values), { rowMode: "array" })),
          (result) => result.rows
        ),
      // PGlite has no cursor API across calls: the result is read whole, then streamed.
      executeStream: (sql, values, transformRows) => Stream.fromIterableEffect(execute(sql, values, transformRows))
    }

    /**
     * The backend for one statement, which takes the permit for as long as it runs: around the
     * call, not through a scoped acquirer, so the statement's scope has no finalizer to run.
     */
    const single: SqlConnection.Connection = {
      execute: (sql, values, transformRows) => permitted(held.execute(sql, values, transformRows)),
      executeUnprepared: (sql, values, transformRows) => permitted(held.executeUnprepared(sql, values, transformRows)),
      executeRaw: (sql, values) => permitted(held.executeRaw(sql, values)),
      executeValues: (sql, values) => permitted(held.executeValues(sql, values)),
      // Read whole under the permit, then streamed (as `held` does).
      executeStream: (sql, values, transformRows) => Stream.fromIterableEffect(permitted(held.execute(sql, values, transformRows)))
    }

    const compiler = PgClient.makeCompiler(options.transformQueryNames)
    const transformRows = options.transformResultNames
      ? Statement.defaultTransforms(options.transformResultNames).array
      : undefined

    return yield* SqlClient.make({
      acquirer: Effect.succeed(single),
      transactionAcquirer: Effect.as(Effect.acquireRelease(semaphore.take(1), () => semaphore.release(1)), held),
      compiler,
      spanAttributes: [["db.system.name", "postgresql"], ["db.namespace", "pglite"]],
      ...(transformRows ? { transformRows } : {})
    })
  })

export const layer = (options: PgliteClientOptions): Layer.Layer<SqlClient.SqlClient, SqlError.SqlError> =>
  Layer.scoped(SqlClient.SqlClient, make(options)).pipe(Layer.provide(Reactivity.layer))
