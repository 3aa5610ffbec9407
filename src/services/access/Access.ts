import { Effect, Option } from "effect"
import { anonymousOwner } from "../../domain/Owner.ts"
import { RunSnapshot } from "../../domain/Run.ts"
import { AppConfig } from "../AppConfig.ts"
import { ApiKeys } from "./ApiKeys.ts"
import { EventTokens } from "./EventTokens.ts"
import { makeVerifier } from "./Jwt.ts"


/**
 * Who a credential names (spec 85), in the configured mode: `none` (everyone is the anonymous
 * owner), `api_key` (the key's owner) or `jwt` (the token's subject); and a run's event token.
 */
export class Access extends Effect.Service<Access>()("turn-runner/Access", {
  effect: Effect.gen(function*() {
    const { access } = yield* AppConfig
    const keys = yield* ApiKeys
    const tokens = yield* EventTokens
    const verifyJwt = access.auth === "jwt" ? makeVerifier(access.jwt) : () => Effect.succeedNone

    /** The owner of a bearer credential; none when it proves nothing. */
    const ownerOfBearer = (credential: string): Effect.Effect<Option.Option<string>> =>
      access.auth === "api_key" ? keys.ownerOf(credential) : verifyJwt(credential)

    return {
      mode: access.auth,
      anonymous: anonymousOwner,
      ownerOfBearer,
      ownerOfEventToken: tokens.ownerOf,
      /** The snapshot with the token that lets `owner` follow its run from a browser; as it is without authentication. */
      withEventsToken: (owner: string, snapshot: RunSnapshot): Effect.Effect<RunSnapshot> =>
        access.auth === "none"
          ? Effect.succeed(snapshot)
          : Effect.map(tokens.issue(owner, snapshot.run.id), (eventsToken) => new RunSnapshot({ ...snapshot, eventsToken }))
    } as const
  }),
  dependencies: [ApiKeys.Default, EventTokens.Default]
}) {}
