/**
 * A `tools/call` result decoder that accepts exactly what the SDK's zod `CallToolResultSchema` accepts
 * (SDK 1.32.2, protocol revision 2025-11-25) without zod's cost, and a `callTool` that makes the SDK client
 * use it instead of zod while keeping everything else its own `callTool` does.
 *
 * What the SDK schema does, mirrored here (each rule is checked against the zod schema by
 * test/internal/callToolResult.test.ts over generated valid and broken values):
 * - the result is any non-array object (`ResultSchema` is a loose object): unknown fields pass through;
 * - `content` missing (or `undefined`) defaults to `[]`; otherwise an array of content blocks, each one of
 *   `text`, `image`, `audio` (`data` must pass `atob`), `resource_link` (a `Resource` plus `type`) and
 *   `resource` (embedded text or blob contents), with optional `annotations` (`audience` of "user" /
 *   "assistant", finite `priority` in [0, 1], `lastModified` an ISO datetime with offset — zod's own
 *   regex) and optional `_meta` (a plain-object record; on a resource link any non-array object);
 * - `structuredContent` is optional and a plain-object record (no arrays, no `Map`, no symbol keys);
 * - `isError` is an optional boolean; `_meta` an optional object whose `progressToken`, if present, is a
 *   string or a safe integer and whose `io.modelcontextprotocol/related-task`, if present, has a string
 *   `taskId`.
 *
 * The legacy 2024-10-07 shape `{ toolResult }`: `client.callTool` parses with `CallToolResultSchema`, not
 * `CompatibilityCallToolResultSchema`, so such a result is accepted as `{ content: [], toolResult }`
 * (missing `content` defaults, `toolResult` passes through as an unknown field). The decoder does the same,
 * and so never returns the `CompatibilityCallToolResult` arm of the SDK's declared return type.
 *
 * Where the output differs from zod's (never the verdict): zod builds a new object and strips unknown fields
 * of the strict inner objects (content blocks, annotations, resource contents, icons); this decoder
 * returns the value itself, unknown inner fields included — the one copy is `{ ...value, content: [] }`
 * when `content` is missing.
 */
import type { Client } from "@modelcontextprotocol/sdk/client/index.js"
import type { RequestOptions } from "@modelcontextprotocol/sdk/shared/protocol.js"
import {
  type CallToolRequest,
  type CallToolResult,
  type CallToolResultSchema,
  ErrorCode,
  McpError
} from "@modelcontextprotocol/sdk/types.js"
import { regexes } from "zod/v4/core"

// ---------------------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------------------

/**
 * A problem is `undefined` (valid) or text that starts with its path relative to the value checked
 * (`.text: expected a string, got 3`, `[2].type: …`), or with `: ` when the value itself is wrong.
 * Paths are only built on the way out of a failure. A valid result allocates only the (empty) symbol-key
 * list of each record checked and what `atob` decodes of base64 strings of 64 characters or more.
 */
type Problem = string | undefined

/** zod's `z.iso.datetime({ offset: true })` pattern, from the zod the SDK uses. */
const isoDateTimeWithOffset = regexes.datetime({ offset: true, local: false, precision: null })

/** zod's `isObject`: what `z.object` / `z.looseObject` accept. */
const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** zod's `isPlainObject`: what `z.record` accepts before it looks at the keys. */
const isPlainObject = (value: unknown): value is Record<string, unknown> => {
  if (!isObject(value)) return false
  const ctor = value.constructor
  if (ctor === undefined || typeof ctor !== "function") return true
  const proto: unknown = ctor.prototype
  return isObject(proto) && Object.prototype.hasOwnProperty.call(proto, "isPrototypeOf")
}

const show = (value: unknown): string => {
  if (value === null) return "null"
  if (Array.isArray(value)) return "an array"
  switch (typeof value) {
    case "string":
      return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
    case "number":
    case "boolean":
      return String(value)
    case "bigint":
      return `${value}n`
    case "object":
      return "an object"
    default:
      return typeof value
  }
}

const expected = (what: string, value: unknown): string => `: expected ${what}, got ${show(value)}`

