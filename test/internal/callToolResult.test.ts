import { assert, describe, it } from "@effect/vitest"
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js"
import { Server } from "@modelcontextprotocol/sdk/server/index.js"
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import { safeParse } from "@modelcontextprotocol/sdk/server/zod-compat.js"
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js"
import {
  CallToolRequestSchema,
  CallToolResultSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  type Tool
} from "@modelcontextprotocol/sdk/types.js"
import fc from "fast-check"
import * as z from "zod/v4"
import {
  callTool,
  callToolResultSchema,
  decodeCallToolResult,
  InvalidCallToolResult
} from "../../src/internal/callToolResult.ts"
import { rejection } from "../utils/rejection.ts"

// ---------------------------------------------------------------------------------------------------------
// Differential: the SDK's zod schema and the decoder agree on accept / reject
// ---------------------------------------------------------------------------------------------------------

class Instance {
  readonly field = 1
}
const symbolKeyed = { [Symbol("s")]: 1 }
const hiddenSymbol = Object.defineProperty({ a: 1 }, Symbol("hidden"), { value: 1, enumerable: false })

/** Values that break (or, for some fields, happen to satisfy) each rule: mixed into every field below. */
const nasty = fc.constantFrom<unknown>(
  undefined,
  null,
  0,
  -1,
  0.5,
  1.5,
  -0,
  Number.NaN,
  Infinity,
  -Infinity,
  2 ** 53,
  -(2 ** 53),
  2 ** 53 - 1,
  10n,
  "",
  "x",
  "user",
  "assistant",
  "light",
  "text",
  "image",
  "resource",
  "AAAA",
  "A===",
  "2024-01-01T00:00:00Z",
  true,
  false,
  [],
  ["user"],
  [{}],
  {},
  Object.create(null),
  new Map(),
  new Date(0),
  new Instance(),
  symbolKeyed,
  hiddenSymbol,
  { constructor: 1 },
  { taskId: "t" }
)

