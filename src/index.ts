/**
 * effect-mcp-pool: persistent, scoped MCP client sessions for Effect agent apps. Every module is exported as
 * a namespace, as in Effect (`McpSessionPool.layer`, `McpSessionPool.McpSessionPool` the service).
 *
 * @since 0.1.0
 */

/**
 * Handlers for the requests servers send back (elicitation, sampling, roots), each with its (server, scope).
 *
 * @stability experimental
 * @since 0.2.0
 */
export * as McpClientHandlers from "./McpClientHandlers.ts"

/**
 * Claude Desktop / Cursor (`mcpServers`) and VS Code (`servers`) config files.
 *
 * @stability stable
 * @since 0.1.0
 */
export * as McpConfigFile from "./McpConfigFile.ts"

/**
 * The typed errors.
 *
 * @stability stable
 * @since 0.1.0
 */
export * as McpPoolError from "./McpPoolError.ts"

/**
 * The current scope (usually a chat thread) of pool calls that name none.
 *
 * @stability stable
 * @since 0.1.0
 */
export * as McpScope from "./McpScope.ts"

/**
 * How to reach a server: stdio, HTTP, SSE, in-memory or a custom transport.
 *
 * @stability stable
 * @since 0.1.0
 */
export * as McpServerConfig from "./McpServerConfig.ts"

/**
 * One live client session, leased from the pool.
 *
 * @stability stable
 * @since 0.1.0
 */
export * as McpSession from "./McpSession.ts"

/**
 * The pool: one persistent session per (server, scope).
 *
 * @stability stable
 * @since 0.1.0
 */
export * as McpSessionPool from "./McpSessionPool.ts"

/**
 * A pool's tools for `effect/ai`'s `LanguageModel`, routed by `McpScope`.
 *
 * @stability experimental
 * @since 0.1.0
 */
export * as McpToolkit from "./McpToolkit.ts"
