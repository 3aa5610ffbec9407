import { expect, it } from "vitest"
import { browserSession, describeInBrowser } from "../support/Browser.ts"

// The functions handed to the page run there, where this exists.
declare const document: any

/** The run page of spec 75 in Chromium: the timeline to scale, the report, the events, Abort. */
describeInBrowser("the run page", () => {
  const session = browserSession()

  const startRun = async (settings: Record<string, unknown>) => {
    const chat = await session.api<{ id: string }>("POST", "/chats", {})
    const { run } = await session.api("POST", `/chats/${chat.id}/messages`, {
      userMessageId: crypto.randomUUID(),
      content: "Tell me about otters",
      settings
    })
    return run.id as string
  }

  it("a finished run shows its three steps and its generation with their durations, the report and every event", async () => {
    const runId = await startRun({ max_tokens: 12 })
    const events = await session.events(runId)
    const page = await session.newPage()
    await page.goto(`/ui/runs/${runId}`)
    await page.locator(".badge", { hasText: "done" }).waitFor()
    for (const lane of ["run", "pre", "llm", "post", "generation"]) {
      const figures = page.locator(`.lane[data-lane="${lane}"][data-status="done"] .figures`)
      expect(await figures.textContent()).toMatch(/^\+\d+(\.\d+)? m?s · \d+(\.\d+)? m?s · done$/)
    }
    // Drawn to scale: each bar's width is its share of the run's duration.
    const snapshot = await session.api("GET", `/runs/${runId}`)
    const runMs = Date.parse(snapshot.run.finishedAt) - Date.parse(snapshot.run.startedAt)
    const llm = snapshot.steps.find((step: { stepType: string }) => step.stepType === "llm")
    const width = await page.evaluate(() => {
      const bar = document.querySelector('[data-lane="llm"] .bar')
      return bar.getBoundingClientRect().width / bar.parentElement.getBoundingClientRect().width
    })
    expect(width).toBeCloseTo((Date.parse(llm.finishedAt) - Date.parse(llm.startedAt)) / runMs, 1)
    await page.locator('[data-lane="generation"] .marker').waitFor()
    await page.getByText("First token at").waitFor()
    await page.locator(".report dt", { hasText: "Time to first token" }).waitFor()
    await page.waitForFunction((count) => document.querySelectorAll(".events tbody tr").length === count, events.length)
    const lastRow = await page.locator(".events tbody tr").last().locator("td").allTextContents()
    expect(lastRow.slice(0, 2)).toEqual([String(events.length), "pipeline.run.done"])
    expect(await page.getByRole("button", { name: "Abort" }).count()).toBe(0)
  })

  it("a running run is followed live, and Abort ends it as the user's abort", async () => {
    const runId = await startRun({ max_tokens: 2000, local: { tokenDelayMs: 20 } })
    const page = await session.newPage()
    await page.goto(`/ui/runs/${runId}`)
    await page.locator(".badge", { hasText: "running" }).waitFor()
    await page.waitForFunction(() => document.querySelectorAll('.events tr[data-type="llm.stream.delta"]').length >= 10)
    await page.getByRole("button", { name: "Abort" }).click()
    await page.locator(".badge", { hasText: "aborted" }).waitFor()
    await page.locator(".summary dd", { hasText: /^user$/ }).waitFor()
    await page.locator('[data-lane="llm"][data-status="aborted"]').waitFor()
    await page.locator('[data-lane="post"][data-status="skipped"]').waitFor()
    await page.locator('.events tr[data-type="pipeline.run.aborted"]').waitFor()
    const snapshot = await session.api("GET", `/runs/${runId}`)
    expect(snapshot.run).toMatchObject({ status: "aborted", abortReason: "user" })
  })
})
