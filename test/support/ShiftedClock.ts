import { Clock, Effect } from "effect"

/**
 * A real clock that a test can move ahead: its time is the wall clock's plus an offset, and its
 * sleeps are real ones. Provided to a server (`Layer.setClock`), it lets a test see what ten
 * minutes later looks like without waiting for them, while everything else keeps running.
 */
export const shiftedClock = () => {
  let offsetMs = 0
  const wall = Clock.make()
  const millis = () => wall.unsafeCurrentTimeMillis() + offsetMs
  const nanos = () => wall.unsafeCurrentTimeNanos() + BigInt(offsetMs) * 1_000_000n
  const clock: Clock.Clock = {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: millis,
    currentTimeMillis: Effect.sync(millis),
    unsafeCurrentTimeNanos: nanos,
    currentTimeNanos: Effect.sync(nanos),
    sleep: (duration) => wall.sleep(duration)
  }
  return {
    clock,
    /** Moves the clock ahead by `ms`. */
    advance: (ms: number) => Effect.sync(() => void (offsetMs += ms))
  }
}
