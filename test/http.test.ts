/**
 * The pool against real HTTP servers on 127.0.0.1: an SDK streamable HTTP server (stateful, one notebook
 * server per MCP session) and a legacy SSE server, both built on node:http and restartable on the same
 * port.
 */
import { assert, describe, it } from "@effect/vitest"
import { SSEServerTransport } from "@modelcontextprotocol/sdk/server/sse.js"
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js"
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js"
import { Cause, Effect, Exit, Fiber, Queue, Redacted, Scope, Stream } from "effect"
import { randomUUID } from "node:crypto"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { makeNotebookServer } from "../examples/notebook-server.ts"
import { ConnectError, McpProtocolError, SessionLost } from "../src/McpPoolError.ts"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import { McpSessionPool, type Options } from "../src/McpSessionPool.ts"
import { firstText } from "./utils/probe.ts"

interface SeenRequest {
  readonly method: string
  readonly path: string
  readonly headers: Http.IncomingHttpHeaders
}

interface ServerOptions {
  /** Answer the streamable transport's standalone GET stream (true) or 405 (false, as many servers do). */
  readonly standaloneSse?: boolean
  /** Cut the connection of `tools/call` requests for this tool once the response has started. */
  readonly cutCallsTo?: string
  /** Refuse a request before MCP sees it. */
  readonly reject?: (request: Http.IncomingMessage) => { readonly status: number; readonly body: string } | undefined
}

interface TestServer {
  readonly url: string
  /** Every request, in arrival order. */
  readonly requests: Array<SeenRequest>
  /** Session ids whose end the client asked for: DELETE (streamable) or the SSE stream closing (legacy). */
  readonly ended: Queue.Queue<string>
  /** Tool names of `tools/call` requests, as they arrive. */
  readonly calls: Queue.Queue<string>
  readonly sessionCount: () => number
  /** Stops and starts again on the same port with no sessions: `crash` drops the sockets mid-stream. */
  readonly restart: (how: "crash" | "graceful") => Effect.Effect<void>
}

const readJson = (request: Http.IncomingMessage): Promise<unknown> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")))
      } catch {
        resolve(undefined)
      }
    })
    request.on("error", reject)
  })

const toolName = (body: unknown): string | undefined => {
  const message = body as { readonly method?: unknown; readonly params?: { readonly name?: unknown } } | undefined
  return message?.method === "tools/call" && typeof message.params?.name === "string" ? message.params.name : undefined
}

const jsonRpcError = (code: number, message: string) =>
  JSON.stringify({ jsonrpc: "2.0", error: { code, message }, id: null })

/**
 * A restartable server on 127.0.0.1 (ephemeral port), closed with the test's scope. `kind` picks the
 * protocol: streamable HTTP at `/mcp`, or legacy SSE with the stream at `/sse` and messages at `/messages`
 * (a POST to `/sse` gets 405, which is what makes "auto" fall back).
 */
