/**
 * effect-mcp-pool: persistent, scoped MCP client sessions for Effect agent apps.
 *
 * @since 0.1.0
 */
export * as McpClientHandlers from "./McpClientHandlers.ts"
export * as McpConfigFile from "./McpConfigFile.ts"
export * as McpPoolError from "./McpPoolError.ts"
export * as McpScope from "./McpScope.ts"
export * as McpServerConfig from "./McpServerConfig.ts"
export * as McpSession from "./McpSession.ts"
export * as McpSessionPool from "./McpSessionPool.ts"
export * as McpToolkit from "./McpToolkit.ts"
