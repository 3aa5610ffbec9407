import { Effect, Scope } from "effect"

/**
 * `Effect.acquireRelease` for what lasts as long as a request's scope (an open stream's
 * subscription, its keep-alive, its body): the release is the scope's own finalizer, which keeps
 * nothing of the fiber that added it, where `acquireRelease` keeps a copy of that fiber's refs for
 * as long as the scope lasts (kilobytes per open stream). `acquire` runs synchronously, and
 * uninterruptibly with the finalizer's registration; `release` is called at once, so the finalizer
 * keeps only what the effect it returns holds (not the whole acquired value).
 */
export const acquireForScope = <A>(
  acquire: () => A,
  release: (acquired: A) => Effect.Effect<void>
): Effect.Effect<A, never, Scope.Scope> =>
  Effect.uninterruptible(Effect.flatMap(Effect.scope, (scope) =>
    Effect.suspend(() => {
      const acquired = acquire()
      return Effect.as(Scope.addFinalizer(scope, release(acquired)), acquired)
    })))
