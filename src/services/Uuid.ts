import { Clock, Effect } from "effect"
import { randomFillSync } from "node:crypto"

const hex = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))

/** Random bytes drawn a few kilobytes at a time: one call into the CSPRNG per 400 ids. */
const pool = new Uint8Array(4000)
let drawn = pool.length

/** RFC 9562 UUIDv7 from a millisecond timestamp: time-ordered, 74 random bits. */
export const uuidv7At = (millis: number): string => {
  if (drawn === pool.length) {
    randomFillSync(pool)
    drawn = 0
  }
  const bytes = new Uint8Array(16)
  bytes.set(pool.subarray(drawn, drawn + 10), 6)
  drawn += 10
  let time = millis
  for (let i = 5; i >= 0; i--) {
    bytes[i] = time % 256
    time = Math.floor(time / 256)
  }
  bytes[6] = 0x70 | (bytes[6]! & 0x0f)
  bytes[8] = 0x80 | (bytes[8]! & 0x3f)
  let h = ""
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) h += "-"
    h += hex[bytes[i]!]!
  }
  return h
}

/** A new UUIDv7 stamped with Effect's `Clock`, branded as the caller's id type. */
export const makeId = <Id extends string>(): Effect.Effect<Id> =>
  Effect.map(Clock.currentTimeMillis, (millis) => uuidv7At(millis) as Id)
