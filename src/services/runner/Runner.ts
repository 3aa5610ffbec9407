import { Clock, Context, Deferred, Duration, Effect, Exit, Fiber, FiberMap, FiberRef, HashMap, Option, Runtime, Schedule } from "effect"
import type { Scope, Stream } from "effect"
import type { RunId } from "../../domain/Ids.ts"
import type { AbortReason } from "../../domain/Run.ts"
import type { RunEvent } from "../../domain/RunEvent.ts"
import { builtinPipeline } from "../../domain/Run.ts"
import { AppConfig } from "../AppConfig.ts"
import { channels, Notifications } from "../cluster/Notifications.ts"
import { Relay } from "../cluster/Relay.ts"
import { isTerminal } from "../../domain/RunEvent.ts"
import { Journal } from "../journal/Journal.ts"
import * as Metrics from "../observability/Metrics.ts"
import * as Tracing from "../observability/Tracing.ts"
import { Generations } from "../Generations.ts"
import { RunsRepo } from "../RunsRepo.ts"
import { runTimeout } from "../Interruption.ts"
import { WriteBehind } from "../WriteBehind.ts"
import { EventLog } from "./EventLog.ts"
import { LiveRuns } from "./LiveRuns.ts"
import type { LiveRun } from "./LiveRuns.ts"
import { PostStep } from "./PostStep.ts"
import { PreStep } from "./PreStep.ts"
import type { RunContext } from "./RunContext.ts"
import { asRunEvents, RunEvents } from "./RunEvents.ts"
import type { FollowOptions, Follower } from "./RunEvents.ts"
import { runProgram } from "./RunProgram.ts"
import { RunRows } from "./RunRows.ts"

/** Resumes once the callbacks already queued with `process.nextTick` have run. */
const afterNextTick = Effect.async<void>((resume) => void process.nextTick(() => resume(Effect.void)))

/** A run, as whoever started it (or asked for it again) holds it: its events and its abort. */
export interface RunHandle {
  readonly runId: RunId
  /** The run's events from its start to its terminal event, as values (replayed, then live). */
  readonly events: Stream.Stream<RunEvent>
  /** The run's events after `after`, as `options` encodes them (spec 60). */
  readonly follow: <A>(after: number, options: FollowOptions<A>) => Stream.Stream<A>
  /** The run's events after `after`, handed to `follower` as they come, while the scope lasts. */
  readonly subscribe: (after: number, follower: Follower) => Effect.Effect<void, never, Scope.Scope>
  /** Aborts the run and waits until it is terminal; a finished run is left as it is. */
  readonly abort: (reason: AbortReason) => Effect.Effect<void>
  /** Aborts without waiting, in the runner's own scope: for callers that are going away (a disconnect). */
  readonly abortInBackground: (reason: AbortReason) => Effect.Effect<void>
}

/**
 * Runs turns (spec 10): each run executes its program (`RunProgram.ts`) in its own fiber, owned by
 * this scoped service rather than by the HTTP request that started it. Aborting a run is
 * interrupting its fiber; while this process lives, its runs' leases keep moving ahead; on
 * shutdown, live runs get their grace period and are then aborted (`shutdown`).
 */
