/**
 * Zero orphans, read from /proc: every way a session ends — invalidate, closeScope, closeAll, layer
 * shutdown, and interrupting the fiber that runs the pool — ends every process of the session, for a
 * plain server, one behind `sh -c`, one that ignores stdin closing, and one that ignores SIGTERM too. Each
 * ends by the first shutdown step it does not ignore (closing stdin, SIGTERM, SIGKILL), as the server records
 * it: each server's grace before the step it answers is long enough that no step is skipped on a loaded machine.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import * as McpSessionPool from "../src/McpSessionPool.ts"
import { firstText } from "./utils/probe.ts"
import { awaitGone, isRunning } from "./utils/proc.ts"
import { within } from "./utils/within.ts"

const fixture = fileURLToPath(new URL("./fixtures/stdio-server.ts", import.meta.url))
const graces = { stdinGrace: "200 millis", terminateGrace: "200 millis" } as const
/** Where each server writes how it ended (see the fixture). */
const endDir = mkdtempSync(join(tmpdir(), "mcp-pool-ends-"))
const env = { STDIO_FIXTURE_END_DIR: endDir }

const servers = {
  // Exit as soon as stdin closes: a long stdin grace costs nothing and keeps SIGTERM out of it.
  plain: McpServerConfig.stdio({
    command: process.execPath,
    args: [fixture],
    env,
    ...graces,
    stdinGrace: "10 seconds"
  }),
  shell: McpServerConfig.stdio({
    command: "/bin/sh",
    args: ["-c", `"${process.execPath}" "${fixture}"`],
    env,
    ...graces,
    stdinGrace: "10 seconds"
  }),
  // Ignores stdin closing, dies of SIGTERM: a long terminate grace keeps SIGKILL out of it.
  stubborn: McpServerConfig.stdio({
    command: process.execPath,
    args: [fixture],
    env: { ...env, STDIO_FIXTURE_IGNORE_STDIN_END: "1" },
    ...graces,
    terminateGrace: "10 seconds"
  }),
  immortal: McpServerConfig.stdio({
    command: "/bin/sh",
    args: ["-c", `"${process.execPath}" "${fixture}"`],
    env: { ...env, STDIO_FIXTURE_IGNORE_STDIN_END: "1", STDIO_FIXTURE_IGNORE_SIGTERM: "1" },
    ...graces
  })
}
const serverNames = Object.keys(servers)

/** How each server's process ends: by the first shutdown step it does not ignore. */
const expectedEnd: Record<string, string> = {
  plain: "stdin-closed",
  shell: "stdin-closed",
  stubborn: "SIGTERM",
  immortal: "SIGKILL (no end record)"
}
/** The server each real server process (not its `sh` wrapper) belongs to. */
const serverOf = new Map<number, string>()

const endOf = (pid: number): string => {
  try {
    return readFileSync(join(endDir, String(pid)), "utf8")
  } catch {
    return "SIGKILL (no end record)"
  }
}

type Pool = McpSessionPool.McpSessionPoolShape

/** Opens a session on every server for `scope`; returns every pid involved (wrappers and real servers). */
const openAll = (pool: Pool, scope: string) =>
  Effect.forEach(
    serverNames,
    (server) =>
      pool.use({ server, scope }, (session) =>
        Effect.map(session.callTool({ name: "pid" }), (result) => {
          const served = Number(firstText(result))
          serverOf.set(served, server)
          return [session.pid!, served]
        })),
    {
      concurrency: "unbounded"
    }
  ).pipe(Effect.map((pairs) => [...new Set(pairs.flat())]))

/** Closing waits for the processes, each within its graces: longer means a close that hangs. */
const closing = (what: string) => within("20 seconds", what)

const assertAllGone = (pids: ReadonlyArray<number>) =>
  Effect.forEach(pids, (pid) => awaitGone(pid, 5_000), { concurrency: "unbounded", discard: true })

/** Once they are gone: each server's process ended by the step expected of it. */
const assertEndings = (pids: ReadonlyArray<number>) =>
  Effect.map(assertAllGone(pids), () => {
    const served = pids.filter((pid) => serverOf.has(pid))
    assert.deepStrictEqual(
      served.map((pid) => `${serverOf.get(pid)}: ${endOf(pid)}`),
      served.map((pid) => `${serverOf.get(pid)}: ${expectedEnd[serverOf.get(pid)!]}`)
    )
    assert.strictEqual(served.length % serverNames.length, 0) // every server's process is among them
  })

