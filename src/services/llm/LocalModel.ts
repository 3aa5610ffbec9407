import { AiError, LanguageModel } from "@effect/ai"
import type { Prompt, Response } from "@effect/ai"
import { Effect, Layer, Option, Schema, Stream } from "effect"
import { GenerationSettings } from "./GenerationSettings.ts"

/**
 * The `local` model (spec 90): deterministic and network-free. It answers by quoting the last
 * user message and then filling up to `max_tokens` words drawn from a generator seeded by the
 * prompt and the settings, one word and a space per chunk, paced with `Effect.sleep` so that
 * tests drive it with `TestClock`. `settings.local` holds its pacing and fault knobs.
 */
const LocalKnobs = Schema.Struct({
  max_tokens: Schema.optionalWith(Schema.NonNegativeInt, { default: () => 48 }),
  local: Schema.optionalWith(
    Schema.Struct({
      tokenDelayMs: Schema.optionalWith(Schema.NonNegativeInt, { default: () => 20 }),
      firstTokenDelayMs: Schema.optionalWith(Schema.NonNegativeInt, { default: () => 0 }),
      failAfterTokens: Schema.optional(Schema.NonNegativeInt),
      stallAfterTokens: Schema.optional(Schema.NonNegativeInt)
    }),
    { default: () => ({ tokenDelayMs: 20, firstTokenDelayMs: 0 }) }
  )
})
type LocalKnobs = typeof LocalKnobs.Type

const decodeKnobs = Schema.decodeUnknownOption(LocalKnobs)

const vocabulary = (
  "the a river lantern quietly morning stone garden whisper thread amber signal harbor orbit " +
  "meadow ember pattern compass velvet circuit willow horizon paper echo marble cedar tide " +
  "clockwork feather summit canvas silver window ripple anchor prism meadowlark journey"
).split(" ")

/** FNV-1a: a small, stable hash to seed the word generator. */
const fnv1a = (text: string): number => {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash
}

const textOf = (message: Prompt.Message): string =>
  typeof message.content === "string"
    ? message.content
    : message.content.map((part) => (part.type === "text" ? part.text : "")).join(" ")

const words = (text: string) => text.split(/\s+/).filter((word) => word.length > 0)

/** The whole answer, as the chunks the model will send. */
export const answer = (prompt: Prompt.Prompt, settings: unknown, maxTokens: number): ReadonlyArray<string> => {
  const lastUser = prompt.content.findLast((message) => message.role === "user")
  const quoted = lastUser === undefined ? [] : words(textOf(lastUser)).slice(0, 12)
  const opening = quoted.length === 0 ? ["Hello!"] : ["You", "said:", ...quoted.map((word, i) =>
    (i === 0 ? "\u201c" : "") + word + (i === quoted.length - 1 ? "\u201d." : ""))]
  let seed = fnv1a(JSON.stringify(prompt.content.map((message) => [message.role, textOf(message)])) + JSON.stringify(settings))
  const chunks: Array<string> = []
  for (let i = 0; i < maxTokens; i++) {
    let word = opening[i]
    if (word === undefined) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0
      word = vocabulary[seed % vocabulary.length]!
    }
    chunks.push(`${word} `)
  }
  return chunks
}

const failure = (description: string) =>
  new AiError.UnknownError({ module: "LocalModel", method: "streamText", description })

const stream = (
  prompt: Prompt.Prompt,
  settings: Readonly<Record<string, unknown>>,
  knobs: LocalKnobs,
  model: string
): Stream.Stream<Response.StreamPartEncoded, AiError.AiError> => {
  const chunks = answer(prompt, settings, knobs.max_tokens)
  const { failAfterTokens, firstTokenDelayMs, stallAfterTokens, tokenDelayMs } = knobs.local
  const promptTokens = prompt.content.reduce((sum, message) => sum + words(textOf(message)).length, 0)
  const delta = (chunk: string, index: number) =>
    Effect.gen(function*() {
      if (index === failAfterTokens) return yield* failure(`local model failed after ${index} tokens (failAfterTokens)`)
      if (index === stallAfterTokens) return yield* Effect.never
      const delay = index === 0 ? firstTokenDelayMs : tokenDelayMs
      if (delay > 0) yield* Effect.sleep(delay)
      return { type: "text-delta", id: "0", delta: chunk } satisfies Response.StreamPartEncoded
    })
  // A knob equal to the answer's length still fires, after the last chunk.
  const tail = Effect.gen(function*() {
    yield* delta("", chunks.length).pipe(Effect.when(() => failAfterTokens === chunks.length || stallAfterTokens === chunks.length))
    return {
      type: "finish",
      reason: "stop",
      usage: { inputTokens: promptTokens, outputTokens: chunks.length, totalTokens: promptTokens + chunks.length }
    } satisfies Response.StreamPartEncoded
  })
  return Stream.make<Array<Response.StreamPartEncoded>>(
    { type: "response-metadata", modelId: model },
    { type: "text-start", id: "0" }
  ).pipe(
    Stream.concat(Stream.fromIterable(chunks).pipe(Stream.zipWithIndex, Stream.mapEffect(([chunk, i]) => delta(chunk, i)))),
    Stream.concat(Stream.make({ type: "text-end", id: "0" } satisfies Response.StreamPartEncoded)),
    Stream.concat(Stream.fromEffect(tail))
  )
}

export const make = (options: { readonly model: string }) =>
  LanguageModel.make({
    generateText: (request) =>
      Effect.map(GenerationSettings, (settings) => {
        const chunks = answer(request.prompt, settings, Option.match(decodeKnobs(settings), { onNone: () => 48, onSome: (knobs) => knobs.max_tokens }))
        return [
          { type: "text", text: chunks.join("") },
          { type: "finish", reason: "stop", usage: { inputTokens: undefined, outputTokens: chunks.length, totalTokens: undefined } }
        ] satisfies Array<Response.PartEncoded>
      }),
    streamText: (request) =>
      Stream.unwrap(Effect.map(GenerationSettings, (settings) =>
        Option.match(decodeKnobs(settings), {
          onNone: () =>
            Stream.fail(new AiError.MalformedInput({
              module: "LocalModel",
              method: "streamText",
              description: "settings.max_tokens and settings.local.* must be non-negative integers"
            })),
          onSome: (knobs) => stream(request.prompt, settings, knobs, options.model)
        })))
  })

export const layer = (options: { readonly model: string }): Layer.Layer<LanguageModel.LanguageModel> =>
  Layer.effect(LanguageModel.LanguageModel, make(options))
