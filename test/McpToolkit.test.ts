/**
 * McpToolkit: per-scope routing under concurrency, exact prefix routing, refresh after list_changed, reload
 * or a replaced session, failure isolation, result mapping, and interruption — through `effect/ai` (`LanguageModel` with a scripted model)
 * on in-memory servers whose requests the tests record.
 */
import { assert, describe, it } from "@effect/vitest"
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js"
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import { Effect, Exit, Fiber, Latch, Option, Queue, Sink, Stream } from "effect"
import { AiError, LanguageModel, Prompt, type Toolkit } from "effect/ai"
import { TestClock } from "effect/testing"
import * as z from "zod/v4"
import { finish, say, type Script, scriptedModel, toolCall } from "../examples/agent.ts"
import { makeNotebookServer } from "../examples/notebook-server.ts"
import { ConfigError, ConnectError, McpProtocolError, MissingScope, UnknownServer } from "../src/McpPoolError.ts"
import * as McpScope from "../src/McpScope.ts"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import * as McpSessionPool from "../src/McpSessionPool.ts"
import * as McpToolkit from "../src/McpToolkit.ts"

// --- servers whose requests the tests can see ---

interface Recorder {
  readonly config: McpServerConfig.Custom
  /** Every request a client sent, with the scope of its session. */
  readonly requests: Array<{ readonly scope: string; readonly method: string }>
  readonly count: (method: string) => number
  /** When set, connecting fails with this message. */
  failWith: string | undefined
  /** When set, connects announce themselves on `connecting` and wait for this latch. */
  gate: Latch.Latch | undefined
  readonly connecting: Queue.Queue<string>
  /** When set, `tools/list` requests announce themselves on `listing` and wait for this latch. */
  listGate: Latch.Latch | undefined
  readonly listing: Queue.Queue<string>
  /** The server of each scope's latest session: closing it kills that session's transport. */
  readonly servers: Map<string, McpServer>
}

const recorder = (makeServer: (scope: string) => McpServer): Recorder => {
  const self: Recorder = {
    requests: [],
    count: (method) => self.requests.filter((request) => request.method === method).length,
    failWith: undefined,
    gate: undefined,
    connecting: Effect.runSync(Queue.unbounded<string>()),
    listGate: undefined,
    listing: Effect.runSync(Queue.unbounded<string>()),
    servers: new Map(),
    config: McpServerConfig.custom(
      (scope) =>
        Effect.gen(function*() {
          if (self.gate !== undefined) {
            Queue.offerUnsafe(self.connecting, scope)
            yield* self.gate.await
          }
          if (self.failWith !== undefined) return yield* Effect.fail(new Error(self.failWith))
          const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair()
          const send = clientTransport.send.bind(clientTransport)
          clientTransport.send = async (message, options) => {
            if (!("method" in message)) return send(message, options)
            const gate = self.listGate
            if (message.method === "tools/list" && gate !== undefined) {
              Queue.offerUnsafe(self.listing, scope)
              await Effect.runPromise(gate.await)
            }
            self.requests.push({ scope, method: message.method })
            return send(message, options)
          }
          const server = makeServer(scope)
          self.servers.set(scope, server)
          yield* Effect.acquireRelease(
            Effect.promise(() => server.connect(serverTransport)),
            () => Effect.promise(() => server.close())
          )
          return clientTransport
        }), // These tests count requests per scope: the revision probe of "auto" is not what they are about.
      { protocol: "2025-11-25" }
    )
  }
  return self
}

const text = (value: string) => ({ content: [{ type: "text" as const, text: value }] })

/** Each tool answers "<server>/<tool>/<scope>:<input>", so a result says exactly where the call went. */
const echoServer = (name: string, tools: ReadonlyArray<string>) => (scope: string) => {
  const server = new McpServer({ name, version: "1.0.0" })
  for (const tool of tools) {
    server.registerTool(
      tool,
      { description: `${tool} of ${name}`, inputSchema: { input: z.string().optional() } },
      ({ input }) => text(`${name}/${tool}/${scope}:${input ?? ""}`)
    )
  }
  return server
}

const makePool = (servers: Record<string, McpServerConfig.McpServerConfig>, capacity?: number) =>
  McpSessionPool.make({ servers, ...(capacity === undefined ? {} : { capacity }) })