const serve = (kind: "streamable" | "sse", options: ServerOptions = {}) =>
  Effect.gen(function*() {
    const ended = yield* Queue.unbounded<string>()
    const calls = yield* Queue.unbounded<string>()
    const requests: Array<SeenRequest> = []
    let streamable = new Map<string, StreamableHTTPServerTransport>()
    let legacy = new Map<string, SSEServerTransport>()
    let stopping = false

    const handleStreamable = async (request: Http.IncomingMessage, response: Http.ServerResponse, body: unknown) => {
      const sessionId = request.headers["mcp-session-id"]
      if (typeof sessionId === "string") {
        const transport = streamable.get(sessionId)
        if (transport === undefined) return response.writeHead(404).end(jsonRpcError(-32001, "Session not found"))
        if (request.method === "GET" && options.standaloneSse === false) return response.writeHead(405).end()
        return transport.handleRequest(request, response, body)
      }
      if (request.method !== "POST" || !isInitializeRequest(body)) {
        return response.writeHead(400).end(jsonRpcError(-32000, "Bad Request: No valid session ID provided"))
      }
      const sessions = streamable
      const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
        sessionIdGenerator: randomUUID,
        onsessioninitialized: (id) => void sessions.set(id, transport),
        onsessionclosed: (id) => {
          sessions.delete(id)
          Queue.offerUnsafe(ended, id)
        }
      })
      // One notebook (its own counter and notes) per MCP session.
      await makeNotebookServer().connect(transport)
      return transport.handleRequest(request, response, body)
    }

    const handleSse = async (request: Http.IncomingMessage, response: Http.ServerResponse, body: unknown) => {
      const url = new URL(request.url ?? "/", "http://127.0.0.1")
      if (url.pathname === "/sse" && request.method === "GET") {
        const sessions = legacy
        const transport = new SSEServerTransport("/messages", response)
        sessions.set(transport.sessionId, transport)
        response.on("close", () => {
          sessions.delete(transport.sessionId)
          if (!stopping) Queue.offerUnsafe(ended, transport.sessionId)
        })
        return makeNotebookServer().connect(transport)
      }
      if (url.pathname === "/messages" && request.method === "POST") {
        const transport = legacy.get(url.searchParams.get("sessionId") ?? "")
        if (transport === undefined) return response.writeHead(404).end("Session not found")
        return transport.handlePostMessage(request, response, body)
      }
      return response.writeHead(405).end("Method Not Allowed")
    }

    const listener = (request: Http.IncomingMessage, response: Http.ServerResponse) => {
      requests.push({ method: request.method ?? "", path: request.url ?? "", headers: request.headers })
      const refusal = options.reject?.(request)
      if (refusal !== undefined) {
        request.resume()
        return void response.writeHead(refusal.status).end(refusal.body)
      }
      void (request.method === "POST" ? readJson(request) : Promise.resolve(undefined)).then((body) => {
        const name = toolName(body)
        if (name !== undefined) Queue.offerUnsafe(calls, name)
        if (name !== undefined && name === options.cutCallsTo) {
          // A proxy or network cutting one response while the server (and the session) lives on.
          const writeHead = response.writeHead.bind(response) as (...args: Array<unknown>) => Http.ServerResponse
          response.writeHead = ((...args: Array<unknown>) => {
            const result = writeHead(...args)
            response.flushHeaders()
            setImmediate(() => request.socket.destroy())
            return result
          }) as typeof response.writeHead
        }
        return kind === "streamable" ? handleStreamable(request, response, body) : handleSse(request, response, body)
      }).catch(() => {
        if (!response.headersSent) response.writeHead(500).end()
      })
    }

    const listen = (port: number) =>
      new Promise<Http.Server>((resolve, reject) => {
        const server = Http.createServer(listener)
        server.once("error", reject)
        server.listen(port, "127.0.0.1", () => resolve(server))
      })

    const stop = async (server: Http.Server, how: "crash" | "graceful") => {
      stopping = true
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      const transports = [...streamable.values(), ...legacy.values()]
      streamable = new Map()
      legacy = new Map()
      // A crash drops the sockets first, so open streams break instead of ending cleanly.
      if (how === "crash") server.closeAllConnections()
      await Promise.all(transports.map((transport) => transport.close().catch(() => undefined)))
      server.closeAllConnections()
      await closed
      stopping = false
    }

    let server: Http.Server = yield* Effect.acquireRelease(
      Effect.promise(() => listen(0)),
      () => Effect.promise(() => stop(server, "crash"))
    )
    const port = (server.address() as AddressInfo).port
    const handle: TestServer = {
      url: kind === "streamable" ? `http://127.0.0.1:${port}/mcp` : `http://127.0.0.1:${port}/sse`,
      requests,
      ended,
      calls,
      sessionCount: () => streamable.size + legacy.size,
      restart: (how) =>
        Effect.promise(async () => {
          await stop(server, how)
          server = await listen(port)
        })
    }
    return handle
  })

/** A port nothing listens on: bound once, then released. */
const closedPort = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const server = Http.createServer()
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
)

const makePool = (options: Options) =>
  McpSessionPool.make({ connectTimeout: "10 seconds", callTimeout: "10 seconds", ...options })

type Pool = McpSessionPool["Service"]

const increment = (pool: Pool, server: string, scope: string) =>
  Effect.map(pool.callTool({ server, scope, name: "counter_increment" }), firstText)

const headerOf = (request: SeenRequest, name: string) => request.headers[name.toLowerCase()]

