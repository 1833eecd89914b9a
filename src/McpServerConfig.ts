/**
 * How to reach one MCP server. A config is plain data plus, where the connection depends on the scope
 * (a working directory per chat thread, say), functions of the scope key.
 *
 * - `stdio`: a child process speaking MCP over stdin/stdout, spawned in its own process group and closed
 *   in steps (end stdin → grace → SIGTERM to the group → grace → SIGKILL to the group).
 * - `inMemory`: an SDK `McpServer` running in this process — for tests of agent code against a fake
 *   server, and for servers you implement yourself.
 * - `http` / `sse`: a remote server over streamable HTTP (optionally falling back to SSE) or legacy SSE.
 * - `custom`: any SDK `Transport`, acquired in a `Scope` that the pool closes with the session.
 *
 * Every config also takes the per-server lifecycle options of {@link ServerOptions}.
 *
 * @since 0.1.0
 */
import type { OAuthClientProvider } from "@modelcontextprotocol/sdk/client/auth.js"
import type { Server } from "@modelcontextprotocol/sdk/server/index.js"
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import type { Duration, Effect, Redacted, Scope } from "effect"

/**
 * Options every kind of server accepts. Unset fields take the pool's defaults.
 *
 * Durations are `Duration.Input`s: a number of milliseconds, `"30 seconds"`, a `Duration`, a bigint of
 * nanoseconds, `[seconds, nanos]` or `{ minutes: 1, seconds: 30 }`. `Infinity` or `"Infinity"` means no
 * bound. NaN (e.g. `Number(process.env.UNSET)`), negatives, `{}` and objects with other fields are a
 * `ConfigError` naming the field (Effect would read them as zero: every call would time out at once).
 *
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export interface ServerOptions {
  /** Spawn or dial plus the MCP `initialize` handshake. On expiry whatever was opened is released. */
  readonly connectTimeout?: Duration.Input | undefined
  /** Default bound for each request on a session; a call may pass its own. */
  readonly callTimeout?: Duration.Input | undefined
  /** Close a session left idle (no lease) this long. Measured on the `Clock`. */
  readonly idleTimeToLive?: Duration.Input | undefined
  /** Retire a session this long after it was created, once its leases end. */
  readonly maxLifetime?: Duration.Input | undefined
  /** Ping a session idle longer than this before handing it out; a failed ping means a fresh session. */
  readonly pingAfterIdle?: Duration.Input | undefined
  /**
   * Calls in flight at once on one session; more wait their turn (e.g. 1 for a browser). `callTimeout`
   * counts from when a call is sent, not while it waits for its turn.
   */
  readonly maxConcurrentCalls?: number | undefined
  /**
   * The MCP revision to speak (see {@link Protocol}); default `"auto"`. In-memory servers are SDK 1.32
   * servers: they speak 2025-11-25 only.
   */
  readonly protocol?: Protocol | undefined
}

/**
 * Which MCP revision a server is spoken to in.
 *
 * - `"auto"` (default): ask the server (`server/discover`) once per server config and speak 2026-07-28 if
 *   it offers it, else 2025-11-25 (`initialize`). The verdict is cached, so later sessions connect
 *   without asking; a stale verdict is corrected once, at the next connect that meets it.
 * - `"2025-11-25"`: the `initialize` handshake only (also reaches 2024-11-05 … 2025-06-18 servers).
 * - `"2026-07-28"`: `server/discover` only; a server that does not offer it fails the connect.
 *
 * @stability experimental
 * @since 0.2.0
 * @category models
 */
export type Protocol = "auto" | "2025-11-25" | "2026-07-28"

/**
 * A value that may depend on the scope key (e.g. a working directory per chat thread).
 *
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export type PerScope<A> = A | ((scope: string) => A)

/**
 * The value of a {@link PerScope} setting for one scope (calls the function, which may throw).
 *
 * @stability stable
 * @since 0.1.0
 * @category utils
 */
export const resolvePerScope = <A>(value: PerScope<A>, scope: string): A =>
  typeof value === "function" ? (value as (scope: string) => A)(scope) : value

