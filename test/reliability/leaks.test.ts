/**
 * Leak audits (test/utils/leaks.ts): after 1,000 in-memory sessions and a dozen real stdio ones are opened
 * and closed — through eviction, invalidate, closeScope, session deaths and closeAll — no process, file
 * descriptor, fiber or `process` listener is left over, and no MaxListenersExceeded warning was emitted.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, References, Scope } from "effect"
import { fileURLToPath } from "node:url"
import * as McpServerConfig from "../../src/McpServerConfig.ts"
import * as McpSessionPool from "../../src/McpSessionPool.ts"
import type { Options } from "../../src/McpSessionPool.ts"
import { formatLeaks, leakCount, makeLeakAudit } from "../utils/leaks.ts"
import { firstText } from "../utils/probe.ts"
import { makeTracker } from "../utils/tracked.ts"

const fixture = fileURLToPath(new URL("../fixtures/fault-server.ts", import.meta.url))

const makePool = (options: Options) =>
  McpSessionPool.make(options).pipe(
    Effect.provideService(References.MinimumLogLevel, "None")
  )

/** Opens and closes one session of each kind first: lazily opened process-wide resources are not leaks. */
const warmUp = Effect.scoped(Effect.gen(function*() {
  const pool = yield* makePool({
    servers: {
      mem: makeTracker().config("mem"),
      stdio: McpServerConfig.stdio({ command: process.execPath, args: [fixture] })
    }
  })
  yield* pool.callTool({ server: "mem", scope: "warm", name: "whoami" })
  yield* pool.callTool({ server: "stdio", scope: "warm", name: "whoami" })
}))

describe("reliability: leak audit", () => {
  it.live("1,000 in-memory sessions opened and closed leave nothing behind", () =>
    Effect.gen(function*() {
      yield* warmUp
      const audit = yield* makeLeakAudit
      const tracker = makeTracker()
      yield* audit.track(Effect.gen(function*() {
        const poolScope = yield* Scope.make()
        const pool = yield* makePool({ servers: { a: tracker.config("a"), b: tracker.config("b") }, capacity: 32 })
          .pipe(Scope.provide(poolScope))
        const whoami = (server: string, scope: string) =>
          Effect.map(pool.callTool({ server, scope, name: "whoami" }), firstText)
        // 600 one after another (eviction at capacity), with invalidate / closeScope / deaths along the way.
        for (let i = 0; i < 600; i++) {
          yield* whoami(i % 2 === 0 ? "a" : "b", `t${i}`)
          if (i % 50 === 0) yield* pool.invalidate({ server: "a", scope: `t${i}` })
          if (i % 75 === 0) yield* pool.closeScope(`t${i - 1}`)
          if (i % 60 === 0) tracker.open().find((record) => record.connected)?.kill()
        }
        // 400 at once, each held while all the others connect: the pool goes far over capacity, then trims.
        yield* Effect.forEach(
          Array.from({ length: 400 }, (_, i) => `burst${i}`),
          (scope) => pool.use({ server: "a", scope }, (session) => session.callTool({ name: "whoami" })),
          { concurrency: "unbounded", discard: true }
        )
        // Trimmed at once (what is left over is detached and closing), and closed soon after.
        assert.isAtMost((yield* pool.snapshot).filter((row) => row.attached).length, 32)
        for (let turn = 0; turn < 1_000 && (yield* pool.snapshot).length > 32; turn++) yield* Effect.yieldNow
        assert.isAtMost((yield* pool.snapshot).length, 32)
        yield* Scope.close(poolScope, Exit.void)
      }))
      assert.isAtLeast(tracker.records.length, 1_000)
      assert.deepStrictEqual(tracker.records.filter((record) => record.releasedIn.length !== 1), [])
      const report = yield* audit.report({ withinMillis: 5_000 })
      assert.strictEqual(leakCount(report), 0, formatLeaks(report))
      assert.isAbove(report.fibers.started, 2_000) // the fiber count did see the pool's owners
    }), 60_000)

  it.live(
    "a dozen stdio sessions (direct and behind sh -c), some killed, all closed: no process or fd left",
    () =>
      Effect.gen(function*() {
        yield* warmUp
        const audit = yield* makeLeakAudit
        const graces = { stdinGrace: "200 millis", terminateGrace: "200 millis" } as const
        yield* audit.track(Effect.gen(function*() {
          const poolScope = yield* Scope.make()
          const pool = yield* makePool({
            servers: {
              direct: McpServerConfig.stdio({ command: process.execPath, args: [fixture], env: audit.env, ...graces }),
              wrapped: McpServerConfig.stdio({
                command: "/bin/sh",
                args: ["-c", `"${process.execPath}" "${fixture}"`],
                env: audit.env,
                ...graces
              })
            },
            capacity: 4
          }).pipe(Scope.provide(poolScope))
          const scopes = Array.from({ length: 6 }, (_, i) => `t${i}`)
          // 12 at once (more than EventEmitter's default of 10 listeners), then deaths, then closeAll.
          yield* Effect.forEach(
            scopes.flatMap((scope) => [["direct", scope], ["wrapped", scope]] as const),
            ([server, scope]) => pool.callTool({ server, scope, name: "whoami" }),
            { concurrency: "unbounded", discard: true }
          )
          yield* Effect.exit(pool.callTool({ server: "direct", scope: "t0", name: "crash" }))
          yield* Effect.exit(pool.callTool({ server: "wrapped", scope: "t1", name: "crash" }))
          yield* pool.callTool({ server: "direct", scope: "t0", name: "whoami" })
          yield* Scope.close(poolScope, Exit.void)
        }))
        const report = yield* audit.report({ withinMillis: 5_000 })
        assert.strictEqual(leakCount(report), 0, formatLeaks(report))
      }),
    60_000
  )
})