/** Mostly `valid`, sometimes a nasty value. */
const maybe = (valid: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> =>
  fc.oneof({ arbitrary: valid, weight: 14 }, { arbitrary: nasty, weight: 1 })

const str = maybe(fc.string({ maxLength: 6 }))
const base64ish = fc.oneof(
  fc.base64String({ maxLength: 12 }),
  fc.stringMatching(/^[A-Za-z0-9+/= \t\n\r\f\v\u00a0_-]{0,9}$/),
  fc.string({ maxLength: 6 })
)
const datetime = fc.oneof(
  fc.date({ noInvalidDate: true }).map((date) => date.toISOString()),
  fc.stringMatching(
    /^\d{4}-(0\d|1[0-3])-[0-3]\d[T ][0-2]\d:[0-6]\d(:[0-6]\d(\.\d{0,4})?)?(Z|z|[+-][0-2]\d:?[0-6]\d)?$/
  ),
  fc.string({ maxLength: 8 })
)
const jsonish = fc.jsonValue({ maxDepth: 2 })
const dictionary = fc.dictionary(fc.string({ maxLength: 4 }), jsonish, { maxKeys: 3 })
const record = maybe(dictionary)

const annotations = maybe(fc.record({
  audience: maybe(fc.array(maybe(fc.constantFrom("user", "assistant")), { maxLength: 3 })),
  priority: maybe(fc.oneof(fc.double({ min: 0, max: 1 }), fc.double())),
  lastModified: maybe(datetime),
  extra: jsonish
}, { requiredKeys: [] }))

const textBlock = fc.record({
  type: fc.constant("text"),
  text: str,
  annotations,
  _meta: record,
  extra: jsonish
}, { requiredKeys: ["type", "text"] })
const mediaBlock = fc.record({
  type: fc.constantFrom("image", "audio"),
  data: maybe(base64ish),
  mimeType: str,
  annotations,
  _meta: record
}, { requiredKeys: ["type", "data", "mimeType"] })
const icon = maybe(fc.record({
  src: str,
  mimeType: str,
  sizes: maybe(fc.array(str, { maxLength: 2 })),
  theme: maybe(fc.constantFrom("light", "dark")),
  extra: jsonish
}, { requiredKeys: ["src"] }))
const linkBlock = fc.record({
  type: fc.constant("resource_link"),
  name: str,
  title: str,
  icons: maybe(fc.array(icon, { maxLength: 2 })),
  uri: str,
  description: str,
  mimeType: str,
  size: maybe(fc.oneof(fc.integer(), fc.double())),
  annotations,
  _meta: maybe(fc.oneof(dictionary, fc.constant(new Instance()), fc.constant(new Map()))),
  extra: jsonish
}, { requiredKeys: ["type", "name", "uri"] })
const resourceContents = maybe(fc.record({
  uri: str,
  mimeType: str,
  _meta: record,
  text: str,
  blob: maybe(base64ish),
  extra: jsonish
}, { requiredKeys: ["uri"] }))
const embeddedBlock = fc.record({
  type: fc.constant("resource"),
  resource: resourceContents,
  annotations,
  _meta: record
}, { requiredKeys: ["type", "resource"] })
const otherBlock = fc.record({ type: fc.oneof(fc.string({ maxLength: 6 }), nasty), text: str })
const block = maybe(fc.oneof(textBlock, mediaBlock, linkBlock, embeddedBlock, otherBlock))

const resultMeta = maybe(fc.record({
  progressToken: maybe(fc.oneof(fc.string({ maxLength: 4 }), fc.integer(), fc.double(), fc.constant(2 ** 53))),
  "io.modelcontextprotocol/related-task": maybe(fc.record({ taskId: str, extra: jsonish }, { requiredKeys: [] })),
  extra: jsonish
}, { requiredKeys: [] }))

const result = maybe(fc.record({
  content: maybe(fc.array(block, { maxLength: 4 })),
  structuredContent: maybe(fc.oneof(dictionary, fc.constant(hiddenSymbol), fc.constant(symbolKeyed))),
  isError: maybe(fc.boolean()),
  _meta: resultMeta,
  toolResult: jsonish,
  extra: jsonish
}, { requiredKeys: [] }))

const sameValue = (a: unknown, b: unknown): boolean => Object.is(a, b) || (a === 0 && b === 0)

/** Every field zod kept is in the decoder's answer with the same value (the decoder keeps more, never less). */
const covers = (ours: unknown, theirs: unknown, path = "result"): string | undefined => {
  if (typeof theirs !== "object" || theirs === null) {
    return sameValue(ours, theirs) ? undefined : `${path}: ${String(ours)} vs ${String(theirs)}`
  }
  if (typeof ours !== "object" || ours === null) return `${path}: not an object`
  for (const key of Object.keys(theirs)) {
    const problem = covers(
      (ours as Record<string, unknown>)[key],
      (theirs as Record<string, unknown>)[key],
      `${path}.${key}`
    )
    if (problem !== undefined) return problem
  }
  return undefined
}

const agree = (value: unknown): void => {
  const sdk = CallToolResultSchema.safeParse(value)
  const ours = decodeCallToolResult(value)
  if (sdk.success !== (typeof ours !== "string")) {
    assert.fail(
      `disagree on ${safeShow(value)}: SDK ${sdk.success ? "accepts" : `rejects (${sdk.error.message})`}, ` +
        `decoder ${typeof ours === "string" ? `rejects (${ours})` : "accepts"}`
    )
  }
  if (typeof ours === "string" || !sdk.success) return
  const record = value as Record<string, unknown>
  if (record.content === undefined) {
    assert.deepStrictEqual(ours.content, [])
  } else {
    assert.strictEqual(ours, value, "a valid result is returned as is")
  }
  const missing = covers(ours, sdk.data)
  if (missing !== undefined) assert.fail(`the decoder's result lacks what zod kept: ${missing}`)
}

const safeShow = (value: unknown): string => {
  try {
    return JSON.stringify(value, (_, v) => typeof v === "bigint" ? `${v}n` : v instanceof Map ? "<Map>" : v)
  } catch {
    return String(value)
  }
}

describe("decodeCallToolResult", () => {
  it("agrees with the SDK's CallToolResultSchema on generated results", () => {
    let accepted = 0
    let rejected = 0
    fc.assert(
      fc.property(result, (value) => {
        agree(value)
        if (CallToolResultSchema.safeParse(value).success) accepted++
        else rejected++
      }),
      { numRuns: 10_000 }
    )
    // Both verdicts are well exercised.
    assert.isAbove(accepted, 1_000)
    assert.isAbove(rejected, 1_000)
  })

  it("agrees with the SDK on generated single content blocks (one broken field at a time, mostly)", () => {
    fc.assert(
      fc.property(fc.oneof(textBlock, mediaBlock, linkBlock, embeddedBlock, otherBlock), (value) => {
        agree({ content: [value] })
      }),
      { numRuns: 10_000 }
    )
  })

  it("agrees with the SDK on arbitrary values, as a result and as a content block", () => {
    fc.assert(
      fc.property(fc.anything({ maxDepth: 3, withMap: true, withSet: true, withNullPrototype: true }), (value) => {
        agree(value)
        agree({ content: [value] })
        agree({ content: [{ type: "resource", resource: value }] })
        agree({ structuredContent: value })
      }),
      { numRuns: 5_000 }
    )
  })

  it("agrees with the SDK (its Base64Schema is atob) on base64 strings", () => {
    const alphabet = fc.constantFrom(..."AZaz09+/=  \t\n\r\f\v\u00a0-_.".split(""))
    // Around the length (64) where the decoder hands over to `atob`.
    const longBase64 = fc.tuple(
      fc.base64String({ minLength: 56, maxLength: 72 }),
      fc.nat(80),
      fc.string({ unit: alphabet, maxLength: 3 })
    )
      .map(([text, at, insert]) => text.slice(0, at) + insert + text.slice(at))
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: alphabet, maxLength: 10 }), base64ish, longBase64), (data) => {
        agree({ content: [{ type: "image", data, mimeType: "image/png" }] })
        agree({ content: [{ type: "resource", resource: { uri: "u", blob: data } }] })
      }),
      { numRuns: 20_000 }
    )
  })

  it("agrees with the SDK (zod's ISO datetime) on lastModified", () => {
    fc.assert(
      fc.property(datetime, (lastModified) => {
        agree({ content: [{ type: "text", text: "", annotations: { lastModified } }] })
      }),
      { numRuns: 10_000 }
    )
  })

  it("returns a valid result itself, passes unknown fields through, defaults content", () => {
    const valid: unknown = {
      content: [
        { type: "text", text: "hi", annotations: { audience: ["user"], priority: 0.5 }, extra: 1 },
        { type: "image", data: "iVBORw0KGgo=", mimeType: "image/png" },
        { type: "resource_link", uri: "file:///a", name: "a", icons: [{ src: "x", theme: "dark" }] },
        { type: "resource", resource: { uri: "file:///b", blob: "AAAA" } }
      ],
      structuredContent: { n: 1 },
      isError: false,
      _meta: { progressToken: 3 },
      vendor: "kept"
    }
    assert.strictEqual(decodeCallToolResult(valid), valid)
    // The pre-2024-11 `toolResult` shape: what `client.callTool` makes of it with its default schema.
    assert.deepStrictEqual(decodeCallToolResult({ toolResult: { x: 1 } }), { toolResult: { x: 1 }, content: [] })
    assert.deepStrictEqual(CallToolResultSchema.parse({ toolResult: { x: 1 } }), { content: [], toolResult: { x: 1 } })
  })

  it("says what is wrong, and where", () => {
    const content = [{ type: "text", text: "a" }, { type: "text", text: "b" }, { type: "video" }]
    assert.strictEqual(
      decodeCallToolResult({ content }),
      `content[2].type: expected one of "text", "image", "audio", "resource", "resource_link", got "video"`
    )
    assert.strictEqual(decodeCallToolResult({ content: "oops" }), `content: expected an array, got "oops"`)
    assert.strictEqual(decodeCallToolResult([]), "expected a result object, got an array")
    assert.strictEqual(
      decodeCallToolResult({ content: [{ type: "image", data: "a=b", mimeType: "x" }] }),
      `content[0].data: expected a base64 string, got "a=b"`
    )
    assert.strictEqual(
      decodeCallToolResult({ _meta: { "io.modelcontextprotocol/related-task": {} } }),
      `_meta["io.modelcontextprotocol/related-task"].taskId: expected a string, got undefined`
    )
    assert.strictEqual(
      decodeCallToolResult({ content: [{ type: "text", text: "", annotations: { audience: ["bot"] } }] }),
      `content[0].annotations.audience[0]: expected one of "user", "assistant", got "bot"`
    )
  })

  it("is what the SDK's safeParse (zod-compat) dispatches to", () => {
    const value = { content: [] }
    const parsed = safeParse(callToolResultSchema as never, value) as { success: boolean; data?: unknown }
    assert.isTrue(parsed.success)
    assert.strictEqual(parsed.data, value)
    const broken = safeParse(callToolResultSchema as never, { content: 1 }) as { success: boolean; error?: unknown }
    assert.isFalse(broken.success)
    assert.instanceOf(broken.error, InvalidCallToolResult)
  })
})

