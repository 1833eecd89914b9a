/**
 * The revision probe's reading of answers (negotiate.ts), on a transport that answers as told: what is
 * 2026-07-28, what is 2025-era evidence, what is neither; and the hand-over of the started transport.
 */
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js"
import { assert, describe, it } from "vitest"
import { probe } from "../../src/internal/negotiate.ts"

/** A transport whose peer answers `server/discover` with `reply` (or nothing, or by closing). */
const answering = (reply: ((id: string | number) => JSONRPCMessage) | "silent" | "close"): Transport & {
  starts: number
} => {
  const self: Transport & { starts: number } = {
    starts: 0,
    start: async () => {
      self.starts++
    },
    send: async (message) => {
      if (!("id" in message) || !("method" in message)) return
      if (reply === "silent") return
      if (reply === "close") return queueMicrotask(() => self.onclose?.())
      queueMicrotask(() => self.onmessage?.(reply(message.id)))
    },
    close: async () => undefined
  }
  return self
}

const run = (transport: Transport, timeoutMillis = 200) =>
  probe(transport, { clientInfo: { name: "t", version: "1" }, timeoutMillis, signal: new AbortController().signal })

const error = (code: number, data?: unknown) => (id: string | number): JSONRPCMessage => ({
  jsonrpc: "2.0",
  id,
  error: { code, message: "no", ...(data === undefined ? {} : { data }) }
})

describe("the revision probe", () => {
  it("reads each kind of answer", async () => {
    const modern = await run(answering((id) => ({
      jsonrpc: "2.0",
      id,
      result: { supportedVersions: ["2026-07-28"], capabilities: {} }
    })))
    assert.strictEqual(modern._tag, "Modern")
    assert.strictEqual((await run(answering(error(-32601))))._tag, "LegacyEvidence")
    assert.strictEqual((await run(answering(error(-32022, { supported: ["2025-11-25"] }))))._tag, "LegacyEvidence")
    // A later revision only is neither; a later one beside a 2025-era one may still take initialize.
    const later = await run(answering(error(-32022, { supported: ["2027-03-01"] })))
    assert.deepStrictEqual(later, { _tag: "OtherModern", supported: ["2027-03-01"] })
    assert.strictEqual(
      (await run(answering(error(-32022, { supported: ["2025-11-25", "2027-03-01"] }))))._tag,
      "LegacyEvidence"
    )
    assert.strictEqual((await run(answering((id) => ({ jsonrpc: "2.0", id, result: {} }))))._tag, "LegacyEvidence")
    assert.strictEqual((await run(answering("silent"), 20))._tag, "Silent")
    assert.strictEqual((await run(answering("close")))._tag, "Closed")
  })

  it("hands the started transport over: the client's start is a no-op once, the handlers detached", async () => {
    const transport = answering(error(-32601))
    await run(transport)
    assert.strictEqual(transport.starts, 1)
    assert.isUndefined(transport.onmessage)
    assert.isUndefined(transport.onclose)
    await transport.start() // the SDK client's connect
    assert.strictEqual(transport.starts, 1)
    await transport.start() // a later start is the transport's own again
    assert.strictEqual(transport.starts, 2)
  })
})
