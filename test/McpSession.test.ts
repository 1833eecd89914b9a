/**
 * The Effect-shaped session API over the SDK client, on in-memory notebook servers.
 */
import { assert, describe, it } from "@effect/vitest"
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js"
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import { McpError } from "@modelcontextprotocol/sdk/types.js"
import { Deferred, Effect, Fiber, Logger, Option, Stream } from "effect"
import { makeNotebookServer } from "../examples/notebook-server.ts"
import { CallTimeout, McpProtocolError, SessionLost } from "../src/McpPoolError.ts"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import * as McpSessionPool from "../src/McpSessionPool.ts"
import { firstText } from "./utils/probe.ts"
import { within } from "./utils/within.ts"

/** A pool over in-memory notebook servers that remembers each scope's server instance. */
const makeNotebookPool = Effect.gen(function*() {
  const servers = new Map<string, McpServer>()
  const pool = yield* McpSessionPool.make({
    servers: {
      notebook: McpServerConfig.inMemory((scope) => {
        const server = makeNotebookServer({ name: "notebook" })
        servers.set(scope, server)
        return server
      })
    }
  })
  return { pool, servers }
})

/**
 * Adds a `block` tool to a live server: it reports when a call reached the server and when the server
 * saw it cancelled, so tests synchronise on those moments instead of sleeping.
 */
const addBlockingTool = (server: McpServer) =>
  Effect.gen(function*() {
    const reached = yield* Deferred.make<void>()
    // Completed with the reason the client's notifications/cancelled gave.
    const cancelled = yield* Deferred.make<unknown>()
    server.registerTool("block", { description: "waits until cancelled" }, (extra) =>
      new Promise((resolve) => {
        Deferred.doneUnsafe(reached, Effect.void)
        extra.signal.addEventListener("abort", () => {
          Deferred.doneUnsafe(cancelled, Effect.succeed(extra.signal.reason))
          resolve({ content: [] })
        })
      }))
    return { reached, cancelled }
  })

