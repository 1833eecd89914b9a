/**
 * Fault injection with real processes (test/fixtures/fault-server.ts): servers that exit during
 * `initialize`, during a call or between calls, never answer, write garbage or half a line, flood stderr,
 * crash on the Nth call, or return 10 MB. Each gives a typed error (or its result) within its bound, and the
 * same pool keeps serving another server meanwhile and afterwards. Bounds are generous: the machine is noisy.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, References } from "effect"
import { mkdtempSync, readdirSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as McpServerConfig from "../../src/McpServerConfig.ts"
import { McpSessionPool } from "../../src/McpSessionPool.ts"
import { firstText } from "../utils/probe.ts"
import { awaitGone, isRunning } from "../utils/proc.ts"

const fixture = fileURLToPath(new URL("../fixtures/fault-server.ts", import.meta.url))

const faultServer = (env: Record<string, string>, options?: { readonly stderr?: "ignore" | "log" }) =>
  McpServerConfig.stdio({
    command: process.execPath,
    args: [fixture],
    env: (scope) => ({ SCOPE: scope, ...env }),
    stderr: options?.stderr ?? "ignore",
    stdinGrace: "200 millis",
    terminateGrace: "200 millis",
    // Short only for servers that never finish initialize: spawning alone may take a while on a loaded machine.
    ...(env.FAULT === "silent" || env.FAULT === "partial-initialize" ? { connectTimeout: "1 second" } : {})
  })

/** A pool with a healthy server next to the faulty one; every process writes its pid into `pidDir`. */
const makePool = (faulty: Record<string, string>, options?: { readonly stderr?: "ignore" | "log" }) =>
  Effect.gen(function*() {
    const pidDir = mkdtempSync(join(tmpdir(), "mcp-pool-fault-"))
    const pool = yield* McpSessionPool.make({
      servers: {
        healthy: faultServer({ FAULT_PID_DIR: pidDir }),
        faulty: faultServer({ FAULT_PID_DIR: pidDir, ...faulty }, options)
      },
      connectTimeout: "10 seconds",
      callTimeout: "5 seconds"
    }).pipe(
      // Session deaths are expected here: keep their warnings out of the test output.
      Effect.provideService(References.MinimumLogLevel, "Error")
    )
    const pids = () => readdirSync(pidDir).map(Number)
    return { pool, pids }
  })

type Pool = McpSessionPool["Service"]

const whoami = (pool: Pool, server: string, scope = "t") =>
  Effect.map(pool.callTool({ server, scope, name: "whoami" }), (result) => {
    const [pid, echoed] = firstText(result).split(" ")
    assert.strictEqual(echoed, scope)
    return Number(pid)
  })

/** Runs `effect` and returns its exit with the milliseconds it took. */
const timed = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const start = Date.now()
    const exit = yield* Effect.exit(effect)
    return { exit, millis: Date.now() - start }
  })

const errorTag = (exit: Exit.Exit<unknown, { readonly _tag: string }>): string =>
  Exit.isSuccess(exit) ? "success" : Exit.findErrorOption(exit).pipe((e) => e._tag === "Some" ? e.value._tag : "defect")

/** The healthy server still answers (with a live process) while or after the faulty one misbehaves. */
const assertHealthy = (pool: Pool) => Effect.map(whoami(pool, "healthy"), (pid) => assert.isTrue(isRunning(pid)))

