import { Context, Effect, Layer, Option } from "effect"
import { ChatsRepo } from "../ChatsRepo.ts"
import type { StepProgram } from "./RunContext.ts"

/** The `post` step (spec 30): runs after a `done` generation. A library user may provide their own Layer. */
export class PostStep extends Context.Tag("turn-runner/PostStep")<PostStep, StepProgram<void>>() {}

export const normalize = (text: string) => text.replace(/\r\n/g, "\n").trimEnd()

/** The built-in `post`: CRLF → LF and trailing white space trimmed, written as the final content. */
export const PostStepLive = Layer.effect(
  PostStep,
  Effect.map(ChatsRepo, (chats) => ({
    label: "Finishing answer",
    run: (context) =>
      Effect.gen(function*() {
        const raw = Option.getOrElse(yield* chats.variantContent(context.assistantVariantId), () => "")
        const final = normalize(raw)
        if (final !== raw) yield* chats.setVariantContent(context.assistantVariantId, final)
        return { value: undefined, output: { changed: final !== raw, chars: final.length } }
      })
  }))
)
