import { existsSync } from "node:fs"
import { type Browser, chromium } from "playwright-core"

/** Debian's Chromium (`.ci/run` installs it), or the one `CHROMIUM_PATH` names. */
export const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"
export const chromiumAvailable = existsSync(chromiumPath)

const chromiumArgs = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync"
]

/** Starts Chromium, headless, with the flags this machine needs (no browser download: a system one). */
export const launchChromium = (): Promise<Browser> => {
  if (!chromiumAvailable) throw new Error(`no Chromium at ${chromiumPath}: apt-get install chromium, or set CHROMIUM_PATH`)
  return chromium.launch({ executablePath: chromiumPath, args: chromiumArgs })
}
