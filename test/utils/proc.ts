/**
 * Real operating-system state for leak checks, read from /proc (`process.kill(pid, 0)` succeeds on
 * zombies, so it cannot tell a dead process from a live one).
 */
import { Effect, Schedule } from "effect"
import { readFileSync } from "node:fs"

/** State, parent and process group from `/proc/<pid>/stat`; `undefined` once the entry is gone. */
export const procStat = (
  pid: number
): { readonly state: string; readonly ppid: number; readonly pgrp: number } | undefined => {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "latin1")
  } catch {
    return undefined
  }
  // The fields follow the parenthesised command name, which may itself contain spaces.
  const [state, ppid, pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ", 3)
  return { state: state ?? "?", ppid: Number(ppid), pgrp: Number(pgrp) }
}

/** True while /proc has the process and it is not a zombie (this machine's PID 1 never reaps orphans). */
export const isRunning = (pid: number): boolean => {
  const state = procStat(pid)?.state
  return state !== undefined && state !== "Z" && state !== "X"
}

/**
 * Waits until the process is gone, polling /proc every 10 ms, for at most `withinMillis`. Fails with a
 * message naming the pid if it is still running then.
 */
export const awaitGone = (pid: number, withinMillis = 10_000) =>
  Effect.suspend(() => isRunning(pid) ? Effect.fail(`pid ${pid} is still running`) : Effect.void).pipe(
    Effect.retry({ schedule: Schedule.spaced("10 millis"), times: Math.ceil(withinMillis / 10) })
  )
