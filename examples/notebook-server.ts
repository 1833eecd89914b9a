/**
 * A small *stateful* MCP server: a notebook of named notes plus a counter.
 *
 * The state lives in this server instance, i.e. in the server process. Over stdio one
 * process serves exactly one client session, so every session (every pooled thread)
 * gets its own notebook, and losing the process loses the notes. That is why a client
 * must keep a session alive — and reuse it — to see its earlier writes.
 *
 * Run directly (`node examples/notebook-server.ts`) it serves over stdio.
 * Tests import `makeNotebookServer` and connect over an in-memory transport instead.
 */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js"
import { setTimeout as sleep } from "node:timers/promises"
import * as z from "zod/v4"

// Process-wide identity: the demo uses it to show one process per thread.
const startedAt = new Date().toISOString()

const text = (value: string) => ({ content: [{ type: "text" as const, text: value }] })

export const makeNotebookServer = (options?: { readonly name?: string }): McpServer => {
  // Per-instance state: a fresh notebook for every server (= every session).
  const notes = new Map<string, string>()
  let counter = 0
  let cancellations = 0

  const server = new McpServer({ name: options?.name ?? "notebook", version: "0.1.0" })

  server.registerTool("note_write", {
    description: "Store `text` under `key` in this session's notebook, replacing any previous note with that key.",
    inputSchema: { key: z.string().min(1).describe("Note name"), text: z.string().describe("Note contents") }
  }, ({ key, text: body }) => {
    notes.set(key, body)
    return { ...text(`saved note "${key}" (${body.length} chars)`), structuredContent: { key, size: notes.size } }
  })

  server.registerTool("note_read", {
    description: "Return the text of the note named `key`, or an error result if this session has no such note.",
    inputSchema: { key: z.string().describe("Note name") }
  }, ({ key }) => {
    const body = notes.get(key)
    // A missing note is a tool-level error (isError), not a protocol error: the model should see it.
    return body === undefined ? { ...text(`no note named "${key}"`), isError: true } : text(body)
  })

  server.registerTool("note_list", {
    description: "List the keys of this session's notes, in insertion order, with a count."
  }, () => {
    const keys = [...notes.keys()]
    return {
      ...text(keys.length === 0 ? "(no notes)" : keys.join("\n")),
      structuredContent: { keys, count: keys.length }
    }
  })

  server.registerTool("note_clear", {
    description: "Delete every note in this session's notebook, once the user confirms (the server asks the " +
      "client's user through elicitation; a client that cannot ask gets an error result and nothing is deleted)."
  }, async () => {
    if (server.server.getClientCapabilities()?.elicitation === undefined) {
      return { ...text("cannot clear the notebook: this client cannot ask its user to confirm"), isError: true }
    }
    const answer = await server.server.elicitInput({
      mode: "form",
      message: `Delete all ${notes.size} notes (${[...notes.keys()].join(", ") || "none"})?`,
      requestedSchema: {
        type: "object",
        properties: { confirm: { type: "boolean", title: "Delete them", description: "Tick to delete every note" } },
        required: ["confirm"]
      }
    })
    if (answer.action !== "accept" || answer.content?.confirm !== true) {
      return { ...text(`nothing deleted: the user answered "${answer.action}"`), isError: true }
    }
    const count = notes.size
    notes.clear()
    return { ...text(`deleted ${count} notes`), structuredContent: { deleted: count } }
  })

  server.registerTool("counter_increment", {
    description: "Add `by` (default 1) to this server process's counter and return the new value.",
    inputSchema: { by: z.number().int().optional().describe("Amount to add (default 1)") }
  }, ({ by }) => {
    counter += by ?? 1
    return { ...text(String(counter)), structuredContent: { value: counter } }
  })

  server.registerTool(
    "whoami",
    {
      description: "Identify the server process (pid and start time); distinct pids mean distinct processes."
    },
    () => ({ ...text(`pid ${process.pid}, started ${startedAt}`), structuredContent: { pid: process.pid, startedAt } })
  )

  server.registerTool("sleep", {
    description:
      "Wait `ms` milliseconds (at most 60000), reporting progress if asked to. Stops early if the client cancels the request.",
    inputSchema: { ms: z.number().int().min(0).max(60_000).describe("Milliseconds to wait") }
  }, async ({ ms }, extra) => {
    // A client that sent a progress token hears when the wait starts (and can tell the request is being served).
    const progressToken = extra._meta?.progressToken
    if (progressToken !== undefined) {
      await extra.sendNotification({
        method: "notifications/progress",
        params: { progressToken, progress: 0, total: ms }
      })
    }
    // The SDK aborts `extra.signal` when a `notifications/cancelled` arrives for this request.
    // The timers/promises `setTimeout` rejects on abort, even if the signal fired before we got here.
    const completed = await sleep(ms, true, { signal: extra.signal }).catch(() => false)
    if (!completed) cancellations++ // recorded so tests can prove the cancellation reached us
    return { ...text(completed ? `slept ${ms}ms` : "cancelled"), structuredContent: { completed } }
  })

  server.registerTool("cancellations", {
    description: "How many `sleep` calls have been cancelled by the client so far."
  }, () => ({ ...text(String(cancellations)), structuredContent: { count: cancellations } }))

  server.registerResource("keys", "notebook://keys", {
    description: "The keys of this session's notes, one per line.",
    mimeType: "text/plain"
  }, (uri) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: [...notes.keys()].join("\n") }] }))

  server.registerPrompt("summarize", {
    description: "Ask the model to summarize every note in this session's notebook.",
    argsSchema: { style: z.string().describe("How to summarize, e.g. \"bullet points\" or \"one sentence\"") }
  }, ({ style }) => ({
    messages: [{
      role: "user",
      content: {
        type: "text",
        text: `Summarize these notes as ${style}:\n\n${[...notes].map(([k, v]) => `## ${k}\n${v}`).join("\n\n")}`
      }
    }]
  }))

  return server
}

if (import.meta.main) {
  const server = makeNotebookServer()
  await server.connect(new StdioServerTransport())
  // stdout is the protocol channel; diagnostics go to stderr.
  console.error(`notebook MCP server ready (pid ${process.pid})`)
}