const identifier = /^[A-Za-z_$][\w$]*$/
const at = (key: string, problem: string): string =>
  (identifier.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`) + problem

const string = (value: unknown): Problem => typeof value === "string" ? undefined : expected("a string", value)
const optionalString = (value: unknown): Problem =>
  value === undefined || typeof value === "string" ? undefined : expected("a string", value)

/** `z.record(z.string(), z.unknown())`: a plain object with no enumerable own symbol keys. */
const record = (value: unknown): Problem => {
  if (!isPlainObject(value)) return expected("a plain object (a record)", value)
  const symbols = Object.getOwnPropertySymbols(value)
  for (let i = 0; i < symbols.length; i++) {
    if (Object.prototype.propertyIsEnumerable.call(value, symbols[i]!)) {
      return `: expected string keys only, got the symbol key ${String(symbols[i])}`
    }
  }
  return undefined
}
const optionalRecord = (value: unknown): Problem => value === undefined ? undefined : record(value)

// Forgiving-base64 (https://infra.spec.whatwg.org/#forgiving-base64), which is what `atob` accepts and
// what the SDK's `Base64Schema` tests with it: ASCII whitespace is ignored; `=` only at the end, at most
// two and only when the remaining length is a multiple of four; a length of 4n+1 is never valid.
const base64Alphabet = (() => {
  const table = new Uint8Array(128)
  const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  for (let i = 0; i < chars.length; i++) table[chars.charCodeAt(i)] = 1
  for (const c of [0x09, 0x0a, 0x0c, 0x0d, 0x20]) table[c] = 2
  table[0x3d] = 3 // "="
  return table
})()

const forgivingBase64 = (text: string): boolean => {
  let length = 0
  let padding = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    const kind = c < 128 ? base64Alphabet[c] : 0
    if (kind === 2) continue
    if (kind === 3) padding++
    else if (kind !== 1 || padding > 0) return false
    length++
  }
  return padding === 0 ? length % 4 !== 1 : length % 4 === 0 && padding <= 2
}

const atobAccepts = (text: string): boolean => {
  try {
    atob(text)
    return true
  } catch {
    return false
  }
}

/**
 * Short strings by hand (no allocation, ~2 ns a character); from 64 characters on, `atob` itself — the
 * SDK's own test — whose native decoder runs at ~0.1–0.6 ns a character, well ahead of any JavaScript loop.
 */
const isBase64 = (text: string): boolean => text.length < 64 ? forgivingBase64(text) : atobAccepts(text)
const base64 = (value: unknown): Problem =>
  typeof value !== "string"
    ? expected("a base64 string", value)
    : isBase64(value)
    ? undefined
    : expected("a base64 string", value)

const annotations = (value: unknown): Problem => {
  if (value === undefined) return undefined
  if (!isObject(value)) return expected("an annotations object", value)
  const { audience, lastModified, priority } = value
  if (audience !== undefined) {
    if (!Array.isArray(audience)) return at("audience", expected("an array", audience))
    for (let i = 0; i < audience.length; i++) {
      const role: unknown = audience[i]
      if (role !== "user" && role !== "assistant") {
        return `.audience[${i}]${expected(`one of "user", "assistant"`, role)}`
      }
    }
  }
  if (priority !== undefined && !(typeof priority === "number" && priority >= 0 && priority <= 1)) {
    return at("priority", expected("a number from 0 to 1", priority))
  }
  if (lastModified !== undefined && !(typeof lastModified === "string" && isoDateTimeWithOffset.test(lastModified))) {
    return at("lastModified", expected("an ISO 8601 datetime with an offset", lastModified))
  }
  return undefined
}

/** The `_meta` and `annotations` every content block but a resource link shares. */
const blockExtras = (block: Record<string, unknown>): Problem => {
  let problem = annotations(block.annotations)
  if (problem !== undefined) return at("annotations", problem)
  problem = optionalRecord(block._meta)
  return problem === undefined ? undefined : at("_meta", problem)
}

const field = (block: Record<string, unknown>, key: string, check: (value: unknown) => Problem): Problem => {
  const problem = check(block[key])
  return problem === undefined ? undefined : at(key, problem)
}

const icon = (value: unknown): Problem => {
  if (!isObject(value)) return expected("an icon object", value)
  const problem = field(value, "src", string) ?? field(value, "mimeType", optionalString)
  if (problem !== undefined) return problem
  const { sizes, theme } = value
  if (sizes !== undefined) {
    if (!Array.isArray(sizes)) return at("sizes", expected("an array", sizes))
    for (let i = 0; i < sizes.length; i++) {
      if (typeof sizes[i] !== "string") return `.sizes[${i}]${expected("a string", sizes[i])}`
    }
  }
  if (theme !== undefined && theme !== "light" && theme !== "dark") {
    return at("theme", expected(`one of "light", "dark"`, theme))
  }
  return undefined
}

const resourceLink = (block: Record<string, unknown>): Problem => {
  const problem = field(block, "name", string) ?? field(block, "title", optionalString) ??
    field(block, "uri", string) ?? field(block, "description", optionalString) ??
    field(block, "mimeType", optionalString)
  if (problem !== undefined) return problem
  const { _meta, icons, size } = block
  if (icons !== undefined) {
    if (!Array.isArray(icons)) return at("icons", expected("an array", icons))
    for (let i = 0; i < icons.length; i++) {
      const iconProblem = icon(icons[i])
      if (iconProblem !== undefined) return `.icons[${i}]${iconProblem}`
    }
  }
  if (size !== undefined && !(typeof size === "number" && Number.isFinite(size))) {
    return at("size", expected("a finite number", size))
  }
  const annotationsProblem = annotations(block.annotations)
  if (annotationsProblem !== undefined) return at("annotations", annotationsProblem)
  // `ResourceSchema._meta` is `z.looseObject({})`, not the `z.record` the other blocks use.
  return _meta === undefined || isObject(_meta) ? undefined : at("_meta", expected("an object", _meta))
}

/** `TextResourceContents | BlobResourceContents`: the common fields, then a string `text` or a base64 `blob`. */
const resourceContents = (value: unknown): Problem => {
  if (!isObject(value)) return expected("a resource contents object", value)
  const problem = field(value, "uri", string) ?? field(value, "mimeType", optionalString) ??
    field(value, "_meta", optionalRecord)
  if (problem !== undefined) return problem
  if (typeof value.text === "string") return undefined
  const { blob } = value
  if (typeof blob === "string" && isBase64(blob)) return undefined
  return blob === undefined
    ? at("text", expected("a string (or a base64 string in .blob)", value.text))
    : at("blob", expected("a base64 string (or a string in .text)", blob))
}

const contentTypes = `one of "text", "image", "audio", "resource", "resource_link"`

const contentBlock = (value: unknown): Problem => {
  if (!isObject(value)) return expected("a content block object", value)
  switch (value.type) {
    case "text":
      return field(value, "text", string) ?? blockExtras(value)
    case "image":
    case "audio":
      return field(value, "data", base64) ?? field(value, "mimeType", string) ?? blockExtras(value)
    case "resource":
      return field(value, "resource", resourceContents) ?? blockExtras(value)
    case "resource_link":
      return resourceLink(value)
    default:
      return at("type", expected(contentTypes, value.type))
  }
}

/** `ResultSchema._meta`: zod's `RequestMetaSchema` (a loose object) — odd on a result, but checked. */
const resultMeta = (value: unknown): Problem => {
  if (value === undefined) return undefined
  if (!isObject(value)) return expected("an object", value)
  const { progressToken } = value
  if (progressToken !== undefined && typeof progressToken !== "string" && !Number.isSafeInteger(progressToken)) {
    return at("progressToken", expected("a string or a safe integer", progressToken))
  }
  const relatedTask = value["io.modelcontextprotocol/related-task"]
  if (relatedTask === undefined) return undefined
  const problem = isObject(relatedTask)
    ? field(relatedTask, "taskId", string)
    : expected("an object", relatedTask)
  return problem === undefined ? undefined : at("io.modelcontextprotocol/related-task", problem)
}

const resultProblem = (value: Record<string, unknown>): Problem => {
  let problem = field(value, "_meta", resultMeta)
  if (problem !== undefined) return problem
  const { content, isError, structuredContent } = value
  if (content !== undefined) {
    if (!Array.isArray(content)) return at("content", expected("an array", content))
    for (let i = 0; i < content.length; i++) {
      problem = contentBlock(content[i])
      if (problem !== undefined) return `.content[${i}]${problem}`
    }
  }
  problem = optionalRecord(structuredContent)
  if (problem !== undefined) return at("structuredContent", problem)
  return isError === undefined || typeof isError === "boolean"
    ? undefined
    : at("isError", expected("a boolean", isError))
}

/**
 * Decodes a `tools/call` result: the value itself when the SDK's `CallToolResultSchema` would accept it
 * (a shallow copy with `content: []` when `content` is missing), else a description of the first problem
 * with its path, e.g. `content[2].type: expected one of "text", …, got "video"`.
 */
export const decodeCallToolResult = (value: unknown): CallToolResult | string => {
  if (!isObject(value)) return `expected a result object, got ${show(value)}`
  const problem = resultProblem(value)
  if (problem !== undefined) return problem.startsWith(": ") ? problem.slice(2) : problem.slice(1)
  return (value.content === undefined ? { ...value, content: [] } : value) as CallToolResult
}

// ---------------------------------------------------------------------------------------------------------
// SDK integration
// ---------------------------------------------------------------------------------------------------------

/**
 * What `callTool` rejects with when the server's result breaks the protocol's shape: an `McpError` with
 * code -32602 (InvalidParams) and the message "Invalid tools/call result: <problem>", which is exactly what
 * an SDK *server* sends when its own handler returns such a result (`Server.setRequestHandler` validates
 * `tools/call` results), and the code the SDK client uses for a `structuredContent` that breaks the tool's
 * output schema. So the pool maps it, like those, to an `McpProtocolError` (code -32602, `data.problem`).
 *
 * The SDK client's own `callTool` rejects a result it parses as broken with the bare `ZodError` instead
 * (the pool maps that to code -32603 with zod's JSON issue list as the message).
 */
export class InvalidCallToolResult extends McpError {
  /** The first problem found, with its path: `content[2].type: expected …, got "video"`. */
  readonly problem: string
  constructor(problem: string) {
    super(ErrorCode.InvalidParams, `Invalid tools/call result: ${problem}`, { problem })
    this.name = "InvalidCallToolResult"
    this.problem = problem
  }
}

/**
 * The decoder in the shape the SDK's result parsing takes. `Protocol.request` validates a response with
 * `safeParse(resultSchema, result)` from `@modelcontextprotocol/sdk/server/zod-compat.js`, which treats a
 * schema without `_zod` as a zod 3 schema and calls its `safeParse(data)`, expecting
 * `{ success: true, data } | { success: false, error }`, resolving with `data` or rejecting with `error`.
 */
export const callToolResultSchema = {
  safeParse: (data: unknown): { success: true; data: CallToolResult } | { success: false; error: Error } => {
    const decoded = decodeCallToolResult(data)
    return typeof decoded === "string"
      ? { success: false, error: new InvalidCallToolResult(decoded) }
      : { success: true, data: decoded }
  }
}

/**
 * `client.callTool(params, undefined, options)` with `decodeCallToolResult` in place of zod: it is the SDK's
 * own public `Client.callTool(params, resultSchema, options)` given `callToolResultSchema` as its result
 * schema, so everything else stays the SDK's — the guard against tools that require task-based execution,
 * the `outputSchema` check of `structuredContent` with the validator `listTools` cached (and the
 * "has an output schema but did not return structured content" error unless `isError`), timeouts,
 * cancellation and progress.
 *
 * Relies on (SDK 1.32.2; recheck on a bump): `Client.callTool`'s second parameter being passed to
 * `Protocol.request` unchanged, and `request` parsing with `zod-compat.js`'s `safeParse`, whose zod 3 branch
 * calls `schema.safeParse(data)` for any schema without a `_zod` property. The cast below is the only lie to
 * the type checker: the parameter is typed as the SDK's two zod schemas.
 */
export const callTool = (
  client: Client,
  params: CallToolRequest["params"],
  options?: RequestOptions
): Promise<CallToolResult> =>
  client.callTool(params, callToolResultSchema as unknown as typeof CallToolResultSchema, options) as Promise<
    CallToolResult
  >
