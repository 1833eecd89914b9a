/**
 * `npm run example:elicitation`: a server asks the thread's user during a tool call, and the answer comes
 * from that thread's user, never another's.
 *
 * The agent loop of examples/agent.ts (effect/ai `Chat`, a scripted model, tools through `McpToolkit`) runs
 * two threads at once against the bundled notebook server. Each thread asks the agent to clear its
 * notebook; the server's `note_clear` tool asks the client's user to confirm (MCP elicitation). The app's
 * `McpClientHandlers` receives each request with its (server, scope) and puts the question to that thread's
 * user: alice confirms, bob declines. The tool's result (deleted, or "nothing deleted") reaches the model as
 * any tool result does, and the agent tells each user what happened.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import type { ElicitResult } from "@modelcontextprotocol/sdk/types.js"
import { Console, Effect, Layer } from "effect"
import { Chat, Prompt } from "effect/ai"
import { fileURLToPath } from "node:url"
import { McpClientHandlers, McpScope, McpServerConfig, McpSessionPool } from "../src/index.ts"
import * as McpToolkit from "../src/McpToolkit.ts"
import { finish, notebookScript, runTurn, say, type Script, scriptedModel, toolCall } from "./agent.ts"

/** The notebook script, plus "clear my notebook". */
const script: Script = (prompt, tools) => {
  const last = prompt.content.at(-1)
  const text = last?.role === "user"
    ? last.content.flatMap((part) => part.type === "text" ? [part.text] : []).join("\n")
    : ""
  if (/clear my notebook/i.test(text)) {
    return [toolCall(tools.find((name) => name.endsWith("note_clear")) ?? "note_clear", {}), finish("tool-calls")]
  }
  if (last?.role === "tool") {
    const answer = last.content.flatMap((part) =>
      part.type === "tool-result" ? [Prompt.toolModelOutputToText(part.modelOutput ?? [])] : []
    ).join("\n")
    if (/deleted|nothing deleted/.test(answer)) return [say(`The notebook tool says: ${answer}`), finish("stop")]
  }
  return notebookScript(prompt, tools)
}

/** Each thread's user, as the app knows them: how they answer a confirmation. */
const users: Record<string, (question: string) => ElicitResult> = {
  alice: () => ({ action: "accept", content: { confirm: true } }),
  bob: () => ({ action: "decline" })
}

/** The app's answers to servers: the question goes to the user of the thread (scope) that asked. */
const HandlersLive = McpClientHandlers.layer({
  elicit: (request, { scope, server }) =>
    Effect.gen(function*() {
      const answer = users[scope]?.(request.message) ?? { action: "cancel" as const }
      yield* Console.log(`  [${scope}] ${server} asks the user: "${request.message}" → ${answer.action}`)
      return answer
    }),
  timeout: "2 minutes"
})

const notebook = fileURLToPath(new URL("./notebook-server.ts", import.meta.url))

const PoolLive = McpSessionPool.layer({
  servers: { notebook: McpServerConfig.stdio({ command: process.execPath, args: [notebook] }) }
}).pipe(Layer.provide(HandlersLive))

const program = Effect.gen(function*() {
  const mcp = yield* McpToolkit.make({ servers: ["notebook"], prefixToolNames: true })
  const threads = {
    alice: yield* Chat.fromPrompt([{ role: "system", content: "You keep a notebook for this conversation." }]),
    bob: yield* Chat.fromPrompt([{ role: "system", content: "You keep a notebook for this conversation." }])
  }
  const turn = (thread: keyof typeof threads, text: string) =>
    runTurn(threads[thread], mcp.toolkit, text).pipe(
      McpScope.provide(thread),
      Effect.tap(({ reply }) => Console.log(`  [${thread}] user: ${text}\n  [${thread}] agent: ${reply}`))
    )
  yield* Console.log("Each thread writes a note:")
  yield* Effect.all([turn("alice", "remember: colour = blue"), turn("bob", "remember: colour = green")], {
    concurrency: "unbounded"
  })
  yield* Console.log("\nBoth ask the agent to clear their notebook, at the same time:")
  yield* Effect.all([turn("alice", "Please clear my notebook"), turn("bob", "Please clear my notebook")], {
    concurrency: "unbounded"
  })
  yield* Console.log("\nAfterwards:")
  yield* Effect.all([turn("alice", "what is my colour?"), turn("bob", "what is my colour?")], {
    concurrency: "unbounded"
  })
})

if (import.meta.main) {
  program.pipe(
    Effect.scoped,
    Effect.provide(Layer.mergeAll(PoolLive, scriptedModel(script))),
    NodeRuntime.runMain
  )
}
