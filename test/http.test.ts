/**
 * The pool against real HTTP servers on 127.0.0.1: an SDK streamable HTTP server (stateful, one notebook
 * server per MCP session) and a legacy SSE server, both built on node:http and restartable on the same
 * port.
 */
import { assert, describe, it } from "@effect/vitest"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js"
import { SSEServerTransport } from "@modelcontextprotocol/sdk/server/sse.js"
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js"
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js"
import { Cause, Effect, Exit, Fiber, Logger, Queue, Redacted, References, Scope, Stream } from "effect"
import { randomUUID } from "node:crypto"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { makeNotebookServer } from "../examples/notebook-server.ts"
import { ConfigError, ConnectError, McpProtocolError, SessionLost } from "../src/McpPoolError.ts"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import * as McpSessionPool from "../src/McpSessionPool.ts"
import type { Options } from "../src/McpSessionPool.ts"
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

type Pool = McpSessionPool.McpSessionPoolShape

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
      // The revision is asked once for the config (`protocol: "auto"`), then two initializes: one per
      // pooled session, whatever the number of calls.
      const opening = server.requests.filter((request) =>
        request.method === "POST" && headerOf(request, "mcp-session-id") === undefined
      )
      assert.deepStrictEqual(opening.map((request) => headerOf(request, "mcp-method") ?? "initialize"), [
        "server/discover",
        "initialize",
        "initialize"
      ])
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

      yield* pool.invalidate({ server: "docs", scope: "a" })
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
      const session = yield* pool.get({ server: "docs", scope: "t" })
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

/** Every rendering of an error a log line, a span or a caller might show. */
const renderings = (error: unknown): Array<string> => [
  error instanceof Error ? error.message : "",
  String(error),
  Cause.pretty(Cause.fail(error)),
  JSON.stringify(error)
]

/** Runs `effect` with every log line (any level, with its cause) collected into `logs`. */
const capturingLogs = (logs: Array<string>) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.provide(Logger.layer([
      Logger.make(({ cause, message }) => logs.push(`${JSON.stringify(message)} ${Cause.pretty(cause)}`))
    ])),
    Effect.provideService(References.MinimumLogLevel, "All")
  )

