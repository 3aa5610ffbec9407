import { api } from "./api.js"
import { errorLine, formatClock, formatMs, formatWhen, h } from "./dom.js"
import { followRun, isTerminal } from "./sse.js"

const json = (value) => h("pre", { class: "json" }, JSON.stringify(value, null, 2))
const code = (text) => (text == null ? "–" : h("code", {}, text))
const list = (pairs) =>
  h("dl", {}, pairs.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value ?? "–")]))
const table = (caption, heads, rows) =>
  h("table", {}, h("caption", {}, caption),
    h("thead", {}, h("tr", {}, heads.map((head) => h("th", { scope: "col" }, head)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell ?? "–"))))))

/**
 * One run: its steps and generation to scale, its status and reason, its report (spec 95) and
 * its events, followed live while it runs; Abort while it runs.
 */
export async function runPage(main, runId) {
  const path = `/runs/${encodeURIComponent(runId)}`
  let snapshot = await api("GET", path)
  let report = null
  let firstDeltaAt = null
  let refreshTimer = null
  const start = Date.parse(snapshot.run.startedAt)

  document.title = `Run · turn-runner`
  const error = errorLine()
  const summary = h("div", { class: "summary" })
  const abortButton = h("button", { type: "button", class: "danger", onclick: abort }, "Abort")
  const timeline = h("div", { class: "timeline" })
  const reportView = h("div", { class: "report" }, h("p", { class: "muted" }, "The report comes once the run is over."))
  const eventRows = h("tbody")
  const section = (id, title, ...content) =>
    h("section", { "aria-labelledby": id }, h("h2", { id }, title), ...content)
  main.append(
    h("p", { class: "crumbs" }, h("a", { href: "/" }, "Chats"), " › ",
      h("a", { href: `/ui/chats/${snapshot.run.chatId}` }, "This run's chat")),
    h("h1", {}, "Run ", h("code", { class: "id" }, snapshot.run.id)),
    summary, error,
    section("timeline-heading", "Timeline", timeline),
    section("report-heading", "Report", reportView),
    section("events-heading", "Events",
      h("table", { class: "events" },
        h("thead", {}, h("tr", {}, ["seq", "type", "time", "since start", "detail"].map((head) => h("th", { scope: "col" }, head)))),
        eventRows))
  )

  function render() {
    const { run, generation } = snapshot
    const running = run.status === "running"
    const reason = run.abortReason ?? (run.error ? `${run.error.code}: ${run.error.message}` : null)
    summary.replaceChildren(
      list([
        ["Status", h("span", { class: "badge", "data-status": run.status }, run.status)],
        ["Reason", reason],
        ["Trigger", run.trigger],
        ["Started", formatWhen(run.startedAt)],
        ["Duration", run.finishedAt ? formatMs(Date.parse(run.finishedAt) - start) : "running"],
        ["Model", generation ? `${generation.provider} · ${generation.model}` : null],
        ["Trace", code(run.traceId)]
      ]),
      running ? abortButton : ""
    )
    drawTimeline()
  }

  function drawTimeline() {
    const { run, steps, generation } = snapshot
    const now = Date.now()
    const end = run.finishedAt ? Date.parse(run.finishedAt) : now
    const total = Math.max(end - start, 1)
    const at = (ms) => `${Math.min(100, Math.max(0, (ms / total) * 100))}%`
    const lane = (name, status, from, to, extra = "") => {
      const offset = Date.parse(from) - start
      const duration = (to ? Date.parse(to) : now) - Date.parse(from)
      const bar = h("span", { class: "bar" })
      bar.style.setProperty("left", at(offset))
      bar.style.setProperty("width", at(duration))
      return h("li", { class: "lane", "data-lane": name, "data-status": status },
        h("span", { class: "name" }, name),
        h("span", { class: "track", "aria-hidden": "true" }, bar, extra),
        h("span", { class: "figures" }, `+${formatMs(offset)} · ${formatMs(duration)} · ${status}`))
    }
    const ttft = report?.generation?.timeToFirstTokenMs ?? (firstDeltaAt === null ? null : firstDeltaAt - start)
    const marker = ttft === null ? "" : h("span", { class: "marker", title: "first token" })
    if (marker) marker.style.setProperty("left", at(ttft))
    timeline.replaceChildren(
      h("ol", { class: "lanes", "aria-label": "Steps and generation, to scale" },
        lane("run", run.status, run.startedAt, run.finishedAt),
        ...steps.map((step) => lane(step.stepType, step.status, step.startedAt, step.finishedAt)),
        generation ? lane("generation", generation.status, generation.startedAt, generation.finishedAt, marker) : ""),
      h("p", { class: "muted axis" }, `Scale: 0 to ${formatMs(total)}.`,
        ttft === null ? "" : ` First token at +${formatMs(ttft)} (the mark).`)
    )
  }

  function renderReport() {
    const { generation: g, journal, ownership, prompt, start: begin } = report
    reportView.replaceChildren(
      h("h3", {}, "Start"),
      list([
        ["Trigger", begin.trigger],
        ["Idempotency key", code(begin.idempotencyKey)],
        ["Request fingerprint", code(begin.requestFingerprint)],
        ["Repeated requests", String(begin.duplicateRequests)],
        ["Settings", json(begin.settings)]
      ]),
      h("h3", {}, "Prompt"),
      list([["Hash", code(prompt.hash)], ["Text stored", prompt.textStored ? "yes" : "no (STORE_PROMPT_SNAPSHOTS=false)"]]),
      prompt.messages
        ? table("Messages sent to the model", ["role", "length", "hash", "text"],
          prompt.messages.map((m) => [m.role, String(m.length), code(m.hash), m.content]))
        : "",
      prompt.pre ? list([["What pre reported", json(prompt.pre)]]) : "",
      h("h3", {}, "Generation"),
      g
        ? list([
          ["Provider · model", `${g.provider} · ${g.model}`],
          ["Upstream requests", String(g.attempts)],
          ["Time to first token", formatMs(g.timeToFirstTokenMs)],
          ["Deltas", `${g.deltas}${g.deltasPerSecond === null ? "" : ` (${g.deltasPerSecond.toFixed(1)} per second)`}`],
          ["Usage", g.usage ? `${g.usage.promptTokens} prompt + ${g.usage.completionTokens} completion tokens` : null],
          ["Finish reason", g.finishReason],
          ["Error", g.error ? `${g.error.code}: ${g.error.message}` : null]
        ])
        : h("p", { class: "muted" }, "No generation: the run ended before the model was called."),
      h("h3", {}, "Journal"),
      list([["Events", `${journal.events} (seq ${journal.firstSeq ?? "–"} to ${journal.lastSeq ?? "–"})`]]),
      table("Events by type", ["type", "count"], Object.entries(journal.byType).map(([type, n]) => [type, String(n)])),
      h("h3", {}, "Ownership"),
      list([
        ["Owner instance", code(ownership.ownerInstance)],
        ["Lease expires", formatWhen(ownership.leaseExpiresAt)],
        ["Abort request", ownership.abortRequest ? `${ownership.abortRequest.reason} at ${formatWhen(ownership.abortRequest.at)}` : null]
      ]),
      h("details", {}, h("summary", {}, "The report as JSON"), json(report))
    )
  }

  async function refresh() {
    try {
      snapshot = await api("GET", path)
      if (snapshot.run.status !== "running") {
        report = await api("GET", `${path}/report`)
        renderReport()
      }
      render()
    } catch (failure) {
      error.show(failure)
    }
  }

  function onEvent(event) {
    const detail = event.type === "llm.stream.delta" ? JSON.stringify(event.content)
      : [event.stepType, event.status, event.durationMs == null ? null : formatMs(event.durationMs), event.label,
        event.provider && `${event.provider} · ${event.model}`, event.finishReason, event.abortReason, event.error?.message]
        .filter((part) => part != null).join(" · ")
    eventRows.append(h("tr", { "data-type": event.type },
      h("td", {}, String(event.seq)), h("td", {}, code(event.type)), h("td", {}, formatClock(event.at)),
      h("td", {}, `+${formatMs(Date.parse(event.at) - start)}`), h("td", {}, detail)))
    if (event.type === "llm.stream.delta") {
      firstDeltaAt ??= Date.parse(event.at)
      return
    }
    // Rows change at steps and at the end; a burst of them is read once. A finished run's are read.
    if (report !== null) return
    clearTimeout(refreshTimer)
    refreshTimer = setTimeout(refresh, isTerminal(event.type) ? 0 : 100)
  }

  async function abort() {
    abortButton.disabled = true
    try {
      snapshot = await api("POST", `${path}/abort`)
      await refresh()
    } catch (failure) {
      error.show(failure)
      abortButton.disabled = false
    }
  }

  render()
  if (snapshot.run.status !== "running") await refresh()
  followRun(runId, 0, onEvent)
  // Bars of a running run grow with the clock.
  const clock = setInterval(() => (snapshot.run.status === "running" ? drawTimeline() : clearInterval(clock)), 250)
}
