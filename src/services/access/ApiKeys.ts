import { SqlClient } from "@effect/sql"
import { Clock, Effect, Option } from "effect"
import { randomBytes } from "node:crypto"
import { sha256OfText } from "../Hashing.ts"
import { makeId } from "../Uuid.ts"

/** A key as `npm run keys -- list` shows it: never the key itself. */
export interface ApiKeyInfo {
  readonly id: string
  readonly owner: string
  readonly createdAt: Date
  readonly revokedAt: Date | null
}

/** The prefix says what a leaked string is (secret scanners match it); the rest is 256 random bits. */
const prefix = "trk_"

/**
 * API keys (spec 85, `AUTH=api_key`): created for an owner and shown once, stored only as their
 * SHA-256, revoked at once for every instance (each request looks its key up: one indexed read).
 */
export class ApiKeys extends Effect.Service<ApiKeys>()("turn-runner/ApiKeys", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const create = (owner: string) =>
      Effect.gen(function*() {
        const id = yield* makeId<string>()
        const key = prefix + randomBytes(32).toString("base64url")
        const createdAt = new Date(yield* Clock.currentTimeMillis)
        yield* sql`INSERT INTO api_keys (id, owner, key_hash, created_at) VALUES (${id}, ${owner}, ${sha256OfText(key)}, ${createdAt})`
        return { id, owner, key, createdAt }
      }).pipe(Effect.orDie)

    const list = sql<ApiKeyInfo>`SELECT id, owner, created_at AS "createdAt", revoked_at AS "revokedAt" FROM api_keys ORDER BY created_at, id`.pipe(
      Effect.orDie
    )

    /** Answers whether a key with that id was live until now. */
    const revoke = (id: string) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        sql`UPDATE api_keys SET revoked_at = ${new Date(now)} WHERE id = ${id} AND revoked_at IS NULL RETURNING id`).pipe(
          Effect.map((rows) => rows.length > 0),
          Effect.orDie
        )

    /** The owner of a live key. */
    const ownerOf = (key: string) =>
      key.startsWith(prefix) && key.length < 100
        ? sql<{ readonly owner: string }>`SELECT owner FROM api_keys WHERE key_hash = ${sha256OfText(key)} AND revoked_at IS NULL`.pipe(
          Effect.map((rows) => Option.fromNullable(rows[0]?.owner)),
          Effect.orDie
        )
        : Effect.succeedNone

    return { create, list, revoke, ownerOf } as const
  })
}) {}
