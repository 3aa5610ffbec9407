import { Context } from "effect"

/**
 * The request's opaque `settings` object (spec 30), handed to whichever language model is in
 * place. The generation service provides it around `LanguageModel.streamText`; the models read
 * it with `yield* GenerationSettings` and pass it through (the `local` model reads its knobs).
 */
export class GenerationSettings extends Context.Reference<GenerationSettings>()(
  "turn-runner/GenerationSettings",
  { defaultValue: (): Readonly<Record<string, unknown>> => ({}) }
) {}
