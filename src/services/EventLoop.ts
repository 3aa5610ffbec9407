import { Effect } from "effect"

/**
 * Resumes in the event loop's next turn (`setImmediate`): what the current pass started (a model
 * request's bytes, say) leaves first, and the sockets that became readable meanwhile are read
 * before what follows. An Effect yield is not enough: it resumes before Node flushes the pass's
 * writes.
 */
export const nextTurn: Effect.Effect<void> = Effect.async<void>((resume) => void setImmediate(() => resume(Effect.void)))