describe("McpSessionPool over streamable HTTP", () => {
  it.live("keeps state per pooled session, separate between scopes", () =>
    Effect.gen(function*() {
      const server = yield* serve("streamable")
      const pool = yield* makePool({ servers: { docs: McpServerConfig.http({ url: server.url }) } })
      assert.strictEqual(yield* increment(pool, "docs", "alice"), "1")
      assert.strictEqual(yield* increment(pool, "docs", "alice"), "2")
      assert.strictEqual(yield* increment(pool, "docs", "bob"), "1")
      assert.strictEqual(yield* increment(pool, "docs", "alice"), "3")
      assert.strictEqual(server.sessionCount(), 2)
      // Two initializes, one per pooled session, whatever the number of calls.
      const initializes = server.requests.filter((request) =>
        request.method === "POST" && headerOf(request, "mcp-session-id") === undefined
      )
      assert.strictEqual(initializes.length, 2)
    }))

  it.live("closing a session sends DELETE: invalidate, closeScope and pool shutdown", () =>
    Effect.gen(function*() {
      const server = yield* serve("streamable")
      const poolScope = yield* Scope.make()
      const pool = yield* makePool({ servers: { docs: McpServerConfig.http({ url: server.url }) } }).pipe(
        Scope.provide(poolScope)
      )
      yield* Effect.forEach(["a", "b", "c"], (scope) => increment(pool, "docs", scope))
      assert.strictEqual(server.sessionCount(), 3)

      yield* pool.invalidate("docs", "a")
      // invalidate returns once the idle session is closed: the DELETE has been answered.
      assert.strictEqual(Queue.sizeUnsafe(server.ended), 1)
      yield* pool.closeScope("b")
      assert.strictEqual(Queue.sizeUnsafe(server.ended), 2)
      yield* Scope.close(poolScope, Exit.void)
      assert.strictEqual((yield* Queue.takeAll(server.ended)).length, 3)
      assert.strictEqual(server.sessionCount(), 0)
      assert.strictEqual(server.requests.filter((request) => request.method === "DELETE").length, 3)
    }))

  it.live("a server crash mid-call fails the call with SessionLost at once; the next get starts afresh", () =>
    Effect.gen(function*() {
      const server = yield* serve("streamable")
      const pool = yield* makePool({ servers: { docs: McpServerConfig.http({ url: server.url }) } })
      assert.strictEqual(yield* increment(pool, "docs", "t"), "1")
      const inFlight = yield* Effect.forkChild(
        pool.callTool({ server: "docs", scope: "t", name: "sleep", arguments: { ms: 30_000 } })
      )
      assert.strictEqual(yield* Queue.take(server.calls), "counter_increment")
      assert.strictEqual(yield* Queue.take(server.calls), "sleep")
      const started = Date.now()
      yield* server.restart("crash")
      const error = yield* Effect.flip(Fiber.join(inFlight))
      assert.instanceOf(error, SessionLost)
      assert.isBelow(Date.now() - started, 5_000, "the call waited for a timeout")
      // A fresh session on the restarted server: fresh state.
      assert.strictEqual(yield* increment(pool, "docs", "t"), "1")
      assert.strictEqual(server.sessionCount(), 1)
    }))

  it.live("a graceful restart: the next call fails with SessionLost (HTTP 404), the following get reconnects", () =>
    Effect.gen(function*() {
      // No standalone GET stream, so nothing but the next call can notice the restart.
      const server = yield* serve("streamable", { standaloneSse: false })
      const pool = yield* makePool({ servers: { docs: McpServerConfig.http({ url: server.url }) } })
      assert.strictEqual(yield* increment(pool, "docs", "t"), "1")
      assert.strictEqual(yield* increment(pool, "docs", "t"), "2")
      yield* server.restart("graceful")
      const error = yield* Effect.flip(increment(pool, "docs", "t"))
      assert.instanceOf(error, SessionLost)
      assert.strictEqual(yield* increment(pool, "docs", "t"), "1")
    }))

  it.live("a graceful restart mid-call: the response stream ends unanswered, so the call fails with SessionLost", () =>
    Effect.gen(function*() {
      const server = yield* serve("streamable", { standaloneSse: false })
      const pool = yield* makePool({ servers: { docs: McpServerConfig.http({ url: server.url }) } })
      const inFlight = yield* Effect.forkChild(
        pool.callTool({ server: "docs", scope: "t", name: "sleep", arguments: { ms: 30_000 } })
      )
      assert.strictEqual(yield* Queue.take(server.calls), "sleep")
      yield* server.restart("graceful")
      assert.instanceOf(yield* Effect.flip(Fiber.join(inFlight)), SessionLost)
      assert.strictEqual(yield* increment(pool, "docs", "t"), "1")
    }))

  it.live("a connection cut while the server keeps the session fails that call at once; the session stays", () =>
    Effect.gen(function*() {
      const server = yield* serve("streamable", { cutCallsTo: "sleep" })
      const pool = yield* makePool({ servers: { docs: McpServerConfig.http({ url: server.url }) } })
      assert.strictEqual(yield* increment(pool, "docs", "t"), "1")
      const started = Date.now()
      const error = yield* Effect.flip(
        pool.callTool({ server: "docs", scope: "t", name: "sleep", arguments: { ms: 30_000 } })
      )
      assert.instanceOf(error, McpProtocolError)
      assert.isBelow(Date.now() - started, 5_000, "the call waited for a timeout")
      // The server still knows the session (the pool asked it): same session, same state.
      assert.strictEqual(yield* increment(pool, "docs", "t"), "2")
      assert.strictEqual(server.sessionCount(), 1)
    }))

  it.live("an idle session is dropped when the server restarts: the SDK's GET stream reconnect gets 404", () =>
    Effect.gen(function*() {
      const server = yield* serve("streamable")
      const pool = yield* makePool({ servers: { docs: McpServerConfig.http({ url: server.url }) } })
      const session = yield* pool.get("docs", "t")
      assert.strictEqual(firstText(yield* session.callTool({ name: "counter_increment" })), "1")
      yield* server.restart("graceful")
      // The session's notification stream ends when the session does; no call is needed to notice.
      yield* Effect.exit(Stream.runDrain(session.notifications))
      assert.instanceOf(yield* Effect.flip(session.callTool({ name: "counter_increment" })), SessionLost)
      assert.strictEqual(yield* increment(pool, "docs", "t"), "1")
    }).pipe(Effect.scoped))

  it.live("a dead server fails with ConnectError at once, not after the SDK's 60 s timeout", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const url = `http://127.0.0.1:${port}/mcp`
      const pool = yield* makePool({
        servers: {
          http: McpServerConfig.http({ url }),
          auto: McpServerConfig.http({ url, fallbackToSse: true }),
          sse: McpServerConfig.sse({ url })
        },
        connectTimeout: "60 seconds"
      })
      for (const server of ["http", "auto", "sse"]) {
        const started = Date.now()
        const error = yield* Effect.flip(increment(pool, server, "t"))
        assert.instanceOf(error, ConnectError)
        assert.include(error.message, "ECONNREFUSED")
        assert.isBelow(Date.now() - started, 2_000, server)
      }
    }))

  it.live("Redacted header values reach the server and never appear in errors", () =>
    Effect.gen(function*() {
      const secret = "Bearer s3cret-token-value"
      const server = yield* serve("streamable", {
        // A careless server that quotes the credential back in its refusal.
        reject: (request) =>
          request.headers["x-tenant"] === "refused"
            ? { status: 401, body: `invalid credential: ${request.headers.authorization}` }
            : undefined
      })
      const headers = (tenant: string) => ({ Authorization: Redacted.make(secret), "X-Tenant": tenant })
      const pool = yield* makePool({
        servers: {
          docs: McpServerConfig.http({ url: server.url, headers: headers("ok") }),
          refused: McpServerConfig.http({ url: server.url, headers: headers("refused") })
        }
      })
      assert.strictEqual(yield* increment(pool, "docs", "t"), "1")
      const accepted = server.requests.filter((request) => headerOf(request, "x-tenant") === "ok")
      assert.isAtLeast(accepted.length, 3)
      for (const request of accepted) assert.strictEqual(headerOf(request, "authorization"), secret)

      const error = yield* Effect.flip(increment(pool, "refused", "t"))
      assert.instanceOf(error, ConnectError)
      assert.include(error.message, "401")
      for (const text of [error.message, String(error), Cause.pretty(Cause.fail(error)), JSON.stringify(error)]) {
        assert.notInclude(text, "s3cret")
      }
    }))

  it.live("the auth hook runs for each request and its headers reach the server", () =>
    Effect.gen(function*() {
      const server = yield* serve("streamable")
      let issued = 0
      const pool = yield* makePool({
        servers: {
          docs: McpServerConfig.http({
            url: server.url,
            headers: { Authorization: "Bearer static", "X-Static": "kept" },
            auth: Effect.sync(() => ({ Authorization: Redacted.make(`Bearer token-${++issued}`) }))
          })
        }
      })
      assert.strictEqual(yield* increment(pool, "docs", "t"), "1")
      assert.strictEqual(yield* increment(pool, "docs", "t"), "2")
      const tokens = server.requests.map((request) => headerOf(request, "authorization"))
      // Every request carried a fresh token (the hook wins over the static header); the static one stays.
      assert.deepStrictEqual(tokens, tokens.map((_, i) => `Bearer token-${i + 1}`).slice(0, tokens.length))
      assert.strictEqual(issued, server.requests.length)
      assert.isTrue(server.requests.every((request) => headerOf(request, "x-static") === "kept"))
    }))

  it.live("a failing auth hook fails the connect with a ConnectError naming it", () =>
    Effect.gen(function*() {
      const server = yield* serve("streamable")
      const pool = yield* makePool({
        servers: {
          docs: McpServerConfig.http({ url: server.url, auth: Effect.fail(new Error("token endpoint unreachable")) })
        }
      })
      const error = yield* Effect.flip(increment(pool, "docs", "t"))
      assert.instanceOf(error, ConnectError)
      assert.include(error.message, "the auth hook failed: token endpoint unreachable")
      assert.lengthOf(server.requests, 0)
    }))
})

