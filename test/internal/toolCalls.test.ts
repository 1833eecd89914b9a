/**
 * toolCalls.ts: `tools/call` written to the 1.32 client's transport directly settles the way the SDK's own
 * `client.callTool` does — same results, same errors, same cancellation on the wire — on the same client,
 * against a server scripted by hand over the SDK's in-memory transport (so that the test decides when and
 * what it answers).
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js"
import { Server } from "@modelcontextprotocol/sdk/server/index.js"
import {
  CallToolRequestSchema,
  ErrorCode,
  type JSONRPCMessage,
  type JSONRPCRequest,
  LoggingMessageNotificationSchema,
  McpError,
  type Tool
} from "@modelcontextprotocol/sdk/types.js"
import { assert, describe, it } from "vitest"
import { InvalidCallToolResult } from "../../src/internal/callToolResult.ts"
import { ToolCalls } from "../../src/internal/toolCalls.ts"
import { rejection } from "../utils/rejection.ts"

const waitMillis = 5_000

/** An SDK server with one tool, for what needs a real one. */
const lowLevel = () => {
  const server = new Server({ name: "low", version: "1.0.0" }, { capabilities: { tools: {} } })
  server.setRequestHandler(CallToolRequestSchema, () => ({ content: [] }))
  return server
}

/** `promise`, or a failure after `waitMillis`: every wait here is bounded. */
const bounded = <A>(promise: Promise<A>, what: string): Promise<A> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), waitMillis)
    })
  ]).finally(() => clearTimeout(timer))
}

const isCall = (message: JSONRPCMessage): message is JSONRPCRequest =>
  "method" in message && "id" in message && message.method === "tools/call"

/**
 * A server by hand: answers `initialize` and `tools/list` (with `tools`), records every message, and leaves
 * each `tools/call` to `onCall` (by default: a text result naming the tool).
 */
const scripted = async (tools: ReadonlyArray<Tool> = []) => {
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair()
  const received: Array<JSONRPCMessage> = []
  const waiters: Array<{ readonly test: (m: JSONRPCMessage) => boolean; readonly found: (m: JSONRPCMessage) => void }> =
    []
  const send = (message: Record<string, unknown>) => serverTransport.send(message as unknown as JSONRPCMessage)
  const answer = (request: JSONRPCRequest, result: unknown) => send({ jsonrpc: "2.0", id: request.id, result })
  const state = {
    onCall: (request: JSONRPCRequest): void => {
      void answer(request, { content: [{ type: "text", text: `called ${String(request.params?.name)}` }] })
    }
  }
  serverTransport.onmessage = (message) => {
    received.push(message)
    for (const waiter of waiters.filter((w) => w.test(message))) {
      waiters.splice(waiters.indexOf(waiter), 1)
      waiter.found(message)
    }
    if (!("method" in message) || !("id" in message)) return
    if (message.method === "initialize") {
      void answer(message, {
        protocolVersion: "2025-11-25",
        capabilities: { tools: {} },
        serverInfo: { name: "scripted", version: "1.0.0" }
      })
    } else if (message.method === "tools/list") void answer(message, { tools })
    else if (message.method === "tools/call") state.onCall(message)
  }
  await serverTransport.start()
  const client = new Client({ name: "test", version: "1.0.0" })
  const errors: Array<Error> = []
  client.onerror = (error) => errors.push(error)
  await client.connect(clientTransport)
  const calls = ToolCalls.make(client)
  assert.isDefined(calls, "the 1.32 client has what the direct path reads")
  /**
   * The first message passing `test` after the one the last `next` found, received already or still to come:
   * the in-memory transport delivers as it sends, so a message may be in before its `next` is asked.
   */
  let cursor = 0
  const next = (test: (m: JSONRPCMessage) => boolean, what: string) => {
    const index = received.findIndex((m, i) => i >= cursor && test(m))
    if (index >= 0) {
      cursor = index + 1
      return Promise.resolve(received[index]!)
    }
    return bounded(
      new Promise<JSONRPCMessage>((found) =>
        waiters.push({
          test,
          found: (m) => {
            cursor = received.length
            found(m)
          }
        })
      ),
      what
    )
  }
  return { client, calls: calls!, received, errors, state, send, answer, next, serverTransport }
}

