/** Server-Sent Events (spec 60): a parser for a `fetch` body, and a run followed with `EventSource`. */
import { api, credential } from "./api.js"

export const eventTypes = [
  "pipeline.run.started", "pipeline.step.started", "pipeline.step.done", "llm.stream.meta",
  "llm.stream.delta", "llm.stream.error", "llm.stream.done",
  "pipeline.run.done", "pipeline.run.aborted", "pipeline.run.error"
]

export const isTerminal = (type) => type === "pipeline.run.done" || type === "pipeline.run.aborted" || type === "pipeline.run.error"

/**
 * The events of an event-stream body, as the HTML standard parses them: lines end in CRLF, LF or
 * CR (a CR at a chunk's end may be half of a CRLF), `data` lines join with LF, comments are skipped.
 */
export async function* parseSse(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader()
  const lineEnd = /\r\n|\r|\n/g
  let buffer = ""
  let event = { data: [], type: "", id: null }
  for (let done = false; !done;) {
    const chunk = await reader.read()
    done = chunk.done
    buffer += chunk.value ?? ""
    let start = 0
    for (let match; (lineEnd.lastIndex = start, match = lineEnd.exec(buffer)) !== null;) {
      if (match[0] === "\r" && match.index + 1 === buffer.length && !done) break
      const line = buffer.slice(start, match.index)
      start = lineEnd.lastIndex
      if (line === "") {
        if (event.data.length > 0) yield { type: event.type || "message", data: event.data.join("\n"), id: event.id }
        event = { data: [], type: "", id: event.id }
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":")
        const field = colon < 0 ? line : line.slice(0, colon)
        const value = colon < 0 ? "" : line.slice(colon + (line[colon + 1] === " " ? 2 : 1))
        if (field === "data") event.data.push(value)
        else if (field === "event") event.type = value
        else if (field === "id" && !value.includes("\0")) event.id = value
      }
    }
    buffer = buffer.slice(start)
  }
}

/**
 * Follows a run's events after `after` with an `EventSource`, which reconnects by itself with
 * `Last-Event-ID`; closed after the terminal event. `onEnd` is called if it stops before that.
 */
export function followRun(runId, after, onEvent, onEnd = () => {}) {
  let source = null
  let closed = false
  const open = (token) => {
    if (closed) return
    // An `EventSource` sends no headers: with authentication on, the run's own short-lived token (spec 85).
    const access = token ? `&access_token=${encodeURIComponent(token)}` : ""
    source = new EventSource(`/runs/${encodeURIComponent(runId)}/events?after=${after}${access}`)
    const listener = (message) => {
      const event = JSON.parse(message.data)
      onEvent(event)
      if (isTerminal(event.type)) source.close()
    }
    for (const type of eventTypes) source.addEventListener(type, listener)
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) onEnd()
    })
  }
  if (credential() === null) open(null)
  else api("GET", `/runs/${encodeURIComponent(runId)}`).then((snapshot) => open(snapshot.eventsToken), () => onEnd())
  return {
    close: () => {
      closed = true
      source?.close()
    }
  }
}
