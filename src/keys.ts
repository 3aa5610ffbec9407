import { ConfigError, Console, Effect, Exit, Layer, Logger, LogLevel } from "effect"
import { ApiKeys } from "./services/access/ApiKeys.ts"
import { AppConfig } from "./services/AppConfig.ts"
import { DatabaseLive } from "./services/db/Database.ts"

/**
 * `npm run keys -- create --owner NAME | list | revoke ID` (spec 85): the API keys of
 * `AUTH=api_key`, on the database the service uses (`DATABASE_URL`, or the embedded one in
 * `DATA_DIR`). A key is printed once, at its creation; only its hash is stored.
 */

const usage = `usage: npm run keys -- create --owner NAME
       npm run keys -- list
       npm run keys -- revoke ID`

const isUuid = (text: string) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(text)

class UsageError {
  constructor(readonly message: string) {}
}

const command = (args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const keys = yield* ApiKeys
    const [verb, ...rest] = args
    switch (verb) {
      case "create": {
        const at = rest.indexOf("--owner")
        const owner = at >= 0 ? rest[at + 1]?.trim() : undefined
        if (owner === undefined || owner === "" || owner.length > 256) return yield* Effect.fail(new UsageError("create needs --owner NAME (1–256 characters)"))
        const key = yield* keys.create(owner)
        yield* Console.log(`created key ${key.id} for owner ${key.owner}; it is shown only now:\n\n  ${key.key}\n`)
        return
      }
      case "list": {
        const all = yield* keys.list
        if (all.length === 0) return yield* Console.log("no keys")
        for (const key of all) {
          yield* Console.log(`${key.id}  ${key.owner}  created ${key.createdAt.toISOString()}${key.revokedAt === null ? "" : `  revoked ${key.revokedAt.toISOString()}`}`)
        }
        return
      }
      case "revoke": {
        const id = rest[0]
        if (id === undefined || !isUuid(id)) return yield* Effect.fail(new UsageError("revoke needs the key's ID (a UUID, as list shows it)"))
        if (!(yield* keys.revoke(id))) return yield* Effect.fail(new UsageError(`no live key ${id}`))
        return yield* Console.log(`revoked ${id}`)
      }
      default:
        return yield* Effect.fail(new UsageError(verb === undefined ? "no command" : `unknown command ${verb}`))
    }
  })

const program = command(process.argv.slice(2)).pipe(
  Effect.provide(ApiKeys.Default.pipe(Layer.provide(DatabaseLive), Layer.provideMerge(AppConfig.Default))),
  Effect.catchIf(ConfigError.isConfigError, (error) => Effect.fail(new UsageError(`invalid configuration: ${error}`))),
  Effect.catchAll((error) => Effect.zipRight(Console.error(`keys: ${error instanceof UsageError ? error.message : String(error)}\n${usage}`), Effect.sync(() => process.exitCode = 1))),
  Logger.withMinimumLogLevel(LogLevel.Warning)
)

Effect.runPromiseExit(program).then((exit) => process.exit(Exit.isSuccess(exit) ? process.exitCode ?? 0 : 1))