describe("McpSession", () => {
  it.effect("exposes server info, capabilities, tools, resources, prompts and ping as effects", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeNotebookPool
      const session = yield* pool.get({ server: "notebook", scope: "t" })
      assert.strictEqual(session.serverInfo.name, "notebook")
      assert.isDefined(session.serverCapabilities.tools)
      assert.strictEqual(session.server, "notebook")
      assert.strictEqual(session.scope, "t")
      assert.isUndefined(session.pid)
      const tools = yield* session.listTools()
      assert.includeMembers(tools.tools.map((tool) => tool.name), ["note_write", "note_read", "sleep"])
      yield* session.callTool({ name: "note_write", arguments: { key: "k", text: "hello" } })
      const resource = yield* session.readResource({ uri: "notebook://keys" })
      assert.deepStrictEqual(resource.contents.map((c) => "text" in c ? c.text : ""), ["k"])
      assert.deepStrictEqual((yield* session.listResources()).resources.map((r) => r.uri), ["notebook://keys"])
      assert.deepStrictEqual((yield* session.listPrompts()).prompts.map((p) => p.name), ["summarize"])
      const prompt = yield* session.getPrompt({ name: "summarize", arguments: { style: "haiku" } })
      assert.include(JSON.stringify(prompt.messages), "hello")
      yield* session.ping()
    }))

  it.effect("an isError tool result is a result, not a failure", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeNotebookPool
      const result = yield* pool.callTool({
        server: "notebook",
        scope: "t",
        name: "note_read",
        arguments: { key: "x" }
      })
      assert.isTrue(result.isError)
      assert.include(firstText(result), "no note named")
    }))

  it.effect("a JSON-RPC error is an McpProtocolError and keeps the session", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeNotebookPool
      const session = yield* pool.get({ server: "notebook", scope: "t" })
      const error = yield* Effect.flip(session.readResource({ uri: "notebook://nope" }))
      assert.instanceOf(error, McpProtocolError)
      assert.strictEqual(error.method, "resources/read")
      assert.strictEqual(error.server, "notebook")
      assert.isNumber(error.code)
      // Still the same, working session.
      assert.strictEqual(firstText(yield* session.callTool({ name: "counter_increment" })), "1")
      const again = yield* pool.get({ server: "notebook", scope: "t" })
      assert.strictEqual(again, session)
    }))

  it.effect("a server error with the generic code -32000 is an McpProtocolError, not a lost session", () =>
    Effect.gen(function*() {
      const { pool, servers } = yield* makeNotebookPool
      const session = yield* pool.get({ server: "notebook", scope: "t" })
      servers.get("t")!.registerResource("busy", "notebook://busy", {}, () => {
        throw new McpError(-32000, "database busy")
      })
      const error = yield* Effect.flip(session.readResource({ uri: "notebook://busy" }))
      assert.instanceOf(error, McpProtocolError)
      assert.strictEqual(error.code, -32000)
      assert.strictEqual(yield* pool.get({ server: "notebook", scope: "t" }), session)
    }))

  it.effect("interrupting a call cancels it on the server (notifications/cancelled)", () =>
    Effect.gen(function*() {
      const { pool, servers } = yield* makeNotebookPool
      const session = yield* pool.get({ server: "notebook", scope: "t" })
      const block = yield* addBlockingTool(servers.get("t")!)
      const call = yield* Effect.forkChild(session.callTool({ name: "block" }))
      yield* Deferred.await(block.reached)
      yield* Fiber.interrupt(call)
      // The server's handler saw its request aborted: the SDK sent notifications/cancelled.
      yield* Deferred.await(block.cancelled)
      assert.strictEqual(firstText(yield* session.callTool({ name: "counter_increment" })), "1")
    }))

  it.effect("interrupting pool.callTool on a ready session cancels it on the server, as an aborted request", () =>
    Effect.gen(function*() {
      const { pool, servers } = yield* makeNotebookPool
      // Ready and idle: the call takes the pool's hit path (the session's own abort signal, not Effect's).
      yield* Effect.scoped(pool.get({ server: "notebook", scope: "t" }))
      const block = yield* addBlockingTool(servers.get("t")!)
      const call = yield* Effect.forkChild(pool.callTool({ server: "notebook", scope: "t", name: "block" }))
      yield* Deferred.await(block.reached).pipe(within("5 seconds", "the call to reach the server"))
      yield* Fiber.interrupt(call).pipe(within("5 seconds", "the interrupted call to end"))
      // The reason a real AbortController gives, as the SDK quotes it in notifications/cancelled.
      const reason = yield* Deferred.await(block.cancelled).pipe(within("5 seconds", "notifications/cancelled"))
      assert.strictEqual(reason, "AbortError: This operation was aborted")
      const next = yield* pool.callTool({ server: "notebook", scope: "t", name: "counter_increment" })
      assert.strictEqual(firstText(next), "1")
    }))

  it.live("a call that outlives its timeout fails with CallTimeout, is cancelled, and the session stays", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeNotebookPool
      const session = yield* pool.get({ server: "notebook", scope: "t" })
      const error = yield* Effect.flip(session.callTool({ name: "sleep", arguments: { ms: 60_000 } }, { timeout: 50 }))
      assert.instanceOf(error, CallTimeout)
      assert.strictEqual(error.timeoutMillis, 50)
      assert.strictEqual(firstText(yield* session.callTool({ name: "counter_increment" })), "1")
      assert.strictEqual(yield* pool.get({ server: "notebook", scope: "t" }), session)
    }))

  it.effect("server notifications arrive on the session's stream", () =>
    Effect.gen(function*() {
      const { pool, servers } = yield* makeNotebookPool
      const session = yield* pool.get({ server: "notebook", scope: "t" })
      const subscribed = yield* Deferred.make<void>()
      const first = yield* Effect.forkChild(
        Stream.runHead(session.notifications.pipe(Stream.onStart(Deferred.succeed(subscribed, undefined))))
      )
      yield* Deferred.await(subscribed)
      servers.get("t")!.registerTool("late", { description: "added after connect" }, () => ({ content: [] }))
      const notification = yield* Fiber.join(first)
      assert.strictEqual(Option.getOrThrow(notification).method, "notifications/tools/list_changed")
    }))

  it.effect("semantics 8: a session whose transport dies fails its calls with SessionLost and is replaced", () => {
    const warnings: Array<unknown> = []
    const logger = Logger.make((entry) => {
      if (entry.logLevel === "Warn") warnings.push(entry.message)
    })
    return Effect.gen(function*() {
      const { pool, servers } = yield* makeNotebookPool
      const session = yield* pool.get({ server: "notebook", scope: "t" })
      yield* session.callTool({ name: "counter_increment" })
      const block = yield* addBlockingTool(servers.get("t")!)
      const call = yield* Effect.forkChild(session.callTool({ name: "block" }))
      yield* Deferred.await(block.reached)
      // The server side goes away: the client sees its transport close.
      yield* Effect.promise(() => servers.get("t")!.close())
      const error = yield* Effect.flip(Fiber.join(call))
      assert.instanceOf(error, SessionLost)
      // That exact entry is gone; the next get connects afresh (fresh state).
      const fresh = yield* pool.get({ server: "notebook", scope: "t" })
      assert.notStrictEqual(fresh, session)
      assert.strictEqual(firstText(yield* fresh.callTool({ name: "counter_increment" })), "1")
      assert.instanceOf(yield* Effect.flip(session.callTool({ name: "counter_increment" })), SessionLost)
      // The abnormal death is logged at Warning, once the owner has dropped the entry.
      yield* pool.closeAll
      assert.include(JSON.stringify(warnings), "MCP session lost")
    }).pipe(Effect.provide(Logger.layer([logger])))
  })
})

describe("tools/call on the wire", () => {
  // toolCalls.ts serves a 1.32 session's calls without the SDK's request path; if an SDK bump made it
  // fall back silently, every other test would still pass. The ids on the wire tell the two apart.
  it.effect("pool.callTool and session.callTool go out under the pool's own ids; progress calls under the SDK's", () =>
    Effect.gen(function*() {
      const sent: Array<{ readonly method: string; readonly id: unknown }> = []
      const pool = yield* McpSessionPool.make({
        servers: {
          notebook: McpServerConfig.custom(() =>
            Effect.promise(async () => {
              const [client, server] = InMemoryTransport.createLinkedPair()
              await makeNotebookServer().connect(server)
              const send = client.send.bind(client)
              client.send = (message, options) => {
                if ("method" in message && "id" in message) sent.push({ method: message.method, id: message.id })
                return send(message, options)
              }
              return client
            })
          )
        }
      })
      yield* pool.callTool({ server: "notebook", scope: "t", name: "counter_increment" })
      const session = yield* pool.get({ server: "notebook", scope: "t" })
      yield* session.callTool({ name: "counter_increment" })
      yield* session.callTool({ name: "counter_increment" }, { onProgress: () => undefined })
      const calls = sent.filter((m) => m.method === "tools/call").map((m) => m.id)
      assert.lengthOf(calls, 3)
      assert.match(String(calls[0]), /^pool-\d+$/)
      assert.match(String(calls[1]), /^pool-\d+$/)
      assert.strictEqual(typeof calls[2], "number")
    }).pipe(Effect.scoped))
})
