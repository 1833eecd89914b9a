/**
 * Fault injection with real processes (test/fixtures/fault-server.ts): servers that exit during
 * `initialize`, during a call or between calls, never answer, write garbage or half a line, flood stderr,
 * crash on the Nth call, or return 10 MB. Each gives the typed error that says the pool noticed the fault rather
 * than waiting out a bound (ConnectError, not ConnectTimeout; SessionLost, not CallTimeout), and the same pool
 * keeps serving another server meanwhile and afterwards. Elapsed times are not asserted (the machine is noisy):
 * how each process ended is, from the end record the server writes as it exits (see the fixture). Waits are
 * bounded so that a hang fails with what did not happen.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, References, Schedule } from "effect"
import { mkdtempSync, readdirSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as McpServerConfig from "../../src/McpServerConfig.ts"
import * as McpSessionPool from "../../src/McpSessionPool.ts"
import { firstText } from "../utils/probe.ts"
import { awaitGone, isRunning } from "../utils/proc.ts"
import { within } from "../utils/within.ts"

const fixture = fileURLToPath(new URL("../fixtures/fault-server.ts", import.meta.url))

const faultServer = (env: Record<string, string>, options?: { readonly stderr?: "ignore" | "log" }) =>
  McpServerConfig.stdio({
    command: process.execPath,
    args: [fixture],
    env: (scope) => ({ SCOPE: scope, ...env }),
    stderr: options?.stderr ?? "ignore",
    // Every fault server exits when its stdin closes: a long grace costs nothing, and it ends each process by
    // that first step however loaded the machine (a SIGTERM would leave no end record to assert on).
    stdinGrace: "10 seconds",
    terminateGrace: "200 millis",
    // Short only for servers that never finish initialize: spawning alone may take a while on a loaded machine.
    ...(env.FAULT === "silent" || env.FAULT === "partial-initialize" ? { connectTimeout: "1 second" } : {})
  })

/**
 * A pool with a healthy server next to the faulty one; every process writes its pid into `pidDir` as it starts
 * and how it ended into `endDir` as it exits.
 */
const makePool = (faulty: Record<string, string>, options?: { readonly stderr?: "ignore" | "log" }) =>
  Effect.gen(function*() {
    const pidDir = mkdtempSync(join(tmpdir(), "mcp-pool-fault-"))
    const endDir = mkdtempSync(join(tmpdir(), "mcp-pool-fault-ends-"))
    const dirs = { FAULT_PID_DIR: pidDir, FAULT_END_DIR: endDir }
    const pool = yield* McpSessionPool.make({
      servers: {
        healthy: faultServer(dirs),
        faulty: faultServer({ ...dirs, ...faulty }, options)
      },
      connectTimeout: "10 seconds",
      callTimeout: "5 seconds"
    }).pipe(
      // Session deaths are expected here: keep their warnings out of the test output.
      Effect.provideService(References.MinimumLogLevel, "Error")
    )
    const pids = () => readdirSync(pidDir).map(Number)
    /** The processes started with fault `fault`. */
    const pidsOf = (fault: string) => pids().filter((pid) => readFileSync(join(pidDir, String(pid)), "utf8") === fault)
    /** The one process started with `fault`, once it has written its pid (a spawn may be slow on a loaded machine). */
    const onlyPidOf = (fault: string) =>
      Effect.suspend(() => {
        const found = pidsOf(fault)
        return found.length === 1 ? Effect.succeed(found[0]!) : Effect.fail(`${found.length} processes with ${fault}`)
      }).pipe(Effect.retry({ schedule: Schedule.spaced("10 millis"), times: 500 }))
    /**
     * How the process ended, once it has: "<why> <exit code>" as it wrote on exiting (`stdin-closed 0`: the pool
     * closed its stdin), or "no end record" if a signal killed it.
     */
    const ended = (pid: number) =>
      Effect.map(awaitGone(pid, 5_000), () => {
        try {
          return readFileSync(join(endDir, String(pid)), "utf8")
        } catch {
          return "no end record"
        }
      })
    return { pool, pids, pidsOf, onlyPidOf, ended }
  })

type Pool = McpSessionPool.McpSessionPoolShape

const whoami = (pool: Pool, server: string, scope = "t") =>
  Effect.map(pool.callTool({ server, scope, name: "whoami" }), (result) => {
    const [pid, echoed] = firstText(result).split(" ")
    assert.strictEqual(echoed, scope)
    return Number(pid)
  })

/** The exit of `effect`, which must end within 15 s (every bound under test is shorter). */
const exitOf = <A, E>(effect: Effect.Effect<A, E>, what: string) => Effect.exit(effect).pipe(within("15 seconds", what))

/**
 * How the pool ends the process of a connect that failed: a session that never served is killed at once
 * (a signal, so no end record), not asked to exit through its stdin.
 */
const killedAtOnce = "no end record"