export class Runner extends Effect.Service<Runner>()("turn-runner/Runner", {
  scoped: Effect.gen(function*() {
    const config = yield* AppConfig
    const runs = yield* RunsRepo
    const deps = {
      pre: yield* PreStep,
      post: yield* PostStep,
      generations: yield* Generations,
      writeBehind: yield* WriteBehind,
      timeouts: config
    }
    const live = yield* LiveRuns
    const events = yield* RunEvents
    const journal = yield* Journal
    const notifications = yield* Notifications
    const relay = yield* Relay
    const fibers = yield* FiberMap.make<RunId>()
    // Runs are forked with the runner's own fiber refs (its logger, tracer, clock) and an empty
    // context, not their caller's: a run must not keep the HTTP request that started it (its
    // objects, its span, its log annotations) alive, and every span or scope a run opens copies
    // its context, so the services the runner was built with would be copied again and again
    // (a run's program needs none of them: its dependencies are in hand).
    const runFork = yield* Effect.locally(FiberMap.runtime(fibers)<never>(), FiberRef.currentContext, Context.empty())
    const scope = yield* Effect.scope
    // Runs still live when the service closes (the process is stopping) end `aborted (shutdown)`;
    // registered after the FiberMap, so it runs before the FiberMap interrupts them.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const run of live.all()) run.abortReason ??= "shutdown"
      })
    )

    // RUN_TIMEOUT_MS (spec 10, "Timeouts"): one watchdog for every run, interrupting a run that
    // outlived it as an abort would, as the run timeout. Every run has the same timeout, so the
    // deadlines come in the order the runs started: the first is the nearest.
    const deadlines = new Map<RunId, number>()
    const deadlineAdded = yield* Effect.makeLatch(false)
    yield* Effect.gen(function*() {
      while (true) {
        const first = deadlines.entries().next()
        if (first.done) {
          deadlineAdded.unsafeClose()
          yield* deadlineAdded.await
          continue
        }
        const [runId, deadline] = first.value
        const wait = deadline - (yield* Clock.currentTimeMillis)
        if (wait > 0) {
          yield* Effect.sleep(wait)
          continue
        }
        deadlines.delete(runId)
        const fiber = FiberMap.unsafeGet(fibers, runId)
        if (Option.isSome(fiber)) yield* Fiber.interruptAsFork(fiber.value, runTimeout)
      }
    }).pipe(Effect.forkScoped)

    // Leases (spec 10, "Crash safety"): while this process lives its runs' leases keep moving
    // ahead; once it dies they expire and any instance's sweeper closes the runs. The renewal also
    // answers the abort requests stored on them: an abort whose signal was lost (spec 50) arrives
    // at the latest one renewal later.
    const renew = Effect.flatMap(Clock.currentTimeMillis, (at) => runs.renewLeases(live.ids(), new Date(at + config.leaseTtlMs))).pipe(
      Effect.flatMap((requests) => Effect.forEach(requests, ({ reason, runId }) => abortHere(runId, reason), { discard: true })),
      Effect.catchAllCause((cause) => Effect.logWarning("could not renew leases", cause)),
      Effect.withTracerEnabled(false)
    )
    yield* renew.pipe(Effect.repeat(Schedule.spaced(Duration.millis(config.leaseTtlMs / 3))), Effect.forkScoped)

    // Abort requests from any instance (spec 50): stored on the run row, then signalled; the run's
    // owner interrupts it. Once listening again after a drop, the stored requests are read at once.
    const runInScope = Runtime.runFork(yield* Effect.runtime<never>())
    notifications.on(channels.abort, (payload) => {
      const [runId, reason] = payload.split(" ") as [RunId, AbortReason]
      if (live.has(runId)) runInScope(Effect.forkIn(abortHere(runId, reason), scope))
    })
    notifications.onListening(() => void runInScope(Effect.forkIn(renew, scope)))

    /**
     * Emits `pipeline.run.started` and forks the run; call right after its row commits. A run
     * `stoppedAt` an instant (its client stopped it before it arrived, spec 75) ends aborted
     * (`user`) before its first step.
     */
    const launch = Effect.fn("Runner.launch")(function*(
      context: RunContext,
      options: { readonly stoppedAt?: Date | undefined } = {}
    ): Effect.fn.Return<RunHandle> {
      const log = new EventLog({
        chatId: context.chatId,
        runId: context.runId,
        pipelineId: builtinPipeline.id,
        pipelineName: builtinPipeline.name,
        trigger: context.trigger,
        userMessageId: context.userMessageId,
        assistantMessageId: context.assistantMessageId,
        assistantVariantId: context.assistantVariantId,
        generationId: null
      }, yield* Effect.clock)
      const run: LiveRun = {
        log,
        abortReason: options.stoppedAt === undefined ? undefined : "user",
        abortRequestedAt: options.stoppedAt
      }
      live.add(run)
      Metrics.count(Metrics.runsStarted, 1, { trigger: context.trigger })
      Metrics.set(Metrics.runsLive, live.size())
      deadlines.set(context.runId, context.startedAt.getTime() + config.runTimeoutMs)
      deadlineAdded.unsafeOpen()
      log.emit({ type: "pipeline.run.started", status: "running" })
      // The run's span continues the trace of the request that started it (spec 95), when one is recorded.
      const parent = yield* Tracing.recordedSpan
      const program = runProgram(deps, context, run, new RunRows(context.runId))
      const forget = Effect.sync(() => {
        live.remove(context.runId)
        Metrics.set(Metrics.runsLive, live.size())
        deadlines.delete(context.runId)
      })
      // The fiber is the run's own: its log annotations and its span are set on it, not around it,
      // and one finalizer closes the run, forgets it here and ends the span. Written as a chain, not
      // a generator: a generator suspended in its last `yield*` stays on the stack (with everything
      // it can reach) for as long as the run streams.
      runFork(
        context.runId,
        FiberRef.update(FiberRef.currentLogAnnotations, HashMap.union(HashMap.make(["runId", context.runId], ["chatId", context.chatId]))).pipe(
          Effect.zipRight(Tracing.openSpan("turn.run", {
            attributes: { "turn.run_id": context.runId, "turn.chat_id": context.chatId, "turn.trigger": context.trigger },
            ...(Option.isSome(parent) ? { parent: parent.value } : {})
          })),
          Effect.flatMap((span) =>
            Effect.onExit(program.steps, (exit) => program.finalize(exit).pipe(Effect.ensuring(forget), Effect.ensuring(span.close(exit))))
          )
        )
      )
      // The run's fiber ran at once, as far as its model request; that request's bytes leave
      // before the caller goes on: Node writes a request in `process.nextTick`, which waits until
      // the microtask queue is empty, where the caller's pass (the SSE answer's start, this log
      // line) would otherwise run first. No I/O is read in between, so nothing the caller must
      // hear of (its client going away) can happen meanwhile.
      yield* afterNextTick
      yield* Effect.logInfo("run started").pipe(Effect.annotateLogs({ runId: context.runId, chatId: context.chatId, trigger: context.trigger }))
      return handle(context.runId)
    })

    /** Interrupts a run live in this process and waits until it is terminal. */
    function abortHere(runId: RunId, reason: AbortReason) {
      return Effect.gen(function*() {
        const run = live.get(runId)
        if (run !== undefined) {
          run.abortReason ??= reason
          run.abortRequestedAt ??= new Date(yield* Clock.currentTimeMillis)
        }
        const fiber = yield* FiberMap.get(fibers, runId).pipe(Effect.option)
        if (Option.isSome(fiber)) yield* Fiber.interrupt(fiber.value)
      })
    }

    /**
     * Asks for the abort of a run that is not live here (spec 50): stored on its row and signalled
     * to its owner, wherever it runs. Answers whether the run was still running.
     */
    const requestAbort = (runId: RunId, reason: AbortReason) =>
      Effect.flatMap(Clock.currentTimeMillis, (at) => runs.requestAbort(runId, reason, new Date(at)))

    /**
     * Aborts a run, wherever it runs, and waits until it is terminal; a finished run is left as it
     * is. One that runs elsewhere is followed to its terminal event (its owner's, or the sweeper's
     * if that owner died).
     */
    const abort = Effect.fn("Runner.abort")(function*(runId: RunId, reason: AbortReason) {
      if (live.has(runId)) return yield* abortHere(runId, reason)
      yield* Effect.scoped(Effect.gen(function*() {
        // Followed before the request leaves: its owner may end it before a later request to follow.
        const ended = yield* Deferred.make<void>()
        yield* relay.follow(runId, (message) => {
          if (message.entries.some((entry) => isTerminal(entry.type))) Deferred.unsafeDone(ended, Exit.void)
        })
        if (!(yield* requestAbort(runId, reason))) return
        // The journal as the fallback: a lost signal, a dead owner (the sweeper closes its run), one process.
        yield* Effect.raceFirst(Deferred.await(ended), untilJournaledEnd(runId))
      }))
    })

    /** Until the run's terminal event is in its journal, read 20 ms after the start, then less and less often (at most 1 s apart). */
    const untilJournaledEnd = (runId: RunId) =>
      journal.terminalSeq(runId).pipe(
        Effect.repeat({
          until: Option.isSome,
          schedule: Schedule.exponential(Duration.millis(20)).pipe(Schedule.union(Schedule.spaced(Duration.seconds(1))))
        }),
        Effect.delay(Duration.millis(20))
      )

    /**
     * The handle of a run, live here or not. Its methods are the class's, shared: a handle is its
     * run's id, and a client's open stream, which keeps it, keeps nothing more of it.
     */
    class Handle implements RunHandle {
      constructor(readonly runId: RunId) {}
      get events() {
        return events.follow(this.runId, 0, asRunEvents)
      }
      follow<A>(after: number, options: FollowOptions<A>) {
        return events.follow(this.runId, after, options)
      }
      subscribe(after: number, follower: Follower) {
        return events.subscribe(this.runId, after, follower)
      }
      abort(reason: AbortReason) {
        return abort(this.runId, reason)
      }
      abortInBackground(reason: AbortReason) {
        // Where the run is, as it is when the caller goes away.
        return Effect.suspend(() =>
          Effect.asVoid(Effect.forkIn(live.has(this.runId) ? abortHere(this.runId, reason) : requestAbort(this.runId, reason), scope))
        )
      }
    }
    const handle = (runId: RunId): RunHandle => new Handle(runId)

    let draining = false

    /**
     * Graceful shutdown (spec 10): stop taking turns, let live runs finish for
     * `SHUTDOWN_GRACE_MS`, then abort the rest (`shutdown`) and wait until they are terminal.
     */
    const drain = Effect.gen(function*() {
      draining = true
      const running = () => live.ids().flatMap((runId) => Option.toArray(FiberMap.unsafeGet(fibers, runId)))
      yield* Effect.logInfo("draining").pipe(Effect.annotateLogs({ liveRuns: live.size(), graceMs: config.shutdownGraceMs }))
      yield* Fiber.awaitAll(running()).pipe(Effect.timeout(Duration.millis(config.shutdownGraceMs)), Effect.ignore)
      for (const run of live.all()) run.abortReason ??= "shutdown"
      yield* Fiber.interruptAll(running())
    }).pipe(Effect.withSpan("Runner.drain"))

    return {
      launch,
      handle,
      abort,
      drain,
      isDraining: () => draining,
      isLive: live.has
    } as const
  })
}) {}
