import { Cause, FiberId, HashSet } from "effect"
import type { ErrorInfo } from "../domain/Generation.ts"

/**
 * Who interrupts a run that outlived `RUN_TIMEOUT_MS`. A timed-out run is interrupted as an
 * aborted one is, but its steps and generation must end `error` (`run_timeout`), not `aborted`:
 * the interruption itself says which it was, through its interruptor.
 */
export const runTimeout: FiberId.FiberId = FiberId.make(-1, 0)

/** The error a run, step or generation records when `cause` is the run timeout's interruption. */
export const runTimeoutError = (cause: Cause.Cause<unknown>, timeoutMs: number): ErrorInfo | undefined =>
  HashSet.has(Cause.interruptors(cause), runTimeout)
    ? { code: "run_timeout", message: `the run took longer than ${timeoutMs} ms` }
    : undefined
