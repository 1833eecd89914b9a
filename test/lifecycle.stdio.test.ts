/**
 * Zero orphans, read from /proc: every way a session ends — invalidate, closeScope, closeAll, layer
 * shutdown, and interrupting the fiber that runs the pool — ends every process of the session, for a
 * plain server, one behind `sh -c`, one that ignores stdin closing, and one that ignores SIGTERM too.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import { McpSessionPool } from "../src/McpSessionPool.ts"
import { firstText } from "./utils/probe.ts"
import { awaitGone, isRunning } from "./utils/proc.ts"

const fixture = fileURLToPath(new URL("./fixtures/stdio-server.ts", import.meta.url))
const graces = { stdinGrace: "200 millis", terminateGrace: "200 millis" } as const

const servers = {
  plain: McpServerConfig.stdio({ command: process.execPath, args: [fixture], ...graces }),
  shell: McpServerConfig.stdio({ command: "/bin/sh", args: ["-c", `"${process.execPath}" "${fixture}"`], ...graces }),
  stubborn: McpServerConfig.stdio({
    command: process.execPath,
    args: [fixture],
    env: { STDIO_FIXTURE_IGNORE_STDIN_END: "1" },
    ...graces
  }),
  immortal: McpServerConfig.stdio({
    command: "/bin/sh",
    args: ["-c", `"${process.execPath}" "${fixture}"`],
    env: { STDIO_FIXTURE_IGNORE_STDIN_END: "1", STDIO_FIXTURE_IGNORE_SIGTERM: "1" },
    ...graces
  })
}
const serverNames = Object.keys(servers)

type Pool = McpSessionPool["Service"]

/** Opens a session on every server for `scope`; returns every pid involved (wrappers and real servers). */
const openAll = (pool: Pool, scope: string) =>
  Effect.forEach(
    serverNames,
    (server) =>
      pool.use(server, scope, (session) =>
        Effect.map(session.callTool({ name: "pid" }), (result) => [session.pid!, Number(firstText(result))])),
    {
      concurrency: "unbounded"
    }
  ).pipe(Effect.map((pairs) => [...new Set(pairs.flat())]))

const assertAllGone = (pids: ReadonlyArray<number>) =>
  Effect.forEach(pids, (pid) => awaitGone(pid, 5_000), { concurrency: "unbounded", discard: true })

const makePool = McpSessionPool.make({ servers })

describe("zero orphans (real processes, /proc)", () => {
  it.live("after invalidate", () =>
    Effect.gen(function*() {
      const pool = yield* makePool
      const pids = yield* openAll(pool, "t")
      assert.isTrue(pids.every(isRunning))
      yield* Effect.forEach(serverNames, (server) => pool.invalidate(server, "t"))
      // invalidate returns once the idle session is closed: nothing may be left even for a moment.
      assert.deepStrictEqual(pids.filter(isRunning), [])
    }))

  it.live("after closeScope, leaving other scopes running", () =>
    Effect.gen(function*() {
      const pool = yield* makePool
      const gone = yield* openAll(pool, "gone")
      const kept = yield* openAll(pool, "kept")
      yield* pool.closeScope("gone")
      assert.deepStrictEqual(gone.filter(isRunning), [])
      assert.deepStrictEqual(kept.filter((pid) => !isRunning(pid)), [])
      yield* pool.closeAll
      assert.deepStrictEqual(kept.filter(isRunning), [])
    }))

  it.live("after closeAll, with calls in flight", () =>
    Effect.gen(function*() {
      const pool = yield* makePool
      const pids = yield* openAll(pool, "t")
      const started = yield* Deferred.make<void>()
      const hanging = yield* Effect.forkChild(
        pool.use("immortal", "t", (session) =>
          Effect.andThen(Deferred.succeed(started, undefined), session.callTool({ name: "hang" })))
      )
      yield* Deferred.await(started)
      yield* pool.closeAll
      assert.deepStrictEqual(pids.filter(isRunning), [])
      assert.strictEqual(
        Exit.findErrorOption(yield* Fiber.await(hanging)).pipe((e) =>
          e._tag === "Some" && e.value._tag
        ),
        "PoolClosed"
      )
    }))

  it.live("after layer shutdown", () =>
    Effect.gen(function*() {
      const layerScope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        McpSessionPool.layer({ servers }),
        layerScope
      )
      const pool = Context.get(context, McpSessionPool)
      const pids = yield* Effect.all([openAll(pool, "a"), openAll(pool, "b")]).pipe(Effect.map((x) => x.flat()))
      yield* Scope.close(layerScope, Exit.void)
      assert.deepStrictEqual(pids.filter(isRunning), [])
    }))

  it.live("after the fiber running the pool is interrupted mid-call", () =>
    Effect.gen(function*() {
      const opened = yield* Deferred.make<ReadonlyArray<number>>()
      const program = Effect.gen(function*() {
        const pool = yield* McpSessionPool
        yield* Deferred.succeed(opened, yield* openAll(pool, "t"))
        return yield* pool.callTool({ server: "plain", scope: "t", name: "hang" })
      }).pipe(Effect.provide(McpSessionPool.layer({ servers })))
      const fiber = yield* Effect.forkChild(program)
      const pids = yield* Deferred.await(opened)
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(pids.filter(isRunning), [])
      yield* assertAllGone(pids)
    }))

  it.live("connectTimeout: a server that never answers initialize is killed and the waiter gets ConnectTimeout", () =>
    Effect.gen(function*() {
      const pidFile = join(mkdtempSync(join(tmpdir(), "mcp-pool-silent-")), "pid")
      const pool = yield* McpSessionPool.make({
        servers: {
          silent: McpServerConfig.stdio({
            command: process.execPath,
            args: [fileURLToPath(new URL("./fixtures/stdio-silent.ts", import.meta.url)), pidFile],
            ...graces
          })
        },
        connectTimeout: "2 seconds"
      })
      const error = yield* Effect.flip(pool.callTool({ server: "silent", scope: "t", name: "pid" }))
      assert.strictEqual(error._tag, "ConnectTimeout")
      // The waiter hears at once; the owner is closing the process meanwhile (stdin grace, SIGTERM).
      assert.deepStrictEqual((yield* pool.snapshot).filter((row) => row.attached), [])
      const pid = Number(readFileSync(pidFile, "utf8"))
      yield* awaitGone(pid, 2_000)
    }))
})
