/**
 * One live MCP client session with one server, for one scope. Obtain it from the pool
 * (`pool.get(server, scope)` or `pool.use(...)`); the pool owns its life.
 *
 * Every request is an `Effect`: interrupting it aborts the SDK request, and the SDK tells the server with
 * `notifications/cancelled`. Requests fail only with typed errors:
 *
 * - `McpProtocolError`: the server answered with a JSON-RPC error; the session is fine.
 * - `CallTimeout`: no answer within the call's timeout; the server was told to cancel; the session stays.
 * - `SessionLost`: the transport died (or the session was closed under the call); the pool has already
 *   dropped the session and the next `get` connects afresh.
 * - `PoolClosed`: the pool was closed while the call was in flight.
 *
 * A tool result with `isError: true` is a successful result: the tool ran and reported a failure.
 *
 * @since 0.1.0
 */
import type { Client } from "@modelcontextprotocol/sdk/client/index.js"
import type {
  CallToolResult,
  GetPromptResult,
  Implementation,
  ListPromptsResult,
  ListResourcesResult,
  ListToolsResult,
  ReadResourceResult,
  ServerCapabilities,
  ServerNotification
} from "@modelcontextprotocol/sdk/types.js"
import type { Duration, Effect, Stream } from "effect"
import type { McpSessionError } from "./McpPoolError.ts"

/**
 * Per-request options.
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestOptions {
  /** Overrides the server's `callTimeout` for this request. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface CallToolParams {
  readonly name: string
  readonly arguments?: Record<string, unknown> | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface McpSession {
  readonly server: string
  readonly scope: string
  /** The server process id, for stdio servers. */
  readonly pid: number | undefined
  readonly serverInfo: Implementation
  readonly serverCapabilities: ServerCapabilities
  readonly instructions: string | undefined
  /**
   * Server-initiated notifications (list changes, logging messages, resource updates, …) for as long as the
   * session lives; progress goes to the request that asked for it. Each subscriber buffers up to 1024 and
   * drops the oldest beyond that, so a slow subscriber never holds the session back.
   */
  readonly notifications: Stream.Stream<ServerNotification>
  /** The underlying SDK client, for what this interface does not cover. Do not close it yourself. */
  readonly client: Client

  readonly listTools: (
    params?: { readonly cursor?: string | undefined } | undefined,
    options?: RequestOptions
  ) => Effect.Effect<ListToolsResult, McpSessionError>
  readonly callTool: (
    params: CallToolParams,
    options?: RequestOptions
  ) => Effect.Effect<CallToolResult, McpSessionError>
  readonly listResources: (
    params?: { readonly cursor?: string | undefined } | undefined,
    options?: RequestOptions
  ) => Effect.Effect<ListResourcesResult, McpSessionError>
  readonly readResource: (
    params: { readonly uri: string },
    options?: RequestOptions
  ) => Effect.Effect<ReadResourceResult, McpSessionError>
  readonly listPrompts: (
    params?: { readonly cursor?: string | undefined } | undefined,
    options?: RequestOptions
  ) => Effect.Effect<ListPromptsResult, McpSessionError>
  readonly getPrompt: (
    params: { readonly name: string; readonly arguments?: Record<string, string> | undefined },
    options?: RequestOptions
  ) => Effect.Effect<GetPromptResult, McpSessionError>
  readonly ping: (options?: RequestOptions) => Effect.Effect<void, McpSessionError>
}
