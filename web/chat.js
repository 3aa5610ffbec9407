import { ApiError, api, authHeaders, readJson, uuid } from "./api.js"
import { errorLine, formatMs, h } from "./dom.js"
import { followRun, isTerminal, parseSse } from "./sse.js"

const stepTypes = ["pre", "llm", "post"]
const settingsKey = "turn-runner.settings"
/** What a page leaving mid-answer keeps of its turn (this tab only), to resume after its last seq. */
const kept = ["runId", "lastSeq", "text", "assistantMessageId", "variantId", "steps", "startedAt"]
const nearBottom = () => innerHeight + scrollY >= document.documentElement.scrollHeight - 120
const toBottom = () => scrollTo(0, document.documentElement.scrollHeight)

/**
 * One chat: its history with every answer's variants, the message box, and the turn in progress,
 * streamed as it is written. A turn is followed from its own POST's event stream, or, after a
 * reload or a broken connection, from `GET /runs/{id}/events` after the last `seq` it has seen
 * (from the start in a tab that never saw it): every event is applied once, in `seq` order, onto
 * the text of the events before it, so no text is lost or repeated.
 */
export async function chatPage(main, chatId) {
  const base = `/chats/${encodeURIComponent(chatId)}`
  const resumeKey = `turn-runner.turn.${chatId}`
  const state = { messages: [], runOfVariant: new Map(), turn: null, shown: null }
  let loads = 0

  const heading = h("h1", {}, "Chat")
  const error = errorLine()
  const list = h("ol", { class: "messages", "aria-label": "Messages" })
  const progress = h("ol", { class: "progress", "aria-label": "Progress of the turn", hidden: true })
  const status = h("p", { class: "status", role: "status" })
  const input = h("textarea", { id: "message", name: "content", rows: 3, placeholder: "Write a message…", "aria-describedby": "message-hint" })
  const sendButton = h("button", { type: "submit", class: "primary" }, "Send")
  const stopButton = h("button", { type: "button", class: "danger", hidden: true, onclick: stop }, "Stop")
  const settings = h("textarea", { id: "settings", rows: 2, spellcheck: "false", value: localStorage.getItem(settingsKey) ?? "{}" })
  settings.addEventListener("change", () => localStorage.setItem(settingsKey, settings.value))
  const form = h("form", { class: "composer", onsubmit: submit },
    h("label", { for: "message" }, "Message"), input,
    h("div", { class: "row" },
      h("span", { id: "message-hint", class: "muted hint" }, "Enter sends, Shift+Enter starts a new line."), sendButton, stopButton),
    h("details", { class: "settings" }, h("summary", {}, "Generation settings"),
      h("label", { for: "settings" }, "Sent with each turn, as a JSON object, e.g. {\"temperature\": 0.7}"), settings))
  input.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return
    event.preventDefault()
    form.requestSubmit()
  })
  main.append(h("p", { class: "crumbs" }, h("a", { href: "/" }, "Chats")), heading, list, progress, status, error, form)

  /** The chat, its history and its runs, read afresh; an older read landing late is ignored. */
  async function refresh() {
    const load = ++loads
    const [chat, { messages }, { runs }] = await Promise.all([
      api("GET", base), api("GET", `${base}/messages`), api("GET", `${base}/runs?limit=100`)
    ])
    if (load !== loads) return null
    state.messages = messages
    for (const run of runs) state.runOfVariant.set(run.assistantVariantId, run.id)
    heading.textContent = chat.title?.trim() || "Untitled chat"
    document.title = `${heading.textContent} · turn-runner`
    render()
    return chat
  }

  function render() {
    const busy = state.turn !== null
    const latest = state.messages.findLast((message) => message.role === "assistant")
    list.replaceChildren(...state.messages.map((message) => messageItem(message, busy, message === latest)))
    if (state.messages.length === 0) list.append(h("li", { class: "muted empty" }, "No messages yet."))
    sendButton.disabled = busy
    stopButton.hidden = !busy
    stopButton.disabled = busy && state.turn.stopping
    renderProgress()
  }

  function messageItem(message, busy, latest) {
    const turn = state.turn
    const live = turn?.variantId != null && turn.assistantMessageId === message.id
    const variantId = live ? turn.variantId : message.selectedVariantId
    const index = message.variants.findIndex((variant) => variant.id === variantId)
    const text = document.createTextNode(live ? turn.text : message.variants[index]?.content ?? message.content)
    if (live) turn.textNode = text
    const content = h("div", { class: "content", ...(live ? { "aria-live": "polite" } : {}) }, text)
    const runId = state.runOfVariant.get(variantId)
    return h("li", { class: `message ${message.role}`, "data-message-id": message.id },
      h("div", { class: "role" }, message.role === "user" ? "You" : "Assistant"),
      content,
      h("div", { class: "actions" },
        message.role === "assistant" && message.variants.length > 1 && index >= 0 ? swiper(message, index, busy) : null,
        runId ? h("a", { href: `/ui/runs/${runId}` }, "Run details") : null,
        !busy && latest ? h("button", { type: "button", onclick: () => regenerate(message) }, "Regenerate") : null,
        !busy && !message.pending
          ? h("button", { type: "button", class: "quiet", title: "Delete this message and every later one", onclick: () => rewind(message) }, "Delete from here")
          : null))
  }

  /** ‹ 2/3 ›: which answer of a message is in the history. */
  function swiper(message, index, busy) {
    const count = message.variants.length
    const choose = (to, direction) => async () => {
      try {
        const updated = await api("PUT", `${base}/messages/${message.id}/selected-variant`, { variantId: message.variants[to].id })
        state.messages = state.messages.map((each) => (each.id === updated.id ? updated : each))
        render()
        const group = list.querySelector(`[data-message-id="${message.id}"] .swipe`)
        ;(group?.querySelector(`[data-direction="${direction}"]:not(:disabled)`) ?? group?.querySelector("button:not(:disabled)"))?.focus()
      } catch (failure) {
        error.show(failure)
      }
    }
    return h("span", { class: "swipe", role: "group", "aria-label": `Answer ${index + 1} of ${count}` },
      h("button", { type: "button", "data-direction": "previous", "aria-label": "Previous answer", disabled: busy || index === 0, onclick: choose(index - 1, "previous") }, "‹"),
      h("span", { class: "count" }, `${index + 1}/${count}`),
      h("button", { type: "button", "data-direction": "next", "aria-label": "Next answer", disabled: busy || index === count - 1, onclick: choose(index + 1, "next") }, "›"))
  }

  function renderProgress() {
    const turn = state.shown
    progress.hidden = turn === null
    if (turn === null) return
    progress.replaceChildren(...stepTypes.map((type) => {
      const step = turn.steps[type]
      const stepStatus = step?.status ?? (turn.finished ? "skipped" : "waiting")
      const detail = stepStatus === "running" ? `${step.label ?? "running"}…` : step?.durationMs != null ? `${stepStatus} · ${formatMs(step.durationMs)}` : stepStatus
      return h("li", { "data-step": type, "data-status": stepStatus }, h("span", { class: "name" }, type), " ", h("span", {}, detail))
    }))
  }

  function readSettings() {
    try {
      const value = JSON.parse(settings.value.trim() || "{}")
      if (value !== null && typeof value === "object" && !Array.isArray(value)) return value
    } catch {
      // reported below
    }
    error.show(new Error("The generation settings must be a JSON object."))
    settings.closest("details").open = true
    settings.focus()
    return null
  }

  function startTurn(turn) {
    state.turn = state.shown = { text: "", lastSeq: 0, steps: {}, finished: false, stopping: false, runId: null, variantId: null, ...turn }
    error.show(null)
    status.textContent = "Answering…"
    render()
    return state.turn
  }

  async function submit(event) {
    event.preventDefault()
    const content = input.value
    if (state.turn !== null || content.trim() === "") return
    const turnSettings = readSettings()
    if (turnSettings === null) return
    const userMessageId = uuid()
    input.value = ""
    state.messages.push({ id: userMessageId, role: "user", content, variants: [], pending: true })
    const turn = startTurn({ kind: "send", userMessageId, content })
    toBottom()
    await stream(turn, `${base}/messages`, { userMessageId, content, settings: turnSettings })
  }

  async function regenerate(message) {
    const turnSettings = readSettings()
    if (state.turn !== null || turnSettings === null) return
    const requestId = uuid()
    const turn = startTurn({ kind: "regenerate", requestId, assistantMessageId: message.id })
    stopButton.focus()
    await stream(turn, `${base}/messages/${message.id}/regenerate`, { requestId, settings: turnSettings })
  }

  /** A turn's own request, answered with its event stream. */
  async function stream(turn, path, body) {
    try {
      const response = await fetch(path, {
        method: "POST",
        headers: { ...authHeaders(), "content-type": "application/json", accept: "text/event-stream" },
        body: JSON.stringify(body)
      })
      if (!response.ok) await readJson(response)
      for await (const message of parseSse(response.body)) apply(turn, JSON.parse(message.data))
    } catch (failure) {
      if (failure instanceof ApiError) return end(turn, failure)
    }
    // The stream broke off before the run's end: follow the run from the last event seen.
    if (!turn.finished) turn.runId === null ? end(turn, new Error("The connection was lost.")) : follow(turn)
  }

  function follow(turn) {
    turn.source = followRun(turn.runId, turn.lastSeq, (event) => apply(turn, event),
      () => end(turn, new Error("The run's events are no longer available.")))
  }

  /** Follows a running turn: after what this tab kept of it before a reload, or from its start. */
  function attach(runId) {
    const saved = JSON.parse(sessionStorage.getItem(resumeKey) ?? "null")
    sessionStorage.removeItem(resumeKey)
    follow(startTurn({ kind: "attach", ...(saved?.runId === runId ? saved : {}), runId }))
  }
  addEventListener("pagehide", () => {
    const turn = state.turn
    if (turn?.runId && !turn.finished) sessionStorage.setItem(resumeKey, JSON.stringify(Object.fromEntries(kept.map((key) => [key, turn[key]]))))
  })

  function apply(turn, event) {
    if (turn !== state.turn || event.seq <= turn.lastSeq) return
    turn.lastSeq = event.seq
    if (event.type === "pipeline.run.started") {
      Object.assign(turn, { runId: event.runId, assistantMessageId: event.assistantMessageId, variantId: event.assistantVariantId, startedAt: event.at })
      state.runOfVariant.set(event.assistantVariantId, event.runId)
      placeAnswer(event)
      render()
    } else if (event.type === "pipeline.step.started" || event.type === "pipeline.step.done") {
      turn.steps[event.stepType] = { ...turn.steps[event.stepType], ...event }
      renderProgress()
    } else if (event.type === "llm.stream.delta") {
      const pinned = nearBottom()
      turn.text += event.content
      turn.textNode?.appendData(event.content)
      if (pinned) toBottom()
    } else if (isTerminal(event.type)) {
      end(turn, event.type === "pipeline.run.error" ? new Error(`The answer failed: ${event.error.message}`) : null, event)
    }
  }

  /** The answer being written has a place in the history before the history is read again. */
  function placeAnswer(event) {
    let message = state.messages.find((each) => each.id === event.assistantMessageId)
    if (message === undefined) {
      message = { id: event.assistantMessageId, role: "assistant", content: "", variants: [], selectedVariantId: event.assistantVariantId }
      state.messages.push(message)
    }
    if (!message.variants.some((variant) => variant.id === event.assistantVariantId)) {
      message.variants = [...message.variants, { id: event.assistantVariantId, content: "" }]
    }
  }

  async function end(turn, failure, terminal) {
    if (turn.finished) return
    turn.finished = true
    turn.source?.close()
    const hadFocus = document.activeElement === stopButton
    const message = state.messages.find((each) => each.id === turn.assistantMessageId)
    const variant = message?.variants.find((each) => each.id === turn.variantId)
    if (variant !== undefined) {
      variant.content = turn.text
      message.selectedVariantId = variant.id
    }
    if (state.turn === turn) state.turn = null
    status.textContent = terminal === undefined ? "" : outcome(turn, terminal)
    error.show(failure)
    render()
    if (hadFocus) input.focus()
    if (failure instanceof ApiError && turn.kind === "send" && input.value === "") input.value = turn.content
    try {
      const chat = await refresh()
      // Someone else's turn (another tab) is running now: show it too.
      if (chat?.activeRunId && chat.activeRunId !== turn.runId && state.turn === null) attach(chat.activeRunId)
    } catch (problem) {
      error.show(problem)
    }
  }

  async function stop() {
    const turn = state.turn
    if (turn === null || turn.stopping) return
    turn.stopping = stopButton.disabled = true
    status.textContent = "Stopping…"
    try {
      // By the client's own ids, so a Stop before the run (or its id) exists is not lost.
      if (turn.kind === "send") await api("POST", `${base}/turns/abort`, { userMessageId: turn.userMessageId })
      else if (turn.kind === "regenerate") await api("POST", `${base}/turns/abort`, { assistantMessageId: turn.assistantMessageId, requestId: turn.requestId })
      else await api("POST", `/runs/${turn.runId}/abort`)
    } catch (failure) {
      turn.stopping = stopButton.disabled = false
      error.show(failure)
    }
  }

  async function rewind(message) {
    if (!confirm("Delete this message and every message after it?")) return
    try {
      await api("DELETE", `${base}/messages/${message.id}`)
      if (message.role === "user" && input.value === "") input.value = message.content
      await refresh()
      input.focus()
    } catch (failure) {
      error.show(failure)
    }
  }

  const chat = await refresh()
  toBottom()
  if (chat.activeRunId) attach(chat.activeRunId)
}

function outcome(turn, terminal) {
  const took = turn.startedAt ? ` in ${formatMs(Date.parse(terminal.finishedAt ?? terminal.at) - Date.parse(turn.startedAt))}` : ""
  if (terminal.status === "done") return `Answered${took}.`
  if (terminal.status === "aborted") return terminal.abortReason === "user" ? "Stopped." : `Stopped (${terminal.abortReason}).`
  return `Failed (${terminal.error?.code ?? "error"}).`
}