const makeToolkit = (pool: McpSessionPool.McpSessionPoolShape, options: McpToolkit.Options) =>
  McpToolkit.make(options).pipe(Effect.provideService(McpSessionPool.McpSessionPool, pool))

// --- a scripted model: the user message is a JSON list of tool calls; then it says "done" ---

interface Call {
  readonly name: string
  readonly params: unknown
}

const callScript: Script = (prompt) => {
  const last = prompt.content.at(-1)
  if (last?.role !== "user") return [say("done"), finish("stop")]
  const part = last.content[0]
  const calls = JSON.parse(part?.type === "text" ? part.text : "[]") as ReadonlyArray<Call>
  return [...calls.map((call) => toolCall(call.name, call.params as Record<string, unknown>)), finish("tool-calls")]
}

/** One model step that makes `calls` with the toolkit, under `scope`; returns the tool results in call order. */
const turn = (mcp: McpToolkit.McpToolkit, scope: string, calls: ReadonlyArray<Call>) =>
  LanguageModel.generateText({ prompt: JSON.stringify(calls), toolkit: mcp.toolkit }).pipe(
    Effect.map((response) => {
      const ids = response.toolCalls.map((call) => call.id)
      return [...response.toolResults].sort((a, b) => ids.indexOf(a.id) - ids.indexOf(b.id))
    }),
    McpScope.provide(scope),
    Effect.provide(scriptedModel(callScript))
  )

const resultText = (result: { readonly isFailure: boolean; readonly result: unknown }): string => {
  if (result.isFailure) return `failed: ${JSON.stringify(result.result)}`
  const value = result.result as McpToolkit.ToolResult
  return Prompt.toolModelOutputToText(McpToolkit.toModelOutput(value))
}

const toolNames = (mcp: McpToolkit.McpToolkit, scope: string) =>
  Effect.map(mcp.discover.pipe(McpScope.provide(scope)), ({ tools }) => tools.map((tool) => tool.name))

/** Runs one tool through a resolved toolkit, outside any model: the final handler result. */
const handle = (toolkit: Toolkit.WithHandler<McpToolkit.Tools>, name: string, params: unknown) =>
  Effect.flatMap(toolkit.handle(name, params), (stream) => Stream.run(stream, Sink.last())).pipe(
    Effect.map(Option.getOrThrow)
  )

