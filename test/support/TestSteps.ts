import { Context, Deferred, Effect, FiberId, Layer, Option, Schema } from "effect"
import type { Exit } from "effect"
import { PostStep } from "../../src/services/runner/PostStep.ts"
import { PreStep } from "../../src/services/runner/PreStep.ts"
import { StepFailed } from "../../src/services/runner/RunContext.ts"
import type { RunContext, StepProgram } from "../../src/services/runner/RunContext.ts"

/**
 * Controllable `pre`/`post` steps for tests. What a step does is chosen per run by the turn's
 * `settings.testSteps` (so the runs of one shared server never disturb each other):
 * - no script: the built-in step, untouched;
 * - `{block: true}`: signals "entered", waits until the test releases it, then runs the built-in;
 * - `{fail: {message, code?}}`: fails with `StepFailed` (the run's code is `code` or `step_failed`);
 * - `{die: message}`: dies with an `Error(message)`, a defect.
 * Scripted steps signal "entered" and record how their program ended, which tests read from the
 * `TestSteps` service.
 */
const Script = Schema.Union(
  Schema.Struct({ block: Schema.Literal(true) }),
  Schema.Struct({ fail: Schema.Struct({ message: Schema.String, code: Schema.optional(Schema.String) }) }),
  Schema.Struct({ die: Schema.String })
)
export type Script = typeof Script.Type

const Scripts = Schema.Struct({ pre: Schema.optional(Script), post: Schema.optional(Script) })
export type Scripts = typeof Scripts.Type

const decodeScripts = Schema.decodeUnknownOption(Scripts)

export type ScriptedStep = "pre" | "post"

/** The turn `settings` that script the steps of its run. */
export const scriptedSettings = (scripts: Scripts, settings: Record<string, unknown> = {}) => ({
  ...settings,
  testSteps: scripts
})

export const block: Script = { block: true }
export const fail = (message: string, code?: string): Script => ({ fail: code === undefined ? { message } : { message, code } })
export const die = (message: string): Script => ({ die: message })

/** One scripted step of one run. */
interface Slot {
  readonly entered: Deferred.Deferred<void>
  readonly released: Deferred.Deferred<void>
  readonly exited: Deferred.Deferred<Exit.Exit<unknown, unknown>>
}

export interface TestStepControls {
  /** Waits until the scripted `step` of `runId` has started its program. */
  readonly entered: (step: ScriptedStep, runId: string) => Effect.Effect<void>
  /** Lets a blocked step go on (with the built-in program). */
  readonly release: (step: ScriptedStep, runId: string) => Effect.Effect<void>
  /** Waits until the scripted step's program has ended, and tells how (success, failure, interruption). */
  readonly exited: (step: ScriptedStep, runId: string) => Effect.Effect<Exit.Exit<unknown, unknown>>
}

export class TestSteps extends Context.Tag("test/TestSteps")<TestSteps, TestStepControls>() {}

/** The controls; their state lives in the service, so each suite (each Layer build) has its own. */
export const makeControls = Effect.sync(() => {
  const slots = new Map<string, Slot>()
  // Created synchronously, so the step and the test, whichever comes first, share one slot.
  const slot = (step: ScriptedStep, runId: string) =>
    Effect.sync(() => {
      const key = `${step}:${runId}`
      let found = slots.get(key)
      if (found === undefined) {
        found = {
          entered: Deferred.unsafeMake<void>(FiberId.none),
          released: Deferred.unsafeMake<void>(FiberId.none),
          exited: Deferred.unsafeMake<Exit.Exit<unknown, unknown>>(FiberId.none)
        }
        slots.set(key, found)
      }
      return found
    })
  const controls: TestStepControls = {
    entered: (step, runId) => Effect.flatMap(slot(step, runId), (s) => Deferred.await(s.entered)),
    release: (step, runId) => Effect.flatMap(slot(step, runId), (s) => Deferred.succeed(s.released, undefined)),
    exited: (step, runId) => Effect.flatMap(slot(step, runId), (s) => Deferred.await(s.exited))
  }
  return { controls, slot }
})

type Controls = Effect.Effect.Success<typeof makeControls>

const scripted = <A, Input extends RunContext>(step: ScriptedStep, builtin: StepProgram<A, Input>, { slot }: Controls): StepProgram<A, Input> => ({
  label: builtin.label,
  run: (context: Input) => {
    const script = Option.flatMap(decodeScripts(context.settings.testSteps), (scripts) => Option.fromNullable(scripts[step]))
    if (Option.isNone(script)) return builtin.run(context)
    return Effect.flatMap(slot(step, context.runId), (s) => {
      const program = Effect.gen(function*() {
        yield* Deferred.succeed(s.entered, undefined)
        const todo = script.value
        if ("fail" in todo) {
          const { code, message } = todo.fail
          return yield* new StepFailed(code === undefined ? { message } : { code, message })
        }
        if ("die" in todo) return yield* Effect.die(new Error(todo.die))
        yield* Deferred.await(s.released)
        return yield* builtin.run(context)
      })
      return program.pipe(Effect.onExit((exit) => Deferred.succeed(s.exited, exit)))
    })
  }
})

/**
 * New controls and the scripted steps around the given built-in ones. Make it once per suite
 * (e.g. in `Layer.unwrapEffect`) and hand `steps` to the server as both `pre` and `post`:
 * whichever Layer instances are built, they all share these controls.
 */
export const testSteps = <E, R>(builtin: Layer.Layer<PreStep | PostStep, E, R>) =>
  Effect.map(makeControls, (controls) => ({
    controls: Layer.succeed(TestSteps, controls.controls),
    steps: Layer.effectContext(Effect.gen(function*() {
      const pre = yield* PreStep
      const post = yield* PostStep
      return Context.make(PreStep, scripted("pre", pre, controls)).pipe(
        Context.add(PostStep, scripted("post", post, controls))
      )
    })).pipe(Layer.provide(builtin))
  }))
