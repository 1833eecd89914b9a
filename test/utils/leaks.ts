/**
 * Leak audits: what a piece of work left behind, read from the operating system and the Effect runtime.
 *
 * - processes: live (non-zombie) descendants of this process that were not there at the start, plus any
 *   process carrying the audit's marker in its environment (pass `audit.env` to the servers you start: an
 *   orphaned grandchild is reparented away from us but keeps its environment);
 * - file descriptors: the entries of /proc/self/fd;
 * - fibers: fibers started and not yet ended inside `audit.track(...)` (counted through
 *   `Metric.FiberRuntimeMetrics`, which every fiber forked from there inherits, pool owners included);
 * - listeners: `process` listener counts per event, and every `MaxListenersExceededWarning` (EventEmitter or
 *   EventTarget) emitted while the audit is open.
 *
 * OS state settles asynchronously (a pipe closes when its process is reaped), so `report` polls /proc for a
 * bounded time before it reports. It waits on native timers: a `TestClock` in the caller's context cannot
 * stall it.
 */
import { Effect, Metric } from "effect"
import { readdirSync, readFileSync, readlinkSync } from "node:fs"

export interface LeakedProcess {
  readonly pid: number
  readonly command: string
}

export interface LeakReport {
  /** Live processes started during the audit and still running. */
  readonly processes: ReadonlyArray<LeakedProcess>
  /** Open descriptors of this process at the start and at the end, and what the new ones point to. */
  readonly fds: { readonly before: number; readonly after: number; readonly added: ReadonlyArray<string> }
  /** Fibers started inside `track`, and how many of them still run. */
  readonly fibers: { readonly started: number; readonly running: number }
  /** `process` events with more listeners than at the start: "event: before -> after". */
  readonly listeners: ReadonlyArray<string>
  /** MaxListenersExceeded warnings emitted during the audit. */
  readonly warnings: ReadonlyArray<string>
}

/** The number of distinct leaks in a report (0 when clean). */
export const leakCount = (report: LeakReport): number =>
  report.processes.length + Math.max(0, report.fds.after - report.fds.before) + report.fibers.running +
  report.listeners.length + report.warnings.length

export const formatLeaks = (report: LeakReport): string =>
  [
    `processes left: ${report.processes.map((p) => `${p.pid} (${p.command})`).join(", ") || "none"}`,
    `fds: ${report.fds.before} -> ${report.fds.after}${
      report.fds.added.length === 0 ? "" : ` (new: ${report.fds.added.join(", ")})`
    }`,
    `fibers: ${report.fibers.started} started, ${report.fibers.running} still running`,
    `process listeners grown: ${report.listeners.join(", ") || "none"}`,
    `MaxListeners warnings: ${report.warnings.join(" | ") || "none"}`
  ].join("\n")

export interface LeakAudit {
  /** Environment to give the servers started under the audit, so that orphans can be found. */
  readonly env: Readonly<Record<string, string>>
  /** Runs `effect` with fiber counting; fork everything you want audited (the pool too) from inside. */
  readonly track: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Waits up to `withinMillis` for the state to return to the baseline, then reports what is left. */
  readonly report: (options?: { readonly withinMillis?: number }) => Effect.Effect<LeakReport>
}

export const auditEnvName = "MCP_POOL_LEAK_AUDIT"

// --- /proc ---

interface ProcStat {
  readonly pid: number
  readonly ppid: number
  readonly state: string
  readonly command: string
}

const readStat = (pid: string): ProcStat | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1")
    // "pid (comm) state ppid …": comm may contain spaces and parentheses.
    const close = stat.lastIndexOf(")")
    const [state = "", ppid = "0"] = stat.slice(close + 2).split(" ", 2)
    return { pid: Number(pid), ppid: Number(ppid), state, command: stat.slice(stat.indexOf("(") + 1, close) }
  } catch {
    return undefined
  }
}

const allProcesses = (): Array<ProcStat> => {
  const stats: Array<ProcStat> = []
  for (const entry of readdirSync("/proc")) {
    if (entry.charCodeAt(0) < 48 || entry.charCodeAt(0) > 57) continue
    const stat = readStat(entry)
    if (stat !== undefined) stats.push(stat)
  }
  return stats
}

const isLive = (stat: ProcStat): boolean => stat.state !== "Z" && stat.state !== "X"