/** The typed error `effect` fails with, which must happen within 15 s. */
const errorOf = <A, E>(effect: Effect.Effect<A, E>, what: string) =>
  Effect.flip(effect).pipe(within("15 seconds", what))

const errorTag = (exit: Exit.Exit<unknown, { readonly _tag: string }>): string =>
  Exit.isSuccess(exit) ? "success" : Exit.findErrorOption(exit).pipe((e) => e._tag === "Some" ? e.value._tag : "defect")

/** The healthy server still answers (with a live process) while or after the faulty one misbehaves. */
const assertHealthy = (pool: Pool) => Effect.map(whoami(pool, "healthy"), (pid) => assert.isTrue(isRunning(pid)))

describe("reliability: fault injection (real processes)", () => {
  it.live("a server that exits during initialize: ConnectError at once, not cached, others unaffected", () =>
    Effect.gen(function*() {
      const { ended, onlyPidOf, pids, pidsOf, pool } = yield* makePool({ FAULT: "exit-on-initialize" })
      // A ConnectError, not a ConnectTimeout (10 s): the exit is noticed, not waited out.
      assert.strictEqual(errorTag(yield* exitOf(whoami(pool, "faulty"), "the connect to fail")), "ConnectError")
      assert.strictEqual(yield* ended(yield* onlyPidOf("exit-on-initialize")), "exit-on-initialize 3")
      yield* assertHealthy(pool)
      assert.strictEqual(errorTag(yield* exitOf(whoami(pool, "faulty"), "the second connect to fail")), "ConnectError")
      assert.strictEqual(pidsOf("exit-on-initialize").length, 2) // tried again, not cached
      assert.strictEqual(pids().length, 3)
      yield* pool.closeAll
      assert.deepStrictEqual(pids().filter(isRunning), [])
    }))

  it.live("a server that never answers initialize: ConnectTimeout at its bound, the process ended by the pool", () =>
    Effect.gen(function*() {
      const { ended, onlyPidOf, pool } = yield* makePool({ FAULT: "silent" })
      const attempt = yield* Effect.forkChild(Effect.flip(whoami(pool, "faulty")))
      const healthy = yield* whoami(pool, "healthy") // served while the other connect hangs
      const error = yield* Fiber.join(attempt).pipe(within("15 seconds", "the silent connect to time out"))
      assert.strictEqual(error._tag, "ConnectTimeout")
      assert.strictEqual(error._tag === "ConnectTimeout" && error.timeoutMillis, 1_000) // the faulty server's bound
      // The waiter hears once the process is gone, killed without the stdin grace.
      const silent = yield* onlyPidOf("silent")
      assert.isFalse(isRunning(silent), "the timed-out process still ran when ConnectTimeout was returned")
      assert.strictEqual(yield* ended(silent), killedAtOnce)
      assert.isTrue(isRunning(healthy))
    }))

  it.live("half a line in answer to initialize: ConnectTimeout, no crash", () =>
    Effect.gen(function*() {
      const { ended, onlyPidOf, pool } = yield* makePool({ FAULT: "partial-initialize" })
      const error = yield* errorOf(whoami(pool, "faulty"), "the half-answered connect to time out")
      assert.strictEqual(error._tag, "ConnectTimeout")
      assert.strictEqual(error._tag === "ConnectTimeout" && error.timeoutMillis, 1_000)
      assert.strictEqual(yield* ended(yield* onlyPidOf("partial-initialize")), killedAtOnce)
      yield* assertHealthy(pool)
    }))

  it.live("garbage lines on stdout are skipped: calls still answer", () =>
    Effect.gen(function*() {
      const { pool } = yield* makePool({ FAULT: "garbage" })
      const first = yield* whoami(pool, "faulty")
      assert.strictEqual(yield* whoami(pool, "faulty"), first) // the session stays
      yield* assertHealthy(pool)
    }))

  it.live("half an answer then exit during a call: SessionLost at once; the next call gets a fresh process", () =>
    Effect.gen(function*() {
      const { ended, pool } = yield* makePool({})
      const before = yield* whoami(pool, "faulty")
      const exit = yield* exitOf(
        pool.callTool({ server: "faulty", scope: "t", name: "partial_exit" }),
        "the call to fail"
      )
      // SessionLost, not CallTimeout (5 s): the exit is noticed, not waited out.
      assert.strictEqual(errorTag(exit), "SessionLost")
      assert.strictEqual(yield* ended(before), "partial_exit 1")
      const after = yield* whoami(pool, "faulty")
      assert.notStrictEqual(after, before)
      yield* assertHealthy(pool)
    }))

  it.live("a server that exits during a call: SessionLost at once, other sessions keep working", () =>
    Effect.gen(function*() {
      const { ended, pool } = yield* makePool({})
      const other = yield* whoami(pool, "faulty", "other")
      const crashing = yield* whoami(pool, "faulty")
      const exit = yield* exitOf(pool.callTool({ server: "faulty", scope: "t", name: "crash" }), "the call to fail")
      assert.strictEqual(errorTag(exit), "SessionLost") // not CallTimeout (5 s)
      assert.strictEqual(yield* ended(crashing), "crash 1")
      assert.strictEqual(yield* whoami(pool, "faulty", "other"), other) // another scope of the same server
      yield* assertHealthy(pool)
    }))

  it.live("a server that exits between calls: the next call never hangs, and the one after works", () =>
    Effect.gen(function*() {
      const { ended, pool } = yield* makePool({})
      const first = yield* whoami(pool, "faulty")
      yield* pool.callTool({ server: "faulty", scope: "t", name: "exit_after_reply" })
      assert.strictEqual(yield* ended(first), "exit_after_reply 0")
      // The pool may or may not have noticed yet: a fresh session or SessionLost, never a hang (CallTimeout).
      const exit = yield* exitOf(whoami(pool, "faulty"), "the call after the exit to end")
      assert.include(["success", "SessionLost"], errorTag(exit))
      const next = yield* whoami(pool, "faulty")
      assert.notStrictEqual(next, first)
      assert.isTrue(isRunning(next))
    }))

  it.live("a server killed from outside between calls is replaced", () =>
    Effect.gen(function*() {
      const { ended, pool } = yield* makePool({})
      const first = yield* whoami(pool, "faulty")
      process.kill(first, "SIGKILL")
      assert.strictEqual(yield* ended(first), "no end record") // killed, not exited
      const exit = yield* exitOf(whoami(pool, "faulty"), "the call after the kill to end")
      assert.include(["success", "SessionLost"], errorTag(exit))
      assert.notStrictEqual(yield* whoami(pool, "faulty"), first)
    }))

  it.live("a server that crashes on its 3rd call: calls 1-2 answer, 3 is SessionLost, 4 runs on a new process", () =>
    Effect.gen(function*() {
      const { ended, pool } = yield* makePool({ FAULT: "crash-on-call", FAULT_CRASH_ON_CALL: "3" })
      const first = yield* whoami(pool, "faulty")
      assert.strictEqual(yield* whoami(pool, "faulty"), first)
      assert.strictEqual(errorTag(yield* exitOf(whoami(pool, "faulty"), "the third call to fail")), "SessionLost")
      assert.strictEqual(yield* ended(first), "crash-on-call 1")
      const fresh = yield* whoami(pool, "faulty")
      assert.notStrictEqual(fresh, first)
      yield* assertHealthy(pool)
    }))

  it.live("a server that never answers a call: CallTimeout at the bound, the session stays", () =>
    Effect.gen(function*() {
      const { pool } = yield* makePool({})
      const pid = yield* whoami(pool, "faulty")
      const error = yield* errorOf(
        pool.callTool({ server: "faulty", scope: "t", name: "block" }, { timeout: "300 millis" }),
        "the blocked call to time out"
      )
      assert.strictEqual(error._tag, "CallTimeout")
      assert.strictEqual(error._tag === "CallTimeout" && error.timeoutMillis, 300) // the call's bound, not the pool's
      assert.strictEqual(yield* whoami(pool, "faulty"), pid)
      assert.isTrue(isRunning(pid))
    }))

  it.live("a server flooding stderr keeps answering (stderr logged, or ignored)", () =>
    Effect.gen(function*() {
      for (const stderr of ["log", "ignore"] as const) {
        const { pool } = yield* makePool({ FAULT: "stderr-flood", FAULT_STDERR_MB: "4" }, { stderr })
        const pid = yield* whoami(pool, "faulty")
        for (let i = 0; i < 8; i++) assert.strictEqual(yield* whoami(pool, "faulty"), pid)
        yield* assertHealthy(pool)
        yield* pool.closeAll
      }
    }), 30_000)

  it.live(
    "a 10 MB tool result arrives whole; one over the SDK's 10 MiB line limit is SessionLost, not a crash",
    () =>
      Effect.gen(function*() {
        const { pool } = yield* makePool({})
        const pid = yield* whoami(pool, "faulty")
        // No call timeout (the pool's 5 s would measure the machine, not the pool); the test's bound stays.
        const big = yield* pool.callTool({
          server: "faulty",
          scope: "t",
          name: "big",
          arguments: { bytes: 10_000_000 }
        }, { timeout: "Infinity" }).pipe(within("60 seconds", "the 10 MB result"))
        assert.strictEqual(firstText(big).length, 10_000_000)
        assert.strictEqual(yield* whoami(pool, "faulty"), pid)
        const tooBig = yield* Effect.exit(
          pool.callTool({ server: "faulty", scope: "t", name: "big", arguments: { bytes: 11 * 1024 * 1024 } }, {
            timeout: "Infinity"
          }).pipe(within("60 seconds", "the 11 MiB result"))
        )
        assert.strictEqual(errorTag(tooBig), "SessionLost")
        assert.notStrictEqual(yield* whoami(pool, "faulty"), pid)
        yield* assertHealthy(pool)
      }),
    150_000
  )
})
