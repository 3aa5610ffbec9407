import { credential, setCredential } from "./api.js"
import { chatPage } from "./chat.js"
import { chatsPage } from "./chats.js"
import { h } from "./dom.js"
import { runPage } from "./run.js"

/** The pages (spec 75): `/` the chats, `/ui/chats/{id}` a chat, `/ui/runs/{id}` a run. */
const routes = [
  [/^\/(?:ui\/?)?$/, chatsPage],
  [/^\/ui\/chats\/([^/]+)\/?$/, chatPage],
  [/^\/ui\/runs\/([^/]+)\/?$/, runPage]
]

const main = document.getElementById("app")
const path = location.pathname
const route = routes.find(([pattern]) => pattern.test(path))
main.replaceChildren()
if (route === undefined) {
  document.title = "Not found · turn-runner"
  main.append(h("h1", {}, "Page not found"), h("p", {}, h("a", { href: "/" }, "Back to the chats")))
} else {
  const [pattern, page] = route
  addEventListener("unauthorized", signIn, { once: true })
  page(main, ...pattern.exec(path).slice(1).map(decodeURIComponent)).catch((error) => {
    if (error.code === "unauthorized") return
    main.append(h("p", { class: "error", role: "alert" }, `Could not load this page: ${error.message}`))
  })
}

/** The server wants credentials (spec 85, `AUTH=api_key` or `jwt`): ask for a key or token, for this tab. */
function signIn() {
  document.title = "Sign in · turn-runner"
  const input = h("input", { id: "credential", type: "password", autocomplete: "off", required: true })
  const form = h("form", {
    class: "sign-in",
    onsubmit: (event) => {
      event.preventDefault()
      setCredential(input.value.trim())
      location.reload()
    }
  },
    h("h1", {}, "Sign in"),
    h("p", {}, credential() === null ? "This server needs an API key or a token." : "The server did not accept that key or token."),
    h("label", { for: "credential" }, "API key or token"),
    input,
    h("button", { type: "submit" }, "Use it"))
  main.replaceChildren(form)
  input.focus()
}