/** Live descendants of this process. */
const descendants = (stats: ReadonlyArray<ProcStat>): Array<ProcStat> => {
  const children = new Map<number, Array<ProcStat>>()
  for (const stat of stats) {
    const list = children.get(stat.ppid)
    if (list === undefined) children.set(stat.ppid, [stat])
    else list.push(stat)
  }
  const found: Array<ProcStat> = []
  const stack = [process.pid]
  while (stack.length > 0) {
    for (const child of children.get(stack.pop()!) ?? []) {
      found.push(child)
      stack.push(child.pid)
    }
  }
  return found.filter(isLive)
}

const hasMarker = (pid: number, marker: string): boolean => {
  try {
    return readFileSync(`/proc/${pid}/environ`, "latin1").split("\0").includes(marker)
  } catch {
    return false
  }
}

const listFds = (): Array<string> => {
  try {
    return readdirSync("/proc/self/fd")
  } catch {
    return []
  }
}

const fdTarget = (fd: string): string => {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`)
  } catch {
    return "?"
  }
}

const listenerCounts = (): Map<string | symbol, number> =>
  new Map(process.eventNames().map((name) => [name, process.listenerCount(name)]))

export interface FiberCounter {
  readonly started: number
  readonly ended: number
  readonly running: () => number
  /** Runs `effect` so that every fiber forked from it (and from its forks) is counted. */
  readonly track: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

/** Counts fibers started and ended under `track`, through the runtime's fiber metrics hook. */
export const makeFiberCounter = (): FiberCounter => {
  const counter = {
    started: 0,
    ended: 0,
    running: () => counter.started - counter.ended,
    track: <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      Effect.provideService(effect, Metric.FiberRuntimeMetrics, metrics)
  }
  const metrics: Metric.FiberRuntimeMetricsService = {
    recordFiberStart: () => {
      counter.started++
    },
    recordFiberEnd: () => {
      counter.ended++
    }
  }
  return counter
}

/** A sleep on a native timer (a `TestClock` in the context would never wake `Effect.sleep`). */
export const sleepNative = (millis: number): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), millis)
    return Effect.sync(() => clearTimeout(timer))
  })

/**
 * Opens an audit: takes the baseline now and listens for warnings until the scope closes. Warm up first
 * (one session of each kind) if the work lazily opens process-wide resources such as libuv's signal pipe.
 */
export const makeLeakAudit = Effect.gen(function*() {
  const token = `${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`
  const marker = `${auditEnvName}=${token}`
  const baselinePids = new Set(descendants(allProcesses()).map((stat) => stat.pid))
  const baselineFds = new Set(listFds())
  const baselineListeners = listenerCounts()
  const warnings: Array<string> = []
  const onWarning = (warning: Error) => {
    if (warning.name === "MaxListenersExceededWarning") warnings.push(warning.message)
  }
  yield* Effect.acquireRelease(
    Effect.sync(() => process.on("warning", onWarning)),
    () => Effect.sync(() => process.off("warning", onWarning))
  )
  const fibers = makeFiberCounter()

  const snapshot = (): LeakReport => {
    const stats = allProcesses()
    const leftover = new Map<number, ProcStat>()
    for (const stat of descendants(stats)) if (!baselinePids.has(stat.pid)) leftover.set(stat.pid, stat)
    for (const stat of stats) if (isLive(stat) && hasMarker(stat.pid, marker)) leftover.set(stat.pid, stat)
    const fds = listFds()
    const listeners: Array<string> = []
    for (const [name, count] of listenerCounts()) {
      const before = baselineListeners.get(name) ?? 0
      // The audit's own warning listener is not a leak.
      const own = name === "warning" ? 1 : 0
      if (count - own > before) listeners.push(`${String(name)}: ${before} -> ${count - own}`)
    }
    return {
      processes: Array.from(leftover.values(), ({ command, pid }) => ({ pid, command })),
      fds: {
        before: baselineFds.size,
        after: fds.length,
        added: fds.filter((fd) => !baselineFds.has(fd)).map(fdTarget)
      },
      fibers: { started: fibers.started, running: fibers.running() },
      listeners,
      warnings: [...warnings]
    }
  }

  const report = (options?: { readonly withinMillis?: number }): Effect.Effect<LeakReport> =>
    Effect.suspend(() => {
      const deadline = Date.now() + (options?.withinMillis ?? 5_000)
      const poll: Effect.Effect<LeakReport> = Effect.suspend(() => {
        const current = snapshot()
        return leakCount(current) === 0 || Date.now() >= deadline
          ? Effect.succeed(current)
          : Effect.andThen(sleepNative(10), poll)
      })
      return poll
    })

  return {
    env: { [auditEnvName]: token },
    track: fibers.track,
    report
  } satisfies LeakAudit
})
