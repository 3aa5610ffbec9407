import { Effect, Option, Redacted } from "effect"
import { createRemoteJWKSet, jwtVerify } from "jose"
import type { JWTVerifyGetKey } from "jose"

export interface JwtOptions {
  readonly jwksUrl: URL | undefined
  readonly secret: Redacted.Redacted | undefined
  readonly issuer: string
  readonly audience: string
  /** The least time between two fetches of the JWKS (an unknown `kid` fetches it again); 30 s. */
  readonly jwksCooldownMs?: number | undefined
}

/** Asymmetric algorithms an OIDC provider signs with; `none` and HMAC are never taken from a JWKS. */
const jwksAlgorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]

/** Tokens longer than this are refused unread (a header is not a place for megabytes). */
const maxTokenLength = 8192

/**
 * Verifies an OIDC provider's access tokens (spec 85, `AUTH=jwt`) with `jose`: the signature
 * against the provider's JWKS (fetched and cached by `jose`, refetched for an unknown `kid`, so key
 * rotation needs nothing) or a shared HS256 secret; the expiry and not-before (30 s leeway), the
 * issuer and the audience. The caller is the token's `sub`.
 */
export const makeVerifier = (options: JwtOptions) => {
  const key: Uint8Array | JWTVerifyGetKey = options.jwksUrl !== undefined
    ? createRemoteJWKSet(options.jwksUrl, { cooldownDuration: options.jwksCooldownMs ?? 30_000, timeoutDuration: 5_000 })
    : new TextEncoder().encode(Redacted.value(options.secret!))
  const algorithms = options.jwksUrl !== undefined ? jwksAlgorithms : ["HS256"]
  /** The token's subject when it verifies; why not otherwise (for the log, never the answer). */
  return (token: string): Effect.Effect<Option.Option<string>> =>
    token.length === 0 || token.length > maxTokenLength
      ? Effect.succeedNone
      : Effect.tryPromise(() =>
        jwtVerify(token, key as JWTVerifyGetKey, {
          issuer: options.issuer,
          audience: options.audience,
          algorithms,
          clockTolerance: 30,
          requiredClaims: ["sub", "exp"]
        })
      ).pipe(
        Effect.map(({ payload }) =>
          typeof payload.sub === "string" && payload.sub.length > 0 && payload.sub.length <= 256 ? Option.some(payload.sub) : Option.none()
        ),
        Effect.catchAll((error) =>
          Effect.as(Effect.logDebug("a bearer token was refused").pipe(Effect.annotateLogs("reason", describe(error.error))), Option.none()))
      )
}

/** jose's error code (`ERR_JWT_EXPIRED`, …): says why without quoting the token. */
const describe = (error: unknown) =>
  typeof error === "object" && error !== null && "code" in error ? String(error.code) : "invalid"
