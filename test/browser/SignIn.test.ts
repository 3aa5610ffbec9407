import { SignJWT } from "jose"
import { expect, it } from "vitest"
import { browserSession, describeInBrowser } from "../support/Browser.ts"

/**
 * The web app on a server that authenticates (spec 85, here `AUTH=jwt` with a shared secret, so
 * the test can mint tokens): the page asks for a token, then works as the token's owner, its
 * streamed turn and its run page's `EventSource` (the run's own event token) included.
 */
const secret = "a-shared-secret-of-at-least-32-bytes!!"
const issuer = "https://issuer.test/"
const audience = "turn-runner"

const tokenFor = (sub: string) =>
  new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub).setIssuer(issuer).setAudience(audience)
    .setExpirationTime("10m").sign(new TextEncoder().encode(secret))

describeInBrowser("the web app with authentication", () => {
  const session = browserSession({ AUTH: "jwt", JWT_SECRET: secret, JWT_ISSUER: issuer, JWT_AUDIENCE: audience })

  it("asks for a token, then chats as its owner and follows the run live", async () => {
    const page = await session.newPage()
    await page.goto("/")
    await page.getByRole("heading", { name: "Sign in" }).waitFor()
    await page.getByLabel("API key or token").fill("not-a-token")
    await page.getByRole("button", { name: "Use it" }).click()
    await page.getByText("The server did not accept that key or token.").waitFor()
    await page.getByLabel("API key or token").fill(await tokenFor("fran"))
    await page.getByRole("button", { name: "Use it" }).click()

    await page.getByLabel("Title").fill("Private")
    await page.getByRole("button", { name: "New chat" }).click()
    await page.waitForURL(/\/ui\/chats\/[0-9a-f-]{36}$/)
    const chatId = page.url().split("/").at(-1)!
    const box = page.getByLabel("Message", { exact: true })
    await box.fill("Hello")
    await box.press("Enter")
    await page.getByRole("link", { name: "Run details" }).last().waitFor()
    const runId = (await page.getByRole("link", { name: "Run details" }).last().getAttribute("href"))!.split("/").at(-1)!

    // The chat is the token's owner's: nobody else's token, and no token at all, reaches it.
    const as = async (token: string | undefined) =>
      (await fetch(`${session.server.baseUrl}/chats/${chatId}`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } })).status
    expect(await as(await tokenFor("fran"))).toBe(200)
    expect(await as(await tokenFor("gus"))).toBe(404)
    expect(await as(undefined)).toBe(401)

    // The run page follows the run's events with an EventSource, through the run's event token.
    await page.goto(`/ui/runs/${runId}`)
    await page.getByText("pipeline.run.done").first().waitFor()
  })
})
