import { HttpClientRequest } from "@effect/platform"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { pglite } from "../support/TestDatabase.ts"
import { getJson, send, testServer } from "../support/TestServer.ts"

const indexHtml = readFileSync(new URL("../../web/index.html", import.meta.url), "utf8")

/** The web app of spec 75 is served by the service itself, beside the API and colliding with none of it. */
layer(testServer(pglite), { timeout: 60_000, excludeTestServices: true })("the web app's files", (it) => {
  it.effect("/ and every page path under /ui/ answer the app's index.html", () =>
    Effect.gen(function*() {
      for (const path of ["/", "/ui", "/ui/", "/ui/chats/0190a3c4-0000-7000-8000-000000000000", "/ui/runs/x?y=1"]) {
        const { headers, status, text } = yield* getJson(path)
        expect({ path, status, text }).toEqual({ path, status: 200, text: indexHtml })
        expect(headers["content-type"]).toBe("text/html; charset=utf-8")
        expect(headers["content-security-policy"]).toContain("default-src 'self'")
      }
    }))

  it.effect("the app's files come with their content type and an ETag, and a repeat gets a 304", () =>
    Effect.gen(function*() {
      const expected = { "app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8" }
      for (const [name, contentType] of Object.entries(expected)) {
        const first = yield* getJson(`/ui/assets/${name}`)
        expect(first.status).toBe(200)
        expect(first.text).toBe(readFileSync(new URL(`../../web/${name}`, import.meta.url), "utf8"))
        expect(first.headers).toMatchObject({ "content-type": contentType, "cache-control": "no-cache", "x-content-type-options": "nosniff" })
        const again = yield* send(HttpClientRequest.get(`/ui/assets/${name}`).pipe(HttpClientRequest.setHeader("if-none-match", first.headers.etag!)))
        expect(again).toMatchObject({ status: 304, text: "" })
      }
    }))

  it.effect("an unknown file, or a path that climbs out of web/, is a JSON 404", () =>
    Effect.gen(function*() {
      for (const path of ["/ui/assets/nope.js", "/ui/assets/../../package.json", "/ui/assets/%2e%2e%2fpackage.json", "/ui/assets/", "/ui/assets/index.html"]) {
        const { body, status } = yield* getJson(path)
        expect({ path, status, body }).toMatchObject({ path, status: 404, body: { code: "not_found" } })
      }
    }))

  it.effect("the API's routes and 404s are unchanged", () =>
    Effect.gen(function*() {
      expect(yield* getJson("/health")).toMatchObject({ status: 200, body: { status: "ok" } })
      expect(yield* getJson("/openapi.json")).toMatchObject({ status: 200 })
      expect(yield* getJson("/nothing-here")).toMatchObject({ status: 404, body: { code: "not_found" } })
    }))
})