describe("McpSessionPool over legacy SSE", () => {
  it.live("keeps state per pooled session, separate between scopes; closing ends the server session", () =>
    Effect.gen(function*() {
      const server = yield* serve("sse")
      const pool = yield* makePool({ servers: { old: McpServerConfig.sse({ url: server.url }) } })
      assert.strictEqual(yield* increment(pool, "old", "alice"), "1")
      assert.strictEqual(yield* increment(pool, "old", "alice"), "2")
      assert.strictEqual(yield* increment(pool, "old", "bob"), "1")
      assert.strictEqual(server.sessionCount(), 2)
      yield* pool.invalidate("old", "alice")
      // The SSE stream closing is how a legacy server learns that the session ended.
      yield* Queue.take(server.ended)
      assert.strictEqual(server.sessionCount(), 1)
    }))

  it.live("a server restart mid-call fails the call with SessionLost; the next get starts afresh", () =>
    Effect.gen(function*() {
      const server = yield* serve("sse")
      const pool = yield* makePool({ servers: { old: McpServerConfig.sse({ url: server.url }) } })
      assert.strictEqual(yield* increment(pool, "old", "t"), "1")
      const inFlight = yield* Effect.forkChild(
        pool.callTool({ server: "old", scope: "t", name: "sleep", arguments: { ms: 30_000 } })
      )
      yield* Queue.take(server.calls)
      assert.strictEqual(yield* Queue.take(server.calls), "sleep")
      yield* server.restart("crash")
      assert.instanceOf(yield* Effect.flip(Fiber.join(inFlight)), SessionLost)
      assert.strictEqual(yield* increment(pool, "old", "t"), "1")
    }))

  it.live("\"auto\" falls back to SSE when the server answers the streamable POST with 405", () =>
    Effect.gen(function*() {
      const server = yield* serve("sse")
      const pool = yield* makePool({
        servers: { old: McpServerConfig.http({ url: server.url, fallbackToSse: true, headers: { "X-Key": "k" } }) }
      })
      assert.strictEqual(yield* increment(pool, "old", "t"), "1")
      assert.strictEqual(yield* increment(pool, "old", "t"), "2")
      assert.strictEqual(server.sessionCount(), 1)
      const [probe, stream] = server.requests
      assert.deepStrictEqual([probe?.method, probe?.path], ["POST", "/sse"])
      assert.deepStrictEqual([stream?.method, stream?.path], ["GET", "/sse"])
      assert.isTrue(server.requests.every((request) => headerOf(request, "x-key") === "k"))
    }))

  it.live("\"auto\" stays on streamable HTTP when the server speaks it", () =>
    Effect.gen(function*() {
      const server = yield* serve("streamable")
      const pool = yield* makePool({
        servers: { docs: McpServerConfig.http({ url: server.url, fallbackToSse: true }) }
      })
      assert.strictEqual(yield* increment(pool, "docs", "t"), "1")
      yield* pool.invalidate("docs", "t")
      assert.strictEqual(Queue.sizeUnsafe(server.ended), 1)
    }))
})
