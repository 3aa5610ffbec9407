import { createHash } from "node:crypto"

/** JSON with object keys sorted at every depth: equal meanings give equal text. */
export const canonicalJson = (value: unknown): string =>
  JSON.stringify(value, (_key, inner: unknown) =>
    inner !== null && typeof inner === "object" && !Array.isArray(inner)
      ? Object.fromEntries(Object.entries(inner).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : inner)

/** Hex SHA-256 of a text. */
export const sha256OfText = (text: string): string => createHash("sha256").update(text).digest("hex")

/** Hex SHA-256 of the canonical JSON of a value (prompt hashes, request fingerprints). */
export const sha256Of = (value: unknown): string => createHash("sha256").update(canonicalJson(value)).digest("hex")