describe("McpToolkit", () => {
  it.effect("routes every call to the calling thread's session, many threads at once", () =>
    Effect.gen(function*() {
      const alpha = recorder(echoServer("alpha", ["fetch", "search"]))
      const beta = recorder(echoServer("beta", ["lookup"]))
      const pool = yield* makePool({ alpha: alpha.config, beta: beta.config })
      const mcp = yield* makeToolkit(pool, { servers: ["alpha", "beta"] })
      const threads = Array.from({ length: 24 }, (_, i) => `thread-${i}`)

      const results = yield* Effect.forEach(threads, (thread) =>
        Effect.forEach(
          [1, 2],
          (round) =>
            turn(mcp, thread, [
              { name: "fetch", params: { input: `${round}` } },
              { name: "lookup", params: { input: `${round}` } },
              { name: "search", params: {} }
            ]),
          { concurrency: 1 }
        ), { concurrency: "unbounded" })

      threads.forEach((thread, i) => {
        for (const [round, toolResults] of results[i]!.entries()) {
          assert.deepStrictEqual(toolResults.map(resultText), [
            `alpha/fetch/${thread}:${round + 1}`,
            `beta/lookup/${thread}:${round + 1}`,
            `alpha/search/${thread}:`
          ])
        }
      })
      // One session per (server, thread), reused across rounds; every call on its own thread's session.
      const sessions = yield* pool.snapshot
      assert.strictEqual(sessions.length, 48)
      assert.strictEqual(alpha.count("initialize"), 24)
      for (const request of alpha.requests.filter((r) => r.method === "tools/call")) {
        assert.include(threads, request.scope)
      }
      // Tool lists are per server: 24 concurrent first turns shared one listing per server.
      assert.strictEqual(alpha.count("tools/list"), 1)
      assert.strictEqual(beta.count("tools/list"), 1)
    }))

  it.effect("keeps each thread's state across turns (stateful server)", () =>
    Effect.gen(function*() {
      const pool = yield* makePool({ notebook: McpServerConfig.inMemory(() => makeNotebookServer()) })
      const mcp = yield* makeToolkit(pool, { servers: ["notebook"] })
      const threads = Array.from({ length: 10 }, (_, i) => `t${i}`)
      yield* Effect.forEach(
        threads,
        (thread) => turn(mcp, thread, [{ name: "note_write", params: { key: "me", text: thread } }]),
        { concurrency: "unbounded" }
      )
      const reads = yield* Effect.forEach(
        threads,
        (thread) => turn(mcp, thread, [{ name: "note_read", params: { key: "me" } }]),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(reads.map((results) => resultText(results[0]!)), threads)
    }))

  it.effect("a toolkit resolved once routes each call by the McpScope of the call", () =>
    Effect.gen(function*() {
      const alpha = recorder(echoServer("alpha", ["fetch"]))
      const pool = yield* makePool({ alpha: alpha.config })
      const mcp = yield* makeToolkit(pool, { servers: ["alpha"] })
      const toolkit = yield* mcp.toolkit.pipe(McpScope.provide("resolver"))

      const a = yield* handle(toolkit, "fetch", { input: "x" }).pipe(McpScope.provide("a"))
      const b = yield* handle(toolkit, "fetch", { input: "y" }).pipe(McpScope.provide("b"))
      assert.strictEqual(resultText(a), "alpha/fetch/a:x")
      assert.strictEqual(resultText(b), "alpha/fetch/b:y")

      // No McpScope at call time: a typed MissingScope returned as the tool's failure, never a shared scope.
      const orphan = yield* handle(toolkit, "fetch", {})
      assert.isTrue(orphan.isFailure)
      assert.instanceOf(orphan.result, MissingScope)
      assert.deepStrictEqual(
        alpha.requests.filter((r) => r.method === "tools/call").map((r) => r.scope),
        ["a", "b"]
      )
    }))

  it.effect("concurrent turns share one listing; interrupting the turn that started it does not cancel it", () =>
    Effect.gen(function*() {
      const slow = recorder(echoServer("slow", ["work"]))
      slow.gate = yield* Latch.make(false)
      const pool = yield* makePool({ slow: slow.config })
      const mcp = yield* makeToolkit(pool, { servers: ["slow"] })

      const first = yield* Effect.forkChild(turn(mcp, "a", [{ name: "work", params: {} }]))
      assert.strictEqual(yield* Queue.take(slow.connecting), "a") // discovery connects through a's session
      const second = yield* Effect.forkChild(turn(mcp, "b", [{ name: "work", params: {} }]))
      yield* Fiber.interrupt(first)
      yield* slow.gate.open
      const [result] = yield* Fiber.join(second)
      assert.strictEqual(resultText(result!), "slow/work/b:")
      assert.strictEqual(slow.count("tools/list"), 1)
      assert.deepStrictEqual(slow.requests.filter((r) => r.method === "tools/list").map((r) => r.scope), ["a"])
    }))

  it.effect("prefixes: routing is exact when one server name is a prefix of another", () =>
    Effect.gen(function*() {
      const web = recorder(echoServer("web", ["fetch", "search"]))
      const scraper = recorder(echoServer("web_scraper", ["fetch", "scrape"]))
      const pool = yield* makePool({ web: web.config, web_scraper: scraper.config })
      const mcp = yield* makeToolkit(pool, { servers: ["web", "web_scraper"], prefixToolNames: true })

      const { problems, tools } = yield* mcp.discover.pipe(McpScope.provide("t"))
      assert.deepStrictEqual(problems, [])
      assert.deepStrictEqual(tools.map((tool) => [tool.name, tool.server, tool.tool]), [
        ["web_fetch", "web", "fetch"],
        ["web_search", "web", "search"],
        ["web_scraper_fetch", "web_scraper", "fetch"],
        ["web_scraper_scrape", "web_scraper", "scrape"]
      ])
      const results = yield* turn(mcp, "t", [
        { name: "web_fetch", params: { input: "1" } },
        { name: "web_scraper_fetch", params: { input: "2" } },
        { name: "web_scraper_scrape", params: { input: "3" } },
        { name: "web_search", params: { input: "4" } }
      ])
      assert.deepStrictEqual(results.map(resultText), [
        "web/fetch/t:1",
        "web_scraper/fetch/t:2",
        "web_scraper/scrape/t:3",
        "web/search/t:4"
      ])
      // `prefix: ""` opts one server out of `prefixToolNames` (tools already named like Playwright's browser_*).
      const unprefixed = yield* makeToolkit(pool, {
        servers: [{ server: "web", prefix: "" }, "web_scraper"],
        prefixToolNames: true
      })
      assert.deepStrictEqual(yield* toolNames(unprefixed, "t"), [
        "fetch",
        "search",
        "web_scraper_fetch",
        "web_scraper_scrape"
      ])
    }))

  it.effect("prefixes: a contested name goes to the server listed first; the other tool is reported", () =>
    Effect.gen(function*() {
      // "web_" + "scraper_fetch" and "web_scraper_" + "fetch" are the same model-facing name.
      const web = recorder(echoServer("web", ["scraper_fetch", "files.read"]))
      const scraper = recorder(echoServer("web_scraper", ["fetch"]))
      const pool = yield* makePool({ web: web.config, web_scraper: scraper.config })

      for (
        const [order, owner] of [[["web", "web_scraper"], "web"], [["web_scraper", "web"], "web_scraper"]] as const
      ) {
        const mcp = yield* makeToolkit(pool, { servers: order, prefixToolNames: true })
        const { problems, tools } = yield* mcp.discover.pipe(McpScope.provide("t"))
        const contested = tools.filter((tool) => tool.name === "web_scraper_fetch")
        assert.deepStrictEqual(contested.map((tool) => tool.server), [owner])
        assert.strictEqual(problems.length, 1)
        const problem = problems[0]!
        assert.instanceOf(problem, McpToolkit.ToolSkipped)
        assert.strictEqual(problem.server, owner === "web" ? "web_scraper" : "web")
        assert.include(problem.message, "is taken by")
        const [result] = yield* turn(mcp, "t", [{ name: "web_scraper_fetch", params: {} }])
        assert.match(resultText(result!), new RegExp(`^${owner}/`))
      }
      // Characters providers reject are rewritten; the call still reaches the MCP name.
      const mcp = yield* makeToolkit(pool, { servers: [{ server: "web", prefix: "w-" }] })
      const [result] = yield* turn(mcp, "t", [{ name: "w-files_read", params: { input: "z" } }])
      assert.strictEqual(resultText(result!), "web/files.read/t:z")
    }))

  it.effect("refreshes a server's tools after notifications/tools/list_changed", () =>
    Effect.gen(function*() {
      const dynamic = recorder((scope) => {
        const server = new McpServer({ name: "dynamic", version: "1.0.0" })
        server.registerTool("enable_extra", { description: "adds the extra tool" }, () => {
          // Registering on a connected server sends notifications/tools/list_changed.
          server.registerTool("extra", { description: "appears later" }, () => text(`extra/${scope}`))
          return text("enabled")
        })
        return server
      })
      const pool = yield* makePool({ dynamic: dynamic.config })
      const mcp = yield* makeToolkit(pool, { servers: ["dynamic"] })

      const before = yield* mcp.discover.pipe(McpScope.provide("t"))
      assert.deepStrictEqual(before.tools.map((tool) => tool.name), ["enable_extra"])
      // A model asking for a tool that is not there yet: the toolkit refuses it (not offered).
      const refused = yield* Effect.flip(turn(mcp, "t", [{ name: "extra", params: {} }]))
      assert.instanceOf(refused, AiError.AiError)

      const changed = yield* Effect.forkChild(Stream.runHead(mcp.toolsChanged), { startImmediately: true })
      yield* turn(mcp, "t", [{ name: "enable_extra", params: {} }])
      assert.deepStrictEqual(yield* Fiber.join(changed), Option.some("dynamic"))

      const listsBefore = dynamic.count("tools/list")
      const [result] = yield* turn(mcp, "t", [{ name: "extra", params: {} }])
      assert.strictEqual(resultText(result!), "extra/t")
      assert.strictEqual(dynamic.count("tools/list"), listsBefore + 1)
      // Cached again: no further listing without a new change.
      yield* turn(mcp, "t", [{ name: "extra", params: {} }])
      assert.strictEqual(dynamic.count("tools/list"), listsBefore + 1)
    }))

  it.effect("after pool.reload changed a server, the next resolution offers its new tools, not the old", () =>
    Effect.gen(function*() {
      const before = recorder(echoServer("svc", ["old_tool"]))
      const after = recorder(echoServer("svc", ["new_tool"]))
      const pool = yield* makePool({ svc: before.config })
      const mcp = yield* makeToolkit(pool, { servers: ["svc"] })
      const [old] = yield* turn(mcp, "t", [{ name: "old_tool", params: {} }])
      assert.strictEqual(resultText(old!), "svc/old_tool/t:")

      yield* pool.reload({ svc: after.config })
      const [fresh] = yield* turn(mcp, "t", [{ name: "new_tool", params: {} }])
      assert.strictEqual(resultText(fresh!), "svc/new_tool/t:")
      // The old tool is no longer offered: a model asking for it is refused by the toolkit.
      const refused = yield* Effect.flip(turn(mcp, "t", [{ name: "old_tool", params: {} }]))
      assert.instanceOf(refused, AiError.AiError)
      assert.deepStrictEqual(yield* toolNames(mcp, "t"), ["new_tool"])
      assert.strictEqual(before.count("tools/call"), 1)
      // Listed once for the new config, then cached.
      assert.strictEqual(after.count("tools/list"), 1)
    }))

  it.effect("a server removed by pool.reload: its tools are dropped and the removal is reported", () =>
    Effect.gen(function*() {
      const kept = recorder(echoServer("kept", ["ping"]))
      const removed = recorder(echoServer("removed", ["pong"]))
      const pool = yield* makePool({ kept: kept.config, removed: removed.config })
      const mcp = yield* makeToolkit(pool, { servers: ["kept", "removed"] })
      assert.deepStrictEqual(yield* toolNames(mcp, "t"), ["ping", "pong"])

      yield* pool.reload({ kept: kept.config })
      const { problems, tools } = yield* mcp.discover.pipe(McpScope.provide("t"))
      assert.deepStrictEqual(tools.map((tool) => tool.name), ["ping"])
      assert.deepStrictEqual(problems.map((problem) => problem._tag), ["ToolDiscoveryError"])
      const problem = problems[0] as McpToolkit.ToolDiscoveryError
      assert.strictEqual(problem.server, "removed")
      assert.instanceOf(problem.cause, UnknownServer)
      const refused = yield* Effect.flip(turn(mcp, "t", [{ name: "pong", params: {} }]))
      assert.instanceOf(refused, AiError.AiError)
      // The unchanged server kept its session and its list.
      assert.strictEqual(kept.count("initialize"), 1)
      assert.strictEqual(kept.count("tools/list"), 1)
    }))

  it.effect("a session invalidated or lost, replaced by a server with other tools: the list is refreshed", () =>
    Effect.gen(function*() {
      let tools = ["first"]
      const svc = recorder((scope) => echoServer("svc", tools)(scope))
      const pool = yield* makePool({ svc: svc.config })
      const mcp = yield* makeToolkit(pool, { servers: ["svc"] })
      assert.deepStrictEqual(yield* toolNames(mcp, "t"), ["first"])

      // Invalidated: nobody holds it, so it is closed when `invalidate` returns; the next session lists anew.
      tools = ["second"]
      yield* pool.invalidate({ server: "svc", scope: "t" })
      assert.deepStrictEqual(yield* toolNames(mcp, "t"), ["second"])

      // Lost: the server end closes under the idle session.
      tools = ["third"]
      yield* Effect.promise(() => svc.servers.get("t")!.close())
      const [result] = yield* turn(mcp, "t", [{ name: "third", params: {} }])
      assert.strictEqual(resultText(result!), "svc/third/t:")
      assert.deepStrictEqual(yield* toolNames(mcp, "t"), ["third"])
      assert.strictEqual(svc.count("initialize"), 3)
      assert.strictEqual(svc.count("tools/list"), 3)
    }))

  it.effect("a listing in flight across pool.reload is not trusted: the turn waiting for it lists again", () =>
    Effect.gen(function*() {
      const before = recorder(echoServer("svc", ["old_tool"]))
      const after = recorder(echoServer("svc", ["new_tool"]))
      before.listGate = yield* Latch.make(false)
      const pool = yield* makePool({ svc: before.config })
      const mcp = yield* makeToolkit(pool, { servers: ["svc"] })

      const first = yield* Effect.forkChild(toolNames(mcp, "a"), { startImmediately: true })
      assert.strictEqual(yield* Queue.take(before.listing), "a")
      yield* pool.reload({ svc: after.config })
      // Joins the listing under way (through a's retired session), which will answer with the old tools.
      const second = yield* Effect.forkChild(toolNames(mcp, "b"), { startImmediately: true })
      yield* Fiber.interrupt(first)
      yield* before.listGate.open
      assert.deepStrictEqual(yield* Fiber.join(second), ["new_tool"])
      assert.strictEqual(before.count("tools/list"), 1)
      assert.deepStrictEqual(after.requests.filter((r) => r.method === "tools/list").map((r) => r.scope), ["b"])
    }))

  it.live("a turn waiting for that second listing can still be interrupted; the listing carries on", () =>
    Effect.gen(function*() {
      const before = recorder(echoServer("svc", ["old_tool"]))
      const after = recorder(echoServer("svc", ["new_tool"]))
      before.listGate = yield* Latch.make(false)
      after.listGate = yield* Latch.make(false)
      const pool = yield* makePool({ svc: before.config })
      const mcp = yield* makeToolkit(pool, { servers: ["svc"] })

      const first = yield* Effect.forkChild(toolNames(mcp, "a"), { startImmediately: true })
      assert.strictEqual(yield* Queue.take(before.listing), "a")
      yield* pool.reload({ svc: after.config })
      const waiting = yield* Effect.forkChild(toolNames(mcp, "b"), { startImmediately: true })
      yield* before.listGate.open
      // Both turns found the old list stale: one lists again, the other waits for that listing.
      yield* Queue.take(after.listing).pipe(Effect.timeout("5 seconds"))
      const interrupted = yield* Fiber.interrupt(waiting).pipe(Effect.timeoutOption("5 seconds"))
      assert.isTrue(Option.isSome(interrupted), "the waiting turn could not be interrupted")
      yield* after.listGate.open
      assert.deepStrictEqual(yield* Fiber.join(first), ["new_tool"])
      assert.deepStrictEqual(yield* toolNames(mcp, "c"), ["new_tool"])
      assert.strictEqual(after.count("tools/list"), 1)
    }))

  it.effect("without discoveryScope, evicting the lister's session costs one more listing, then cached", () =>
    Effect.gen(function*() {
      const svc = recorder(echoServer("svc", ["work"]))
      const pool = yield* makePool({ svc: svc.config }, 1)
      const mcp = yield* makeToolkit(pool, { servers: ["svc"] })
      yield* turn(mcp, "a", [{ name: "work", params: {} }])
      // Capacity 1: b's call evicts a's idle session, the one the list was taken through.
      yield* turn(mcp, "b", [{ name: "work", params: {} }])
      assert.strictEqual(svc.count("tools/list"), 1)
      assert.deepStrictEqual((yield* pool.snapshot).map((s) => s.scope), ["b"])

      const [result] = yield* turn(mcp, "b", [{ name: "work", params: {} }])
      assert.strictEqual(resultText(result!), "svc/work/b:")
      assert.strictEqual(svc.count("tools/list"), 2)
      yield* turn(mcp, "b", [{ name: "work", params: {} }])
      assert.strictEqual(svc.count("tools/list"), 2)
    }))

  it.effect("a broken server fails alone, with a clear error, and is retried later", () =>
    Effect.gen(function*() {
      const good = recorder(echoServer("good", ["ping"]))
      const flaky = recorder(echoServer("flaky", ["pong"]))
      flaky.failWith = "spawn flaky-server ENOENT"
      const pool = yield* makePool({ good: good.config, flaky: flaky.config })
      const mcp = yield* makeToolkit(pool, {
        servers: ["flaky", "ghost", "good"],
        retryDiscoveryAfter: "10 seconds"
      })

      const [result] = yield* turn(mcp, "t", [{ name: "ping", params: { input: "ok" } }])
      assert.strictEqual(resultText(result!), "good/ping/t:ok")
      const { problems, tools } = yield* mcp.discover.pipe(McpScope.provide("t"))
      assert.deepStrictEqual(tools.map((tool) => tool.name), ["ping"])
      assert.deepStrictEqual(problems.map((problem) => problem.server), ["flaky", "ghost"])
      const [flakyError, ghostError] = problems as ReadonlyArray<McpToolkit.ToolDiscoveryError>
      assert.instanceOf(flakyError, McpToolkit.ToolDiscoveryError)
      assert.instanceOf(flakyError!.cause, ConnectError)
      assert.include(flakyError!.message, "spawn flaky-server ENOENT")
      assert.instanceOf(ghostError!.cause, UnknownServer)
      assert.include(ghostError!.message, `Unknown MCP server "ghost"`)

      // Within retryDiscoveryAfter the failure is remembered: no connect storm, one per turn.
      flaky.failWith = undefined
      yield* turn(mcp, "t", [])
      assert.strictEqual(flaky.count("initialize"), 0)
      yield* TestClock.adjust("11 seconds")
      const [pong] = yield* turn(mcp, "t", [{ name: "pong", params: {} }])
      assert.strictEqual(resultText(pong!), "flaky/pong/t:")
      const after = yield* mcp.discover.pipe(McpScope.provide("t"))
      assert.deepStrictEqual(after.problems.map((problem) => problem.server), ["ghost"])
    }))

  it.effect("maps results: text, images, resources, structured content; isError reaches the model", () =>
    Effect.gen(function*() {
      const rich = recorder(() => {
        const server = new McpServer({ name: "rich", version: "1.0.0" })
        server.registerTool("chart", { description: "a chart" }, () => ({
          content: [
            { type: "text", text: "the chart" },
            { type: "image", data: "iVBORw0KGgo=", mimeType: "image/png" },
            { type: "resource_link", uri: "file:///data.csv", name: "data.csv", description: "raw data" },
            { type: "resource", resource: { uri: "file:///note.txt", text: "embedded note" } }
          ],
          structuredContent: { points: 3 }
        }))
        server.registerTool("structured", {
          description: "structured only",
          outputSchema: { total: z.number() }
        }, () => ({ content: [], structuredContent: { total: 42 } }))
        server.registerTool("broken", { description: "always fails" }, () => ({
          ...text("disk full"),
          isError: true
        }))
        server.registerTool("strict", { inputSchema: { n: z.number() } }, ({ n }) => text(String(n)))
        return server
      })
      const pool = yield* makePool({ rich: rich.config })
      const mcp = yield* makeToolkit(pool, { servers: ["rich"] })
      const [chart, structured, broken, invalid, notObject] = yield* turn(mcp, "t", [
        { name: "chart", params: {} },
        { name: "structured", params: {} },
        { name: "broken", params: {} },
        { name: "strict", params: { n: "not a number" } },
        { name: "strict", params: "n=1" }
      ])

      assert.isFalse(chart!.isFailure)
      const output = chart!.modelOutput ?? []
      assert.deepStrictEqual(output.map((part) => part.type), ["text", "file", "text", "text"])
      const file = output[1]
      assert.strictEqual(file?.type === "file" ? file.mediaType : undefined, "image/png")
      assert.strictEqual(file?.type === "file" ? file.data : undefined, "iVBORw0KGgo=")
      assert.strictEqual(
        output[2]?.type === "text" ? output[2].text : undefined,
        "data.csv: file:///data.csv\nraw data"
      )
      assert.strictEqual(output[3]?.type === "text" ? output[3].text : undefined, "embedded note")
      assert.deepStrictEqual((chart!.result as McpToolkit.ToolResult).structuredContent, { points: 3 })
      assert.strictEqual(resultText(structured!), `{"total":42}`)

      // isError: a failed tool result the model reads (the tool's own text), not a defect or a turn failure.
      assert.isTrue(broken!.isFailure)
      assert.instanceOf(broken!.result, McpToolkit.McpToolError)
      assert.deepStrictEqual(broken!.encodedResult, {
        _tag: "McpToolError",
        server: "rich",
        tool: "broken",
        text: "disk full"
      })
      // Arguments the server rejects, and arguments that are not an object: failures for the model too.
      assert.isTrue(invalid!.isFailure)
      assert.isTrue(
        invalid!.result instanceof McpProtocolError || invalid!.result instanceof McpToolkit.McpToolError,
        `unexpected ${JSON.stringify(invalid!.result)}`
      )
      assert.isTrue(notObject!.isFailure)
      assert.instanceOf(notObject!.result, AiError.AiError)
    }))

  it.effect("interrupting a turn cancels its tool call on the server; the session stays", () =>
    Effect.gen(function*() {
      const started = yield* Queue.unbounded<string>()
      const cancelled = yield* Queue.unbounded<string>()
      const blocking = recorder((scope) => {
        const server = new McpServer({ name: "blocking", version: "1.0.0" })
        server.registerTool("block", { description: "waits until cancelled" }, async (extra) => {
          Queue.offerUnsafe(started, scope)
          await new Promise<void>((resolve) => {
            if (extra.signal.aborted) resolve()
            extra.signal.addEventListener("abort", () => resolve(), { once: true })
          })
          Queue.offerUnsafe(cancelled, scope)
          return text("cancelled")
        })
        server.registerTool("quick", { description: "answers at once" }, () => text(`quick/${scope}`))
        return server
      })
      const pool = yield* makePool({ blocking: blocking.config })
      const mcp = yield* makeToolkit(pool, { servers: ["blocking"] })

      const running = yield* Effect.forkChild(turn(mcp, "t", [{ name: "block", params: {} }]))
      assert.strictEqual(yield* Queue.take(started), "t")
      yield* Fiber.interrupt(running)
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(running)))
      // The server saw notifications/cancelled for the call.
      assert.strictEqual(yield* Queue.take(cancelled), "t")
      assert.strictEqual(blocking.count("notifications/cancelled"), 1)

      const [result] = yield* turn(mcp, "t", [{ name: "quick", params: {} }])
      assert.strictEqual(resultText(result!), "quick/t")
      const sessions = yield* pool.snapshot
      assert.deepStrictEqual(sessions.map((s) => [s.scope, s.leases]), [["t", 0]])
      assert.strictEqual(blocking.count("initialize"), 1)
    }))

  it.effect("discovery: the turn's own session by default, or a dedicated discoveryScope", () =>
    Effect.gen(function*() {
      const lazy = recorder(echoServer("lazy", ["a"]))
      const dedicated = recorder(echoServer("dedicated", ["b"]))
      const pool = yield* makePool({ lazy: lazy.config, dedicated: dedicated.config })
      const lazyKit = yield* makeToolkit(pool, { servers: ["lazy"] })
      const dedicatedKit = yield* makeToolkit(pool, { servers: ["dedicated"], discoveryScope: "__discovery__" })
      yield* lazyKit.discover.pipe(McpScope.provide("thread-1"))
      yield* dedicatedKit.discover.pipe(McpScope.provide("thread-1"))
      const sessions = yield* pool.snapshot
      assert.deepStrictEqual(
        sessions.map((s) => `${s.server}:${s.scope}`).sort(),
        ["dedicated:__discovery__", "lazy:thread-1"]
      )
      assert.deepStrictEqual(lazy.requests.map((r) => r.scope), ["thread-1", "thread-1", "thread-1"])

      // invalidate: the next resolution lists again.
      yield* lazyKit.invalidate()
      yield* lazyKit.discover.pipe(McpScope.provide("thread-2"))
      assert.strictEqual(lazy.count("tools/list"), 2)
    }))

  it.effect("rejects bad options with every problem at once", () =>
    Effect.gen(function*() {
      const pool = yield* makePool({})
      const error = yield* Effect.flip(makeToolkit(pool, {
        servers: ["a", "a", { server: "b", prefix: "b." }, ""],
        retryDiscoveryAfter: -1,
        discoveryScope: ""
      }))
      assert.instanceOf(error, ConfigError)
      assert.deepStrictEqual(error.issues.map((issue) => issue.path), [
        "servers[1]",
        "servers[2].prefix",
        "servers[3]",
        "retryDiscoveryAfter",
        "discoveryScope"
      ])
      const empty = yield* Effect.flip(makeToolkit(pool, { servers: [] }))
      assert.deepStrictEqual(empty.issues.map((issue) => issue.path), ["servers"])
    }))
})
