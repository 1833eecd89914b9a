/**
 * One live MCP client session with one server, for one scope. Obtain it from the pool
 * (`pool.get({ server, scope })` or `pool.use({ server, scope }, f)`); the pool owns its life.
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
import type { Client as ModernClient } from "@modelcontextprotocol/client"
import type { Client } from "@modelcontextprotocol/sdk/client/index.js"
import type {
  CallToolResult,
  GetPromptResult,
  Implementation,
  ListPromptsResult,
  ListResourcesResult,
  ListToolsResult,
  LoggingLevel,
  Progress,
  ReadResourceResult,
  ResourceUpdatedNotification,
  ServerCapabilities,
  ServerNotification
} from "@modelcontextprotocol/sdk/types.js"
import type { Duration, Effect, Stream } from "effect"
import type { McpSessionError } from "./McpPoolError.ts"

/**
 * The MCP revision a session speaks: `"2025-11-25"` for every `initialize`-era version (the exact one is
 * `protocolVersion`), `"2026-07-28"` for the revision without a handshake.
 *
 * @stability experimental
 * @since 0.2.0
 * @category models
 */
export type Revision = "2025-11-25" | "2026-07-28"

/**
 * What the pool can guarantee for the thread's server-side state between calls of one session:
 *
 * - `"process"`: the session is one server process (stdio, either revision): whatever the server keeps in
 *   memory stays the thread's own, across calls, until the session closes.
 * - `"session"`: one MCP protocol session (2025-era HTTP with an `Mcp-Session-Id`; an in-memory server
 *   instance; a custom transport): kept while the server keeps the protocol session.
 * - `"none"`: nothing ties calls together (2026-07-28 over HTTP, or a 2025-era HTTP server that gives no
 *   session id): state lives in handles the tools return and later calls pass back.
 *
 * @stability experimental
 * @since 0.2.0
 * @category models
 */
export type ThreadState = "process" | "session" | "none"

/**
 * The SDK client under a session: the 1.32 SDK's for 2025-era sessions, SDK v2's for 2026-07-28.
 *
 * @stability experimental
 * @since 0.2.0
 * @category models
 */
export type SdkClient =
  | { readonly revision: "2025-11-25"; readonly client: Client }
  | { readonly revision: "2026-07-28"; readonly client: ModernClient }

/**
 * Per-request options.
 *
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export interface RequestOptions {
  /** Overrides the server's `callTimeout` for this request. */
  readonly timeout?: Duration.Input | undefined
  /**
   * Asks the server for progress (`_meta.progressToken`) and calls this with each `notifications/progress`,
   * in order, before the result: the last one is never lost to it. Runs on the transport's thread of
   * events: keep it quick (e.g. `Queue.offerUnsafe`).
   */
  readonly onProgress?: ((progress: Progress) => void) | undefined
  /** Each progress notification restarts `timeout` (a long call that keeps reporting never times out on it). */
  readonly resetTimeoutOnProgress?: boolean | undefined
  /** With `resetTimeoutOnProgress`: the bound on the whole call, however much progress it reports. */
  readonly maxTotalTimeout?: Duration.Input | undefined
}

/**
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export interface CallToolParams {
  readonly name: string
  readonly arguments?: Record<string, unknown> | undefined
  /**
   * Sent as the request's `_meta`. When a span is current, the pool adds its W3C `traceparent` (SEP-414)
   * unless this already has one.
   */
  readonly _meta?: Record<string, unknown> | undefined
}

/**
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export interface McpSession {
  readonly server: string
  readonly scope: string
  /** The server process id, for stdio servers. */
  readonly pid: number | undefined
  readonly revision: Revision
  /** The exact version agreed on (`"2025-06-18"`, `"2025-11-25"`, `"2026-07-28"`, …). */
  readonly protocolVersion: string
  readonly threadState: ThreadState
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
  readonly sdk: SdkClient

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
  /**
   * Updates of one resource (`notifications/resources/updated` params) for as long as the stream is read:
   * 2025-11-25 `resources/subscribe` (unsubscribed when the stream ends), 2026-07-28 a `subscriptions/listen`
   * stream (closed when it ends). Ends when the session does. Fails if the server refuses the subscription.
   */
  readonly subscribe: (
    uri: string,
    options?: RequestOptions
  ) => Stream.Stream<ResourceUpdatedNotification["params"], McpSessionError>
  /**
   * `logging/setLevel` (2025-11-25): the server's `notifications/message` arrive in `notifications`. On a
   * 2026-07-28 session an `McpProtocolError` (-32601): that revision has no such request.
   */
  readonly setLoggingLevel: (level: LoggingLevel, options?: RequestOptions) => Effect.Effect<void, McpSessionError>
  /** `ping`; on 2026-07-28 (which has no `ping`) `server/discover`, the cheapest request it answers. */
  readonly ping: (options?: RequestOptions) => Effect.Effect<void, McpSessionError>
}
