/**
 * `npm run example:agent`: an Effect agent loop (`effect/ai` `Chat` + `LanguageModel`) whose tools come from
 * the bundled stateful notebook server through `McpToolkit`. Two chat threads talk to the agent at the same
 * time; each thread's tool calls reach that thread's own server process, so each keeps its own notes across
 * turns. One recall fails on purpose: the tool's `isError` result reaches the model as a tool error.
 *
 * By default the model is scripted (no network, no API key): it reads the conversation and answers from a
 * tiny script, calling tools exactly as a real model would. With `OPENAI_API_KEY` set, the same agent runs
 * against a real model through any OpenAI-compatible Chat Completions endpoint:
 *
 *   OPENAI_API_KEY=sk-... npm run example:agent
 *   OPENAI_API_KEY=... OPENAI_BASE_URL=http://127.0.0.1:11434/v1 OPENAI_MODEL=qwen3 npm run example:agent
 *
 * (`OPENAI_MODEL` defaults to gpt-4o-mini, `OPENAI_BASE_URL` to https://api.openai.com/v1.)
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect, Layer, Redacted, Stream } from "effect"
import { AiError, Chat, LanguageModel, Prompt, type Response, Tool, type Toolkit } from "effect/ai"
import { fileURLToPath } from "node:url"
import { McpScope, McpServerConfig, McpSessionPool } from "../src/index.ts"
import * as McpToolkit from "../src/McpToolkit.ts"

// =============================================================================
// A scripted language model
// =============================================================================

/**
 * One model step: given the conversation so far and the names of the tools on offer, the response parts
 * (text, tool calls, finish) a provider would return.
 */
export type Script = (prompt: Prompt.Prompt, tools: ReadonlyArray<string>) => Array<Response.PartEncoded>

/** Both models here implement `generateText` only: the agent loop does not stream. */
const streamingUnsupported = (module: string) =>
  Stream.fail(AiError.make({
    module,
    method: "streamText",
    reason: new AiError.InvalidRequestError({ description: "this example model implements generateText only" })
  }))

/** A `LanguageModel` that plays a script: deterministic, offline, and driving real tool calls. */
export const scriptedModel = (script: Script): Layer.Layer<LanguageModel.LanguageModel> =>
  Layer.effect(
    LanguageModel.LanguageModel,
    LanguageModel.make({
      generateText: (options) => Effect.sync(() => script(options.prompt, options.tools.map((tool) => tool.name))),
      streamText: () => streamingUnsupported("ScriptedModel")
    })
  )

let nextCallId = 0
export const toolCall = (name: string, params: Record<string, unknown>): Response.PartEncoded => ({
  type: "tool-call",
  id: `call_${++nextCallId}`,
  name,
  params
})
export const say = (text: string): Response.PartEncoded => ({ type: "text", text })
export const finish = (reason: "stop" | "tool-calls"): Response.PartEncoded => ({
  type: "finish",
  reason,
  usage: { inputTokens: {}, outputTokens: {} }
})

/** What a failed tool result says: the tool's own text for `McpToolError`, else the error's fields. */
const failureText = (result: unknown): string => {
  if (typeof result === "object" && result !== null) {
    const fields = result as Record<string, unknown>
    for (const key of ["text", "reason", "description", "message"]) {
      if (typeof fields[key] === "string") return fields[key]
    }
  }
  return JSON.stringify(result)
}

const lastText = (message: Prompt.Message | undefined): string => {
  if (message === undefined || message.role === "system") return message?.content ?? ""
  return message.content.flatMap((part) => part.type === "text" ? [part.text] : []).join("\n")
}

/**
 * The notebook agent's script. "remember: KEY = TEXT" writes a note, "what is my KEY?" reads it; after the
 * tools answer, the model reports what they said (or that they failed).
 */
export const notebookScript: Script = (prompt, tools) => {
  const tool = (suffix: string) => tools.find((name) => name.endsWith(suffix)) ?? suffix
  const last = prompt.content.at(-1)
  if (last?.role === "tool") {
    const lines = last.content.flatMap((part) =>
      part.type !== "tool-result"
        ? []
        : part.isFailure
        ? [`Sorry, that did not work: ${failureText(part.result)}`]
        : [Prompt.toolModelOutputToText(part.modelOutput ?? [])]
    )
    return [say(lines.join("\n")), finish("stop")]
  }
  const text = lastText(last)
  const remember = /remember:\s*(.+?)\s*=\s*(.+)/i.exec(text)
  if (remember !== null) {
    return [toolCall(tool("note_write"), { key: remember[1], text: remember[2] }), finish("tool-calls")]
  }
  const recall = /what is my (.+?)\?/i.exec(text)
  if (recall !== null) return [toolCall(tool("note_read"), { key: recall[1] }), finish("tool-calls")]
  return [say(`I can remember things ("remember: key = text") and recall them ("what is my key?").`), finish("stop")]
}

