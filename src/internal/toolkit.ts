/**
 * Pure helpers of the toolkit: model-facing tool names and the mapping of MCP tool results to the content
 * `effect/ai` sends to a model. No state, no effects.
 *
 * Imports nothing of `effect/ai` at run time (its only entry point, the `effect/ai` barrel, loads the whole
 * AI, HTTP and RPC stack): `McpToolkit.make` loads it when a toolkit is built. The model output parts are
 * the plain objects `Prompt.textPart` / `Prompt.filePart` make (test/importCost.test.ts compares them with
 * effect's own), so `toModelOutput` stays synchronous.
 */
import type { ContentBlock, Tool as McpToolDefinition } from "@modelcontextprotocol/sdk/types.js"
import type { Prompt } from "effect/ai"
import { isRecord } from "./configSchema.ts"

/** What providers accept as a function name (OpenAI's rule, the strictest common one). */
const VALID_NAME = /^[a-zA-Z0-9_-]{1,64}$/

/** MCP allows `.` and `/` in tool names; providers do not. Routing uses a map, so rewriting is safe. */
export const modelToolName = (prefix: string, mcpName: string): string | { readonly invalid: string } => {
  const name = `${prefix}${mcpName}`.replace(/[^a-zA-Z0-9_-]/g, "_")
  if (VALID_NAME.test(name)) return name
  return {
    invalid: name.length === 0 ? "the tool name is empty" : `"${name}" is longer than 64 characters`
  }
}

export const isValidPrefix = (prefix: string): boolean => /^[a-zA-Z0-9_-]*$/.test(prefix)

/** Tools that need task-augmented execution (MCP tasks) cannot be called with a plain `tools/call`. */
export const requiresTasks = (tool: McpToolDefinition): boolean => tool.execution?.taskSupport === "required"

export const isContentBlock = (u: unknown): u is ContentBlock => isRecord(u) && typeof u.type === "string"

/** `Prompt.makePart`'s marker: a string key and value, not a symbol, so a copy here is the same part. */
const PartTypeId = "~effect/ai/Prompt/Part"

/** `Prompt.textPart`. */
const textPart = (params: { readonly text: string }): Prompt.TextPart => ({
  ...params,
  [PartTypeId]: PartTypeId,
  type: "text",
  options: {}
})

/** `Prompt.filePart`. */
const filePart = (
  params: { readonly mediaType: string; readonly data: string; readonly fileName?: string }
): Prompt.FilePart => ({ ...params, [PartTypeId]: PartTypeId, type: "file", options: {} })

const blockToParts = (block: ContentBlock): Prompt.ToolModelOutputPart => {
  switch (block.type) {
    case "text":
      return textPart({ text: block.text })
    case "image":
    case "audio":
      // MCP carries binary content as base64, which is what a file part's string data means.
      return filePart({ mediaType: block.mimeType, data: block.data })
    case "resource_link":
      return textPart({
        text: `${block.title ?? block.name}: ${block.uri}${
          block.description === undefined ? "" : `\n${block.description}`
        }`
      })
    case "resource": {
      const resource = block.resource
      if ("text" in resource && typeof resource.text === "string") return textPart({ text: resource.text })
      if ("blob" in resource && typeof resource.blob === "string") {
        return filePart({
          mediaType: resource.mimeType ?? "application/octet-stream",
          data: resource.blob,
          fileName: resource.uri
        })
      }
      return textPart({ text: JSON.stringify(resource) })
    }
    default:
      // A content type newer than this code: show it rather than drop it silently.
      return textPart({ text: JSON.stringify(block) })
  }
}

/**
 * MCP content → model content: text as text, images and audio as files, embedded text resources as text,
 * resource links as a line of text. Structured content is sent as JSON only when there is no content
 * (the MCP spec asks servers to mirror it in a text block, so sending both would repeat it).
 */
export const toModelOutput = (
  content: ReadonlyArray<ContentBlock>,
  structuredContent: Record<string, unknown> | undefined
): Array<Prompt.ToolModelOutputPart> => {
  const parts = content.map(blockToParts)
  if (parts.length > 0) return parts
  // Some providers reject an empty tool result, so say explicitly that there was none.
  return [
    textPart({ text: structuredContent === undefined ? "(no content)" : JSON.stringify(structuredContent) })
  ]
}