/**
 * Environment values for a child process. Use `Redacted` for secrets: they reach the child unchanged
 * and never appear in errors, logs or spans.
 *
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export type Environment = Readonly<Record<string, string | Redacted.Redacted<string>>>

/**
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export interface Stdio extends ServerOptions {
  readonly _tag: "Stdio"
  readonly command: string
  /** The command's arguments, or a function of the scope giving them (e.g. a browser profile per thread). */
  readonly args: PerScope<ReadonlyArray<string>>
  /** Added to the SDK's safe default environment (PATH, HOME, …), not to the whole parent environment. */
  readonly env: PerScope<Environment>
  /** Pass the whole parent environment (plus `env`) instead of the safe default. */
  readonly inheritEnv: boolean
  readonly cwd: PerScope<string> | undefined
  /** What to do with the server's stderr: ignore it (default), pass it through, or log it at Debug. */
  readonly stderr: "ignore" | "inherit" | "log"
  /** After stdin is ended, how long the server may take to exit before SIGTERM (finite, at most 24 days). */
  readonly stdinGrace: Duration.Input
  /** After SIGTERM, how long the group may take to exit before SIGKILL (finite, at most 24 days). */
  readonly terminateGrace: Duration.Input
}

/**
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export interface InMemory extends ServerOptions {
  readonly _tag: "InMemory"
  /** Called once per session: a fresh server per (server, scope), as a real process would be. */
  readonly makeServer: (scope: string) => McpServer | Server
}

/**
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export interface Custom extends ServerOptions {
  readonly _tag: "Custom"
  /** Opens a transport (not yet started) in the session's `Scope`; the pool closes that scope. */
  readonly connect: (scope: string) => Effect.Effect<Transport, unknown, Scope.Scope>
}

/**
 * HTTP headers. Use `Redacted` for secrets (tokens): they are sent as is and never appear in errors,
 * logs or spans. What a server may echo back is scrubbed from errors: Redacted values, plain values of
 * headers named like credentials (`X-Api-Key`, `Cookie`, …), and in any header the credentials after an
 * auth scheme (`Bearer abc` → `abc` alone too; for `Basic`, also the decoded `user:password` and the
 * password). Other plain values may appear in errors.
 *
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export type Headers = Readonly<Record<string, string | Redacted.Redacted<string>>>

/**
 * A remote server over streamable HTTP (or legacy SSE, or HTTP falling back to SSE).
 *
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export interface Http extends ServerOptions {
  readonly _tag: "Http"
  /**
   * An http(s) URL without a user name or password (those belong in a header). Its query values are
   * scrubbed from errors like secrets, and no error quotes the URL.
   */
  readonly url: PerScope<string>
  readonly headers: PerScope<Headers>
  /** Headers computed for each request, e.g. a refreshed bearer token. Merged over `headers`. */
  readonly auth: Effect.Effect<Headers, unknown> | undefined
  /**
   * OAuth through the SDK's `OAuthClientProvider` (authorization code with refresh, client credentials, …),
   * or a function of the scope giving one: each user's own tokens, for one server config. The SDK sends
   * its tokens and refreshes them on a 401; the pool scrubs them from errors like any secret.
   */
  readonly authProvider: PerScope<OAuthClientProvider> | undefined
  /** "streamable-http" (default), "sse" (legacy), or "auto": streamable HTTP, falling back to SSE. */
  readonly transport: "streamable-http" | "sse" | "auto"
}

/**
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export type McpServerConfig = Stdio | InMemory | Custom | Http

/**
 * A local server as a child process.
 *
 * ```ts
 * // --isolated: an in-memory browser profile per session, so concurrent threads never share one
 * McpServerConfig.stdio({ command: "npx", args: ["-y", "@playwright/mcp@0.0.83", "--headless", "--isolated"] })
 * McpServerConfig.stdio({ command: "python", args: ["repl.py"], cwd: (thread) => `/work/threads/${thread}` })
 * // A browser profile per thread, kept on disk across its sessions (instead of --isolated):
 * McpServerConfig.stdio({
 *   command: "npx",
 *   args: (thread) => ["-y", "@playwright/mcp@0.0.83", "--headless", "--user-data-dir", `/work/profiles/${thread}`]
 * })
 * ```
 *
 * `args`, `env` and `cwd` may be functions of the scope key; they are called at each connect, and one
 * that throws (or returns the wrong shape) fails that connect with a `ConnectError`.
 *
 * @stability stable
 * @since 0.1.0
 * @category constructors
 */
