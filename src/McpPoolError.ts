/**
 * The typed errors of the pool. Every error that concerns a session carries the `server` name and the
 * `scope` key it was asked for, so a log line or a failed span says which thread hit which server.
 * Secrets never reach these errors: configs hold headers and environment values as `Redacted`, and the
 * errors carry only names, keys and messages.
 *
 * A tool result with `isError: true` is not an error here: it is a normal result for the caller (or the
 * model) to read.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

const SessionKey = {
  server: Schema.String,
  scope: Schema.String
}

/**
 * The server name is not in the pool's configuration.
 *
 * @stability stable
 * @since 0.1.0
 * @category errors
 */
export class UnknownServer extends Schema.TaggedError<UnknownServer>()("UnknownServer", {
  ...SessionKey,
  known: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return `Unknown MCP server "${this.server}" (configured: ${
      this.known.length === 0 ? "none" : this.known.map((name) => `"${name}"`).join(", ")
    })`
  }
}

/**
 * Spawning, connecting or the MCP `initialize` handshake failed. Not cached: the next `get` tries again.
 *
 * @stability stable
 * @since 0.1.0
 * @category errors
 */
export class ConnectError extends Schema.TaggedError<ConnectError>()("ConnectError", {
  ...SessionKey,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {
  override get message(): string {
    return `Could not connect to MCP server "${this.server}" for scope "${this.scope}": ${this.reason}`
  }
}

/**
 * Connecting (spawn or dial, plus `initialize`) took longer than `connectTimeout`; whatever was opened
 * has been released.
 *
 * @stability stable
 * @since 0.1.0
 * @category errors
 */
export class ConnectTimeout extends Schema.TaggedError<ConnectTimeout>()("ConnectTimeout", {
  ...SessionKey,
  timeoutMillis: Schema.Number
}) {
  override get message(): string {
    return `Connecting to MCP server "${this.server}" for scope "${this.scope}" timed out after ${this.timeoutMillis} ms`
  }
}

/**
 * The session's transport died (process exit, stream closed, unknown HTTP session) or the session was
 * closed under the call. The pool has dropped that session; the next `get` connects afresh.
 *
 * @stability stable
 * @since 0.1.0
 * @category errors
 */
export class SessionLost extends Schema.TaggedError<SessionLost>()("SessionLost", {
  ...SessionKey,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {
  override get message(): string {
    return `MCP session with "${this.server}" for scope "${this.scope}" was lost: ${this.reason}`
  }
}

/**
 * The pool was closed (`closeAll` or layer shutdown). Nothing is created after that.
 *
 * @stability stable
 * @since 0.1.0
 * @category errors
 */
export class PoolClosed extends Schema.TaggedError<PoolClosed>()("PoolClosed", SessionKey) {
  override get message(): string {
    return `The MCP session pool is closed (server "${this.server}", scope "${this.scope}")`
  }
}

/**
 * A request took longer than its `callTimeout`. The server was told to cancel it; the session stays.
 *
 * @stability stable
 * @since 0.1.0
 * @category errors
 */
export class CallTimeout extends Schema.TaggedError<CallTimeout>()("CallTimeout", {
  ...SessionKey,
  method: Schema.String,
  timeoutMillis: Schema.Number
}) {
  override get message(): string {
    return `${this.method} on MCP server "${this.server}" for scope "${this.scope}" timed out after ${this.timeoutMillis} ms`
  }
}

/**
 * The server answered with a JSON-RPC error (unknown tool, invalid params, …). The session stays.
 *
 * @stability stable
 * @since 0.1.0
 * @category errors
 */
export class McpProtocolError extends Schema.TaggedError<McpProtocolError>()("McpProtocolError", {
  ...SessionKey,
  method: Schema.String,
  code: Schema.Number,
  message: Schema.String,
  data: Schema.optional(Schema.Unknown)
}) {}

/**
 * One problem found in a configuration: where (`path`, e.g. `servers.browser.command`) and what.
 *
 * @stability stable
 * @since 0.1.0
 * @category errors
 */
export class ConfigIssue extends Schema.Class<ConfigIssue>("ConfigIssue")({
  path: Schema.String,
  message: Schema.String
}) {}

/**
 * The configuration is invalid. Lists every problem at once, each with the path of the bad field.
 *
 * @stability stable
 * @since 0.1.0
 * @category errors
 */
export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  source: Schema.String,
  issues: Schema.Array(ConfigIssue)
}) {
  override get message(): string {
    return `Invalid MCP pool configuration (${this.source}):\n${
      this.issues.map((issue) => `  - ${issue.path}: ${issue.message}`).join("\n")
    }`
  }
}

/**
 * A pool call named no scope and none was provided as `McpScope` (never falls back to a shared scope).
 *
 * @stability stable
 * @since 0.1.0
 * @category errors
 */
export class MissingScope extends Schema.TaggedError<MissingScope>()("MissingScope", {
  server: Schema.String
}) {
  override get message(): string {
    return `No scope for MCP server "${this.server}": pass \`scope\` or provide McpScope (e.g. the chat thread id)`
  }
}

/**
 * What a request on a session can fail with.
 *
 * @stability stable
 * @since 0.1.0
 * @category errors
 */
export type McpSessionError = SessionLost | PoolClosed | CallTimeout | McpProtocolError

/**
 * What obtaining a session can fail with.
 *
 * @stability stable
 * @since 0.1.0
 * @category errors
 */
export type McpGetError = UnknownServer | ConnectError | ConnectTimeout | PoolClosed | MissingScope
