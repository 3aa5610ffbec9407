import { Effect, Exit, Scope } from "effect"
import type { Browser, BrowserContext, Page } from "playwright-core"
import { afterAll, afterEach, beforeAll, describe, expect } from "vitest"
import { chromiumAvailable, chromiumPath, launchChromium } from "./Chromium.ts"
import { type ServerProcess, startServer } from "./ServerProcess.ts"

/** Under CI the browser tests must run: a missing browser fails them instead of skipping them. */
const required = (process.env.CI ?? "") !== "" && process.env.CI !== "false"

/**
 * `describe` for tests in a real browser: skipped, with one line saying so, when there is no
 * Chromium, unless CI is set (then they run and fail).
 */
export const describeInBrowser = (name: string, body: () => void) => {
  if (chromiumAvailable || required) return describe(name, body)
  console.log(`browser tests skipped: no Chromium at ${chromiumPath} (apt-get install chromium, or set CHROMIUM_PATH)`)
  return describe.skip(name, body)
}

export interface BrowserSession {
  readonly server: ServerProcess
  /** A fresh page in a fresh context (own storage), closed after the test. */
  readonly newPage: () => Promise<Page>
  /** The service's JSON API, straight from the test. */
  readonly api: <A = any>(method: string, path: string, body?: unknown) => Promise<A>
  /** A finished run's events, read from its journal. */
  readonly events: (runId: string) => Promise<Array<Record<string, any>>>
}

/**
 * The real service (as `npm start` runs it, on an in-memory database) and one Chromium for the
 * tests of a file. An uncaught error in any page fails the test that opened it.
 */
export const browserSession = (env: Record<string, string> = {}): BrowserSession => {
  const scope = Effect.runSync(Scope.make())
  let server: ServerProcess | undefined
  let browser: Browser | undefined
  let contexts: Array<BrowserContext> = []
  let pageErrors: Array<string> = []

  beforeAll(async () => {
    browser = await launchChromium()
    server = await Effect.runPromise(Scope.extend(startServer({ DATA_DIR: "memory", ...env }), scope))
  }, 60_000)
  afterAll(async () => {
    await browser?.close()
    await Effect.runPromise(Scope.close(scope, Exit.void))
  })
  afterEach(async () => {
    await Promise.all(contexts.map((context) => context.close()))
    contexts = []
    const errors = pageErrors
    pageErrors = []
    expect(errors).toEqual([])
  })

  const api = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${server!.baseUrl}${path}`, {
      method,
      ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
    })
    const text = await response.text()
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`)
    return text === "" ? null : JSON.parse(text)
  }

  return {
    get server() {
      return server!
    },
    newPage: async () => {
      const context = await browser!.newContext({ baseURL: server!.baseUrl })
      contexts.push(context)
      // A wait that fails names itself well before the test's own timeout.
      context.setDefaultTimeout(15_000)
      const page = await context.newPage()
      page.on("pageerror", (error) => pageErrors.push(error.message))
      return page
    },
    api,
    events: async (runId) => {
      const response = await fetch(`${server!.baseUrl}/runs/${runId}/events`)
      const text = await response.text()
      return text.split("\n").filter((line) => line.startsWith("data: ")).map((line) => JSON.parse(line.slice(6)))
    }
  }
}

/** The concatenated deltas of a run's events: the generation's raw text (spec invariant 7). */
export const generationText = (events: ReadonlyArray<Record<string, any>>) =>
  events.filter((event) => event.type === "llm.stream.delta").map((event) => event.content as string).join("")
