/**
 * `McpServerConfig.stdio({ args })` as a function of the scope: called at each connect with that scope's
 * key; a result that is not an array of strings, or a throw, fails that connect only.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, References } from "effect"
import { fileURLToPath } from "node:url"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import * as McpSessionPool from "../src/McpSessionPool.ts"
import { firstText } from "./utils/probe.ts"

const fixture = fileURLToPath(new URL("./fixtures/fault-server.ts", import.meta.url))

describe("stdio args per scope", () => {
  it.live(
    "args are resolved per scope at connect; a bad result is a ConnectError naming the problem",
    () =>
      Effect.gen(function*() {
        const asked: Array<string> = []
        const pool = yield* McpSessionPool.make({
          servers: {
            s: McpServerConfig.stdio({
              command: process.execPath,
              args: (scope): ReadonlyArray<string> => {
                asked.push(scope)
                switch (scope) {
                  case "ok":
                    return [fixture]
                  case "odd":
                    return ["x", 5] as unknown as ReadonlyArray<string>
                  case "throws":
                    throw new Error("args boom")
                  default:
                    return ["/nonexistent/server.ts"] // only "ok" gets a server that exists
                }
              }
            })
          },
          connectTimeout: "10 seconds"
        }).pipe(Effect.provideService(References.MinimumLogLevel, "None"))
        const call = (scope: string) => pool.callTool({ server: "s", scope, name: "whoami" })
        assert.match(firstText(yield* call("ok")), /^\d+ /)
        assert.strictEqual((yield* Effect.flip(call("missing")))._tag, "ConnectError")
        const odd = yield* Effect.flip(call("odd"))
        assert.strictEqual(odd._tag, "ConnectError")
        assert.include(odd.message, "args[1]: expected a string, got 5")
        assert.include((yield* Effect.flip(call("throws"))).message, "args boom")
        // Pooled: the live "ok" session is reused, so its function ran once.
        assert.match(firstText(yield* call("ok")), /^\d+ /)
        assert.deepStrictEqual(asked, ["ok", "missing", "odd", "throws"])
      }),
    20_000
  )
})
