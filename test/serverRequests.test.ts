/**
 * The rest of a full client per thread, against in-memory SDK servers (fast, and able to show what a request
 * carried): `_meta` and the W3C `traceparent` per call, a server request nobody handles, resource
 * subscriptions as streams that end with the session, and the logging level in both revisions.
 */
import { assert, describe, it } from "@effect/vitest"
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import {
  type JSONRPCMessage,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema
} from "@modelcontextprotocol/sdk/types.js"
import { Effect, Fiber, Layer, References, Stream } from "effect"
import { fileURLToPath } from "node:url"
import * as z from "zod/v4"
import * as McpClientHandlers from "../src/McpClientHandlers.ts"
import { McpProtocolError } from "../src/McpPoolError.ts"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import * as McpSessionPool from "../src/McpSessionPool.ts"
import { firstText } from "./utils/probe.ts"
import { within } from "./utils/within.ts"

const text = (value: string) => ({ content: [{ type: "text" as const, text: value }] })

/** A server whose tools report what their request carried, ask the client something unknown, or touch a resource. */
const makeServer = () => {
  const server = new McpServer({ name: "inspect", version: "1.0.0" }, {
    capabilities: { logging: {}, resources: { subscribe: true } }
  })
  const subscribed = new Set<string>()
  server.server.setRequestHandler(SubscribeRequestSchema, (request) => {
    subscribed.add(request.params.uri)
    return {}
  })
  server.server.setRequestHandler(UnsubscribeRequestSchema, (request) => {
    subscribed.delete(request.params.uri)
    return {}
  })
  server.registerTool("meta", {}, (extra) => text(JSON.stringify(extra._meta ?? {})))
  server.registerTool("ask_unknown", {}, async (extra) => {
    try {
      // Not a method of the protocol: the client has no handler for it.
      await extra.sendRequest({ method: "foo/bar", params: {} } as never, z.object({}))
      return text("answered")
    } catch (error) {
      return text(String((error as { code?: unknown }).code))
    }
  })
  // Progress and the result in one go, as a server's last progress and its answer often arrive together.
  server.registerTool("progress_then_result", {}, async (extra) => {
    const progressToken = extra._meta?.progressToken
    if (progressToken !== undefined) {
      for (let i = 1; i <= 3; i++) {
        void extra.sendNotification({
          method: "notifications/progress",
          params: { progressToken, progress: i, total: 3 }
        })
      }
    }
    return text("done")
  })
  server.registerTool("touch", { inputSchema: { uri: z.string() } }, async ({ uri }) => {
    if (subscribed.has(uri)) await server.server.sendResourceUpdated({ uri })
    return text(subscribed.has(uri) ? "sent" : "not subscribed")
  })
  return server
}

/**
 * A linked pair whose server side delivers what it sent in one batch, back to back in one macrotask, as a
 * stdio client reads several lines from one chunk: the progress and the result of a call arrive together.
 */
const batchingPair = (): [Transport, Transport] => {
  let pending: Array<JSONRPCMessage> = []
  const client: Transport = {
    start: async () => undefined,
    send: async (message) => {
      queueMicrotask(() => server.onmessage?.(message))
    },
    close: async () => {
      client.onclose?.()
      server.onclose?.()
    }
  }
  const server: Transport = {
    start: async () => undefined,
    send: async (message) => {
      pending.push(message)
      if (pending.length === 1) {
        setImmediate(() => {
          const batch = pending
          pending = []
          for (const each of batch) client.onmessage?.(each)
        })
      }
    },
    close: async () => undefined
  }
  return [client, server]
}

const modernServer = fileURLToPath(new URL("./fixtures/modern-server.ts", import.meta.url))

const makePool = Layer.build(
  McpSessionPool.layer({
    servers: {
      inspect: McpServerConfig.inMemory(makeServer),
      batched: McpServerConfig.custom(() =>
        Effect.gen(function*() {
          const [client, server] = batchingPair()
          yield* Effect.promise(() => makeServer().connect(server))
          return client
        }), { protocol: "2025-11-25" }),
      modern: McpServerConfig.stdio({ command: process.execPath, args: [modernServer] })
    },
    connectTimeout: "20 seconds"
  }).pipe(Layer.provide(McpClientHandlers.layer({ elicit: () => Effect.succeed({ action: "decline" as const }) })))
).pipe(
  Effect.map((context) =>
    context.mapUnsafe.get(McpSessionPool.McpSessionPool.key) as McpSessionPool.McpSessionPoolShape
  ),
  Effect.provideService(References.MinimumLogLevel, "None")
)

const traceparent = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/

