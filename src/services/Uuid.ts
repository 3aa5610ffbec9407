import { Clock, Effect } from "effect"
import { randomFillSync } from "node:crypto"

const hex = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))

/** RFC 9562 UUIDv7 from a millisecond timestamp: time-ordered, 74 random bits. */
export const uuidv7At = (millis: number): string => {
  const bytes = randomFillSync(new Uint8Array(16))
  let time = millis
  for (let i = 5; i >= 0; i--) {
    bytes[i] = time % 256
    time = Math.floor(time / 256)
  }
  bytes[6] = 0x70 | (bytes[6]! & 0x0f)
  bytes[8] = 0x80 | (bytes[8]! & 0x3f)
  const h = Array.from(bytes, (b) => hex[b]!).join("")
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

/** A new UUIDv7 stamped with Effect's `Clock`, branded as the caller's id type. */
export const makeId = <Id extends string>(): Effect.Effect<Id> =>
  Effect.map(Clock.currentTimeMillis, (millis) => uuidv7At(millis) as Id)
