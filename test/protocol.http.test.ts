/**
 * Both MCP revisions over real HTTP on 127.0.0.1, with one unchanged config: an SDK v2 server
 * (`createMcpHandler`, `test/fixtures/modern-http.ts`) modern-only or dual (2025-era traffic served
 * statelessly), beside the 2025-era servers of http.test.ts. Every request the server saw is checked.
 */
import { assert, describe, it } from "@effect/vitest"
import { McpServer as LegacyMcpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import { StreamableHTTPServerTransport as LegacyHttpServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js"
import { Effect, Fiber, Option, Redacted, References, Stream } from "effect"
import * as Http from "node:http"
import type { IncomingHttpHeaders } from "node:http"
import type { AddressInfo } from "node:net"
import { ConnectError, McpProtocolError } from "../src/McpPoolError.ts"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import * as McpSessionPool from "../src/McpSessionPool.ts"
import type { Options } from "../src/McpSessionPool.ts"
import { type ModernHttpServer, startModernHttp, TOOLS_LIST_TTL_MS } from "./fixtures/modern-http.ts"
import { firstText } from "./utils/probe.ts"
import { within } from "./utils/within.ts"

const serve = (legacy: "reject" | "stateless") =>
  Effect.acquireRelease(
    Effect.promise(() => startModernHttp({ legacy })),
    (server) => Effect.promise(() => server.close())
  )

const makePool = (servers: Options["servers"]) =>
  McpSessionPool.make({ servers, connectTimeout: "10 seconds", callTimeout: "10 seconds" }).pipe(
    Effect.provideService(References.MinimumLogLevel, "None")
  )

type Pool = McpSessionPool.McpSessionPoolShape

const call = (pool: Pool, server: string, scope: string, name: string, args: Record<string, unknown> = {}) =>
  pool.callTool({ server, scope, name, arguments: args }).pipe(
    Effect.map(firstText),
    within("10 seconds", `${name} on ${server}/${scope}`)
  )

const header = (headers: IncomingHttpHeaders, name: string): string | undefined => {
  const value = headers[name]
  return Array.isArray(value) ? value.join(", ") : value
}

const methodsOf = (server: ModernHttpServer) =>
  server.requests.map((request) => `${request.method} ${header(request.headers, "mcp-method") ?? "-"}`)

/** A 2025-era server on the 1.32 SDK, stateless (a fresh server and transport per POST), on 127.0.0.1. */
const serveLegacyStateless = Effect.acquireRelease(
  Effect.promise(() =>
    new Promise<{ readonly url: string; readonly close: () => Promise<void> }>((resolve) => {
      const server = Http.createServer((request, response) => {
        const chunks: Array<Buffer> = []
        request.on("data", (chunk: Buffer) => chunks.push(chunk))
        request.on("end", async () => {
          const mcp = new LegacyMcpServer({ name: "legacy-stateless", version: "1.0.0" })
          mcp.registerTool("era", {}, () => ({ content: [{ type: "text" as const, text: "legacy" }] }))
          const transport = new LegacyHttpServerTransport({})
          await mcp.connect(transport)
          const body = chunks.length === 0 ? undefined : JSON.parse(Buffer.concat(chunks).toString("utf8"))
          await transport.handleRequest(request, response, body)
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resolve({
          url: `http://127.0.0.1:${port}/mcp`,
          close: () =>
            new Promise((done) => {
              server.closeAllConnections()
              server.close(() => done())
            })
        })
      })
    })
  ),
  (server) => Effect.promise(() => server.close())
)

describe("both MCP revisions over streamable HTTP, one config", () => {
  it.live("a cached 2025-era verdict gone stale over HTTP (SSE fallback on) is re-probed once", () =>
    Effect.gen(function*() {
      const legacy = yield* serveLegacyStateless
      const modern = yield* serve("reject")
      let target = legacy.url
      // One config throughout; the server behind it is "upgraded" between two sessions.
      const pool = yield* makePool({ docs: McpServerConfig.http({ url: () => target, fallbackToSse: true }) })
      assert.strictEqual(yield* call(pool, "docs", "a", "era"), "legacy")
      target = modern.url
      // The cached verdict says initialize; the modern-only server refuses it (HTTP 400, -32022 naming
      // 2026-07-28): no SSE fallback, but one new probe, and the session speaks 2026-07-28.
      assert.strictEqual(yield* call(pool, "docs", "b", "era"), "modern")
      assert.deepStrictEqual(methodsOf(modern), ["POST -", "POST server/discover", "POST tools/call"])
      assert.strictEqual(yield* call(pool, "docs", "c", "era"), "modern")
    }))

  it.live("semantics 12, 13: a modern-only server: no session id, no DELETE, state guarantee none, the verdict cached", () =>
    Effect.gen(function*() {
      const server = yield* serve("reject")
      const pool = yield* makePool({ docs: McpServerConfig.http({ url: server.url }) })
      assert.strictEqual(yield* call(pool, "docs", "a", "era"), "modern")
      assert.strictEqual(yield* call(pool, "docs", "b", "echo", { text: "hi" }), "hi")
      const session = yield* pool.get({ server: "docs", scope: "a" }).pipe(Effect.scoped)
      assert.strictEqual(session.revision, "2026-07-28")
      assert.strictEqual(session.threadState, "none")
      const rows = yield* pool.snapshot
      assert.deepStrictEqual(rows.map((row) => row.threadState), ["none", "none"])
      yield* pool.closeAll
      // One probe for the config; each request names its method; no session id anywhere, no GET, no DELETE.
      assert.deepStrictEqual(methodsOf(server), [
        "POST server/discover",
        "POST tools/call",
        "POST tools/call"
      ])
      for (const request of server.requests) {
        assert.isUndefined(header(request.headers, "mcp-session-id"))
        assert.strictEqual(header(request.headers, "mcp-protocol-version"), "2026-07-28")
      }
      assert.deepStrictEqual(
        server.requests.slice(1).map((request) => header(request.headers, "mcp-name")),
        ["era", "echo"]
      )
    }))

  it.live("headers stay per (server, scope), secrets Redacted; x-mcp-header parameters become Mcp-Param-*", () =>
    Effect.gen(function*() {
      const server = yield* serve("reject")
      const pool = yield* makePool({
        docs: McpServerConfig.http({
          url: server.url,
          headers: (scope) => ({ Authorization: Redacted.make(`Bearer token-of-${scope}`), "X-Thread": scope })
        })
      })
      // The client mirrors `region` (marked `x-mcp-header: Region` in the tool's schema) into a header.
      assert.strictEqual(yield* call(pool, "docs", "alice", "route", { region: "eu-west" }), "eu-west")
      assert.strictEqual(yield* call(pool, "docs", "bob", "route", { region: "us-east" }), "us-east")
      const byThread = new Map<string, Set<string>>()
      for (const request of server.requests) {
        const thread = header(request.headers, "x-thread") ?? "(none)"
        const seen = byThread.get(thread) ?? new Set()
        seen.add(header(request.headers, "authorization") ?? "(none)")
        byThread.set(thread, seen)
      }
      assert.deepStrictEqual([...byThread.get("alice")!], ["Bearer token-of-alice"])
      assert.deepStrictEqual([...byThread.get("bob")!], ["Bearer token-of-bob"])
    }))

  it.live("tools/list honours ttlMs: a second list within it is served without a request", () =>
    Effect.gen(function*() {
      const server = yield* serve("reject")
      const pool = yield* makePool({ docs: McpServerConfig.http({ url: server.url }) })
      const session = yield* pool.get({ server: "docs", scope: "t" })
      const first = yield* session.listTools()
      assert.strictEqual((first as { readonly ttlMs?: unknown }).ttlMs, TOOLS_LIST_TTL_MS)
      const second = yield* session.listTools()
      assert.deepStrictEqual(second.tools.map((tool) => tool.name), first.tools.map((tool) => tool.name))
      assert.strictEqual(methodsOf(server).filter((method) => method === "POST tools/list").length, 1)
    }).pipe(Effect.scoped))

  it.live("a broken response stream fails its call with a typed error and never sends it again", () =>
    Effect.gen(function*() {
      const server = yield* serve("reject")
      const pool = yield* makePool({ docs: McpServerConfig.http({ url: server.url }) })
      assert.strictEqual(yield* call(pool, "docs", "t", "counter_increment"), "1")
      const error = yield* Effect.flip(call(pool, "docs", "t", "break_stream"))
      assert.instanceOf(error, McpProtocolError)
      assert.strictEqual(server.toolRuns("break_stream"), 1)
      assert.strictEqual(methodsOf(server).filter((method) => method === "POST tools/call").length, 2)
      // Nothing ties modern HTTP calls to a connection: the session serves on.
      assert.strictEqual(yield* call(pool, "docs", "t", "counter_increment"), "2")
      assert.strictEqual(server.toolRuns("break_stream"), 1)
    }))

  it.live("subscribe on 2026-07-28: a subscriptions/listen stream delivers the resource's updates", () =>
    Effect.gen(function*() {
      const server = yield* serve("reject")
      const pool = yield* makePool({ docs: McpServerConfig.http({ url: server.url }) })
      const session = yield* pool.get({ server: "docs", scope: "t" })
      const updates = yield* Effect.forkChild(Stream.runHead(session.subscribe("modern://note")))
      // Published until the listen stream (opened once the stream runs) delivers one: bounded.
      const first = yield* Effect.sync(() => server.resourceUpdated("modern://note")).pipe(
        Effect.andThen(Fiber.await(updates).pipe(Effect.timeoutOption("50 millis"))),
        Effect.repeat({ until: Option.isSome, times: 200 }),
        within("10 seconds", "an update on the listen stream")
      )
      assert.isTrue(Option.isSome(first))
      const update = yield* Fiber.join(updates)
      assert.strictEqual(Option.getOrUndefined(update)?.uri, "modern://note")
      assert.isTrue(methodsOf(server).includes("POST subscriptions/listen"))
    }).pipe(Effect.scoped))

  it.live("pinning 2025-11-25 against a modern-only server is a ConnectError naming both revisions", () =>
    Effect.gen(function*() {
      const server = yield* serve("reject")
      const pool = yield* makePool({ docs: McpServerConfig.http({ url: server.url, protocol: "2025-11-25" }) })
      const error = yield* Effect.flip(call(pool, "docs", "t", "echo", { text: "x" }))
      assert.instanceOf(error, ConnectError)
      assert.include(error.message, "refuses the pinned revision 2025-11-25: it supports only 2026-07-28")
      // Pinned: never asked which revision it speaks.
      assert.isFalse(methodsOf(server).includes("POST server/discover"))
    }))

  it.live("a dual server: 2026-07-28 by default; pinned to 2025-11-25 its stateless legacy side gives no session", () =>
    Effect.gen(function*() {
      const server = yield* serve("stateless")
      const pool = yield* makePool({
        auto: McpServerConfig.http({ url: server.url }),
        pinned: McpServerConfig.http({ url: server.url, protocol: "2025-11-25" })
      })
      assert.strictEqual(yield* call(pool, "auto", "t", "era"), "modern")
      assert.strictEqual(yield* call(pool, "pinned", "t", "era"), "legacy")
      const pinned = yield* pool.get({ server: "pinned", scope: "t" }).pipe(Effect.scoped)
      assert.strictEqual(pinned.revision, "2025-11-25")
      // The SDK v2 server serves 2025-era requests from a fresh instance each: no Mcp-Session-Id, so the pool
      // guarantees nothing between calls, and says so.
      assert.strictEqual(pinned.threadState, "none")
    }))
})
