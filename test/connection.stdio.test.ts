/**
 * What the child process gets: a working directory and environment that may depend on the scope
 * (semantics 11), the SDK's safe default environment rather than ours, and secrets that never show.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger, Redacted, References } from "effect"
import { mkdirSync, mkdtempSync, realpathSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import * as McpSessionPool from "../src/McpSessionPool.ts"
import type { Options } from "../src/McpSessionPool.ts"
import { firstText } from "./utils/probe.ts"

const fixture = fileURLToPath(new URL("./fixtures/stdio-server.ts", import.meta.url))

const makePool = (options: Options) => McpSessionPool.make(options)

const ask = (
  pool: McpSessionPool.McpSessionPoolShape,
  scope: string,
  name: string,
  args: Record<string, unknown> = {}
) => Effect.map(pool.callTool({ server: "fixture", scope, name, arguments: args }), firstText)

const logs: Array<string> = []

describe("connection by scope and environment", () => {
  it.live("semantics 11: cwd and env computed from the scope key (a working directory per thread)", () =>
    Effect.gen(function*() {
      const root = realpathSync(mkdtempSync(join(tmpdir(), "mcp-pool-threads-")))
      for (const thread of ["a", "b"]) mkdirSync(join(root, thread))
      const pool = yield* makePool({
        servers: {
          fixture: McpServerConfig.stdio({
            command: process.execPath,
            args: [fixture],
            cwd: (scope) => join(root, scope),
            env: (scope) => ({ THREAD_ID: scope })
          })
        }
      })
      assert.strictEqual(yield* ask(pool, "a", "cwd"), join(root, "a"))
      assert.strictEqual(yield* ask(pool, "b", "cwd"), join(root, "b"))
      assert.strictEqual(yield* ask(pool, "a", "env", { name: "THREAD_ID" }), "a")
      assert.strictEqual(yield* ask(pool, "b", "env", { name: "THREAD_ID" }), "b")
    }))

  it.live("the child gets the safe default environment plus env, not ours, unless inheritEnv", () =>
    Effect.gen(function*() {
      process.env.MCP_POOL_PARENT_ONLY = "parent-secret"
      const pool = yield* makePool({
        servers: {
          fixture: McpServerConfig.stdio({ command: process.execPath, args: [fixture], env: { ADDED: "yes" } }),
          inheriting: McpServerConfig.stdio({ command: process.execPath, args: [fixture], inheritEnv: true })
        }
      })
      assert.strictEqual(yield* ask(pool, "t", "env", { name: "MCP_POOL_PARENT_ONLY" }), "(unset)")
      assert.strictEqual(yield* ask(pool, "t", "env", { name: "ADDED" }), "yes")
      assert.notStrictEqual(yield* ask(pool, "t", "env", { name: "PATH" }), "(unset)")
      const inherited = yield* Effect.map(
        pool.callTool({ server: "inheriting", scope: "t", name: "env", arguments: { name: "MCP_POOL_PARENT_ONLY" } }),
        firstText
      )
      assert.strictEqual(inherited, "parent-secret")
    }).pipe(Effect.ensuring(Effect.sync(() => delete process.env.MCP_POOL_PARENT_ONLY))))

  it.live("Redacted env values reach the child but never errors or logs", () =>
    Effect.gen(function*() {
      const secret = "s3cr3t-token-value"
      const pool = yield* makePool({
        servers: {
          fixture: McpServerConfig.stdio({
            command: process.execPath,
            args: [fixture],
            env: { TOKEN: Redacted.make(secret) }
          }),
          broken: McpServerConfig.stdio({
            command: "/nonexistent/server",
            env: { TOKEN: Redacted.make(secret) }
          })
        }
      })
      assert.strictEqual(yield* ask(pool, "t", "env", { name: "TOKEN" }), secret)
      const error = yield* Effect.flip(pool.callTool({ server: "broken", scope: "t", name: "x" }))
      assert.strictEqual(error._tag, "ConnectError")
      const rendered = [error.message, JSON.stringify(error), String(error), ...logs].join("\n")
      assert.notInclude(rendered, secret)
      assert.isAbove(logs.length, 0) // the lifecycle logs were captured, and hold no secret
    }).pipe(
      Effect.provide(Logger.layer([Logger.make((entry) => logs.push(JSON.stringify(entry.message)))])),
      Effect.provideService(References.MinimumLogLevel, "Debug")
    ))
})
