import type { RunId, StepRunId, VariantId } from "../../domain/Ids.ts"
import type { Batch, RunUpdate, StepState } from "../BatchRepo.ts"
import type { WriteSource } from "../WriteBehind.ts"
import { merge } from "../WriteBehind.ts"

/**
 * A live run's rows after its start, as the database should hold them: its step rows, the answer's
 * final text, and how the run ended. The runner changes them in memory, from synchronous code, and the write-behind writes
 * what changed (the latest state of each row, once).
 */
export class RunRows implements WriteSource {
  closed = false
  private readonly steps = new Map<StepRunId, { row: StepState; version: number; written: number }>()
  private outcome: { update: RunUpdate; written: boolean } | undefined
  private finalText: { variantId: VariantId; content: string; written: boolean } | undefined

  constructor(readonly runId: RunId) {}

  /** The variant's final text, as `post` gave it. */
  text(variantId: VariantId, content: string) {
    this.finalText = { variantId, content, written: false }
  }

  step(row: StepState) {
    const current = this.steps.get(row.id)
    this.steps.set(row.id, { row, version: (current?.version ?? 0) + 1, written: current?.written ?? 0 })
  }

  finish(outcome: NonNullable<RunUpdate["outcome"]>) {
    this.outcome = { update: { outcome }, written: false }
    this.closed = true
  }

  take(batch: Batch) {
    const taken: Array<readonly [{ written: number }, number]> = []
    for (const state of this.steps.values()) {
      if (state.version === state.written) continue
      batch.steps.set(state.row.id, state.row)
      taken.push([state, state.version])
    }
    const outcome = this.outcome !== undefined && !this.outcome.written ? this.outcome : undefined
    if (outcome !== undefined) merge(batch.runs, this.runId, outcome.update)
    const text = this.finalText !== undefined && !this.finalText.written ? this.finalText : undefined
    if (text !== undefined) merge(batch.variants, text.variantId, { finalContent: text.content })
    if (taken.length === 0 && outcome === undefined && text === undefined) return undefined
    return () => {
      for (const [state, version] of taken) state.written = Math.max(state.written, version)
      if (outcome !== undefined) outcome.written = true
      if (text !== undefined) text.written = true
    }
  }
}
