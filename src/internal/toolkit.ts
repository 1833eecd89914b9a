/**
 * Pure helpers of the toolkit: model-facing tool names and the mapping of MCP tool results to the content
 * `effect/ai` sends to a model. No state, no effects.
 */
import type { ContentBlock, Tool as McpToolDefinition } from "@modelcontextprotocol/sdk/types.js"
import { Prompt } from "effect/ai"

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

export const isRecord = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

export const isContentBlock = (u: unknown): u is ContentBlock => isRecord(u) && typeof u.type === "string"

const blockToParts = (block: ContentBlock): Prompt.ToolModelOutputPart => {
  switch (block.type) {
    case "text":
      return Prompt.textPart({ text: block.text })
    case "image":
    case "audio":
      // MCP carries binary content as base64, which is what a file part's string data means.
      return Prompt.filePart({ mediaType: block.mimeType, data: block.data })
    case "resource_link":
      return Prompt.textPart({
        text: `${block.title ?? block.name}: ${block.uri}${
          block.description === undefined ? "" : `\n${block.description}`
        }`
      })
    case "resource": {
      const resource = block.resource
      if ("text" in resource && typeof resource.text === "string") return Prompt.textPart({ text: resource.text })
      if ("blob" in resource && typeof resource.blob === "string") {
        return Prompt.filePart({
          mediaType: resource.mimeType ?? "application/octet-stream",
          data: resource.blob,
          fileName: resource.uri
        })
      }
      return Prompt.textPart({ text: JSON.stringify(resource) })
    }
    default:
      // A content type newer than this code: show it rather than drop it silently.
      return Prompt.textPart({ text: JSON.stringify(block) })
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
    Prompt.textPart({ text: structuredContent === undefined ? "(no content)" : JSON.stringify(structuredContent) })
  ]
}

/** The text of a result, files replaced by placeholders: what an `isError` result tells the model. */
export const toText = (
  content: ReadonlyArray<ContentBlock>,
  structuredContent: Record<string, unknown> | undefined
): string => Prompt.toolModelOutputToText(toModelOutput(content, structuredContent))
