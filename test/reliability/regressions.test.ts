/**
 * Regression tests for bugs in src/ that the reliability work found (each with the fix it asked for, next to
 * it; all three landed in "Fixes from the reliability work").
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, References } from "effect"
import { fileURLToPath } from "node:url"
import * as McpServerConfig from "../../src/McpServerConfig.ts"
import * as McpSessionPool from "../../src/McpSessionPool.ts"
import type { Options } from "../../src/McpSessionPool.ts"
import { firstText } from "../utils/probe.ts"
import { makeTracker } from "../utils/tracked.ts"

const stdioFixture = fileURLToPath(new URL("../fixtures/stdio-server.ts", import.meta.url))
const faultFixture = fileURLToPath(new URL("../fixtures/fault-server.ts", import.meta.url))

const makePool = (options: Options) =>
  McpSessionPool.make(options).pipe(
    Effect.provideService(References.MinimumLogLevel, "None")
  )

describe("reliability: regressions", () => {
  // Fix asked: src/internal/options.ts, validateServer, case "Stdio": reject a non-boolean `inheritEnv`, e.g.
  //   if (typeof config.inheritEnv !== "boolean") issues.add(`${path}.inheritEnv`, `expected true or false, got ${show(config.inheritEnv)}`)
  // Before, a string (as from a JSON config) was truthy in spawnStdio's `options.inheritEnv ? … : …` but not
  // `=== true` in the spawner's `extendEnv`, so the child got neither the safe default environment nor the
  // parent's: no PATH, no HOME (a `sh -c`/`npx` server then fails to start), whether it says "false" or "true".
  it.live("inheritEnv must be a boolean: a string from a JSON config is a ConfigError, not a child without PATH", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(makePool({
        servers: {
          s: {
            ...McpServerConfig.stdio({ command: process.execPath, args: [stdioFixture] }),
            inheritEnv: "false" as never
          }
        }
      }))
      if (Exit.isSuccess(exit)) {
        const seen = yield* exit.value.callTool({ server: "s", scope: "t", name: "env", arguments: { name: "PATH" } })
        yield* exit.value.closeAll
        assert.fail(`inheritEnv: "false" was accepted, and the server's PATH is ${firstText(seen)}`)
      }
      assert.deepStrictEqual(
        Exit.findErrorOption(exit).pipe((e) => e._tag === "Some" ? e.value.issues.map((issue) => issue.path) : []),
        ["servers.s.inheritEnv"]
      )
    }))

  // Fix asked: src/internal/session.ts, `request`: parse the per-call timeout inside the effect, with
  // `Duration.fromInput` (not `fromInputUnsafe`), and fail with a typed error (e.g. McpProtocolError with code
  // ErrorCode.InvalidParams, "invalid request timeout: …") when it is not a non-negative duration — as the
  // config validation does for `callTimeout`. Before, it threw synchronously from `session.callTool(...)`, and
  // through `pool.callTool` it was a defect; a negative one went to the SDK (Node clamps it to 1 ms).
  it.effect("an invalid per-call timeout is a typed error, not a thrown exception or a defect", () =>
    Effect.gen(function*() {
      const tracker = makeTracker()
      const pool = yield* makePool({ servers: { mem: tracker.config("mem") } })
      const session = yield* pool.get({ server: "mem", scope: "t" })
      let thrown: unknown = undefined
      try {
        session.callTool({ name: "whoami" }, { timeout: "soon" as never })
      } catch (error) {
        thrown = error
      }
      assert.isUndefined(thrown, "session.callTool threw synchronously")
      for (const timeout of ["soon", -5] as const) {
        const exit = yield* Effect.exit(
          pool.callTool({ server: "mem", scope: "t", name: "whoami" }, { timeout: timeout as never })
        )
        assert.isTrue(Exit.isFailure(exit), `timeout ${timeout} was accepted`)
        if (Exit.isFailure(exit)) assert.isFalse(Cause.hasDies(exit.cause), `timeout ${timeout} is a defect`)
      }
      assert.strictEqual(firstText(yield* session.callTool({ name: "whoami" })), "1") // the session is fine
    }))

  // Fix asked: src/internal/stdioTransport.ts, ProcessTransport.fail: keep the fatal cause (`this.failure =
  // toError(cause)`) and expose it with the connection; src/internal/session.ts, `client.onclose`: put it in
  // the SessionLost (reason `the connection closed: ${failure.message}`, cause `failure`). Before, the SDK's
  // "ReadBuffer exceeded maximum size of 10485760 bytes" was dropped (nobody listened to `client.onerror`), and
  // the caller only read "the connection closed".
  it.live("an answer over the 10 MiB line limit says so in its SessionLost", () =>
    Effect.gen(function*() {
      const pool = yield* makePool({
        servers: { s: McpServerConfig.stdio({ command: process.execPath, args: [faultFixture] }) }
      })
      const error = yield* Effect.flip(
        pool.callTool({ server: "s", scope: "t", name: "big", arguments: { bytes: 11 * 1024 * 1024 } })
      )
      assert.strictEqual(error._tag, "SessionLost")
      assert.match(error.message, /maximum size|limit/)
    }), 30_000)
})

describe("hardening", () => {
  it.effect("a custom connect that returns a Promise is a ConnectError, not an unhandled rejection", () =>
    Effect.gen(function*() {
      const pool = yield* makePool({
        servers: {
          js: McpServerConfig.custom((() => Promise.reject(new Error("nope"))) as never)
        }
      })
      const error = yield* Effect.flip(pool.callTool({ server: "js", scope: "t", name: "x" }))
      assert.strictEqual(error._tag, "ConnectError")
      assert.include(error.message, "must return an Effect")
    }))

  it.effect("make without options is a ConfigError, not a defect", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(makePool(undefined as never))
      assert.strictEqual(error._tag, "ConfigError")
    }))
})
