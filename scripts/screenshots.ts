/**
 * `npm run screenshots`: the README's pictures of the web app (docs/web-*.png), taken in Chromium
 * from the real service on an in-memory database, with a few chats and turns made for them.
 */
import { Effect, Exit, Scope } from "effect"
import { launchChromium } from "../test/support/Chromium.ts"
import { startServer } from "../test/support/ServerProcess.ts"

// The functions handed to the page run there, where this exists.
declare const document: any

const scope = Effect.runSync(Scope.make())
const server = await Effect.runPromise(Scope.extend(startServer({ DATA_DIR: "memory" }), scope))
const browser = await launchChromium()

const api = async (method: string, path: string, body?: unknown) => {
  const response = await fetch(`${server.baseUrl}${path}`, {
    method,
    ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
  })
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`)
  return response.status === 204 ? null : response.json()
}
/** A turn, waited for: its event stream ends with the run. */
const turn = async (path: string, body: object) => {
  const response = await fetch(`${server.baseUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "text/event-stream" },
    body: JSON.stringify(body)
  })
  const events = (await response.text()).split("\n").filter((line) => line.startsWith("data: ")).map((line) => JSON.parse(line.slice(6)))
  return events[0].runId as string
}

try {
  for (const title of ["Trip to Lisbon", "Sourdough notes", "Quarterly report draft"]) await api("POST", "/chats", { title })
  const chat = await api("POST", "/chats", { title: "Otters", systemPrompt: "You are a concise naturalist." })
  const send = (content: string, settings: object) =>
    turn(`/chats/${chat.id}/messages`, { userMessageId: crypto.randomUUID(), content, settings })
  await send("What do otters eat?", { max_tokens: 24 })
  const runId = await send("And where do they sleep?", { max_tokens: 30, local: { tokenDelayMs: 15, firstTokenDelayMs: 120 } })
  const { messages } = await api("GET", `/chats/${chat.id}/messages`)
  await turn(`/chats/${chat.id}/messages/${messages.at(-1).id}/regenerate`, { requestId: crypto.randomUUID(), settings: { max_tokens: 20 } })

  const page = await browser.newPage({ baseURL: server.baseUrl, viewport: { width: 960, height: 720 } })
  await page.goto("/")
  await page.locator(".chats li").nth(3).waitFor()
  await page.screenshot({ path: "docs/web-chats.png" })

  // The chat mid-answer: the second answer regenerated (‹ 2/2 ›) while a third turn streams in.
  await page.goto(`/ui/chats/${chat.id}`)
  await page.getByText("Generation settings").click()
  await page.getByLabel(/Sent with each turn/).fill(JSON.stringify({ max_tokens: 200, local: { tokenDelayMs: 40 } }))
  await page.getByText("Generation settings").click()
  await page.getByLabel("Message", { exact: true }).fill("Tell me more about their fur")
  await page.getByLabel("Message", { exact: true }).press("Enter")
  await page.waitForFunction(() => (document.querySelector("[aria-live]")?.textContent?.length ?? 0) > 160)
  await page.screenshot({ path: "docs/web-chat.png", fullPage: true })

  await page.setViewportSize({ width: 960, height: 1100 })
  await page.goto(`/ui/runs/${runId}`)
  await page.locator(".report h3").first().waitFor()
  await page.screenshot({ path: "docs/web-run.png" })
} finally {
  await browser.close()
  await Effect.runPromise(Scope.close(scope, Exit.void))
}