describe("reliability: fault injection (real processes)", () => {
  it.live("a server that exits during initialize: ConnectError at once, not cached, others unaffected", () =>
    Effect.gen(function*() {
      const { pids, pool } = yield* makePool({ FAULT: "exit-on-initialize" })
      const { exit, millis } = yield* timed(whoami(pool, "faulty"))
      assert.strictEqual(errorTag(exit), "ConnectError")
      assert.isBelow(millis, 3_000) // far below the connect timeout (10 s): the exit is noticed, not waited out
      yield* assertHealthy(pool)
      assert.strictEqual(errorTag(yield* Effect.exit(whoami(pool, "faulty"))), "ConnectError") // tried again
      assert.strictEqual(pids().length, 3)
      yield* pool.closeAll
      assert.deepStrictEqual(pids().filter(isRunning), [])
    }))

  it.live("a server that never answers initialize: ConnectTimeout at the bound, process killed", () =>
    Effect.gen(function*() {
      const { pids, pool } = yield* makePool({ FAULT: "silent" })
      const attempt = yield* Effect.forkChild(timed(whoami(pool, "faulty")))
      const healthy = yield* whoami(pool, "healthy") // served while the other connect hangs
      const { exit, millis } = yield* Fiber.join(attempt)
      assert.strictEqual(errorTag(exit), "ConnectTimeout")
      assert.isAtLeast(millis, 990)
      assert.isBelow(millis, 3_000)
      // The waiter hears at once; the owner kills the silent process meanwhile (stdin grace, SIGTERM).
      yield* Effect.forEach(pids().filter((pid) => pid !== healthy), (pid) => awaitGone(pid, 3_000))
      assert.isTrue(isRunning(healthy))
    }))

  it.live("half a line in answer to initialize: ConnectTimeout, no crash", () =>
    Effect.gen(function*() {
      const { pool } = yield* makePool({ FAULT: "partial-initialize" })
      const { exit, millis } = yield* timed(whoami(pool, "faulty"))
      assert.strictEqual(errorTag(exit), "ConnectTimeout")
      assert.isBelow(millis, 3_000)
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
      const { pool } = yield* makePool({})
      const before = yield* whoami(pool, "faulty")
      const { exit, millis } = yield* timed(pool.callTool({ server: "faulty", scope: "t", name: "partial_exit" }))
      assert.strictEqual(errorTag(exit), "SessionLost")
      assert.isBelow(millis, 1_500)
      const after = yield* whoami(pool, "faulty")
      assert.notStrictEqual(after, before)
      yield* assertHealthy(pool)
    }))

  it.live("a server that exits during a call: SessionLost at once, other sessions keep working", () =>
    Effect.gen(function*() {
      const { pool } = yield* makePool({})
      const other = yield* whoami(pool, "faulty", "other")
      const { exit, millis } = yield* timed(pool.callTool({ server: "faulty", scope: "t", name: "crash" }))
      assert.strictEqual(errorTag(exit), "SessionLost")
      assert.isBelow(millis, 1_500)
      assert.strictEqual(yield* whoami(pool, "faulty", "other"), other) // another scope of the same server
      yield* assertHealthy(pool)
    }))

  it.live("a server that exits between calls: the next call never hangs, and the one after works", () =>
    Effect.gen(function*() {
      const { pool } = yield* makePool({})
      const first = yield* whoami(pool, "faulty")
      yield* pool.callTool({ server: "faulty", scope: "t", name: "exit_after_reply" })
      yield* awaitGone(first, 3_000)
      // The pool may or may not have noticed yet: a fresh session or SessionLost, never a hang.
      const { exit, millis } = yield* timed(whoami(pool, "faulty"))
      assert.include(["success", "SessionLost"], errorTag(exit))
      assert.isBelow(millis, 2_000)
      const next = yield* whoami(pool, "faulty")
      assert.notStrictEqual(next, first)
      assert.isTrue(isRunning(next))
    }))

  it.live("a server killed from outside between calls is replaced", () =>
    Effect.gen(function*() {
      const { pool } = yield* makePool({})
      const first = yield* whoami(pool, "faulty")
      process.kill(first, "SIGKILL")
      yield* awaitGone(first, 3_000)
      const { exit } = yield* timed(whoami(pool, "faulty"))
      assert.include(["success", "SessionLost"], errorTag(exit))
      assert.notStrictEqual(yield* whoami(pool, "faulty"), first)
    }))

  it.live("a server that crashes on its 3rd call: calls 1-2 answer, 3 is SessionLost, 4 runs on a new process", () =>
    Effect.gen(function*() {
      const { pool } = yield* makePool({ FAULT: "crash-on-call", FAULT_CRASH_ON_CALL: "3" })
      const first = yield* whoami(pool, "faulty")
      assert.strictEqual(yield* whoami(pool, "faulty"), first)
      assert.strictEqual(errorTag(yield* Effect.exit(whoami(pool, "faulty"))), "SessionLost")
      const fresh = yield* whoami(pool, "faulty")
      assert.notStrictEqual(fresh, first)
      yield* assertHealthy(pool)
    }))

  it.live("a server that never answers a call: CallTimeout at the bound, the session stays", () =>
    Effect.gen(function*() {
      const { pool } = yield* makePool({})
      const pid = yield* whoami(pool, "faulty")
      const { exit, millis } = yield* timed(
        pool.callTool({ server: "faulty", scope: "t", name: "block" }, { timeout: "300 millis" })
      )
      assert.strictEqual(errorTag(exit), "CallTimeout")
      assert.isAtLeast(millis, 290)
      assert.isBelow(millis, 2_000)
      assert.strictEqual(yield* whoami(pool, "faulty"), pid)
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
        const big = yield* pool.callTool({
          server: "faulty",
          scope: "t",
          name: "big",
          arguments: { bytes: 10_000_000 }
        })
        assert.strictEqual(firstText(big).length, 10_000_000)
        assert.strictEqual(yield* whoami(pool, "faulty"), pid)
        const tooBig = yield* Effect.exit(
          pool.callTool({ server: "faulty", scope: "t", name: "big", arguments: { bytes: 11 * 1024 * 1024 } })
        )
        assert.strictEqual(errorTag(tooBig), "SessionLost")
        assert.notStrictEqual(yield* whoami(pool, "faulty"), pid)
        yield* assertHealthy(pool)
      }),
    30_000
  )
})
