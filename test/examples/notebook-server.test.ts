import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { makeNotebookServer } from "../../examples/notebook-server.ts"

const serverPath = fileURLToPath(new URL("../../examples/notebook-server.ts", import.meta.url))

/** A fresh in-process server (so a fresh notebook) with a connected client. */
const connect = async () => {
  const server = makeNotebookServer({ name: "notebook-test" })
  const client = new Client({ name: "notebook-test-client", version: "0.0.0" })
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair()
  await server.connect(serverTransport)
  await client.connect(clientTransport)
  return {
    client,
    [Symbol.asyncDispose]: async () => {
      await client.close()
      await server.close()
    }
  }
}

/** Concatenated text blocks of a tool result. */
const textOf = (result: object): string => {
  const content = "content" in result ? result.content as ReadonlyArray<{ text?: string }> : []
  return content.map((c) => c.text ?? "").join("")
}

describe("examples/notebook-server (in memory)", () => {
  it("advertises every tool with a description", async () => {
    await using s = await connect()
    const { tools } = await s.client.listTools()
    expect(tools.map((t) => t.name).sort()).toEqual(
      ["cancellations", "counter_increment", "note_clear", "note_list", "note_read", "note_write", "sleep", "whoami"]
    )
    for (const tool of tools) expect(tool.description).toBeTruthy()
    const write = tools.find((t) => t.name === "note_write")
    expect(write?.inputSchema.required).toEqual(["key", "text"])
  })

  it("writes, reads and lists notes; missing notes are tool errors", async () => {
    await using s = await connect()
    const empty = await s.client.callTool({ name: "note_list", arguments: {} })
    expect(empty.structuredContent).toEqual({ keys: [], count: 0 })

    const written = await s.client.callTool({ name: "note_write", arguments: { key: "b", text: "second" } })
    expect(written.isError).toBeFalsy()
    expect(textOf(written)).toContain("b")
    await s.client.callTool({ name: "note_write", arguments: { key: "a", text: "first" } })

    const read = await s.client.callTool({ name: "note_read", arguments: { key: "a" } })
    expect(read.isError).toBeFalsy()
    expect(textOf(read)).toBe("first")

    const missing = await s.client.callTool({ name: "note_read", arguments: { key: "nope" } })
    expect(missing.isError).toBe(true)
    expect(textOf(missing)).toContain("no note named")

    const list = await s.client.callTool({ name: "note_list", arguments: {} })
    expect(list.structuredContent).toEqual({ keys: ["b", "a"], count: 2 })
    expect(textOf(list)).toBe("b\na")
  })

  it("keeps state per server instance", async () => {
    await using one = await connect()
    await using two = await connect()
    await one.client.callTool({ name: "note_write", arguments: { key: "k", text: "v" } })
    const other = await two.client.callTool({ name: "note_read", arguments: { key: "k" } })
    expect(other.isError).toBe(true)
  })

  it("rejects invalid arguments", async () => {
    await using s = await connect()
    const result = await s.client.callTool({ name: "note_write", arguments: { key: "k" } })
    expect(result.isError).toBe(true)
  })

  it("increments the counter", async () => {
    await using s = await connect()
    const first = await s.client.callTool({ name: "counter_increment", arguments: {} })
    expect(first.structuredContent).toEqual({ value: 1 })
    const second = await s.client.callTool({ name: "counter_increment", arguments: { by: 5 } })
    expect(second.structuredContent).toEqual({ value: 6 })
    expect(textOf(second)).toBe("6")
  })

  it("reports its process identity", async () => {
    await using s = await connect()
    const result = await s.client.callTool({ name: "whoami", arguments: {} })
    const who = result.structuredContent as { pid: number; startedAt: string }
    expect(who.pid).toBe(process.pid)
    expect(Number.isNaN(Date.parse(who.startedAt))).toBe(false)
  })

  it("sleeps to completion when not cancelled", async () => {
    await using s = await connect()
    const result = await s.client.callTool({ name: "sleep", arguments: { ms: 10 } })
    expect(result.structuredContent).toEqual({ completed: true })
    const count = await s.client.callTool({ name: "cancellations", arguments: {} })
    expect(count.structuredContent).toEqual({ count: 0 })
  })

  it("reports progress when asked, so a client can tell its sleep has started", async () => {
    await using s = await connect()
    const progress: Array<unknown> = []
    const result = await s.client.callTool({ name: "sleep", arguments: { ms: 10 } }, undefined, {
      onprogress: (notification) => progress.push(notification),
      timeout: 10_000
    })
    expect(result.structuredContent).toEqual({ completed: true })
    expect(progress).toEqual([{ progress: 0, total: 10 }])
  })

  it("counts a sleep aborted by the client (notifications/cancelled reaches the handler)", async () => {
    await using s = await connect()
    const controller = new AbortController()
    const pending = s.client.callTool({ name: "sleep", arguments: { ms: 60_000 } }, undefined, {
      signal: controller.signal,
      // Abort once the server says the sleep has started: the request is in flight in its handler.
      onprogress: () => controller.abort("test abort"),
      // Without that progress the call fails by this bound, with a timeout rather than the abort asserted below.
      timeout: 10_000
    })
    await expect(pending).rejects.toThrow("test abort")
    // The handler counts the cancellation a few ticks after the notification reaches it: poll its count, bounded.
    await expect.poll(async () => {
      const result = await s.client.callTool({ name: "cancellations", arguments: {} })
      return result.structuredContent
    }, { timeout: 5_000, interval: 25 }).toEqual({ count: 1 })
  })

  it("serves the notebook://keys resource", async () => {
    await using s = await connect()
    const { resources } = await s.client.listResources()
    expect(resources.map((r) => r.uri)).toContain("notebook://keys")
    await s.client.callTool({ name: "note_write", arguments: { key: "x", text: "1" } })
    await s.client.callTool({ name: "note_write", arguments: { key: "y", text: "2" } })
    const { contents } = await s.client.readResource({ uri: "notebook://keys" })
    expect(contents).toEqual([{ uri: "notebook://keys", mimeType: "text/plain", text: "x\ny" }])
  })

  it("renders the summarize prompt with its style argument", async () => {
    await using s = await connect()
    const { prompts } = await s.client.listPrompts()
    const summarize = prompts.find((p) => p.name === "summarize")
    expect(summarize?.arguments).toEqual([expect.objectContaining({ name: "style", required: true })])
    await s.client.callTool({ name: "note_write", arguments: { key: "groceries", text: "eggs, milk" } })
    const prompt = await s.client.getPrompt({ name: "summarize", arguments: { style: "one sentence" } })
    expect(prompt.messages).toHaveLength(1)
    const message = prompt.messages[0]!
    expect(message.role).toBe("user")
    expect(message.content).toMatchObject({ type: "text" })
    const body = (message.content as { text: string }).text
    expect(body).toContain("one sentence")
    expect(body).toContain("groceries")
    expect(body).toContain("eggs, milk")
  })
})

describe("examples/notebook-server (stdio)", () => {
  it("runs as a separate process over stdio", async () => {
    const transport = new StdioClientTransport({ command: process.execPath, args: [serverPath], stderr: "pipe" })
    const client = new Client({ name: "notebook-stdio-test", version: "0.0.0" })
    // Bounded, so that a server that does not start fails with a timeout well before the test's own.
    const bounded = { timeout: 10_000 }
    await client.connect(transport, bounded)
    try {
      const one = await client.callTool({ name: "counter_increment", arguments: {} }, undefined, bounded)
      expect(one.structuredContent).toEqual({ value: 1 })
      const two = await client.callTool({ name: "counter_increment", arguments: {} }, undefined, bounded)
      expect(two.structuredContent).toEqual({ value: 2 })
      const who = await client.callTool({ name: "whoami", arguments: {} }, undefined, bounded)
      const { pid } = who.structuredContent as { pid: unknown }
      expect(typeof pid).toBe("number")
      expect(pid).not.toBe(process.pid)
    } finally {
      await client.close()
    }
  })
})
