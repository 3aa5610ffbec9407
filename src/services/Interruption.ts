import { Context } from "effect"
import type { ErrorInfo } from "../domain/Generation.ts"

/**
 * Why a run's fiber is being interrupted when it is not an abort: a run that outlived
 * `RUN_TIMEOUT_MS` is interrupted like an aborted one, but its steps and generation must end
 * `error` (`run_timeout`), not `aborted`. The runner provides a fresh box per run and fills it
 * before it interrupts; finalizers read it. Nobody writes to the default.
 */
export class InterruptionCause extends Context.Reference<InterruptionCause>()("turn-runner/InterruptionCause", {
  defaultValue: (): { error: ErrorInfo | undefined } => Object.freeze({ error: undefined })
}) {}
