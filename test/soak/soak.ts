/**
 * Soak: sustained churn on one pool for minutes, with faults injected all along, then a leak audit.
 *
 *   npm run test:soak                      # 3 minutes
 *   npm run test:soak -- --minutes 10 --seed 42
 *
 * Workers run random operations (callTool, get with several calls, use, invalidate, closeScope, reload) on
 * in-memory servers and on real stdio servers (direct and behind `sh -c`); some operations are interrupted
 * at random. Meanwhile: stdio server processes are SIGKILLed, connects fail, hang or die, servers exit
 * mid-call, start with garbage on stdout or crash on their 2nd call. Checked throughout: every failure is a
 * typed error (no defect), no operation hangs, every answer comes from the right scope's server, no session
 * is closed under a lease. At the end: every in-memory session was released exactly once, and no process,
 * descriptor, fiber or listener is left. Prints the figures as Markdown; exits 1 if anything was wrong.
 */
import { Cause, Duration, Effect, Exit, Fiber, References, Scope } from "effect"
import { mkdtempSync, readdirSync } from "node:fs"
import { cpus, tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import * as McpServerConfig from "../../src/McpServerConfig.ts"
import * as McpSessionPool from "../../src/McpSessionPool.ts"
import { formatLeaks, leakCount, makeLeakAudit } from "../utils/leaks.ts"
import { firstText } from "../utils/probe.ts"
import { makeTracker } from "../utils/tracked.ts"

const { values: args } = parseArgs({
  options: { minutes: { type: "string", default: process.env.SOAK_MINUTES ?? "3" }, seed: { type: "string" } }
})
const minutes = Number(args.minutes)
const seed = Number(args.seed ?? Date.now() % 1_000_000)
const workers = 16
const opBoundMillis = 30_000
const fixture = new URL("../fixtures/fault-server.ts", import.meta.url).pathname

/** mulberry32: the same seed gives the same sequence of choices (timing still varies from run to run). */
let state = seed >>> 0
const random = () => {
  state = (state + 0x6D2B79F5) >>> 0
  let t = state
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const pick = <A>(items: ReadonlyArray<A>): A => items[Math.floor(random() * items.length)]!

const figures = {
  operations: 0,
  ok: 0,
  failures: {} as Record<string, number>,
  interrupted: 0,
  killed: 0,
  connectFaults: 0,
  callDeaths: 0,
  violations: [] as Array<string>
}
const violation = (message: string) => {
  if (figures.violations.length < 50) figures.violations.push(message)
  else figures.violations.length++
}

const program = Effect.gen(function*() {
  const pidDir = mkdtempSync(join(tmpdir(), "mcp-pool-soak-"))
  // Warm up (one session of each kind) before the baseline: lazily opened process-wide resources are no leak.
  yield* Effect.scoped(Effect.gen(function*() {
    const warm = yield* McpSessionPool.make({
      servers: {
        m: makeTracker().config("m"),
        s: McpServerConfig.stdio({ command: process.execPath, args: [fixture] })
      }
    })
    yield* warm.callTool({ server: "m", scope: "warm", name: "whoami" })
    yield* warm.callTool({ server: "s", scope: "warm", name: "whoami" })
  }))
  const audit = yield* makeLeakAudit
  const tracker = makeTracker()
  const stdioFaults: Array<string> = []
  const stdio = (wrapped: boolean, callTimeout: Duration.Input = "3 seconds") =>
    McpServerConfig.stdio({
      command: wrapped ? "/bin/sh" : process.execPath,
      args: wrapped ? ["-c", `"${process.execPath}" "${fixture}"`] : [fixture],
      env: (scope) => ({
        ...audit.env,
        SCOPE: scope,
        FAULT_PID_DIR: pidDir,
        FAULT: stdioFaults.shift() ?? "none",
        FAULT_CRASH_ON_CALL: "2"
      }),
      callTimeout,
      stdinGrace: "200 millis",
      terminateGrace: "200 millis"
    })
  const servers = { a: tracker.config("a"), b: tracker.config("b"), s: stdio(false), w: stdio(true) }
  const scopes = Array.from({ length: 40 }, (_, i) => `thread-${i}`)
  let maxLive = 0

  yield* audit.track(Effect.gen(function*() {
    const poolScope = yield* Scope.make()
    const pool = yield* McpSessionPool.make({ servers, capacity: 24, connectTimeout: "3 seconds" }).pipe(
      Scope.provide(poolScope)
    )

    const whoami = (server: string, scope: string) =>
      Effect.map(pool.callTool({ server, scope, name: "whoami" }), (result) => {
        const text = firstText(result)
        const owner = server === "a" || server === "b" ? tracker.byId(text)?.scope : text.slice(text.indexOf(" ") + 1)
        if (owner !== scope) violation(`${server}/${scope} was answered by a session of ${owner}`)
      })

    const operation = (): Effect.Effect<unknown, { readonly _tag: string }> => {
      const server = pick(["a", "b", "a", "b", "s", "w"])
      const scope = pick(scopes)
      const roll = random()
      if (roll < 0.4) return whoami(server, scope)
      if (roll < 0.6) {
        return Effect.scoped(Effect.gen(function*() {
          const session = yield* pool.get({ server, scope })
          if (session.scope !== scope || session.server !== server) violation(`get ${server}/${scope} got another`)
          for (let i = 0; i < 3; i++) yield* whoami(server, scope)
        }))
      }
      if (roll < 0.7) return pool.use({ server, scope }, (session) => session.callTool({ name: "whoami" }))
      if (roll < 0.75) {
        return pool.callTool({ server, scope, name: "block" }, { timeout: `${Math.floor(random() * 100)} millis` })
      }
      if (roll < 0.79) {
        figures.callDeaths++
        return pool.callTool({ server, scope, name: server === "a" || server === "b" ? "die" : "crash" })
      }
      if (roll < 0.87) return pool.invalidate({ server, scope })
      if (roll < 0.95) return pool.closeScope(scope)
      if (roll < 0.97) return pool.reload({ ...servers, s: stdio(false, pick(["3 seconds", "4 seconds"])) })
      return pool.closeServer(server)
    }

    const worker = (deadline: number): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (Date.now() >= deadline) return Effect.void
        figures.operations++
        const interruptAfter = random() < 0.15 ? Math.floor(random() * 40) : undefined
        const op = operation()
        const bounded = Effect.timeoutOrElse(interruptAfter === undefined ? op : Effect.timeout(op, interruptAfter), {
          duration: opBoundMillis,
          orElse: () => Effect.sync(() => violation(`an operation hung for ${opBoundMillis} ms`))
        })
        return Effect.exit(bounded).pipe(
          Effect.map((exit) => {
            if (Exit.isSuccess(exit)) return figures.ok++
            if (Cause.hasDies(exit.cause)) return violation(`defect: ${Cause.pretty(exit.cause).slice(0, 300)}`)
            const error = Cause.findErrorOption(exit.cause)
            const tag = error._tag === "Some" ? error.value._tag : "Interrupt"
            if (tag === "TimeoutError") figures.interrupted++
            else figures.failures[tag] = (figures.failures[tag] ?? 0) + 1
          }),
          Effect.andThen(worker(deadline))
        )
      })

    /** Every 2 s: SIGKILL a live stdio server, queue connect faults, note the high-water mark. */
    const injector = Effect.gen(function*() {
      const rows = yield* pool.snapshot
      maxLive = Math.max(maxLive, rows.length)
      const victims = rows.filter((row) => row.pid !== undefined)
      if (victims.length > 0) {
        try {
          process.kill(-pick(victims).pid!, "SIGKILL") // the whole group: the shell and the server behind it
          figures.killed++
        } catch {
          // already gone
        }
      }
      tracker.faults.push(pick(["fail", "hang", "defect"] as const))
      stdioFaults.push(pick(["exit-on-initialize", "silent", "garbage", "crash-on-call"]))
      figures.connectFaults += 2
    }).pipe(Effect.andThen(Effect.sleep("2 seconds")), Effect.forever)

    const deadline = Date.now() + minutes * 60_000
    const faults = yield* Effect.forkChild(injector)
    const progress = yield* Effect.forkChild(
      Effect.forever(Effect.andThen(
        Effect.sleep("15 seconds"),
        Effect.sync(() =>
          console.error(`… ${figures.operations} ops, ${figures.killed} kills, ${figures.violations.length} violations`)
        )
      ))
    )
    yield* Effect.all(Array.from({ length: workers }, () => worker(deadline)), { concurrency: "unbounded" })
    yield* Fiber.interrupt(faults)
    yield* Fiber.interrupt(progress)
    tracker.forced = true
    yield* Scope.close(poolScope, Exit.void)
  }))

  for (const record of tracker.records) {
    if (record.releasedIn.length !== 1) violation(`session ${record.id} released ${record.releasedIn.length} times`)
    if (record.closedWhileLeased) violation(`session ${record.id} was closed while leased`)
  }
  const leaks = yield* audit.report({ withinMillis: 10_000 })
  return { leaks, inMemorySessions: tracker.records.length, processes: readdirSync(pidDir).length, maxLive }
}).pipe(
  Effect.scoped,
  Effect.provideService(References.MinimumLogLevel, "None")
)