describe("a full client per thread", () => {
  it.live("_meta is sent as given; the current span's traceparent is added unless _meta has one", () =>
    Effect.gen(function*() {
      const pool = yield* makePool
      const meta = (params: { readonly _meta?: Record<string, unknown> }) =>
        Effect.map(
          pool.callTool({ server: "inspect", scope: "t", name: "meta", ...params }),
          (r) => JSON.parse(firstText(r)) as Record<string, unknown>
        )

      // No span: nothing is added.
      assert.deepStrictEqual(yield* meta({ _meta: { thread: "t" } }), { thread: "t" })
      // In a span, both on the pool's fused path and on a held session.
      const traced = yield* Effect.gen(function*() {
        const span = yield* Effect.currentSpan
        const viaPool = yield* meta({ _meta: { thread: "t" } })
        const session = yield* pool.get({ server: "inspect", scope: "t" })
        const viaSession = JSON.parse(firstText(yield* session.callTool({ name: "meta" }))) as Record<string, unknown>
        return { span, viaPool, viaSession }
      }).pipe(Effect.withSpan("agent turn"), Effect.scoped)
      for (const seen of [traced.viaPool, traced.viaSession]) {
        const match = traceparent.exec(String(seen.traceparent))
        assert.isNotNull(match)
        assert.strictEqual(match![1], traced.span.traceId)
        assert.strictEqual(match![2], traced.span.spanId)
      }
      assert.strictEqual(traced.viaPool.thread, "t")
      // A caller's own traceparent wins.
      const own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
      const kept = yield* meta({ _meta: { traceparent: own } }).pipe(Effect.withSpan("turn"))
      assert.strictEqual(kept.traceparent, own)
    }).pipe(Effect.scoped))

  it.live("progress: a last notification that arrives with the result still reaches the callback first", () =>
    Effect.gen(function*() {
      const pool = yield* makePool
      for (let round = 0; round < 20; round++) {
        const seen: Array<number> = []
        const result = yield* pool.callTool(
          { server: "batched", scope: "t", name: "progress_then_result" },
          { onProgress: (progress) => seen.push(progress.progress) }
        )
        assert.strictEqual(firstText(result), "done")
        assert.deepStrictEqual(seen, [1, 2, 3])
      }
      const session = yield* pool.get({ server: "batched", scope: "t" })
      const seen: Array<number> = []
      yield* session.callTool({ name: "progress_then_result" }, {
        onProgress: (progress) => seen.push(progress.progress)
      })
      assert.deepStrictEqual(seen, [1, 2, 3])
    }).pipe(Effect.scoped))

  it.live("a server request no handler answers gets 'method not found'", () =>
    Effect.gen(function*() {
      const pool = yield* makePool
      const answer = yield* pool.callTool({ server: "inspect", scope: "t", name: "ask_unknown" })
      assert.strictEqual(firstText(answer), "-32601")
    }).pipe(Effect.scoped))

  it.live("subscribe: a stream of the resource's updates, unsubscribed when it ends, ending with the session", () =>
    Effect.gen(function*() {
      const pool = yield* makePool
      const session = yield* pool.get({ server: "inspect", scope: "t" })
      const uri = "inspect://thing"
      const received = yield* Effect.forkChild(Stream.runCollect(Stream.take(session.subscribe(uri), 2)))
      // The subscription is made once the stream runs: poll the server's own view, bounded.
      yield* pool.callTool({ server: "inspect", scope: "t", name: "touch", arguments: { uri } }).pipe(
        Effect.map(firstText),
        Effect.repeat({ until: (answer) => answer === "sent", times: 200 }),
        within("5 seconds", "the subscription to reach the server")
      )
      yield* pool.callTool({ server: "inspect", scope: "t", name: "touch", arguments: { uri } })
      const updates = yield* Fiber.join(received).pipe(within("5 seconds", "two updates"))
      assert.deepStrictEqual(updates.map((update) => update.uri), [uri, uri])
      // The stream ended: the server was told.
      assert.strictEqual(
        firstText(yield* pool.callTool({ server: "inspect", scope: "t", name: "touch", arguments: { uri } })),
        "not subscribed"
      )

      // A subscription outlives nothing: closing the session ends it.
      const open = yield* Effect.forkChild(Stream.runCollect(session.subscribe(uri)))
      yield* pool.callTool({ server: "inspect", scope: "t", name: "touch", arguments: { uri } }).pipe(
        Effect.map(firstText),
        Effect.repeat({ until: (answer) => answer === "sent", times: 200 }),
        within("5 seconds", "the second subscription")
      )
      yield* pool.closeAll
      yield* Fiber.join(open).pipe(within("5 seconds", "the stream to end with the session"))
    }).pipe(Effect.scoped))

  it.live(
    "setLoggingLevel: sent on 2025-11-25; a typed error on 2026-07-28, which has no such request",
    () =>
      Effect.gen(function*() {
        const pool = yield* makePool
        const legacy = yield* pool.get({ server: "inspect", scope: "t" })
        yield* legacy.setLoggingLevel("debug")
        const modern = yield* pool.get({ server: "modern", scope: "t" })
        const error = yield* Effect.flip(modern.setLoggingLevel("debug"))
        assert.instanceOf(error, McpProtocolError)
        assert.strictEqual(error.code, -32601)
      }).pipe(Effect.scoped),
    60_000
  )
})
