import type { GenerationId } from "./Ids.ts"
import type { Envelope, RunEventBody, RunEventType, StepRef } from "./RunEvent.ts"

/**
 * A run's events as JSON text (spec 60): `{"type","seq","at", the envelope, the step, the body's
 * fields}`, byte for byte the same for every consumer, whether the event is live or read back from
 * the journal. The envelope is the same for the whole run (but for `generationId`, set from the
 * generation's first event on), so it is encoded once and each event only adds what varies: its
 * `seq`, time, and `data`.
 *
 * `data` is what the journal stores per event: the JSON members after the envelope (the step's and
 * the body's), or, for an `llm.stream.delta`, the bare text of its content (its step is the run's
 * `llm` step), which keeps the journal's bulk small.
 */
export interface EventRecord {
  readonly seq: number
  readonly type: RunEventType
  /** Epoch milliseconds, from Effect's `Clock`. */
  readonly at: number
  readonly data: string
}

const members = (value: object): string => JSON.stringify(value).slice(1, -1)

/** The `data` of any event but a delta: its step and its fields, as JSON members. */
export const dataOf = (body: RunEventBody, step: StepRef | undefined): string => {
  const { type: _, ...fields } = body
  return members(step === undefined ? fields : { ...step, ...fields })
}

export class RunEventJson {
  private readonly withoutGeneration: string
  private withGeneration: string | undefined
  private generationFrom = Infinity
  private deltaStep: string | undefined

  constructor(envelope: Envelope) {
    this.withoutGeneration = members({ ...envelope, generationId: null })
    if (envelope.generationId !== null) this.setGeneration(envelope.generationId, 1)
  }

  /** Events from `fromSeq` on name the generation. */
  setGeneration(generationId: GenerationId, fromSeq: number) {
    this.withGeneration = this.withoutGeneration.replace(/"generationId":null$/, `"generationId":${JSON.stringify(generationId)}`)
    this.generationFrom = fromSeq
  }

  /** The step deltas belong to: the run's `llm` step. */
  setDeltaStep(step: StepRef) {
    this.deltaStep = `,${members(step)},"content":`
  }

  encode(record: EventRecord): string {
    const envelope = record.seq >= this.generationFrom ? this.withGeneration! : this.withoutGeneration
    const head = `{"type":"${record.type}","seq":${record.seq},"at":"${new Date(record.at).toISOString()}",${envelope}`
    if (record.type === "llm.stream.delta") return `${head}${this.deltaStep ?? `,"content":`}${JSON.stringify(record.data)}}`
    return record.data === "" ? `${head}}` : `${head},${record.data}}`
  }
}
