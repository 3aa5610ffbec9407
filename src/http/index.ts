/**
 * `turn-runner/http`: the HTTP API (spec 70) as Layers, for a program that serves it next to its
 * own routes or over its own services; `turn-runner/client` is the typed client for it.
 */
export { Api } from "./Api.ts"
export { AppLive, appWith, HttpLive } from "./Server.ts"