export const stdio = (
  options: {
    readonly command: string
    readonly args?: PerScope<ReadonlyArray<string>> | undefined
    readonly env?: PerScope<Environment> | undefined
    readonly inheritEnv?: boolean | undefined
    readonly cwd?: PerScope<string> | undefined
    readonly stderr?: "ignore" | "inherit" | "log" | undefined
    readonly stdinGrace?: Duration.Input | undefined
    readonly terminateGrace?: Duration.Input | undefined
  } & ServerOptions
): Stdio => ({
  ...options,
  _tag: "Stdio",
  command: options.command,
  args: options.args ?? [],
  env: options.env ?? {},
  inheritEnv: options.inheritEnv ?? false,
  cwd: options.cwd,
  stderr: options.stderr ?? "ignore",
  stdinGrace: options.stdinGrace ?? "2 seconds",
  terminateGrace: options.terminateGrace ?? "2 seconds"
})

/**
 * An SDK server in this process, one instance per session.
 *
 * ```ts
 * import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
 * import { McpServerConfig } from "effect-mcp-pool"
 * import { z } from "zod"
 *
 * McpServerConfig.inMemory(() => {
 *   const server = new McpServer({ name: "fake", version: "1.0.0" })
 *   server.registerTool("echo", { inputSchema: { text: z.string() } }, ({ text }) => ({ content: [{ type: "text", text }] }))
 *   return server
 * })
 * ```
 *
 * @stability stable
 * @since 0.1.0
 * @category constructors
 */
export const inMemory = (
  makeServer: (scope: string) => McpServer | Server,
  options?: ServerOptions
): InMemory => ({ ...options, _tag: "InMemory", makeServer })

/**
 * A remote server over streamable HTTP. Each pooled session keeps its own MCP session id; closing a
 * session sends DELETE so the server frees its state.
 *
 * ```ts
 * McpServerConfig.http({ url: "http://127.0.0.1:8080/mcp", headers: { Authorization: Redacted.make("Bearer …") } })
 * ```
 *
 * @stability stable
 * @since 0.1.0
 * @category constructors
 */
export const http = (
  options: {
    readonly url: PerScope<string>
    readonly headers?: PerScope<Headers> | undefined
    readonly auth?: Effect.Effect<Headers, unknown> | undefined
    readonly authProvider?: PerScope<OAuthClientProvider> | undefined
    /** Try streamable HTTP, then fall back to legacy SSE (for older servers). */
    readonly fallbackToSse?: boolean | undefined
  } & ServerOptions
): Http => {
  const { fallbackToSse, ...rest } = options
  return {
    ...rest,
    _tag: "Http",
    url: options.url,
    headers: options.headers ?? {},
    auth: options.auth,
    authProvider: options.authProvider,
    transport: fallbackToSse === true ? "auto" : "streamable-http"
  }
}

/**
 * A remote server over the legacy HTTP+SSE transport.
 *
 * @stability stable
 * @since 0.1.0
 * @category constructors
 */
export const sse = (
  options: {
    readonly url: PerScope<string>
    readonly headers?: PerScope<Headers> | undefined
    readonly auth?: Effect.Effect<Headers, unknown> | undefined
    readonly authProvider?: PerScope<OAuthClientProvider> | undefined
  } & ServerOptions
): Http => ({
  ...options,
  _tag: "Http",
  url: options.url,
  headers: options.headers ?? {},
  auth: options.auth,
  authProvider: options.authProvider,
  transport: "sse"
})

/**
 * Any SDK transport. The effect runs in the session's `Scope`: add finalizers there for what it opens.
 *
 * @stability stable
 * @since 0.1.0
 * @category constructors
 */
export const custom = (
  connect: (scope: string) => Effect.Effect<Transport, unknown, Scope.Scope>,
  options?: ServerOptions
): Custom => ({ ...options, _tag: "Custom", connect })