const n = (value: number) => value.toLocaleString("en-US")
console.error(`soak: ${minutes} minute(s), seed ${seed}, ${workers} workers`)
const started = Date.now()
const result = await Effect.runPromise(program)
const { leaks } = result
const failures = Object.entries(figures.failures).sort(([, a], [, b]) => b - a)
const typed = failures.reduce((sum, [, count]) => sum + count, 0)
const leakTotal = leakCount(leaks)
console.log(`
| Soak figure | Value |
|---|---|
| duration, load | ${
  ((Date.now() - started) / 60_000).toFixed(1)
} min, ${workers} workers, ${cpus().length} cores, Node ${process.versions.node}, seed ${seed} |
| operations | ${n(figures.operations)}: ${n(figures.ok)} succeeded, ${n(typed)} typed errors, ${
  n(figures.interrupted)
} interrupted |
| typed errors | ${failures.map(([tag, count]) => `${tag} ${n(count)}`).join(", ") || "none"} |
| faults injected | ${n(figures.killed)} server process groups SIGKILLed, ${n(figures.connectFaults)} connect faults, ${
  n(figures.callDeaths)
} deaths mid-call |
| sessions opened | ${n(result.inMemorySessions)} in-memory, ${n(result.processes)} stdio processes; at most ${
  n(result.maxLive)
} live (capacity 24) |
| invariant violations | ${figures.violations.length} (defects, hangs, wrong scope, closed while leased, double release) |
| leaks found | ${leakTotal} (processes ${leaks.processes.length}, fds ${leaks.fds.before} → ${leaks.fds.after}, fibers ${
  n(leaks.fibers.running)
} of ${n(leaks.fibers.started)}, listeners ${leaks.listeners.length}, MaxListeners warnings ${leaks.warnings.length}) |
`)
for (const message of figures.violations) console.error(`violation: ${message}`)
if (leakTotal > 0) console.error(formatLeaks(leaks))
process.exit(figures.violations.length === 0 && leakTotal === 0 ? 0 : 1)
