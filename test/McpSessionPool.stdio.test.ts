/**
 * The pool against the bundled notebook server as real child processes over real stdio, checking real
 * process state in /proc.
 */
import { assert, describe, it } from "@effect/vitest"
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import { fileURLToPath } from "node:url"
import { SessionLost } from "../src/McpPoolError.ts"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import * as McpSessionPool from "../src/McpSessionPool.ts"
import type { Options } from "../src/McpSessionPool.ts"
import { firstText, legacyClient } from "./utils/probe.ts"
import { awaitGone, isRunning } from "./utils/proc.ts"
import { within } from "./utils/within.ts"

const serverPath = fileURLToPath(new URL("../examples/notebook-server.ts", import.meta.url))
/** A hand-written server that answers each line in order, with `hold` / `release` / `in_flight` tools. */
const faultServerPath = fileURLToPath(new URL("./fixtures/fault-server.ts", import.meta.url))

const notebook = McpServerConfig.stdio({
  command: process.execPath,
  args: [serverPath],
  stdinGrace: "500 millis",
  terminateGrace: "500 millis"
})

/** The same server behind `sh -c`: the real server is a grandchild of the pool. */
const wrapped = McpServerConfig.stdio({
  command: "/bin/sh",
  args: ["-c", `"${process.execPath}" "${serverPath}"`],
  stdinGrace: "500 millis",
  terminateGrace: "500 millis"
})

const makePool = (options: Options) => McpSessionPool.make(options)

const defaultServers = { notebook, wrapped }

type Pool = McpSessionPool.McpSessionPoolShape

const call = (pool: Pool, scope: string, name: string, args: Record<string, unknown> = {}, server = "notebook") =>
  Effect.map(pool.callTool({ server, scope, name, arguments: args }), firstText)

/** The pid of the process actually serving (server, scope), as the server itself reports it. */
const serverPid = (pool: Pool, scope: string, server = "notebook") =>
  Effect.map(
    pool.callTool({ server, scope, name: "whoami" }),
    (result) => (result.structuredContent as { readonly pid: number }).pid
  )