const makePool = McpSessionPool.make({ servers })

describe("zero orphans (real processes, /proc)", () => {
  it.live("after invalidate", () =>
    Effect.gen(function*() {
      const pool = yield* makePool
      const pids = yield* openAll(pool, "t")
      assert.isTrue(pids.every(isRunning))
      yield* Effect.forEach(serverNames, (server) => pool.invalidate({ server, scope: "t" })).pipe(
        closing("invalidate to return")
      )
      // invalidate returns once the idle session is closed: nothing may be left even for a moment.
      assert.deepStrictEqual(pids.filter(isRunning), [])
      yield* assertEndings(pids)
    }))

  it.live("after closeScope, leaving other scopes running", () =>
    Effect.gen(function*() {
      const pool = yield* makePool
      const gone = yield* openAll(pool, "gone")
      const kept = yield* openAll(pool, "kept")
      yield* pool.closeScope("gone").pipe(closing("closeScope to return"))
      assert.deepStrictEqual(gone.filter(isRunning), [])
      assert.deepStrictEqual(kept.filter((pid) => !isRunning(pid)), [])
      yield* pool.closeAll.pipe(closing("closeAll to return"))
      assert.deepStrictEqual(kept.filter(isRunning), [])
      yield* assertEndings([...gone, ...kept])
    }))

  it.live("after closeAll, with calls in flight", () =>
    Effect.gen(function*() {
      const pool = yield* makePool
      const pids = yield* openAll(pool, "t")
      const started = yield* Deferred.make<void>()
      const hanging = yield* Effect.forkChild(
        pool.use({ server: "immortal", scope: "t" }, (session) =>
          Effect.andThen(Deferred.succeed(started, undefined), session.callTool({ name: "hang" })))
      )
      yield* Deferred.await(started).pipe(within("10 seconds", "the hanging call to start"))
      yield* pool.closeAll.pipe(closing("closeAll to return"))
      assert.deepStrictEqual(pids.filter(isRunning), [])
      yield* assertEndings(pids)
      assert.strictEqual(
        Exit.findErrorOption(yield* Fiber.await(hanging).pipe(within("5 seconds", "the hanging call to end"))).pipe((
          e
        ) =>
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
      const pool = Context.get(context, McpSessionPool.McpSessionPool)
      const pids = yield* Effect.all([openAll(pool, "a"), openAll(pool, "b")]).pipe(Effect.map((x) => x.flat()))
      yield* Scope.close(layerScope, Exit.void).pipe(closing("the layer to shut down"))
      assert.deepStrictEqual(pids.filter(isRunning), [])
      yield* assertEndings(pids)
    }))

  it.live("after the fiber running the pool is interrupted mid-call", () =>
    Effect.gen(function*() {
      const opened = yield* Deferred.make<ReadonlyArray<number>>()
      const program = Effect.gen(function*() {
        const pool = yield* McpSessionPool.McpSessionPool
        yield* Deferred.succeed(opened, yield* openAll(pool, "t"))
        return yield* pool.callTool({ server: "plain", scope: "t", name: "hang" })
      }).pipe(Effect.provide(McpSessionPool.layer({ servers })))
      const fiber = yield* Effect.forkChild(program)
      const pids = yield* Deferred.await(opened).pipe(within("10 seconds", "every session to open"))
      yield* Fiber.interrupt(fiber).pipe(within("10 seconds", "the pool's fiber to end on interruption"))
      assert.deepStrictEqual(pids.filter(isRunning), [])
      yield* assertEndings(pids)
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
      const error = yield* Effect.flip(pool.callTool({ server: "silent", scope: "t", name: "pid" })).pipe(
        within("10 seconds", "the silent connect to time out")
      )
      assert.strictEqual(error._tag, "ConnectTimeout")
      // The waiter hears at once; the owner is closing the process meanwhile (stdin grace, SIGTERM).
      assert.deepStrictEqual((yield* pool.snapshot).filter((row) => row.attached), [])
      const pid = Number(readFileSync(pidFile, "utf8"))
      yield* awaitGone(pid, 2_000)
    }))
})
