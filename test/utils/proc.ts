/**
 * Real operating-system state for leak checks, read from /proc (`process.kill(pid, 0)` succeeds on
 * zombies, so it cannot tell a dead process from a live one).
 */
import { Effect, Schedule } from "effect"
import { readFileSync } from "node:fs"

/** True while /proc has the process and it is not a zombie. */
export const isRunning = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // The state letter follows the parenthesised command name, which may itself contain spaces.
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z"
  } catch {
    return false
  }
}

/**
 * Waits until the process is gone, polling /proc every 10 ms, for at most `withinMillis`. Fails with a
 * message naming the pid if it is still running then.
 */
export const awaitGone = (pid: number, withinMillis = 10_000) =>
  Effect.suspend(() => isRunning(pid) ? Effect.fail(`pid ${pid} is still running`) : Effect.void).pipe(
    Effect.retry({ schedule: Schedule.spaced("10 millis"), times: Math.ceil(withinMillis / 10) })
  )
