import type { Page } from "playwright-core"
import { expect, it } from "vitest"
import { browserSession, describeInBrowser, generationText } from "../support/Browser.ts"

// The functions handed to the page run there, where these exist.
declare const document: any, window: any, MutationObserver: any

/**
 * The chat page of spec 75 in Chromium, against the real service and its `local` model (paced by
 * `settings.local.tokenDelayMs` so that there is time to reload or stop mid-answer).
 */
describeInBrowser("the chat page", () => {
  const session = browserSession()

  const openChat = async (settings: Record<string, unknown>) => {
    const chat = await session.api<{ id: string }>("POST", "/chats", { title: "Otters" })
    const page = await watchedPage()
    await page.goto(`/ui/chats/${chat.id}`)
    // The chat is loaded (its title shown) before the settings are opened: the page is settled.
    await page.getByRole("heading", { name: "Otters" }).waitFor()
    await setSettings(page, settings)
    return { chatId: chat.id, page }
  }

  /**
   * A page recording, across its whole life, every text its latest answer shows (in order), every
   * step state its progress shows (in order of first appearance), and whether part of an answer
   * was shown while the status said "Answering…". Checked after the fact, so a test never depends
   * on catching a passing state in time.
   */
  const watchedPage = async () => {
    const page = await session.newPage()
    await page.addInitScript(() => {
      const seen = { texts: [] as Array<string>, steps: [] as Array<string>, partWhileAnswering: false }
      Object.assign(window, { seen })
      new MutationObserver(() => {
        const text: string | undefined = [...document.querySelectorAll(".message.assistant .content")].at(-1)?.textContent
        if (text !== undefined && text !== seen.texts.at(-1)) seen.texts.push(text)
        for (const step of document.querySelectorAll(".progress [data-step]")) {
          const state = `${step.dataset.step}:${step.dataset.status}`
          if (!seen.steps.includes(state)) seen.steps.push(state)
        }
        if (text && document.querySelector('[role="status"]')?.textContent === "Answering…") seen.partWhileAnswering = true
      }).observe(document, { subtree: true, childList: true, characterData: true, attributes: true })
    })
    return page
  }

  const setSettings = async (page: Page, settings: Record<string, unknown>) => {
    const field = page.getByLabel(/Sent with each turn/)
    // Opened by its summary unless already open (asked of the element, not of what is painted yet).
    if (!(await page.locator("details.settings").evaluate((details) => (details as unknown as { readonly open: boolean }).open))) {
      await page.getByText("Generation settings").click()
    }
    await field.waitFor({ state: "visible" })
    await field.fill(JSON.stringify(settings))
  }

  const send = async (page: Page, text: string) => {
    const box = page.getByLabel("Message", { exact: true })
    await box.fill(text)
    await box.press("Enter")
  }

  const answer = (page: Page) => page.locator(".message.assistant .content").last()
  const status = (page: Page) => page.getByRole("status")
  const runIdOf = async (page: Page) => (await page.getByRole("link", { name: "Run details" }).last().getAttribute("href"))!.split("/").at(-1)!
  const seen = (page: Page) => page.evaluate(() => window.seen as { texts: Array<string>; steps: Array<string>; partWhileAnswering: boolean })
  const answerTexts = async (page: Page) => (await seen(page)).texts
  const textLongerThan = (page: Page, length: number) =>
    page.waitForFunction((length) => ([...document.querySelectorAll(".message.assistant .content")].at(-1)?.textContent?.length ?? 0) > length, length)
  const answerIs = (page: Page, text: string) =>
    page.waitForFunction((text) => [...document.querySelectorAll(".message.assistant .content")].at(-1)?.textContent === text, text)
  const step = (page: Page, type: string, status: string) => page.locator(`[data-step="${type}"][data-status="${status}"]`).waitFor()

  it("a sent message's answer streams in, with the run's progress, and ends as the run's text", async () => {
    const { page } = await openChat({ max_tokens: 30, local: { tokenDelayMs: 40 } })
    await send(page, "Tell me about otters")
    await page.locator(".message.user .content", { hasText: "Tell me about otters" }).waitFor()
    await status(page).filter({ hasText: "Answered" }).waitFor()
    for (const type of ["pre", "llm", "post"]) await step(page, type, "done")
    const { partWhileAnswering, steps } = await seen(page)
    expect(partWhileAnswering).toBe(true)
    expect(steps.indexOf("llm:running")).toBeGreaterThan(steps.indexOf("pre:done"))
    expect(steps.indexOf("llm:done")).toBeGreaterThan(steps.indexOf("llm:running"))
    expect(steps.indexOf("post:waiting")).toBeLessThan(steps.indexOf("llm:done"))
    const raw = generationText(await session.events(await runIdOf(page)))
    // Once the history is read again, the answer is the variant's final text (post trims the end).
    await answerIs(page, raw.trimEnd())
    // It grew in many steps, each a prefix of the whole: streamed, nothing repeated or skipped.
    const texts = await answerTexts(page)
    expect(texts.length).toBeGreaterThan(10)
    for (const text of texts) expect(raw.startsWith(text), JSON.stringify({ text, raw })).toBe(true)
  })

  it("a reload in the middle of an answer re-attaches to the run and continues it exactly; so does another tab", async () => {
    const { chatId, page } = await openChat({ max_tokens: 80, local: { tokenDelayMs: 50 } })
    await send(page, "Tell me about otters")
    await textLongerThan(page, 60)
    const before = (await answer(page).textContent())!
    // The reloaded page resumes after the last event it had; a new tab follows the run from its start.
    const resumed = page.waitForRequest((request) => /\/events\?after=[1-9]\d*$/.test(request.url()))
    await page.reload()
    await resumed
    await page.getByRole("button", { name: "Stop" }).waitFor()
    const other = await watchedPage()
    const fromStart = other.waitForRequest((request) => request.url().endsWith("/events?after=0"))
    await other.goto(`/ui/chats/${chatId}`)
    await fromStart
    for (const each of [page, other]) await status(each).filter({ hasText: "Answered" }).waitFor()
    const raw = generationText(await session.events(await runIdOf(page)))
    expect(raw.startsWith(before) && raw.length > before.length).toBe(true)
    for (const each of [page, other]) {
      await answerIs(each, raw.trimEnd())
      const texts = await answerTexts(each)
      for (const text of texts) expect(raw.startsWith(text), JSON.stringify({ text, raw })).toBe(true)
      expect(texts).toContain(raw)
    }
  })

  it("Stop ends the answer where it is: the run is aborted by the user and the partial text stays", async () => {
    const { chatId, page } = await openChat({ max_tokens: 400, local: { tokenDelayMs: 20 } })
    await send(page, "Tell me everything")
    await textLongerThan(page, 50)
    await page.getByRole("button", { name: "Stop" }).click()
    await status(page).filter({ hasText: "Stopped." }).waitFor()
    await step(page, "llm", "aborted")
    await step(page, "post", "skipped")
    const snapshot = await session.api("GET", `/runs/${await runIdOf(page)}`)
    expect(snapshot.run).toMatchObject({ status: "aborted", abortReason: "user" })
    const { messages } = await session.api("GET", `/chats/${chatId}/messages`)
    await answerIs(page, messages.at(-1).content)
    expect(messages.at(-1).content.split(" ").length).toBeLessThan(400)
    await page.getByRole("button", { name: "Send", disabled: false }).waitFor()
  })

  it("Stop pressed before the turn request reaches the server still stops it: its run starts aborted", async () => {
    const { chatId, page } = await openChat({ max_tokens: 20 })
    let arrived!: () => void
    let release!: () => void
    const intercepted = new Promise<void>((resolve) => (arrived = resolve))
    const held = new Promise<void>((resolve) => (release = resolve))
    await page.route(`**/chats/${chatId}/messages`, async (route) => {
      if (route.request().method() === "POST") {
        arrived()
        await held
      }
      await route.continue()
    })
    await send(page, "Never mind")
    await intercepted
    const abort = page.waitForResponse((response) => response.url().endsWith("/turns/abort"))
    await page.getByRole("button", { name: "Stop" }).click()
    expect(await (await abort).json()).toEqual({ run: null })
    release()
    await status(page).filter({ hasText: "Stopped." }).waitFor()
    for (const type of ["pre", "llm", "post"]) await step(page, type, "skipped")
    const snapshot = await session.api("GET", `/runs/${await runIdOf(page)}`)
    expect(snapshot).toMatchObject({ run: { status: "aborted", abortReason: "user" }, generation: null })
  })

  it("Delete from here rewinds the chat to before that message and puts it back in the message box", async () => {
    const { chatId, page } = await openChat({ max_tokens: 4 })
    for (const [question, count] of [["First question", 2], ["Second question", 4]] as const) {
      await send(page, question)
      await page.waitForFunction((count) => document.querySelectorAll(".message").length === count, count)
      await page.getByRole("button", { name: "Send", disabled: false }).waitFor()
    }
    page.once("dialog", (dialog) => void dialog.accept())
    await page.locator(".message").nth(2).getByRole("button", { name: "Delete from here" }).click()
    await page.waitForFunction(() => document.querySelectorAll(".message").length === 2)
    expect(await page.getByLabel("Message", { exact: true }).inputValue()).toBe("Second question")
    const { messages } = await session.api("GET", `/chats/${chatId}/messages`)
    expect(messages.map((message: { role: string }) => message.role)).toEqual(["user", "assistant"])
  })

  it("Regenerate adds a variant, and ‹ › swipe between the answers, choosing the one in the history", async () => {
    const { chatId, page } = await openChat({ max_tokens: 8 })
    const finalText = async () => {
      const { messages } = await session.api("GET", `/chats/${chatId}/messages`)
      await answerIs(page, messages.at(-1).content)
      return messages.at(-1).content as string
    }
    await send(page, "Hello there")
    await status(page).filter({ hasText: "Answered" }).waitFor()
    const first = await finalText()
    await setSettings(page, { max_tokens: 8, temperature: 0.5 })
    await page.getByRole("button", { name: "Regenerate" }).click()
    await status(page).filter({ hasText: "Answered" }).waitFor()
    const swipe = page.locator(".message.assistant .swipe").last()
    await swipe.locator(".count", { hasText: "2/2" }).waitFor()
    const second = await finalText()
    expect(second).not.toBe(first)

    const selected = async () => {
      const { messages } = await session.api("GET", `/chats/${chatId}/messages`)
      return messages.at(-1).variants.findIndex((variant: { id: string }) => variant.id === messages.at(-1).selectedVariantId)
    }
    await swipe.getByRole("button", { name: "Previous answer" }).click()
    await swipe.locator(".count", { hasText: "1/2" }).waitFor()
    await answerIs(page, first)
    expect(await selected()).toBe(0)
    await page.keyboard.press("Tab")
    await swipe.getByRole("button", { name: "Next answer" }).press("Enter")
    await swipe.locator(".count", { hasText: "2/2" }).waitFor()
    await answerIs(page, second)
    expect(await selected()).toBe(1)
  })
})