describe("secrets never reach errors or logs", () => {
  it.live("a JSON-RPC error body echoing a credential: only the revisions it names reach the error's data", () =>
    Effect.gen(function*() {
      const token = "echoed-secret-token-42"
      const server = yield* serve("streamable", {
        reject: (request) => ({
          status: 403,
          body: JSON.stringify({
            jsonrpc: "2.0",
            id: null,
            error: {
              code: -32022,
              message: "denied",
              data: { supported: ["2025-11-25"], received: request.headers.authorization }
            }
          })
        })
      })
      const pool = yield* makePool({
        servers: {
          docs: McpServerConfig.http({ url: server.url, headers: { Authorization: Redacted.make(`Bearer ${token}`) } })
        }
      }).pipe(Effect.provideService(References.MinimumLogLevel, "None"))
      const error = yield* Effect.flip(pool.callTool({ server: "docs", scope: "t", name: "x" }))
      assert.instanceOf(error, ConnectError)
      const seen: Array<unknown> = []
      for (let at: unknown = error; at !== undefined && seen.length < 10; at = (at as { cause?: unknown }).cause) {
        seen.push(at instanceof Error ? { ...at, text: at.message } : at)
      }
      assert.notInclude(JSON.stringify(seen), token)
    }))

  const bearer = "s3cret-bearer-token"
  const plainBearer = "plain-bearer-token"
  const apiKey = "plain-api-key-value"
  const basicPassword = "hunter2-basic-password"
  const basic = Buffer.from(`ada:${basicPassword}`).toString("base64")
  const queryToken = "q-token-in-the-url"
  const secrets = [bearer, plainBearer, apiKey, basicPassword, basic, queryToken]

  it.live("a server echoing credentials without their scheme, a query token, or the whole URL", () => {
    const logs: Array<string> = []
    return Effect.gen(function*() {
      const server = yield* serve("streamable", {
        // A careless server that quotes back the bare credentials, decoded, and the URL it was asked for.
        reject: (request) => {
          const authorization = request.headers.authorization ?? ""
          const credential = authorization.slice(authorization.indexOf(" ") + 1)
          const decoded = authorization.startsWith("Basic ") ? Buffer.from(credential, "base64").toString() : ""
          return {
            status: 401,
            body: `bad credential ${credential} (${decoded}) key=${request.headers["x-api-key"]} for ${request.url}`
          }
        }
      })
      const pool = yield* makePool({
        servers: {
          redacted: McpServerConfig.http({
            url: server.url,
            headers: { Authorization: Redacted.make(`Bearer ${bearer}`) }
          }),
          plain: McpServerConfig.http({ url: server.url, headers: { Authorization: `Bearer ${plainBearer}` } }),
          apiKey: McpServerConfig.http({ url: server.url, headers: { "X-Api-Key": apiKey } }),
          basic: McpServerConfig.http({ url: server.url, headers: { Authorization: Redacted.make(`Basic ${basic}`) } }),
          query: McpServerConfig.http({ url: `${server.url}?token=${queryToken}&tenant=acme` }),
          hooked: McpServerConfig.http({
            url: server.url,
            auth: Effect.succeed({ Authorization: Redacted.make(`Bearer ${bearer}`) })
          }),
          legacy: McpServerConfig.sse({
            url: `${server.url}?token=${queryToken}`,
            headers: { Authorization: `Bearer ${plainBearer}` }
          })
        }
      })
      for (const name of ["redacted", "plain", "apiKey", "basic", "query", "hooked", "legacy"]) {
        const error = yield* Effect.flip(increment(pool, name, "t"))
        assert.instanceOf(error, ConnectError, name)
        assert.include(error.message, "401", name)
        for (const text of renderings(error)) {
          for (const secret of secrets) assert.notInclude(text, secret, `${name}: ${text}`)
        }
      }
      // The server did get them: what is scrubbed is the echo, not the request.
      assert.isTrue(server.requests.some((request) => request.path.includes(queryToken)))
    }).pipe(
      capturingLogs(logs),
      Effect.ensuring(Effect.sync(() => {
        assert.isAbove(logs.length, 0, "the failed connects were logged")
        for (const line of logs) {
          for (const secret of secrets) assert.notInclude(line, secret, line)
        }
      }))
    )
  })

  it.live("configured secrets stay scrubbed however many auth tokens rotated since", () =>
    Effect.gen(function*() {
      let refusing = false
      const server = yield* serve("streamable", {
        reject: (request) => refusing ? { status: 401, body: `bad key ${request.headers["x-static-key"]}` } : undefined
      })
      let issued = 0
      const pool = yield* makePool({
        servers: {
          docs: McpServerConfig.http({
            url: server.url,
            headers: { "X-Static-Key": Redacted.make("static-secret-key") },
            auth: Effect.sync(() => ({ Authorization: Redacted.make(`Bearer rotating-token-${++issued}`) }))
          })
        }
      })
      // More rotations than the transport remembers auth values.
      for (let count = 1; count <= 70; count++) assert.strictEqual(yield* increment(pool, "docs", "t"), String(count))
      refusing = true
      const error = yield* Effect.flip(increment(pool, "docs", "t"))
      assert.include(error.message, "401")
      for (const text of renderings(error)) assert.notInclude(text, "static-secret-key")
    }))

  it.effect("a URL with a user name or password is a ConfigError naming the field; no URL is quoted", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(makePool({
        servers: {
          userinfo: McpServerConfig.http({ url: "https://ada:hunter2-url-password@example.com/mcp" }),
          userOnly: McpServerConfig.sse({ url: "https://ghp-user-token-123@example.com/sse" }),
          scheme: McpServerConfig.http({ url: "ftp://example.com/mcp?token=ftp-query-token" }),
          garbage: McpServerConfig.http({ url: "not a url ?token=garbage-query-token" })
        }
      }))
      assert.instanceOf(error, ConfigError)
      assert.deepStrictEqual(error.issues.map((issue) => issue.path), [
        "servers.userinfo.url",
        "servers.userOnly.url",
        "servers.scheme.url",
        "servers.garbage.url"
      ])
      assert.include(error.issues[0]!.message, "user name or password")
      for (const text of renderings(error)) {
        for (const secret of ["hunter2-url-password", "ghp-user-token-123", "ftp-query-token", "garbage-query-token"]) {
          assert.notInclude(text, secret)
        }
        assert.notInclude(text, "ada")
      }
    }))

  it.effect("a url function returning a URL with userinfo is a ConnectError naming the problem, not the value", () =>
    Effect.gen(function*() {
      const pool = yield* makePool({
        servers: {
          docs: McpServerConfig.http({ url: (scope) => `http://${scope}:hunter2-url-password@127.0.0.1:9/mcp` })
        }
      })
      const error = yield* Effect.flip(increment(pool, "docs", "ada"))
      assert.instanceOf(error, ConnectError)
      assert.include(error.reason, "user name or password")
      for (const text of renderings(error)) assert.notInclude(text, "hunter2-url-password")
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
      yield* pool.invalidate({ server: "old", scope: "alice" })
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
      const [discover, probe, stream] = server.requests
      assert.strictEqual(headerOf(discover!, "mcp-method"), "server/discover")
      assert.deepStrictEqual([probe?.method, probe?.path], ["POST", "/sse"])
      assert.deepStrictEqual([stream?.method, stream?.path], ["GET", "/sse"])
      assert.isTrue(server.requests.every((request) => headerOf(request, "x-key") === "k"))
    }))

  it.live("a custom transport (the 1.32 SDK's streamable HTTP) to a 2025-era server still connects under \"auto\"", () =>
    Effect.gen(function*() {
      const server = yield* serve("streamable")
      const pool = yield* makePool({
        servers: {
          custom: McpServerConfig.custom(() =>
            Effect.acquireRelease(
              Effect.sync(() => new StreamableHTTPClientTransport(new URL(server.url))),
              (transport) => Effect.promise(() => transport.close())
            )
          )
        }
      })
      // The probe's 400 ("No valid session ID") is a 2025-era answer; the same transport then initializes.
      assert.strictEqual(yield* increment(pool, "custom", "t"), "1")
      assert.strictEqual(yield* increment(pool, "custom", "t"), "2")
    }))

  it.live("\"auto\" stays on streamable HTTP when the server speaks it", () =>
    Effect.gen(function*() {
      const server = yield* serve("streamable")
      const pool = yield* makePool({
        servers: { docs: McpServerConfig.http({ url: server.url, fallbackToSse: true }) }
      })
      assert.strictEqual(yield* increment(pool, "docs", "t"), "1")
      yield* pool.invalidate({ server: "docs", scope: "t" })
      assert.strictEqual(Queue.sizeUnsafe(server.ended), 1)
    }))
})
