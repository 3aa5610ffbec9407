/**
 * h("button", {type: "button", onclick}, "Save"): an element with attributes, listeners and
 * children. Strings become text nodes, never markup, so model text cannot inject anything.
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value)
    else if (key === "value") node.value = value
    else node.setAttribute(key, value === true ? "" : String(value))
  }
  node.append(...children.flat().filter((child) => child !== undefined && child !== null && child !== false))
  return node
}

/** A paragraph that announces errors; `show(error)` fills it, `show(null)` hides it. */
export function errorLine() {
  const line = h("p", { class: "error", role: "alert", hidden: true })
  line.show = (error) => {
    line.hidden = error === null
    line.textContent = error === null ? "" : error.message ?? String(error)
  }
  return line
}

export const formatMs = (ms) =>
  ms === null || ms === undefined ? "–" : ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`

export const formatWhen = (iso) =>
  iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "–"

export const formatClock = (iso) =>
  new Date(iso).toLocaleTimeString(undefined, { hour12: false }) + "." + String(new Date(iso).getMilliseconds()).padStart(3, "0")