// ---------------------------------------------------------------------------------------------------------
// Integration: callTool against real in-memory servers
// ---------------------------------------------------------------------------------------------------------

const connect = async (server: { connect: (transport: InMemoryTransport) => Promise<void> }) => {
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair()
  await server.connect(serverTransport)
  const client = new Client({ name: "test", version: "1.0.0" })
  await client.connect(clientTransport)
  return client
}

/** A low-level SDK `Server` that lists `tools` and answers every call with `answer(name)`. */
const lowLevelServer = (tools: ReadonlyArray<Tool>, answer: (name: string) => Record<string, unknown>) => {
  const server = new Server({ name: "raw", version: "1.0.0" }, { capabilities: { tools: {} } })
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [...tools] }))
  server.setRequestHandler(CallToolRequestSchema, (request) => answer(request.params.name) as never)
  return server
}

/**
 * A server below the SDK: JSON-RPC by hand over the in-memory transport, so that what it answers to
 * `tools/call` reaches the client unchecked (an SDK `Server` validates its own tools/call results).
 */
const wireServer = (answer: unknown) => ({
  connect: async (transport: InMemoryTransport) => {
    transport.onmessage = (message: JSONRPCMessage) => {
      if (!("id" in message) || !("method" in message)) return
      const result = message.method === "initialize"
        ? {
          protocolVersion: "2025-11-25",
          capabilities: { tools: {} },
          serverInfo: { name: "wire", version: "1.0.0" }
        }
        : message.method === "tools/call"
        ? answer
        : {}
      void transport.send({ jsonrpc: "2.0", id: message.id, result } as JSONRPCMessage)
    }
    await transport.start()
  }
})