/** Options as the session gives them: a bound and a signal. */
const opts = (timeout = 60_000, signal = new AbortController().signal) => ({ timeout, signal })

describe("ToolCalls", () => {
  it("answers what client.callTool answers, under ids of its own", async () => {
    const { calls, client, received } = await scripted()
    const params = { name: "echo", arguments: { text: "hi" } }
    assert.deepStrictEqual(await calls.call(params, opts()), await client.callTool(params))
    const ids = received.filter(isCall).map((m) => m.id)
    assert.strictEqual(typeof ids[0], "string")
    assert.match(String(ids[0]), /^pool-\d+$/)
    // The SDK's own request, sent second, keeps its numbers.
    assert.strictEqual(typeof ids[1], "number")
    await client.close()
  })

  it("runs beside the SDK's own requests on one client, each answer to its own call", async () => {
    const { answer, calls, client, state } = await scripted([{ name: "a", inputSchema: { type: "object" } }])
    const held: Array<JSONRPCRequest> = []
    state.onCall = (request) => void held.push(request)
    const first = calls.call({ name: "a" }, opts())
    const second = calls.call({ name: "b" }, opts())
    // An SDK request answered while both calls wait; then the calls, answered in the other order.
    assert.deepStrictEqual((await client.listTools()).tools.map((t) => t.name), ["a"])
    assert.lengthOf(held, 2)
    const text = (t: string) => ({ content: [{ type: "text", text: t }] })
    await answer(held[1]!, text("second"))
    await answer(held[0]!, text("first"))
    assert.deepStrictEqual([await first, await second], [text("first"), text("second")])
    await client.close()
  })

  it("a JSON-RPC error answer rejects with the McpError client.callTool rejects with", async () => {
    const { calls, client, send, state } = await scripted()
    state.onCall = (request) =>
      void send({
        jsonrpc: "2.0",
        id: request.id,
        error: { code: ErrorCode.InvalidParams, message: "bad arguments", data: { field: "x" } }
      })
    const ours = await rejection(calls.call({ name: "x" }, opts()))
    const sdks = await rejection(client.callTool({ name: "x" }))
    assert.instanceOf(ours, McpError)
    assert.deepStrictEqual(
      { code: (ours as McpError).code, message: (ours as McpError).message, data: (ours as McpError).data },
      { code: (sdks as McpError).code, message: (sdks as McpError).message, data: (sdks as McpError).data }
    )
    await client.close()
  })

  it("a result that breaks the protocol's shape is an InvalidCallToolResult", async () => {
    const { answer, calls, client, state } = await scripted()
    state.onCall = (request) => void answer(request, { content: [{ type: "video" }] })
    const error = await rejection(calls.call({ name: "x" }, opts()))
    assert.instanceOf(error, InvalidCallToolResult)
    assert.include((error as InvalidCallToolResult).problem, "content[0]")
    await client.close()
  })

  it("checks outputSchema and refuses task-only tools as client.callTool does, from what listTools cached", async () => {
    const tools: Array<Tool> = [
      {
        name: "total",
        inputSchema: { type: "object" },
        outputSchema: { type: "object", properties: { total: { type: "number" } }, required: ["total"] }
      },
      { name: "unstructured", inputSchema: { type: "object" }, outputSchema: { type: "object" } },
      { name: "failing", inputSchema: { type: "object" }, outputSchema: { type: "object" } },
      { name: "slow", inputSchema: { type: "object" }, execution: { taskSupport: "required" } }
    ]
    const { answer, calls, client, state } = await scripted(tools)
    state.onCall = (request) =>
      void answer(
        request,
        request.params?.name === "total"
          ? { content: [], structuredContent: { total: "many" } }
          : request.params?.name === "failing"
          ? { content: [{ type: "text", text: "failed" }], isError: true }
          : { content: [] }
      )
    // Before listTools nothing is cached: nothing is checked, by either.
    assert.deepStrictEqual(await calls.call({ name: "total" }, opts()), {
      content: [],
      structuredContent: { total: "many" }
    })
    await client.listTools()
    const outcome = async (promise: Promise<unknown>) => {
      try {
        return { resolved: await promise }
      } catch (error) {
        return { code: (error as McpError).code, message: (error as McpError).message }
      }
    }
    for (const name of ["total", "unstructured", "failing", "slow"]) {
      assert.deepStrictEqual(
        await outcome(calls.call({ name }, opts())),
        await outcome(client.callTool({ name })),
        name
      )
    }
    const mismatch = await outcome(calls.call({ name: "total" }, opts()))
    assert.include(mismatch.message, "Structured content does not match the tool's output schema")
    assert.include((await outcome(calls.call({ name: "slow" }, opts()))).message, "requires task-based execution")
    await client.close()
  })

  it("a timeout rejects as the SDK's does and tells the server; its late answer is dropped without an error", async () => {
    const { answer, calls, client, errors, next, state } = await scripted()
    const held: Array<JSONRPCRequest> = []
    state.onCall = (request) => void held.push(request)
    const ours = rejection(calls.call({ name: "slow" }, opts(20)))
    const ourCancel = await next((m) => "method" in m && m.method === "notifications/cancelled", "our cancellation")
    const error = await ours
    assert.instanceOf(error, McpError)
    assert.strictEqual((error as McpError).code, ErrorCode.RequestTimeout)
    assert.deepStrictEqual((error as McpError).data, { timeout: 20 })
    // The SDK's cancellation of the same timeout, for its reason text.
    const sdks = rejection(client.callTool({ name: "slow" }, undefined, { timeout: 20 }))
    const sdkCancel = await next(
      (m) => "method" in m && m.method === "notifications/cancelled",
      "the SDK's cancellation"
    )
    await sdks
    const params = (m: JSONRPCMessage) => (m as unknown as { params: { requestId: unknown; reason: string } }).params
    assert.strictEqual(params(ourCancel).requestId, held[0]!.id)
    assert.strictEqual(params(ourCancel).reason, params(sdkCancel).reason)
    // Our call's late answer, then a call answered after it: by then the late one was read and dropped.
    errors.length = 0
    await answer(held[0]!, { content: [] })
    state.onCall = (request) => void answer(request, { content: [] })
    await calls.call({ name: "after" }, opts())
    assert.deepStrictEqual(errors, [])
    await client.close()
  })

  it("an abort rejects as the SDK's does and tells the server, quoting the reason", async () => {
    const { calls, client, next, state } = await scripted()
    state.onCall = () => undefined
    const outcome = async (start: (signal: AbortSignal) => Promise<unknown>) => {
      const controller = new AbortController()
      const settled = rejection(start(controller.signal))
      await next(isCall, "the call")
      controller.abort(new Error("stop"))
      const cancel = await next((m) => "method" in m && m.method === "notifications/cancelled", "the cancellation")
      const error = (await settled) as McpError
      return {
        error: { name: error.name, code: error.code, message: error.message },
        reason: (cancel as unknown as { params: { reason: string } }).params.reason
      }
    }
    const ours = await outcome((signal) => calls.call({ name: "x" }, opts(60_000, signal)))
    assert.deepStrictEqual(ours, await outcome((signal) => client.callTool({ name: "x" }, undefined, { signal })))
    assert.strictEqual(ours.reason, "Error: stop")
    await client.close()
  })

  it("the transport's close rejects the calls in flight with ConnectionClosed, and later calls with Not connected", async () => {
    const { calls, client, next, state } = await scripted()
    state.onCall = () => undefined
    const inFlight = rejection(calls.call({ name: "x" }, opts()))
    await next(isCall, "the call")
    await client.close()
    const error = await inFlight
    assert.instanceOf(error, McpError)
    assert.strictEqual((error as McpError).code, ErrorCode.ConnectionClosed)
    assert.strictEqual(((await rejection(calls.call({ name: "y" }, opts()))) as Error).message, "Not connected")
  })

  it("a send that fails, by rejecting or by throwing, fails its call at once and leaves nothing waiting", async () => {
    const { calls, client } = await scripted()
    const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === "Timeout").length
    const before = timers()
    const transport = client.transport!
    const send = transport.send.bind(transport)
    for (const broken of ["rejects", "throws"] as const) {
      transport.send = (message, options) => {
        if (!("method" in message) || message.method !== "tools/call") return send(message, options)
        if (broken === "throws") throw new Error("throws")
        return Promise.reject(new Error("rejects"))
      }
      assert.strictEqual(((await rejection(calls.call({ name: "x" }, opts()))) as Error).message, broken)
      assert.strictEqual(timers(), before, broken)
    }
    transport.send = send
    await client.close()
  })

  it("a notification read before the answer reaches its handler before the caller resumes, as with the SDK", async () => {
    const { calls, client, send, state } = await scripted()
    const logged: Array<unknown> = []
    client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
      logged.push(notification.params.data)
    })
    state.onCall = (request) => {
      // Both in one synchronous turn, as two messages of one chunk are read.
      void send({ jsonrpc: "2.0", method: "notifications/message", params: { level: "info", data: request.id } })
      void send({ jsonrpc: "2.0", id: request.id, result: { content: [] } })
    }
    await calls.call({ name: "x" }, opts())
    assert.strictEqual(logged.length, 1, "ours")
    await client.callTool({ name: "x" })
    assert.strictEqual(logged.length, 2, "the SDK's")
    // `start`, the pool's hit path: its callback resumes a fiber at once, so it too must wait its turn.
    const seen = await bounded(
      new Promise<number>((done) => calls.start({ name: "x" }, 60_000, () => done(logged.length))),
      "start's answer"
    )
    assert.strictEqual(seen, 3, "start")
    await client.close()
  })

  it("an error answer without a code is the SDK's to report, and the call still times out", async () => {
    const { calls, client, errors, send, state } = await scripted()
    state.onCall = (request) => void send({ jsonrpc: "2.0", id: request.id, error: null })
    const error = await rejection(calls.call({ name: "x" }, opts(30)))
    assert.strictEqual((error as McpError).code, ErrorCode.RequestTimeout)
    assert.isNotEmpty(errors.filter((e) => e.message.includes("Unknown message type")))
    await client.close()
  })

  it("a cancellation whose send throws still settles the call", async () => {
    const { calls, client, next, state } = await scripted()
    state.onCall = () => undefined
    const transport = client.transport!
    const send = transport.send.bind(transport)
    transport.send = (message, options) => {
      if ("method" in message && message.method === "notifications/cancelled") throw new Error("gone")
      return send(message, options)
    }
    const settled = bounded(
      new Promise<unknown>((done) => {
        const id = calls.start({ name: "x" }, 60_000, (_, cause) => done(cause))
        void next(isCall, "the call").then(() => calls.cancel(id!, new Error("stop")))
      }),
      "the cancelled call"
    )
    assert.strictEqual(((await settled) as McpError).message, "MCP error -32001: Error: stop")
    transport.send = send
    await client.close()
  })

  it("a transport whose handlers cannot be read back keeps the SDK's path", async () => {
    const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair()
    await lowLevel().connect(serverTransport)
    const client = new Client({ name: "test", version: "1.0.0" })
    await client.connect(clientTransport)
    assert.isDefined(ToolCalls.make(client), "readable handlers")
    // As a custom transport with write-only accessors reads: wrapping it would swallow every message.
    const installed = clientTransport.onmessage
    Object.defineProperty(clientTransport, "onmessage", { configurable: true, set: () => undefined })
    assert.isUndefined(ToolCalls.make(client))
    Object.defineProperty(clientTransport, "onmessage", { configurable: true, writable: true, value: installed })
    await client.close()
  })

  it("its one timer holds the process open only while calls are in flight", async () => {
    const { answer, calls, client, next, state } = await scripted()
    const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === "Timeout").length
    const held: Array<JSONRPCRequest> = []
    state.onCall = (request) => void held.push(request)
    const before = timers()
    const first = calls.call({ name: "a" }, opts())
    await next(isCall, "the first call")
    assert.strictEqual(timers(), before + 1, "one timer while a call waits")
    const second = calls.call({ name: "b" }, opts())
    await next(isCall, "the second call")
    assert.strictEqual(timers(), before + 1, "still one for two calls")
    await answer(held[0]!, { content: [] })
    await first
    assert.strictEqual(timers(), before + 1, "one call still waits")
    await answer(held[1]!, { content: [] })
    await second
    assert.strictEqual(timers(), before, "none once nothing waits")
    await client.close()
  })
})
