/**
 * An incremental Server-Sent Events decoder (the WHATWG "event stream" parsing rules): feed it the
 * text as it arrives, in pieces of any size, and it returns the `data` of every event completed so
 * far. Lines end in LF, CRLF or CR (a CR at the end of one piece may be followed by the LF of the
 * next); comments are skipped; several `data:` lines join with `\n`; a leading byte order mark is
 * dropped. Each character is looked at once, so a large read costs what its size costs.
 *
 * Only `data` is kept: the Chat Completions protocol carries everything there.
 */
export class SseDecoder {
  private rest = ""
  private data: Array<string> = []
  private started = false
  private skipLf = false

  /** The `data` of each event that `text` completes, in order. */
  push(text: string): Array<string> {
    const events: Array<string> = []
    let input = text
    if (!this.started && input.length > 0) {
      this.started = true
      if (input.charCodeAt(0) === 0xfeff) input = input.slice(1)
    }
    if (this.skipLf && input.length > 0) {
      this.skipLf = false
      if (input.charCodeAt(0) === 10) input = input.slice(1)
    }
    const buffer = this.rest + input
    let start = 0
    // Searched again only once passed: most streams have no CR, and one search finds that out.
    let cr = buffer.indexOf("\r")
    while (start < buffer.length) {
      const lf = buffer.indexOf("\n", start)
      if (cr !== -1 && cr < start) cr = buffer.indexOf("\r", start)
      const end = lf === -1 ? cr : cr === -1 ? lf : Math.min(lf, cr)
      if (end === -1) break
      this.line(buffer.slice(start, end), events)
      if (buffer.charCodeAt(end) === 13) {
        if (end + 1 === buffer.length) {
          this.skipLf = true
        } else if (buffer.charCodeAt(end + 1) === 10) {
          start = end + 2
          continue
        }
      }
      start = end + 1
    }
    this.rest = buffer.slice(start)
    return events
  }

  private line(line: string, events: Array<string>) {
    if (line.length === 0) {
      if (this.data.length > 0) events.push(this.data.join("\n"))
      this.data = []
      return
    }
    if (line.charCodeAt(0) === 58) return // ":" starts a comment
    const colon = line.indexOf(":")
    const field = colon === -1 ? line : line.slice(0, colon)
    if (field !== "data") return
    let value = colon === -1 ? "" : line.slice(colon + 1)
    if (value.charCodeAt(0) === 32) value = value.slice(1)
    this.data.push(value)
  }
}
