import type { ErrorInfo, Usage } from "./Generation.ts"
import type { ChatId, GenerationId, MessageId, RunId, StepRunId, VariantId } from "./Ids.ts"
import type { AbortReason, StepStatus, StepType, Trigger } from "./Run.ts"

/** The correlation fields every event of a run carries (spec 60, "Envelope"; seed F1.3). */
export interface Envelope {
  readonly chatId: ChatId
  readonly runId: RunId
  readonly pipelineId: string
  readonly pipelineName: string
  readonly trigger: Trigger
  readonly userMessageId: MessageId | null
  readonly assistantMessageId: MessageId
  readonly assistantVariantId: VariantId
  readonly generationId: GenerationId | null
}

export interface StepRef {
  readonly stepRunId: StepRunId
  readonly stepType: StepType
}

/** What each event type adds to the envelope (spec 60, "Event types and their own fields"). */
export type RunEventBody =
  | { readonly type: "pipeline.run.started"; readonly status: "running" }
  | { readonly type: "pipeline.step.started"; readonly status: "running"; readonly label: string }
  | {
    readonly type: "pipeline.step.done"
    readonly status: Exclude<StepStatus, "running">
    readonly durationMs: number
    readonly error?: ErrorInfo
  }
  | { readonly type: "llm.stream.meta"; readonly provider: string; readonly model: string }
  | { readonly type: "llm.stream.delta"; readonly content: string }
  | { readonly type: "llm.stream.error"; readonly error: ErrorInfo }
  | {
    readonly type: "llm.stream.done"
    readonly status: "done" | "aborted" | "error"
    readonly finishReason?: string
    readonly usage?: Usage
  }
  | { readonly type: "pipeline.run.done"; readonly status: "done"; readonly finishedAt: string }
  | { readonly type: "pipeline.run.aborted"; readonly status: "aborted"; readonly finishedAt: string; readonly abortReason: AbortReason }
  | { readonly type: "pipeline.run.error"; readonly status: "error"; readonly finishedAt: string; readonly error: ErrorInfo }

export type RunEventType = RunEventBody["type"]

/** One event as sent and journaled: type, seq and time, the envelope, the step, the body's fields. */
export type RunEvent = { readonly type: RunEventType; readonly seq: number; readonly at: string } & Envelope & Partial<StepRef> & RunEventBody

export const isTerminal = (type: string): boolean =>
  type === "pipeline.run.done" || type === "pipeline.run.aborted" || type === "pipeline.run.error"