describe("McpSessionPool over stdio", () => {
  it.live("semantics 1: each scope gets its own server process and keeps its state across calls", () =>
    Effect.gen(function*() {
      const pool = yield* makePool({ servers: defaultServers })
      yield* call(pool, "alice", "note_write", { key: "todo", text: "flights" })
      yield* call(pool, "bob", "note_write", { key: "todo", text: "passport" })
      assert.strictEqual(yield* call(pool, "alice", "note_read", { key: "todo" }), "flights")
      assert.strictEqual(yield* call(pool, "bob", "note_read", { key: "todo" }), "passport")
      const [alice, bob] = [yield* serverPid(pool, "alice"), yield* serverPid(pool, "bob")]
      assert.notStrictEqual(alice, bob)
      assert.strictEqual(yield* serverPid(pool, "alice"), alice)
      const rows = yield* pool.snapshot
      assert.deepStrictEqual(rows.map((row) => row.pid).sort(), [alice, bob].sort())
    }))

  it.live("semantics 2: a concurrent burst on a new scope spawns exactly one process", () =>
    Effect.gen(function*() {
      const pool = yield* makePool({ servers: defaultServers })
      const counts = yield* Effect.forEach(
        Array.from({ length: 20 }),
        () => call(pool, "burst", "counter_increment"),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(counts.map(Number).sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1))
      assert.strictEqual((yield* pool.snapshot).length, 1)
    }))

  it.live("semantics 6: closeScope ends the thread's processes, including a server behind sh -c", () =>
    Effect.gen(function*() {
      const pool = yield* makePool({ servers: defaultServers })
      const direct = yield* serverPid(pool, "gone")
      const grandchild = yield* serverPid(pool, "gone", "wrapped")
      const shell = (yield* pool.snapshot).find((row) => row.server === "wrapped")!.pid!
      assert.notStrictEqual(shell, grandchild)
      const kept = yield* serverPid(pool, "stays")
      yield* pool.closeScope("gone").pipe(within("20 seconds", "closeScope to return"))
      // closeScope returns once its idle sessions are closed: the processes are gone already.
      assert.isFalse(isRunning(direct))
      assert.isFalse(isRunning(grandchild))
      assert.isFalse(isRunning(shell))
      assert.isTrue(isRunning(kept))
    }))

  it.live("semantics 6: invalidate of a leased session ends the process when the lease ends", () =>
    Effect.gen(function*() {
      const pool = yield* makePool({ servers: defaultServers })
      const lease = yield* Scope.make()
      const session = yield* pool.get({ server: "notebook", scope: "t" }).pipe(Scope.provide(lease))
      const pid = session.pid!
      yield* pool.invalidate({ server: "notebook", scope: "t" })
      assert.isTrue(isRunning(pid))
      assert.strictEqual(firstText(yield* session.callTool({ name: "counter_increment" })), "1")
      yield* Scope.close(lease, Exit.void)
      yield* awaitGone(pid)
    }))

  it.live("a fiber interrupted while using a session returns its lease; the process stays pooled", () =>
    Effect.gen(function*() {
      const pool = yield* makePool({ servers: defaultServers })
      const started = yield* Deferred.make<number>()
      const fiber = yield* Effect.forkChild(
        pool.use({ server: "notebook", scope: "t" }, (session) =>
          Effect.andThen(
            Deferred.succeed(started, session.pid!),
            session.callTool({ name: "sleep", arguments: { ms: 60_000 } })
          ))
      )
      const pid = yield* Deferred.await(started).pipe(within("10 seconds", "the session to be leased"))
      yield* Fiber.interrupt(fiber).pipe(within("5 seconds", "the interrupted use to end"))
      const [row] = yield* pool.snapshot
      assert.strictEqual(row?.leases, 0)
      assert.isTrue(isRunning(pid))
      // The same process still serves the thread (cancellation reaching the server is covered in
      // McpSession.test.ts, where the test can see the server's handler).
      assert.strictEqual(yield* serverPid(pool, "t"), pid)
      yield* pool.invalidate({ server: "notebook", scope: "t" })
      yield* awaitGone(pid)
    }))

  it.live("semantics 6: closeAll and layer shutdown leave no process behind", () =>
    Effect.gen(function*() {
      const layerScope = yield* Scope.make()
      const pool = yield* makePool({ servers: defaultServers }).pipe(Scope.provide(layerScope))
      const pids = yield* Effect.forEach(["a", "b", "c"], (scope) => serverPid(pool, scope))
      const wrappedPid = yield* serverPid(pool, "a", "wrapped")
      const inFlight = yield* Effect.forkChild(call(pool, "a", "sleep", { ms: 60_000 }))
      yield* Scope.close(layerScope, Exit.void).pipe(within("20 seconds", "the pool to shut down"))
      for (const pid of [...pids, wrappedPid]) assert.isFalse(isRunning(pid), `pid ${pid} survived shutdown`)
      const exit = yield* Fiber.await(inFlight).pipe(within("5 seconds", "the in-flight call to end at shutdown"))
      assert.isTrue(Exit.isFailure(exit))
    }))

  it.live("semantics 8: a server killed mid-call fails the call with SessionLost and the next get respawns", () =>
    Effect.gen(function*() {
      const pool = yield* makePool({ servers: defaultServers })
      const started = yield* Deferred.make<number>()
      const inFlight = yield* Effect.forkChild(
        pool.use({ server: "notebook", scope: "t" }, (session) =>
          Effect.andThen(
            Deferred.succeed(started, session.pid!),
            session.callTool({ name: "sleep", arguments: { ms: 60_000 } })
          ))
      )
      const pid = yield* Deferred.await(started).pipe(within("10 seconds", "the session to be leased"))
      yield* call(pool, "t", "counter_increment")
      process.kill(pid, "SIGKILL")
      const error = yield* Effect.flip(Fiber.join(inFlight)).pipe(within("5 seconds", "the killed call to fail"))
      assert.instanceOf(error, SessionLost)
      yield* awaitGone(pid)
      // The dead entry is dropped; a fresh process starts with fresh state.
      const fresh = yield* serverPid(pool, "t")
      assert.notStrictEqual(fresh, pid)
      assert.strictEqual(yield* call(pool, "t", "counter_increment"), "1")
      // The dead session's owner removed its own entry only, never the replacement.
      assert.strictEqual(yield* serverPid(pool, "t"), fresh)
      assert.deepStrictEqual((yield* pool.snapshot).map((row) => row.pid), [fresh])
    }))

  it.live("maxConcurrentCalls: with more calls asked than the limit, the server process runs exactly the limit", () =>
    Effect.gen(function*() {
      const limit = 2
      const asked = 5
      const pool = yield* makePool({
        servers: {
          gated: McpServerConfig.stdio({
            command: process.execPath,
            args: [faultServerPath],
            maxConcurrentCalls: limit,
            stdinGrace: "500 millis",
            terminateGrace: "500 millis"
          })
        }
      })
      const session = yield* pool.get({ server: "gated", scope: "t" })
      /** Asked on the SDK client itself, past the pool's permits; answered after every line written before it. */
      const ask = (name: string, args: Record<string, unknown> = {}) =>
        Effect.promise(() => legacyClient(session).callTool({ name, arguments: args }) as Promise<CallToolResult>).pipe(
          Effect.map(firstText),
          within("10 seconds", `the server to answer ${name}`)
        )
      const counts = (name: string, args: Record<string, unknown> = {}) =>
        Effect.map(ask(name, args), (text) => JSON.parse(text) as unknown)
      const calls = yield* Effect.forEach(
        Array.from({ length: asked }),
        () => Effect.forkChild(session.callTool({ name: "hold" }))
      )
      // The server answers once `limit` calls have reached it; by then every call let through has been written.
      yield* counts("await_holds", { n: limit })
      assert.deepStrictEqual(yield* counts("in_flight"), { arrived: limit, inFlight: limit, peak: limit })
      yield* ask("release")
      const results = yield* Fiber.joinAll(calls).pipe(within("10 seconds", "the held calls to finish"))
      assert.deepStrictEqual(results.map(firstText), Array.from({ length: asked }, () => "released"))
      assert.deepStrictEqual(yield* counts("in_flight"), { arrived: asked, inFlight: 0, peak: limit })
    }))
})
