import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { extname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { NotFound } from "../domain/ApiErrors.ts"

/**
 * The web app of spec 75, served from `web/` beside `src/` (and beside `dist/` once compiled, and
 * in an installed package): `index.html` for `/` and every page path under `/ui/`, the files
 * themselves under `/ui/assets/`. The files are read once at start-up into memory; a request
 * names a file only by looking it up there, so no path reaches the file system.
 */
export const webDirectory = ((): string => {
  // Where this module runs from differs: `src/http/` (tsx, vitest), `dist/http/` (the library),
  // `build/` (the bundled server). The package's root is the nearest folder above with `web/`.
  for (const up of ["../../", "../", "../../../"]) {
    const directory = fileURLToPath(new URL(`${up}web/`, import.meta.url))
    if (existsSync(join(directory, "index.html"))) return directory
  }
  return fileURLToPath(new URL("../../web/", import.meta.url))
})()

const contentTypes: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json"
}

/** The pages run only their own scripts and talk only to this server: no injected markup runs. */
const pageSecurity = {
  "content-security-policy":
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

interface Asset {
  readonly body: Uint8Array
  readonly headers: Record<string, string>
}

/**
 * Read synchronously, on purpose: this runs after the socket opened and before the app is served,
 * and a request arriving in between would go unanswered, so nothing here may wait on I/O.
 */
const readAssets = Effect.try(() => {
  const assets = new Map<string, Asset>()
  for (const name of readdirSync(webDirectory)) {
    const contentType = contentTypes[extname(name)]
    if (contentType === undefined) continue
    const body = readFileSync(join(webDirectory, name))
    assets.set(name, {
      body,
      headers: {
        "content-type": contentType,
        // Names carry no version: a browser asks again each time and mostly gets a 304.
        "cache-control": "no-cache",
        etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`,
        "x-content-type-options": "nosniff",
        ...(name === "index.html" ? pageSecurity : {})
      }
    })
  }
  return assets
}).pipe(Effect.orDie)

const respond = (asset: Asset) =>
  Effect.map(HttpServerRequest.HttpServerRequest, (request) =>
    request.headers["if-none-match"] === asset.headers.etag
      ? HttpServerResponse.empty({ status: 304, headers: asset.headers })
      : HttpServerResponse.uint8Array(asset.body, { headers: asset.headers }))

export const WebApp = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    const assets = yield* readAssets
    const index = assets.get("index.html")
    if (index === undefined) return yield* Effect.dieMessage(`the web app has no index.html in ${webDirectory}`)
    const page = respond(index)
    yield* router.get("/", page)
    yield* router.get("/ui", page)
    yield* router.get("/ui/*", page)
    const file = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const name = new URL(request.url, "http://localhost").pathname.slice("/ui/assets/".length)
      const asset = assets.get(name)
      return asset === undefined || name === "index.html"
        ? yield* new NotFound({ message: `no file ${name} in the web app` })
        : yield* respond(asset)
    })
    yield* router.get("/ui/assets/", file)
    yield* router.get("/ui/assets/*", file)
  }))
