/**
 * The interruption fuzz, smaller, against real stdio servers (test/fixtures/fault-server.ts): random
 * interleavings of get/callTool/invalidate/closeScope/reload/kill/closeAll with random interruptions and
 * random server faults (exit during initialize, silence, garbage, crash on a call, SIGKILL from outside).
 * Delays here are fuzz inputs in real milliseconds, never synchronisation: processes run in real time.
 *
 * Invariants per run: it finishes within its bound; operations fail only with typed errors their faults
 * explain (a ConnectTimeout only on a scope one of whose connects, started before the failure, was planned to
 * stay silent: a healthy server that misses the bound fails the run); every answer comes from the process of
 * the right scope (and of the leased session); a leased session is never lost unless its process was killed or
 * crashed, or the pool closed; once idle, live processes fit in capacity; after `closeAll` no process of the
 * run is left. A failing run prints the seed to replay it with.
 */
import { Cause, type Duration, Effect, Exit, Fiber, References, Schedule, Scope } from "effect"
import * as fc from "fast-check"
import { mkdtempSync, readdirSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import type { McpGetError, McpSessionError } from "../../src/McpPoolError.ts"
import * as McpServerConfig from "../../src/McpServerConfig.ts"
import type { RequestOptions } from "../../src/McpSession.ts"
import * as McpSessionPool from "../../src/McpSessionPool.ts"
import { firstText } from "../utils/probe.ts"
import { isRunning } from "../utils/proc.ts"

const seed = Number(process.env.FUZZ_STDIO_SEED ?? 7_002)
const numRuns = Number(process.env.FUZZ_STDIO_RUNS ?? 10)
const runBoundMillis = 20_000
/**
 * A healthy fault server (no SDK) is up and initialized in well under this even on a loaded machine, so only a
 * connect planned to stay silent may run into it.
 */
const connectTimeout = "1500 millis"
const fixture = fileURLToPath(new URL("../fixtures/fault-server.ts", import.meta.url))

type Fault = "none" | "exit-on-initialize" | "silent" | "garbage" | "crash-on-call"
type Tool = "whoami" | "block" | "crash"
type Op =
  | { readonly kind: "get"; readonly scope: string; readonly tool: Tool; readonly holdMillis: number }
  | { readonly kind: "callTool"; readonly scope: string; readonly tool: Tool }
  | { readonly kind: "invalidate" | "closeScope" | "kill"; readonly scope: string }
  | { readonly kind: "reload" }
interface Step {
  readonly op: Op
  readonly startMillis: number
  readonly interruptAfterMillis: number | null
}
interface Plan {
  readonly capacity: number
  readonly faults: ReadonlyArray<Fault>
  readonly steps: ReadonlyArray<Step>
  readonly closeAllAtMillis: number | null
}

const scope = fc.constantFrom("t1", "t2", "🧵")
const tool = fc.constantFrom<Tool>("whoami", "whoami", "whoami", "block", "crash")
const planArbitrary: fc.Arbitrary<Plan> = fc.record({
  capacity: fc.integer({ min: 1, max: 2 }),
  faults: fc.array(
    fc.constantFrom<Fault>("none", "none", "exit-on-initialize", "silent", "garbage", "crash-on-call"),
    { maxLength: 4 }
  ),
  steps: fc.array(
    fc.record({
      op: fc.oneof(
        {
          weight: 4,
          arbitrary: fc.record({ kind: fc.constant("get" as const), scope, tool, holdMillis: fc.nat(200) })
        },
        { weight: 4, arbitrary: fc.record({ kind: fc.constant("callTool" as const), scope, tool }) },
        {
          weight: 1,
          arbitrary: fc.record({ kind: fc.constantFrom("invalidate" as const, "closeScope" as const), scope })
        },
        { weight: 1, arbitrary: fc.record({ kind: fc.constant("kill" as const), scope }) },
        { weight: 1, arbitrary: fc.record({ kind: fc.constant("reload" as const) }) }
      ),
      startMillis: fc.nat(400),
      interruptAfterMillis: fc.oneof(fc.constant(null), fc.nat(600))
    }),
    { minLength: 1, maxLength: 6 }
  ),
  closeAllAtMillis: fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat(1_000) })
})

