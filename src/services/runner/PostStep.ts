import { Context, Effect, Layer } from "effect"
import type { PostInput, PostResult, StepProgram } from "./RunContext.ts"

/**
 * The `post` step (spec 30): runs after a `done` generation, with the answer in hand. What it hands
 * back as `content` becomes the variant's final text, written with the run's last write. A library
 * user may provide their own Layer.
 */
export class PostStep extends Context.Tag("turn-runner/PostStep")<PostStep, StepProgram<PostResult, PostInput>>() {}

export const normalize = (text: string) => text.replace(/\r\n/g, "\n").trimEnd()

/** The built-in `post`: CRLF → LF and trailing white space trimmed. */
export const PostStepLive = Layer.succeed(PostStep, {
  label: "Finishing answer",
  run: ({ answer }) =>
    Effect.sync(() => {
      const final = normalize(answer)
      return { value: final === answer ? {} : { content: final }, output: { changed: final !== answer, chars: final.length } }
    })
})
