import { SqlClient } from "@effect/sql"
import { expect, it, layer } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as PgliteClient from "../../../src/services/db/PgliteClient.ts"
import { prepared } from "../../../src/services/db/Prepared.ts"

// Boot takes seconds, so the whole file shares one in-memory database; each test uses its own table.
layer(PgliteClient.layer({ dataDir: "memory" }), { excludeTestServices: true })("PgliteClient", (it) => {
  it.effect("selects values with pg's types: int8 as string, timestamptz as Date, jsonb parsed", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const [row] = yield* sql`SELECT 1::int4 AS i, 'x'::text AS t, true AS b, 1.5::float8 AS f,
        9007199254740993::int8 AS big, 1.50::numeric AS n, now() AS ts, '{"a":[1]}'::jsonb AS j, null::text AS z`
      expect(row).toMatchObject({ i: 1, t: "x", b: true, f: 1.5, big: "9007199254740993", n: "1.50", z: null })
      expect(row?.ts).toBeInstanceOf(Date)
      expect(row?.j).toEqual({ a: [1] })
    }))

  it.effect("round-trips parameters: Date, jsonb object and array, int8, null", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE params (at timestamptz, doc jsonb, list jsonb, big int8, note text)`
      const at = new Date("2024-05-06T07:08:09.123Z")
      const doc = { name: "é\"x", nested: { n: 1, ok: true, none: null } }
      yield* sql`INSERT INTO params ${sql.insert({ at, doc, list: [1, "two"], big: "9007199254740993", note: null })}`
      const rows = yield* sql`SELECT * FROM params`
      expect(rows).toEqual([{ at, doc, list: [1, "two"], big: "9007199254740993", note: null }])
      const [found] = yield* sql`SELECT count(*) AS c FROM params WHERE doc @> ${{ nested: { n: 1 } }}
        AND at = ${at} AND big = ${9007199254740993n}`
      expect(found?.c).toBe("1")
    }))

  it.effect("sends a plain object as JSON where the parameter is not typed json, as pg does", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const [row] = yield* sql`SELECT ${{ a: 1 }}::text AS t`
      expect(row?.t).toBe("{\"a\":1}")
    }))

  it.effect("runs a statement marked prepared as one named statement, with the values and errors of any other", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE marked (id int PRIMARY KEY, at timestamptz, doc jsonb)`
      const at = new Date("2024-05-06T07:08:09.123Z")
      const insert = (id: number) =>
        sql`${sql.unsafe(prepared)} INSERT INTO marked VALUES (${id}, ${at}, ${{ n: id }}) RETURNING id, at, doc, 9007199254740993::int8 AS big`
      expect(yield* insert(1)).toEqual([{ id: 1, at, doc: { n: 1 }, big: "9007199254740993" }])
      expect(yield* insert(2)).toEqual([{ id: 2, at, doc: { n: 2 }, big: "9007199254740993" }])
      const error = yield* Effect.flip(insert(1))
      expect(error.cause).toMatchObject({ code: "23505" })
      expect(yield* insert(3)).toHaveLength(1)
      const statements = yield* sql<{ readonly name: string; readonly statement: string }>`SELECT name, statement FROM pg_prepared_statements`
      expect(statements).toHaveLength(1)
      expect(statements[0]!.statement).toContain("INSERT INTO marked VALUES ($1, $2, $3)")
      expect(yield* sql`SELECT id FROM marked ORDER BY id`).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }])
    }))

  it.effect("surfaces a unique violation as SqlError whose cause has code 23505", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE uniq (name text PRIMARY KEY)`
      yield* sql`INSERT INTO uniq VALUES ('a')`
      const error = yield* Effect.flip(sql`INSERT INTO uniq VALUES ('a')`)
      expect(error._tag).toBe("SqlError")
      expect(error.cause).toMatchObject({ code: "23505" })
    }))

  it.effect("rolls back a transaction that fails", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE failed_tx (n int)`
      const error = yield* Effect.flip(
        sql.withTransaction(Effect.zipRight(sql`INSERT INTO failed_tx VALUES (1)`, Effect.fail("boom")))
      )
      expect(error).toBe("boom")
      expect(yield* sql`SELECT * FROM failed_tx`).toEqual([])
    }))

  it.effect("rolls back an interrupted transaction and keeps serving afterwards", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE interrupted_tx (n int)`
      const inserted = yield* Deferred.make<void>()
      const fiber = yield* sql.withTransaction(
        sql`INSERT INTO interrupted_tx VALUES (1)`.pipe(
          Effect.zipRight(Deferred.succeed(inserted, undefined)),
          Effect.zipRight(Effect.never)
        )
      ).pipe(Effect.fork)
      yield* Deferred.await(inserted)
      expect(Exit.isInterrupted(yield* Fiber.interrupt(fiber))).toBe(true)
      expect(yield* sql`SELECT * FROM interrupted_tx`).toEqual([])
      yield* sql.withTransaction(sql`INSERT INTO interrupted_tx VALUES (2)`)
      expect(yield* sql`SELECT n FROM interrupted_tx`).toEqual([{ n: 2 }])
    }))

  it.effect("waits for an interrupted statement to settle, then keeps serving", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const fiber = yield* Effect.fork(sql`SELECT pg_sleep(0.3)`)
      yield* Effect.yieldNow()
      // PGlite cannot cancel: the interruption completes only once the query has run out.
      const [elapsed] = yield* Effect.timed(Fiber.interrupt(fiber))
      expect(Duration.toMillis(elapsed)).toBeGreaterThanOrEqual(200)
      expect(yield* sql`SELECT 1 AS one`).toEqual([{ one: 1 }])
      expect(yield* sql.withTransaction(sql`SELECT 2 AS two`)).toEqual([{ two: 2 }])
    }))

  it.effect("rolls back only the failed nested transaction to its savepoint", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE nested_tx (name text)`
      yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO nested_tx VALUES ('outer-before')`
        yield* sql.withTransaction(
          Effect.zipRight(sql`INSERT INTO nested_tx VALUES ('inner')`, Effect.fail("inner failed"))
        ).pipe(Effect.ignore)
        yield* sql`INSERT INTO nested_tx VALUES ('outer-after')`
      }))
      expect(yield* sql`SELECT name FROM nested_tx ORDER BY name`).toEqual([
        { name: "outer-after" },
        { name: "outer-before" }
      ])
    }))

  it.effect("serializes concurrent transactions: their statements never interleave", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE serialized_tx (id serial PRIMARY KEY, who text)`
      const transaction = (who: string) =>
        sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO serialized_tx (who) VALUES (${who})`
          yield* Effect.sleep("30 millis")
          yield* sql`INSERT INTO serialized_tx (who) VALUES (${who})`
        }))
      yield* Effect.all([transaction("a"), transaction("b")], { concurrency: "unbounded" })
      const order = (yield* sql<{ who: string }>`SELECT who FROM serialized_tx ORDER BY id`).map((r) => r.who)
      expect([["a", "a", "b", "b"], ["b", "b", "a", "a"]]).toContainEqual(order)
    }))

  it.effect("makes a statement from another fiber wait until the open transaction commits", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE waiting (n int)`
      const begun = yield* Deferred.make<void>()
      const transaction = yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO waiting VALUES (1)`
        yield* Deferred.succeed(begun, undefined)
        yield* Effect.sleep("50 millis")
        yield* sql`INSERT INTO waiting VALUES (2)`
      })).pipe(Effect.fork)
      yield* Deferred.await(begun)
      // Without the permit this would run inside the open transaction and see one row.
      expect(yield* sql`SELECT count(*)::int AS c FROM waiting`).toEqual([{ c: 2 }])
      yield* Fiber.join(transaction)
    }))

  it.effect("lets sql.reserve hold the backend for a scope", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const rows = yield* Effect.scoped(
        Effect.flatMap(sql.reserve, (conn) => conn.execute("SELECT $1::int AS n", [7], undefined))
      )
      expect(rows).toEqual([{ n: 7 }])
    }))
})

it.effect("persists an on-disk database across two layers built one after the other", () =>
  Effect.gen(function*() {
    const root = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "pglite-test-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )
    // A directory that does not exist yet: the layer creates it.
    const client = PgliteClient.layer({ dataDir: join(root, "data") })
    yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
      Effect.zipRight(sql`CREATE TABLE kept (n int)`, sql`INSERT INTO kept VALUES (42)`)).pipe(Effect.provide(client))
    const rows = yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT n FROM kept`).pipe(
      Effect.provide(client)
    )
    expect(rows).toEqual([{ n: 42 }])
  }).pipe(Effect.scoped), 60_000)

it.effect("analyzes the schema's tables after analyzeAfter statements, then after twice as many, so a growing table is planned by its size", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // Never analyzed: reltuples is -1 until the first analysis, and stays as it was until the next.
    const estimate = Effect.map(
      sql<{ readonly n: number }>`SELECT reltuples::int AS n FROM pg_class WHERE relname = 'grows'`,
      (rows) => rows[0]!.n
    )
    yield* sql`CREATE TABLE grows (id int PRIMARY KEY)` // statement 1
    yield* sql`INSERT INTO grows SELECT g FROM generate_series(1, 500) g` // 2
    expect(yield* estimate).toBe(-1) // 3
    yield* sql`SELECT 1` // 4: the table is analyzed after this one
    expect(yield* estimate).toBe(500) // 5
    yield* sql`INSERT INTO grows SELECT g FROM generate_series(501, 2000) g` // 6
    expect(yield* estimate).toBe(500) // 7
    yield* sql`SELECT 1` // 8: and again after this one
    expect(yield* estimate).toBe(2000)
  }).pipe(Effect.provide(PgliteClient.layer({ dataDir: "memory", analyzeAfter: 4 }))), 60_000)