const runPlan = (plan: Plan) =>
  Effect.gen(function*() {
    const violations: Array<string> = []
    const pidDir = mkdtempSync(join(tmpdir(), "mcp-pool-fuzz-"))
    const faults = [...plan.faults]
    /** Every connect the pool started, in order, with the fault it was given. */
    const connects: Array<{ readonly scope: string; readonly fault: Fault }> = []
    const killed = new Set<number>()
    /** Scopes some op has called `crash` on: that ends the scope's process under every lease on it. */
    const crashCalled = new Set<string>()
    let forced = false
    const pids = () => readdirSync(pidDir).map(Number)
    const faultOf = (pid: number) => readFileSync(join(pidDir, String(pid)), "utf8") as Fault
    const config = (callTimeout: Duration.Input) =>
      McpServerConfig.stdio({
        command: process.execPath,
        args: [fixture],
        // Called once per connect: each spawn takes the next fault of the plan.
        env: (scope) => {
          const fault = faults.shift() ?? "none"
          connects.push({ scope, fault })
          return { SCOPE: scope, FAULT: fault, FAULT_CRASH_ON_CALL: "2", FAULT_PID_DIR: pidDir }
        },
        callTimeout,
        stdinGrace: "100 millis",
        terminateGrace: "100 millis"
      })
    const variants = [config("5 seconds"), config("6 seconds")]
    let variant = 0

    const poolScope = yield* Scope.make()
    const pool = yield* McpSessionPool.make({
      servers: { s: variants[0]! },
      capacity: plan.capacity,
      connectTimeout
    }).pipe(Scope.provide(poolScope), Effect.orDie)

    /** Calls `tool`; for whoami checks the answer came from a process of `scope`. */
    const call = (scope: string, name: Tool) => {
      const options: RequestOptions | undefined = name === "block" ? { timeout: "200 millis" } : undefined
      if (name === "crash") crashCalled.add(scope)
      return Effect.map(pool.callTool({ server: "s", scope, name }, options), (result) => {
        const answeredScope = firstText(result).split(" ")[1]
        if (name === "whoami" && answeredScope !== scope) {
          violations.push(`scope ${scope} was answered by a process of ${answeredScope}`)
        }
      })
    }

    const run = (op: Op): Effect.Effect<unknown, McpGetError | McpSessionError> => {
      switch (op.kind) {
        case "get":
          return Effect.scoped(Effect.gen(function*() {
            const session = yield* pool.get({ server: "s", scope: op.scope })
            const pid = session.pid!
            const leased = (name: Tool) =>
              Effect.tapError(
                Effect.map(
                  Effect.suspend(() => {
                    if (name === "crash") crashCalled.add(op.scope)
                    return session.callTool({ name }, name === "block" ? { timeout: "200 millis" } : undefined)
                  }),
                  (result) => {
                    if (name === "whoami" && firstText(result) !== `${pid} ${op.scope}`) {
                      violations.push(`lease on pid ${pid} (${op.scope}) answered "${firstText(result)}"`)
                    }
                  }
                ),
                (error) =>
                  Effect.sync(() => {
                    // Killed, crashed by this op or another on the same scope, or crashing by plan.
                    const explained = killed.has(pid) || crashCalled.has(op.scope) ||
                      faultOf(pid) === "crash-on-call" || forced
                    if (error._tag === "SessionLost" && !explained) {
                      violations.push(`leased pid ${pid} (${op.scope}) was lost with no fault: ${error.reason}`)
                    }
                  })
              )
            yield* leased(op.tool)
            yield* Effect.sleep(op.holdMillis)
            yield* leased("whoami")
          }))
        case "callTool":
          return call(op.scope, op.tool)
        case "invalidate":
          return pool.invalidate({ server: "s", scope: op.scope })
        case "closeScope":
          return pool.closeScope(op.scope)
        case "reload":
          return Effect.orDie(pool.reload({ s: variants[variant = 1 - variant]! }))
        case "kill":
          return Effect.map(pool.snapshot, (rows) => {
            const pid = rows.find((row) => row.scope === op.scope && row.pid !== undefined)?.pid
            if (pid === undefined) return
            killed.add(pid)
            try {
              process.kill(pid, "SIGKILL")
            } catch {
              // already gone
            }
          })
      }
    }

    /** How many connects had started when each op failed: only those can explain its failure. */
    const connectsAtFailure = new Map<number, number>()

    const explained = (error: McpGetError | McpSessionError, op: Op, index: number): boolean => {
      const tools = plan.steps.map((step) => "tool" in step.op ? step.op.tool : undefined)
      switch (error._tag) {
        case "ConnectError":
          return plan.faults.includes("exit-on-initialize") || forced
        case "ConnectTimeout":
          // Only a connect of that scope planned to stay silent; not a healthy server slower than the bound.
          return connects.slice(0, connectsAtFailure.get(index) ?? connects.length).some((connect) =>
            connect.scope === error.scope && connect.fault === "silent"
          )
        case "SessionLost":
          return killed.size > 0 || tools.includes("crash") || plan.faults.includes("crash-on-call") || forced
        case "CallTimeout":
          return "tool" in op && op.tool === "block"
        case "PoolClosed":
          return forced
        default:
          return false
      }
    }

    const failures: Record<string, number> = {}
    const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
    for (const [index, step] of plan.steps.entries()) {
      const fiber = yield* Effect.forkChild(
        Effect.andThen(Effect.sleep(step.startMillis), run(step.op)).pipe(
          Effect.tapError(() => Effect.sync(() => connectsAtFailure.set(index, connects.length)))
        )
      )
      fibers.push(fiber)
      if (step.interruptAfterMillis !== null) {
        yield* Effect.forkChild(
          Effect.andThen(Effect.sleep(step.startMillis + step.interruptAfterMillis), Fiber.interrupt(fiber))
        )
      }
    }
    const closer = plan.closeAllAtMillis === null ? undefined : yield* Effect.forkChild(
      Effect.andThen(
        Effect.sleep(plan.closeAllAtMillis),
        Effect.andThen(Effect.sync(() => (forced = true)), pool.closeAll)
      )
    )
    const exits = yield* Fiber.awaitAll(fibers)
    if (closer !== undefined) yield* Fiber.await(closer)

    exits.forEach((exit, i) => {
      if (Exit.isSuccess(exit)) return
      const step = plan.steps[i]!
      if (Cause.hasDies(exit.cause)) {
        violations.push(`op ${i} (${step.op.kind}) died: ${Cause.pretty(exit.cause)}`)
      } else if (Cause.hasInterruptsOnly(exit.cause)) {
        if (step.interruptAfterMillis === null) violations.push(`op ${i} was interrupted by nobody`)
      } else {
        const error = Cause.findErrorOption(exit.cause)
        const typed = error._tag === "Some" ? error.value as McpGetError | McpSessionError : undefined
        if (typed !== undefined) failures[typed._tag] = (failures[typed._tag] ?? 0) + 1
        if (typed !== undefined && !explained(typed, step.op, i)) {
          violations.push(`op ${i} (${step.op.kind}) failed with an unexplained ${typed._tag}: ${typed.message}`)
        }
      }
    })

    if (!forced) {
      // All idle: within a bounded time (evicted processes exit as their stdin closes), live processes fit in
      // capacity and no lease is left.
      const live = yield* Effect.suspend(() => {
        const running = pids().filter(isRunning)
        return running.length <= plan.capacity ? Effect.succeed(running) : Effect.fail(running)
      }).pipe(
        Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 250 }),
        Effect.catch((running) => Effect.succeed(running))
      )
      if (live.length > plan.capacity) {
        violations.push(`idle, yet ${live.length} live processes (capacity ${plan.capacity})`)
      }
      for (const row of yield* pool.snapshot) {
        if (row.leases !== 0) violations.push(`${row.scope} still has ${row.leases} leases`)
      }
    }
    forced = true
    yield* Scope.close(poolScope, Exit.void)
    const left = pids().filter(isRunning)
    if (left.length > 0) violations.push(`processes left after closeAll: ${left.join(", ")}`)
    return { violations, processes: pids().length, failures }
  }).pipe(
    Effect.provideService(References.MinimumLogLevel, "None"),
    Effect.timeoutOrElse({
      duration: runBoundMillis,
      orElse: () =>
        Effect.succeed({
          violations: [`the run did not finish within ${runBoundMillis} ms`],
          processes: 0,
          failures: {} as Record<string, number>
        })
    })
  )

describe("reliability: interruption fuzz (real stdio servers)", () => {
  it("every interleaving keeps the pool's invariants, with real processes", async () => {
    console.log(`stdio fuzz: seed ${seed}, ${numRuns} runs (FUZZ_STDIO_SEED / FUZZ_STDIO_RUNS to change)`)
    let processes = 0
    let run = 0
    const failures: Record<string, number> = {}
    await fc.assert(
      fc.asyncProperty(planArbitrary, async (plan) => {
        run++
        const report = await Effect.runPromise(runPlan(plan))
        processes += report.processes
        for (const [tag, n] of Object.entries(report.failures)) failures[tag] = (failures[tag] ?? 0) + n
        expect(
          report.violations,
          `stdio fuzz run ${run} of seed ${seed} broke an invariant (replay: FUZZ_STDIO_SEED=${seed} ` +
            `FUZZ_STDIO_RUNS=${run}); plan ${JSON.stringify(plan)}`
        ).toEqual([])
      }),
      { seed, numRuns, endOnFailure: true }
    )
    console.log(
      `stdio fuzz: ${numRuns} runs, ${processes} server processes spawned, typed failures ${JSON.stringify(failures)}`
    )
  }, 120_000)
})