// =============================================================================
// A real model: any OpenAI-compatible Chat Completions endpoint (used when OPENAI_API_KEY is set)
// =============================================================================

interface ChatCompletion {
  readonly choices: ReadonlyArray<{
    readonly finish_reason: string | null
    readonly message: {
      readonly content?: string | null
      readonly tool_calls?: ReadonlyArray<{
        readonly id: string
        readonly function: { readonly name: string; readonly arguments: string }
      }>
    }
  }>
  readonly usage?: { readonly prompt_tokens?: number; readonly completion_tokens?: number }
}

const toChatMessages = (message: Prompt.Message): Array<Record<string, unknown>> => {
  switch (message.role) {
    case "system":
      return [{ role: "system", content: message.content }]
    case "user":
      return [{ role: "user", content: lastText(message) }]
    case "assistant": {
      const calls = message.content.flatMap((part) =>
        part.type === "tool-call" && !part.providerExecuted
          ? [{ id: part.id, type: "function", function: { name: part.name, arguments: JSON.stringify(part.params) } }]
          : []
      )
      return [{
        role: "assistant",
        content: lastText(message) || null,
        ...(calls.length > 0 ? { tool_calls: calls } : {})
      }]
    }
    case "tool":
      return message.content.flatMap((part) =>
        part.type === "tool-result"
          ? [{
            role: "tool",
            tool_call_id: part.id,
            content: part.modelOutput === undefined
              ? JSON.stringify(part.result)
              : Prompt.toolModelOutputToText(part.modelOutput)
          }]
          : []
      )
  }
}

const finishReasons: Record<string, "stop" | "length" | "tool-calls" | "content-filter"> = {
  stop: "stop",
  length: "length",
  tool_calls: "tool-calls",
  content_filter: "content-filter"
}

const fromChatCompletion = (completion: ChatCompletion): Array<Response.PartEncoded> => {
  const choice = completion.choices[0]
  if (choice === undefined) return [finish("stop")]
  const parts: Array<Response.PartEncoded> = []
  if (typeof choice.message.content === "string" && choice.message.content.length > 0) {
    parts.push(say(choice.message.content))
  }
  for (const call of choice.message.tool_calls ?? []) {
    parts.push({
      type: "tool-call",
      id: call.id,
      name: call.function.name,
      params: JSON.parse(call.function.arguments)
    })
  }
  parts.push({
    type: "finish",
    reason: finishReasons[choice.finish_reason ?? ""] ?? "other",
    usage: {
      inputTokens: { total: completion.usage?.prompt_tokens },
      outputTokens: { total: completion.usage?.completion_tokens }
    }
  })
  return parts
}

export const openAiCompatibleModel = (options: {
  readonly apiKey: Redacted.Redacted<string>
  readonly baseUrl: string
  readonly model: string
}): Layer.Layer<LanguageModel.LanguageModel> =>
  Layer.effect(
    LanguageModel.LanguageModel,
    LanguageModel.make({
      generateText: (request) =>
        Effect.tryPromise({
          try: async (signal) => {
            const response = await fetch(`${options.baseUrl}/chat/completions`, {
              method: "POST",
              signal,
              headers: {
                "content-type": "application/json",
                authorization: `Bearer ${Redacted.value(options.apiKey)}`
              },
              body: JSON.stringify({
                model: options.model,
                messages: request.prompt.content.flatMap(toChatMessages),
                ...(request.tools.length === 0 ? {} : {
                  tools: request.tools.map((tool) => ({
                    type: "function",
                    function: {
                      name: tool.name,
                      description: Tool.getDescription(tool),
                      parameters: Tool.getJsonSchema(tool)
                    }
                  }))
                })
              })
            })
            if (!response.ok) throw new Error(`HTTP ${response.status}: ${(await response.text()).slice(0, 500)}`)
            return fromChatCompletion(await response.json() as ChatCompletion)
          },
          catch: (cause) =>
            AiError.make({
              module: "OpenAiCompatible",
              method: "generateText",
              reason: new AiError.UnknownError({ description: cause instanceof Error ? cause.message : String(cause) })
            })
        }),
      streamText: () => streamingUnsupported("OpenAiCompatible")
    })
  )

// =============================================================================
// The agent
// =============================================================================

const MAX_STEPS = 8

/**
 * One conversation turn: ask the model; while it asks for tools (the toolkit runs them and the results join
 * the history), ask again. The toolkit is resolved per step, so tool list changes are picked up mid-turn.
 */
