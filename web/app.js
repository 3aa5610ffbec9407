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
  page(main, ...pattern.exec(path).slice(1).map(decodeURIComponent)).catch((error) => {
    main.append(h("p", { class: "error", role: "alert" }, `Could not load this page: ${error.message}`))
  })
}
