/**
 * Interruption fuzz on in-memory servers (property-based, fast-check): random interleavings of
 * get/use/callTool/invalidate/closeScope/closeServer/closeAll/reload with random interruptions, connect
 * faults, session deaths and clock jumps. The invariants are listed in ./inMemoryModel.ts.
 *
 * Seeded and reproducible: the seed is printed; rerun one with `FUZZ_SEED=<seed> FUZZ_RUNS=<n>`. A failure
 * prints fast-check's counterexample (the plan, shrunk) and its replay path. The plans are reproducible, and
 * so is the schedule (scheduler turns, TestClock), except for the `block` calls' 5 ms real-time timeouts.
 */
import { Effect, Exit } from "effect"
import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { type Plan, planArbitrary, runPlan, type RunReport } from "./inMemoryModel.ts"

const seed = Number(process.env.FUZZ_SEED ?? 7_001)
const numRuns = Number(process.env.FUZZ_RUNS ?? 2_000)
/** Real time one run may take before it counts as a hang (a run normally takes milliseconds). */
const hangMillis = 10_000

/** Runs a plan, failing if it does not finish in real time: a waiter that hangs fails the property. */
const runBounded = (plan: Plan): Promise<RunReport> =>
  new Promise((resolve, reject) => {
    const fiber = Effect.runFork(runPlan(plan))
    const timer = setTimeout(() => {
      fiber.interruptUnsafe()
      reject(new Error(`the run did not finish within ${hangMillis} ms: something hangs`))
    }, hangMillis)
    fiber.addObserver((exit) => {
      clearTimeout(timer)
      if (Exit.isSuccess(exit)) resolve(exit.value)
      else reject(new Error(`the run failed: ${String(exit.cause)}`))
    })
  })

describe("reliability: interruption fuzz (in-memory)", () => {
  it("every interleaving keeps the pool's invariants", async () => {
    console.log(`interruption fuzz: seed ${seed}, ${numRuns} runs (FUZZ_SEED / FUZZ_RUNS to change)`)
    const totals = { runs: 0, sessions: 0, interrupted: 0, failures: {} as Record<string, number> }
    await fc.assert(
      fc.asyncProperty(planArbitrary, async (plan) => {
        const report = await runBounded(plan)
        totals.runs++
        totals.sessions += report.sessions
        totals.interrupted += report.interrupted
        for (const [tag, n] of Object.entries(report.failures)) totals.failures[tag] = (totals.failures[tag] ?? 0) + n
        expect(report.violations).toEqual([])
      }),
      { seed, numRuns }
    )
    console.log(
      `interruption fuzz: ${totals.runs} runs, ${totals.sessions} sessions, ${totals.interrupted} ops interrupted, ` +
        `typed failures ${JSON.stringify(totals.failures)}`
    )
  }, 120_000)
})
