import { describe, expect, it } from "@effect/vitest"
import { SseDecoder } from "../../../src/services/llm/SseDecoder.ts"

/** Feeds `text` cut at every position into two pieces, and in one piece: all must agree. */
const everySplit = (text: string) => {
  const whole = new SseDecoder().push(text)
  for (let at = 0; at <= text.length; at++) {
    const decoder = new SseDecoder()
    expect([...decoder.push(text.slice(0, at)), ...decoder.push(text.slice(at))], `split at ${at}`).toEqual(whole)
  }
  return whole
}

describe("SseDecoder", () => {
  it("returns each event's data once its blank line arrives, wherever the reads are cut", () => {
    expect(everySplit("data: {\"a\":1}\n\ndata: [DONE]\n\n")).toEqual(["{\"a\":1}", "[DONE]"])
  })

  it("accepts LF, CRLF and CR line ends, mixed", () => {
    expect(everySplit("data: one\r\n\r\ndata: two\r\rdata: three\n\n")).toEqual(["one", "two", "three"])
  })

  it("joins several data lines with a line feed and strips one leading space only", () => {
    expect(everySplit("data:  a\ndata:b\ndata\n\n")).toEqual([" a\nb\n"])
  })

  it("skips comments, other fields and events without data, and drops a leading byte order mark", () => {
    expect(everySplit("\uFEFF: keep-alive\n\nevent: x\nid: 7\nretry: 10\n\nevent: y\ndata: z\n\n")).toEqual(["z"])
  })

  it("keeps an unfinished event until its end arrives", () => {
    const decoder = new SseDecoder()
    expect(decoder.push("data: par")).toEqual([])
    expect(decoder.push("tial\n")).toEqual([])
    expect(decoder.push("\n")).toEqual(["partial"])
  })

  it("decodes a large read in one pass", () => {
    const events = Array.from({ length: 5000 }, (_, i) => `data: {"i":${i}}\n\n`).join("")
    expect(new SseDecoder().push(events)).toHaveLength(5000)
  })
})
