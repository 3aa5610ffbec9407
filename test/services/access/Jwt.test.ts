import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import { exportJWK, generateKeyPair, SignJWT, UnsecuredJWT } from "jose"
import type { JWK } from "jose"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { makeVerifier } from "../../../src/services/access/Jwt.ts"

/**
 * `AUTH=jwt` (spec 85): tokens as an OIDC provider issues them, verified against a JWKS that this
 * test serves with keys it generates (RS256, ES256), or HS256 with a shared secret.
 */

const issuer = "https://issuer.test/"
const audience = "turn-runner"

/** A JWKS endpoint on loopback whose keys the test replaces (a rotation); counts its fetches. */
const jwksServer = Effect.acquireRelease(
  Effect.async<{ url: URL; keys: Array<JWK>; fetches: () => number; close: () => void }>((resume) => {
    const state = { keys: [] as Array<JWK>, fetches: 0 }
    const server = Http.createServer((_, response) => {
      state.fetches++
      response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: state.keys }))
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({
        url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`),
        get keys() {
          return state.keys
        },
        set keys(keys: Array<JWK>) {
          state.keys = keys
        },
        fetches: () => state.fetches,
        close: () => server.close()
      })))
  }),
  (server) => Effect.sync(() => server.close())
)

const keyPair = (alg: "RS256" | "ES256", kid: string) =>
  Effect.promise(async () => {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
    return { alg, kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } }
  })

type Pair = Effect.Effect.Success<ReturnType<typeof keyPair>>

const sign = (pair: Pair, claims: { sub?: string | undefined; iss?: string; aud?: string; exp?: number | string } = {}) =>
  Effect.promise(() => {
    let jwt = new SignJWT({}).setProtectedHeader({ alg: pair.alg, kid: pair.kid }).setIssuedAt()
    if (claims.sub !== undefined || !("sub" in claims)) jwt = jwt.setSubject(claims.sub ?? "user-1")
    jwt = jwt.setIssuer(claims.iss ?? issuer).setAudience(claims.aud ?? audience).setExpirationTime(claims.exp ?? "5m")
    return jwt.sign(pair.privateKey)
  })

const secret = "a-shared-secret-of-at-least-32-bytes!!"

describe("JWT verification", () => {
  it.scoped("RS256 and ES256 tokens from the JWKS name their subject; anything else names no one", () =>
    Effect.gen(function*() {
      const jwks = yield* jwksServer
      const rsa = yield* keyPair("RS256", "rsa-1")
      const ec = yield* keyPair("ES256", "ec-1")
      const stranger = yield* keyPair("RS256", "rsa-1")
      jwks.keys = [rsa.jwk, ec.jwk]
      const verify = makeVerifier({ jwksUrl: jwks.url, secret: undefined, issuer, audience })
      expect(yield* verify(yield* sign(rsa, { sub: "alice" }))).toEqual(Option.some("alice"))
      expect(yield* verify(yield* sign(ec, { sub: "bob" }))).toEqual(Option.some("bob"))
      // Expired (beyond the 30 s leeway), another issuer, another audience, another key under a known kid.
      expect(yield* verify(yield* sign(rsa, { exp: Math.floor(Date.now() / 1000) - 60 }))).toEqual(Option.none())
      expect(yield* verify(yield* sign(rsa, { iss: "https://elsewhere.test/" }))).toEqual(Option.none())
      expect(yield* verify(yield* sign(rsa, { aud: "another-app" }))).toEqual(Option.none())
      expect(yield* verify(yield* sign(stranger))).toEqual(Option.none())
      // A tampered payload, an unsigned token (alg: none), garbage, an oversized header value.
      const token = yield* sign(rsa, { sub: "alice" })
      const [header, , signature] = token.split(".")
      const forged = Buffer.from(JSON.stringify({ sub: "mallory", iss: issuer, aud: audience, exp: 9_999_999_999 })).toString("base64url")
      expect(yield* verify(`${header}.${forged}.${signature}`)).toEqual(Option.none())
      const unsigned = new UnsecuredJWT({}).setSubject("mallory").setIssuer(issuer).setAudience(audience).setExpirationTime("5m").encode()
      expect(yield* verify(unsigned)).toEqual(Option.none())
      expect(yield* verify("not.a.jwt")).toEqual(Option.none())
      expect(yield* verify("")).toEqual(Option.none())
      expect(yield* verify("a".repeat(100_000))).toEqual(Option.none())
    }))

  it.scoped("a token without a subject is refused; an unknown kid is refused, and after a rotation the new key is fetched", () =>
    Effect.gen(function*() {
      const jwks = yield* jwksServer
      const first = yield* keyPair("RS256", "k1")
      const second = yield* keyPair("ES256", "k2")
      jwks.keys = [first.jwk]
      const verify = makeVerifier({ jwksUrl: jwks.url, secret: undefined, issuer, audience, jwksCooldownMs: 0 })
      expect(yield* verify(yield* sign(first, { sub: undefined }))).toEqual(Option.none())
      expect(yield* verify(yield* sign(first))).toEqual(Option.some("user-1"))
      expect(yield* verify(yield* sign(second))).toEqual(Option.none())
      const fetchesBefore = jwks.fetches()
      jwks.keys = [second.jwk]
      expect(yield* verify(yield* sign(second, { sub: "carol" }))).toEqual(Option.some("carol"))
      expect(jwks.fetches()).toBeGreaterThan(fetchesBefore)
      // The retired key no longer verifies once the set no longer has it.
      expect(yield* verify(yield* sign(first))).toEqual(Option.none())
    }))

  it.effect("HS256 with JWT_SECRET; a JWKS algorithm or another secret is refused", () =>
    Effect.gen(function*() {
      const verify = makeVerifier({ jwksUrl: undefined, secret: Redacted.make(secret), issuer, audience })
      const hs = (key: string, alg = "HS256") =>
        Effect.promise(() =>
          new SignJWT({}).setProtectedHeader({ alg }).setSubject("dave").setIssuer(issuer).setAudience(audience).setExpirationTime("5m")
            .sign(new TextEncoder().encode(key)))
      expect(yield* verify(yield* hs(secret))).toEqual(Option.some("dave"))
      expect(yield* verify(yield* hs("another-secret-of-at-least-32-bytes!!!"))).toEqual(Option.none())
      expect(yield* verify(yield* hs(secret, "HS512"))).toEqual(Option.none())
      const rsa = yield* keyPair("RS256", "r")
      expect(yield* verify(yield* sign(rsa))).toEqual(Option.none())
    }))
})
