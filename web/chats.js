import { api } from "./api.js"
import { errorLine, formatWhen, h } from "./dom.js"

const pageSize = 20
const nameOf = (chat) => chat.title?.trim() || "Untitled chat"

/** The chats, most recently active first: a new chat, rename, delete, and more on demand. */
export async function chatsPage(main) {
  document.title = "Chats · turn-runner"
  const error = errorLine()
  const list = h("ul", { class: "chats", "aria-labelledby": "chats-heading" })
  const empty = h("p", { class: "muted", hidden: true }, "No chats yet: start one above.")
  const more = h("button", { type: "button", class: "more", hidden: true, onclick: () => load() }, "Load more")
  const title = h("input", { id: "new-title", name: "title", maxlength: 200, placeholder: "Untitled chat", autocomplete: "off" })
  const create = async (event) => {
    event.preventDefault()
    try {
      const chat = await api("POST", "/chats", { title: title.value.trim() || null })
      location.assign(`/ui/chats/${chat.id}`)
    } catch (failure) {
      error.show(failure)
    }
  }
  main.append(
    h("h1", { id: "chats-heading" }, "Chats"),
    h("form", { class: "row new-chat", onsubmit: create },
      h("label", { for: "new-title" }, "Title"), title, h("button", { type: "submit", class: "primary" }, "New chat")),
    error, list, empty, more
  )

  let cursor = null
  async function load() {
    more.disabled = true
    try {
      const query = new URLSearchParams({ limit: String(pageSize), ...(cursor ? { cursor } : {}) })
      const page = await api("GET", `/chats?${query}`)
      list.append(...page.chats.map((chat) => chatItem(chat, error)))
      cursor = page.nextCursor
      more.hidden = cursor === null
      empty.hidden = list.children.length > 0
      error.show(null)
    } catch (failure) {
      error.show(failure)
    } finally {
      more.disabled = false
    }
  }
  await load()
}

function chatItem(chat, error) {
  const item = h("li", { class: "chat", "data-chat-id": chat.id })
  const show = (focus) => {
    const renameButton = h("button", { type: "button", onclick: rename, "aria-label": `Rename ${nameOf(chat)}` }, "Rename")
    item.replaceChildren(
      h("a", { class: "title", href: `/ui/chats/${chat.id}` }, nameOf(chat)),
      h("span", { class: "muted" }, chat.activeRunId ? "answering now" : formatWhen(chat.lastActivityAt)),
      renameButton,
      h("button", { type: "button", class: "danger", onclick: remove, "aria-label": `Delete ${nameOf(chat)}` }, "Delete")
    )
    if (focus) renameButton.focus()
  }
  const rename = () => {
    const id = `rename-${chat.id}`
    const input = h("input", { id, value: chat.title ?? "", maxlength: 200, autocomplete: "off" })
    const save = async (event) => {
      event.preventDefault()
      try {
        chat = { ...chat, ...(await api("PATCH", `/chats/${chat.id}`, { title: input.value.trim() || null })) }
        show(true)
      } catch (failure) {
        error.show(failure)
      }
    }
    input.addEventListener("keydown", (event) => event.key === "Escape" && show(true))
    item.replaceChildren(h("form", { class: "row", onsubmit: save },
      h("label", { for: id, class: "visually-hidden" }, `New title for ${nameOf(chat)}`), input,
      h("button", { type: "submit", class: "primary" }, "Save"),
      h("button", { type: "button", onclick: () => show(true) }, "Cancel")))
    input.focus()
  }
  const remove = async () => {
    if (!confirm(`Delete “${nameOf(chat)}” with all its messages and runs?`)) return
    try {
      await api("DELETE", `/chats/${chat.id}`)
      const neighbour = item.nextElementSibling ?? item.previousElementSibling
      item.remove()
      neighbour?.querySelector("a")?.focus()
      error.show(null)
    } catch (failure) {
      error.show(failure.code === "chat_busy" ? new Error("This chat is answering right now; stop it or wait, then delete it.") : failure)
    }
  }
  show(false)
  return item
}
