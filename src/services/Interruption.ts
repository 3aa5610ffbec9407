import { Cause, FiberId, HashSet } from "effect"
import type { ErrorInfo } from "../domain/Generation.ts"

/**
 * Who interrupts a run that outlived `RUN_TIMEOUT_MS`. A timed-out run is interrupted as an
 * aborted one is, but its steps and generation must end `error` (`run_timeout`), not `aborted`:
 * the interruption itself says which it was, through its interruptor.
 */
export const runTimeout: FiberId.FiberId = FiberId.make(-1, 0)

/**
 * Who interrupts a generation whose model was silent for `LLM_IDLE_TIMEOUT_MS`: the fiber that
 * streams it (a run's own) ends as an interrupted one does, and records `upstream_timeout`.
 */
export const llmIdleTimeout: FiberId.FiberId = FiberId.make(-2, 0)

/** The timeouts whose interruptions are errors, not aborts. */
export interface Timeouts {
  readonly runTimeoutMs: number
  readonly llmIdleTimeoutMs: number
}

/**
 * The error a run, step or generation records when `cause` is a timeout's interruption (the run's
 * own first: a run that timed out while its model was silent timed out); `undefined` for any
 * other interruption (an abort).
 */
export const timeoutError = (cause: Cause.Cause<unknown>, timeouts: Timeouts): ErrorInfo | undefined => {
  const interruptors = Cause.interruptors(cause)
  if (HashSet.has(interruptors, runTimeout)) return { code: "run_timeout", message: `the run took longer than ${timeouts.runTimeoutMs} ms` }
  if (HashSet.has(interruptors, llmIdleTimeout)) return llmIdleTimeoutError(timeouts.llmIdleTimeoutMs)
  return undefined
}

export const llmIdleTimeoutError = (timeoutMs: number) => ({
  code: "upstream_timeout" as const,
  message: `no answer from the model for ${timeoutMs} ms`
})
