import { expect, it } from "vitest"
import { browserSession, describeInBrowser } from "../support/Browser.ts"

/** The chats page of spec 75 in Chromium: the list and its paging, a new chat, rename, delete. */
describeInBrowser("the chats page", () => {
  const session = browserSession()

  it("lists the chats most recently active first, twenty at a time, with more on demand", async () => {
    const titles = Array.from({ length: 22 }, (_, i) => `Chat ${i + 1}`)
    for (const title of titles) await session.api("POST", "/chats", { title })
    // A turn in the oldest makes it the most recently active.
    const { chats } = await session.api("GET", "/chats?limit=100")
    const oldest = chats.find((chat: { title: string }) => chat.title === "Chat 1")
    await session.api("POST", `/chats/${oldest.id}/messages`, { userMessageId: crypto.randomUUID(), content: "hi", settings: { max_tokens: 1 } })
    const page = await session.newPage()
    await page.goto("/")
    const links = page.locator(".chats li .title")
    await page.getByRole("button", { name: "Load more" }).waitFor()
    expect(await links.count()).toBe(20)
    expect((await links.allTextContents()).slice(0, 3)).toEqual(["Chat 1", "Chat 22", "Chat 21"])
    await page.getByRole("button", { name: "Load more" }).click()
    await page.getByRole("button", { name: "Load more" }).waitFor({ state: "hidden" })
    expect(await links.count()).toBeGreaterThanOrEqual(22)
    expect(new Set(await links.allTextContents()).size).toBe(await links.count())
  })

  it("a new chat opens its page", async () => {
    const page = await session.newPage()
    await page.goto("/")
    await page.getByLabel("Title").fill("Beavers")
    await page.getByRole("button", { name: "New chat" }).click()
    await page.waitForURL(/\/ui\/chats\/[0-9a-f-]{36}$/)
    await page.getByRole("heading", { name: "Beavers" }).waitFor()
  })

  it("rename and delete work from the keyboard", async () => {
    const chat = await session.api("POST", "/chats", { title: "Old name" })
    const page = await session.newPage()
    await page.goto("/")
    await page.getByRole("button", { name: "Rename Old name" }).focus()
    await page.keyboard.press("Enter")
    const input = page.getByLabel("New title for Old name")
    await input.fill("New name")
    await input.press("Enter")
    await page.getByRole("link", { name: "New name" }).waitFor()
    expect((await session.api("GET", `/chats/${chat.id}`)).title).toBe("New name")

    page.once("dialog", (dialog) => void dialog.accept())
    await page.getByRole("button", { name: "Delete New name" }).press("Enter")
    await page.getByRole("link", { name: "New name" }).waitFor({ state: "detached" })
    await expect(session.api("GET", `/chats/${chat.id}`)).rejects.toThrow(/404/)
  })
})