export const runTurn = (
  chat: Chat.Chat,
  toolkit: Effect.Effect<Toolkit.WithHandler<McpToolkit.Tools>, never, McpScope.McpScope>,
  text: string
) =>
  Effect.gen(function*() {
    const toolsUsed: Array<string> = []
    let response = yield* chat.generateText({ prompt: text, toolkit })
    for (let step = 1;; step++) {
      for (const result of response.toolResults) {
        toolsUsed.push(`${result.name} ${result.isFailure ? "failed" : "ok"}`)
      }
      if (response.finishReason !== "tool-calls" || step === MAX_STEPS) break
      // The tool results are already in the chat's history: an empty prompt asks the model to go on.
      response = yield* chat.generateText({ prompt: Prompt.empty, toolkit })
    }
    return { reply: response.text, toolsUsed }
  })

const SYSTEM = "You are a helpful assistant with a notebook that belongs to this conversation. " +
  "Use the notebook tools to remember facts and to look them up; answer briefly."

const agent = Effect.gen(function*() {
  const pool = yield* McpSessionPool.McpSessionPool
  // Tools are listed through the first thread's session (no extra process) and named notebook_*. A server
  // whose tools already carry a prefix opts out with `prefix: ""`: Playwright MCP's are named browser_*, so
  // `{ server: "browser", prefix: "" }` offers browser_navigate (its prefix would make browser_browser_navigate).
  const mcp = yield* McpToolkit.make({ servers: ["notebook"], prefixToolNames: true })
  // One chat history per thread; the thread id is also its McpScope.
  const threads = {
    alice: yield* Chat.fromPrompt([{ role: "system", content: SYSTEM }]),
    bob: yield* Chat.fromPrompt([{ role: "system", content: SYSTEM }])
  }

  /** Runs one message per thread concurrently, each under its own McpScope, then prints the exchange. */
  const round = (title: string, messages: ReadonlyArray<readonly [keyof typeof threads, string]>) =>
    Effect.gen(function*() {
      yield* Console.log(`\n${title}`)
      const exchanges = yield* Effect.forEach(
        messages,
        ([thread, text]) =>
          runTurn(threads[thread], mcp.toolkit, text).pipe(
            McpScope.provide(thread),
            Effect.map(({ reply, toolsUsed }) =>
              `  [${thread}] user:  ${text}\n` +
              (toolsUsed.length === 0 ? "" : `  [${thread}] tools: ${toolsUsed.join(", ")}\n`) +
              `  [${thread}] agent: ${reply.replace(/\n/g, " ")}`
            )
          ),
        { concurrency: "unbounded" }
      )
      yield* Console.log(exchanges.join("\n"))
    })

  yield* round("Turn 1: both threads at once", [
    ["alice", "Please remember: favourite colour = blue"],
    ["bob", "Please remember: favourite colour = green"]
  ])
  yield* round("Turn 2: each thread recalls its own note", [
    ["alice", "What is my favourite colour?"],
    ["bob", "What is my favourite colour?"]
  ])
  yield* round("Turn 3: a note bob never wrote (the tool's isError result reaches the model)", [
    ["bob", "What is my pet's name?"]
  ])

  const { tools } = yield* mcp.discover.pipe(McpScope.provide("alice"))
  yield* Console.log(`\nTools offered to the model: ${tools.map((tool) => tool.name).join(", ")}`)
  const sessions = yield* pool.snapshot
  yield* Console.log(
    `Sessions: ${sessions.map((session) => `${session.scope} → pid ${session.pid ?? "?"}`).join(", ")}`
  )
})

const model = (): Layer.Layer<LanguageModel.LanguageModel> => {
  const apiKey = process.env.OPENAI_API_KEY
  if (apiKey === undefined || apiKey === "") {
    console.log("Model: scripted (set OPENAI_API_KEY to use a real one)")
    return scriptedModel(notebookScript)
  }
  const baseUrl = process.env.OPENAI_BASE_URL ?? "https://api.openai.com/v1"
  const name = process.env.OPENAI_MODEL ?? "gpt-4o-mini"
  console.log(`Model: ${name} at ${baseUrl}`)
  return openAiCompatibleModel({ apiKey: Redacted.make(apiKey), baseUrl, model: name })
}

const PoolLive = McpSessionPool.layer({
  servers: {
    notebook: McpServerConfig.stdio({
      command: process.execPath,
      args: [fileURLToPath(new URL("./notebook-server.ts", import.meta.url))]
    })
    // A browser per thread: `browser: McpServerConfig.stdio({ command: "npx", args: ["-y",
    // "@playwright/mcp@0.0.83", "--headless", "--isolated"] })` (see examples/playwright.ts). Without --isolated every process uses one profile on disk: a second
    // concurrent thread fails ("Browser is already in use … use --isolated") and later threads inherit the
    // earlier ones' cookies and localStorage.
  }
})

if (import.meta.main) {
  agent.pipe(Effect.scoped, Effect.provide(Layer.merge(PoolLive, model())), NodeRuntime.runMain)
}
