import { describe, expect, it } from "@effect/vitest"
import type { ChatId, GenerationId, MessageId, RunId, StepRunId, VariantId } from "../../src/domain/Ids.ts"
import type { Envelope, RunEventBody, StepRef } from "../../src/domain/RunEvent.ts"
import { dataOf, RunEventJson } from "../../src/domain/RunEventJson.ts"

const envelope: Envelope = {
  chatId: "01a22b0d-1805-7e0c-8305-a7b9fd9572e0" as ChatId,
  runId: "01a22b0d-1805-7e0c-8305-a7b9fd9572e1" as RunId,
  pipelineId: "builtin:default",
  pipelineName: "default",
  trigger: "user_message",
  userMessageId: "01a22b0d-1805-7e0c-8305-a7b9fd9572e2" as MessageId,
  assistantMessageId: "01a22b0d-1805-7e0c-8305-a7b9fd9572e3" as MessageId,
  assistantVariantId: "01a22b0d-1805-7e0c-8305-a7b9fd9572e4" as VariantId,
  generationId: null
}
const generationId = "01a22b0d-1805-7e0c-8305-a7b9fd9572e5" as GenerationId
const llm: StepRef = { stepRunId: "01a22b0d-1805-7e0c-8305-a7b9fd9572e6" as StepRunId, stepType: "llm" }
const at = Date.UTC(2026, 10, 23, 10, 0, 0, 123)

/** What every consumer must receive: the event as one object, stringified (spec 60). */
const expected = (seq: number, body: RunEventBody, step: StepRef | undefined, generation: GenerationId | null) => {
  const { type, ...fields } = body
  return JSON.stringify({ type, seq, at: new Date(at).toISOString(), ...envelope, generationId: generation, ...step, ...fields })
}

describe("RunEventJson", () => {
  const cases: ReadonlyArray<readonly [RunEventBody, StepRef | undefined]> = [
    [{ type: "pipeline.run.started", status: "running" }, undefined],
    [{ type: "pipeline.step.started", status: "running", label: "Say \"hi\"\n — ünïcödé" }, llm],
    [{ type: "llm.stream.meta", provider: "openai", model: "m" }, llm],
    [{ type: "llm.stream.error", error: { code: "llm_error", message: "a \\ b" } }, llm],
    [{ type: "llm.stream.done", status: "done", finishReason: "stop", usage: { promptTokens: 1, completionTokens: 2 } }, llm],
    [{ type: "pipeline.step.done", status: "error", durationMs: 5, error: { code: "x", message: "y" } }, llm],
    [{ type: "pipeline.run.aborted", status: "aborted", finishedAt: "2026-11-23T10:00:00.123Z", abortReason: "user" }, undefined]
  ]

  it("encodes every event type exactly as the whole event stringified, before and after the generation", () => {
    const json = new RunEventJson(envelope)
    json.setGeneration(generationId, 5)
    cases.forEach(([body, step], i) => {
      for (const seq of [i + 1, i + 10]) {
        const generation = seq >= 5 ? generationId : null
        expect(json.encode({ seq, type: body.type, at, data: dataOf(body, step) })).toBe(expected(seq, body, step, generation))
      }
    })
  })

  it("stores a delta as its bare text and puts its llm step back", () => {
    const json = new RunEventJson({ ...envelope, generationId })
    json.setDeltaStep(llm)
    for (const content of ["Hel", " \"quoted\"\n", "😀 \u2028 \\"]) {
      expect(json.encode({ seq: 9, type: "llm.stream.delta", at, data: content }))
        .toBe(expected(9, { type: "llm.stream.delta", content }, llm, generationId))
    }
  })
})