describe("callTool", () => {
  it("returns what client.callTool returns", async () => {
    const server = new McpServer({ name: "echo", version: "1.0.0" })
    server.registerTool(
      "echo",
      { inputSchema: { text: z.string() } },
      ({ text }) => ({ content: [{ type: "text", text }], structuredContent: { text } })
    )
    const client = await connect(server)
    const params = { name: "echo", arguments: { text: "hello" } }
    assert.deepStrictEqual(await callTool(client, params), await client.callTool(params))
    await client.close()
  })

  it("rejects a result that breaks the protocol's shape with an McpError the pool maps (InvalidParams)", async () => {
    const client = await connect(wireServer({ content: "oops" }))
    const ours = await rejection(callTool(client, { name: "any" }))
    assert.instanceOf(ours, InvalidCallToolResult)
    assert.instanceOf(ours, McpError)
    assert.strictEqual((ours as McpError).code, ErrorCode.InvalidParams)
    assert.strictEqual(
      (ours as McpError).message,
      `MCP error -32602: Invalid tools/call result: content: expected an array, got "oops"`
    )
    assert.deepStrictEqual((ours as McpError).data, { problem: `content: expected an array, got "oops"` })
    // The SDK's own callTool rejects the same result too, with the bare zod error (not an McpError).
    const sdk = await rejection(client.callTool({ name: "any" }))
    assert.instanceOf(sdk, z.core.$ZodError)
    assert.notInstanceOf(sdk, McpError)
    // The session still works.
    await client.ping()
    await client.close()
  })

  it("gets the SDK server's own InvalidParams error when a low-level Server returns { content: \"oops\" }", async () => {
    const client = await connect(lowLevelServer([], () => ({ content: "oops" })))
    const ours = await rejection(callTool(client, { name: "any" }))
    const sdk = await rejection(client.callTool({ name: "any" }))
    for (const error of [ours, sdk]) {
      assert.instanceOf(error, McpError)
      assert.strictEqual((error as McpError).code, ErrorCode.InvalidParams)
      assert.include((error as McpError).message, "Invalid tools/call result")
    }
    await client.close()
  })

  it("still checks structuredContent against the tool's declared outputSchema", async () => {
    const tools: Array<Tool> = [{
      name: "total",
      inputSchema: { type: "object" },
      outputSchema: { type: "object", properties: { total: { type: "number" } }, required: ["total"] }
    }, {
      name: "unstructured",
      inputSchema: { type: "object" },
      outputSchema: { type: "object" }
    }, {
      name: "failing",
      inputSchema: { type: "object" },
      outputSchema: { type: "object" }
    }]
    const client = await connect(lowLevelServer(tools, (name) =>
      name === "total"
        ? { content: [], structuredContent: { total: "many" } }
        : name === "failing"
        ? { content: [{ type: "text", text: "failed" }], isError: true }
        : { content: [] }))
    // Before listTools the SDK has no validator, so nothing is checked (the SDK's own behaviour).
    assert.deepStrictEqual(await callTool(client, { name: "total" }), {
      content: [],
      structuredContent: { total: "many" }
    })
    await client.listTools()
    for (const call of [callTool(client, { name: "total" }), client.callTool({ name: "total" })]) {
      const error = await rejection(call)
      assert.instanceOf(error, McpError)
      assert.notInstanceOf(error, InvalidCallToolResult)
      assert.strictEqual((error as McpError).code, ErrorCode.InvalidParams)
      assert.include((error as McpError).message, "Structured content does not match the tool's output schema")
    }
    const unstructured = await rejection(callTool(client, { name: "unstructured" }))
    assert.strictEqual((unstructured as McpError).code, ErrorCode.InvalidRequest)
    assert.include((unstructured as McpError).message, "did not return structured content")
    assert.deepStrictEqual(await callTool(client, { name: "failing" }), {
      content: [{ type: "text", text: "failed" }],
      isError: true
    })
    await client.close()
  })

  it("still refuses tools that require task-based execution", async () => {
    const tools: Array<Tool> = [{
      name: "slow",
      inputSchema: { type: "object" },
      execution: { taskSupport: "required" }
    }]
    const client = await connect(lowLevelServer(tools, () => ({ content: [] })))
    await client.listTools()
    const error = await rejection(callTool(client, { name: "slow" }))
    assert.instanceOf(error, McpError)
    assert.strictEqual((error as McpError).code, ErrorCode.InvalidRequest)
    assert.include((error as McpError).message, "requires task-based execution")
    await client.close()
  })

  it("passes the request options through (abort)", async () => {
    const client = await connect(wireServer({ content: [] }))
    const controller = new AbortController()
    controller.abort(new Error("stop"))
    const error = await rejection(callTool(client, { name: "any" }, { signal: controller.signal }))
    assert.strictEqual((error as Error).message, "stop")
    await client.close()
  })
})
