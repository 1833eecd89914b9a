/**
 * Bounds for the waits in tests: a regression that makes a wait hang fails the test at once with a message
 * naming what did not happen, rather than at vitest's 30 s timeout with nothing to go on.
 */
import { Duration, Effect, Fiber } from "effect"
import { sleepNative } from "./leaks.ts"

/**
 * `self`, or a defect "timed out after <duration> waiting for <what>" if it has not finished by then.
 *
 * The bound is a native timer: a `TestClock` in the context neither stalls it nor needs adjusting for it.
 * `self` runs in a child fiber and only the join is raced, so the bound holds even when `self` is stuck in an
 * uninterruptible region (a race would wait for the loser's interruption); the loser is interrupted in the
 * background.
 */
export const within =
  (duration: Duration.Input, what: string) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.suspend(() => {
      const bound = Duration.fromInputUnsafe(duration)
      return Effect.flatMap(Effect.forkChild(self), (fiber) => {
        const giveUp = Effect.andThen(
          Effect.forkDetach(Fiber.interrupt(fiber)),
          Effect.die(new Error(`timed out after ${Duration.format(bound)} waiting for ${what}`))
        )
        return Effect.raceFirst(Fiber.join(fiber), Effect.andThen(sleepNative(Duration.toMillis(bound)), giveUp)).pipe(
          Effect.onInterrupt(() => Effect.asVoid(Effect.forkDetach(Fiber.interrupt(fiber))))
        )
      })
    })
