/**
 * The pool: one persistent MCP session per (server, scope), where the scope is usually a chat thread.
 *
 * ```ts
 * import { Effect } from "effect"
 * import { McpServerConfig, McpSessionPool } from "effect-mcp-pool"
 *
 * const PoolLive = McpSessionPool.layer({
 *   servers: { notebook: McpServerConfig.stdio({ command: "node", args: ["notebook-server.js"] }) },
 *   capacity: 256
 * })
 *
 * const turn = (threadId: string) =>
 *   Effect.gen(function*() {
 *     const pool = yield* McpSessionPool.McpSessionPool
 *     return yield* pool.callTool({
 *       server: "notebook",
 *       scope: threadId,
 *       name: "note_write",
 *       arguments: { key: "a", text: "1" }
 *     })
 *   })
 *
 * Effect.runPromise(turn("thread-1").pipe(Effect.provide(PoolLive)))
 * ```
 *
 * Lifecycle, in short:
 * - `get` returns a lease held until the caller's `Scope` closes; `use` and `callTool` hold one for their
 *   own duration. Concurrent `get`s of a missing key create exactly one session; a failed creation is
 *   not cached; when every waiter of a connecting session is interrupted, the connect is cancelled.
 * - Capacity counts the sessions kept. A new key evicts the least recently used idle session; leased and
 *   connecting sessions are never evicted, so the pool may exceed capacity for a while and trims as leases
 *   end.
 * - `invalidate`, `closeScope` and `closeServer` detach sessions at once (the next `get` makes a fresh
 *   one) and close each when its last lease ends.
 * - A session whose transport dies is dropped (that exact entry), its in-flight calls fail with
 *   `SessionLost`, and the next `get` connects afresh.
 * - `closeAll` and layer shutdown are forced: in-flight calls fail with `PoolClosed`, every session is
 *   closed in parallel within `closeTimeout`, and the pool refuses new work with `PoolClosed`.
 *
 * @since 0.1.0
 */
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js"
import { Context, Effect, Layer, type Scope } from "effect"
import { type PoolOptions, resolveOptions } from "./internal/options.ts"
import * as internal from "./internal/pool.ts"
import * as McpConfigFile from "./McpConfigFile.ts"
import type { ConfigError, McpGetError, McpSessionError, MissingScope } from "./McpPoolError.ts"
import type { McpServerConfig } from "./McpServerConfig.ts"
import type { CallToolParams, McpSession, RequestOptions, ThreadState } from "./McpSession.ts"

/**
 * Pool options. Durations accept `Duration.Input` (`"30 seconds"`, milliseconds, …).
 *
 * - `servers`: name → `McpServerConfig`.
 * - `capacity`: sessions kept across servers (default 256). Soft: see the module docs.
 * - `connectTimeout`: spawn/dial plus `initialize` (default 30 seconds).
 * - `callTimeout`: default bound per request (default 60 seconds); a call may pass its own.
 * - `idleTimeToLive`, `maxLifetime`: expiry on the `Clock` (default none).
 * - `pingAfterIdle`: ping a session idle this long before reuse (default none).
 * - `maxConcurrentCalls`: calls in flight at once per session (default unlimited).
 * The settings above are defaults for every server; a server's own config overrides them.
 * - `closeTimeout`: bound on closing one session (default 10 seconds; stdio graces fit inside it).
 * - `clientInfo`: the client name and version sent in `initialize`.
 * - `traceToolCalls`: a span per `pool.callTool`, named and attributed by OpenTelemetry's conventions for MCP
 *   (`tools/call <tool>`; default false: a span costs more than the pool's whole hit path).
 *
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export type Options = PoolOptions

/**
 * One row of {@link McpSessionPool.snapshot}.
 *
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export interface SessionInfo {
  readonly server: string
  readonly scope: string
  readonly state: "connecting" | "ready" | "closing"
  /** False once detached (invalidated, evicted, …): it closes when its last lease ends. */
  readonly attached: boolean
  readonly leases: number
  readonly createdAt: Date
  readonly idleSince: Date | undefined
  readonly pid: number | undefined
  /** The revision agreed on (see `McpSession.protocolVersion`); undefined until connected. */
  readonly protocolVersion: string | undefined
  /** What keeps the thread's server-side state (see `McpSession.threadState`); undefined until connected. */
  readonly threadState: ThreadState | undefined
}

/**
 * Why a session was closed (the `reason` attribute of `mcp_pool_sessions_closed`). `pool-closed` is the
 * only forced one: every other close waits for the session's last lease.
 *
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export type CloseReason =
  | "released"
  | "evicted"
  | "invalidated"
  | "scope-closed"
  | "server-closed"
  | "cancelled"
  | "expired"
  | "reloaded"
  | "ping-failed"
  | "lost"
  | "failed"
  | "pool-closed"

/**
 * Which session an operation means: the server's name and the scope (usually a chat thread). Without
 * `scope`, the current `McpScope`; with neither, the operation fails with `MissingScope` (never a shared
 * default).
 *
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export interface SessionKey {
  readonly server: string
  /** Defaults to the current `McpScope`. */
  readonly scope?: string | undefined
}

/**
 * One `tools/call`: the session's key and the call's parameters.
 *
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export interface CallToolRequest extends SessionKey, CallToolParams {}

/**
 * The pool's operations (the service's shape). Every operation on one session takes its
 * {@link SessionKey}.
 *
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export interface McpSessionPoolShape {
  /** A lease on the key's session, held until the caller's `Scope` closes. */
  readonly get: (key: SessionKey) => Effect.Effect<McpSession, McpGetError, Scope.Scope>
  /** Runs `f` with a lease on the key's session held for its duration. */
  readonly use: <A, E, R>(
    key: SessionKey,
    f: (session: McpSession) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | McpGetError, R>
  /** One tool call on the key's session. `isError` results are results, not failures. */
  readonly callTool: (
    request: CallToolRequest,
    options?: RequestOptions
  ) => Effect.Effect<CallToolResult, McpGetError | McpSessionError>
  /** Detaches the key's session; it closes when its last lease ends (waits if none). */
  readonly invalidate: (key: SessionKey) => Effect.Effect<void, MissingScope>
  /** The thread is gone: detaches its sessions on every server, closing them as their leases end. */
  readonly closeScope: (scope: string) => Effect.Effect<void>
  /** Detaches every session of one server. */
  readonly closeServer: (server: string) => Effect.Effect<void>
  /**
   * Forced: calls in flight fail with `PoolClosed`, every session closes in parallel (each within
   * `closeTimeout`), and the pool refuses new work with `PoolClosed`.
   */
  readonly closeAll: Effect.Effect<void>
  /**
   * The scope's roots changed (the `McpClientHandlers` `listRoots` would answer differently now): tells each
   * of its ready sessions (`notifications/roots/list_changed`), so servers ask again. Without a `listRoots`
   * handler there is nothing to tell.
   */
  readonly rootsChanged: (scope: string) => Effect.Effect<void>
  /** The live sessions: server, scope, state, leases, idle since, pid, revision, what keeps the thread's state. */
  readonly snapshot: Effect.Effect<ReadonlyArray<SessionInfo>>
  /**
   * Replaces the server configs. Sessions whose server was removed or whose config (or lifecycle
   * settings) changed are retired like `invalidate`; sessions of unchanged servers stay.
   */
  readonly reload: (servers: Readonly<Record<string, McpServerConfig>>) => Effect.Effect<void, ConfigError>
}

/**
 * The pool as a service: `yield* McpSessionPool.McpSessionPool` in an effect given {@link layer}.
 *
 * @stability stable
 * @since 0.1.0
 * @category services
 */
export class McpSessionPool extends Context.Service<McpSessionPool, McpSessionPoolShape>()(
  "effect-mcp-pool/McpSessionPool"
) {}

/**
 * Node's `FileSystem` for `layerFromFile`, imported when the layer is built: the package root does not
 * load `@effect/platform-node` for apps that never read a config file.
 */
const nodeFileSystem = Layer.unwrap(
  Effect.map(
    Effect.promise(() => import("@effect/platform-node/NodeFileSystem")),
    (NodeFileSystem) => NodeFileSystem.layer
  )
)

/**
 * Builds a pool in the current scope; closing the scope closes every session (forced, bounded). Bad
 * options fail with one `ConfigError` listing every bad field.
 *
 * @stability stable
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<McpSessionPoolShape, ConfigError, Scope.Scope> =>
  Effect.flatMap(resolveOptions(options, "McpSessionPool options"), internal.make)

/**
 * The pool as a layer; its sessions close when the layer's scope does.
 *
 * @stability stable
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<McpSessionPool, ConfigError> =>
  Layer.effect(McpSessionPool, make(options))

/**
 * The pool from a Claude Desktop / Cursor (`mcpServers`) or VS Code (`servers`) config file. A bad file
 * fails with one `ConfigError` naming the file and every bad field.
 *
 * ```ts
 * import { Effect } from "effect"
 * import { McpSessionPool } from "effect-mcp-pool"
 *
 * const PoolLive = McpSessionPool.layerFromFile(".vscode/mcp.json", { capacity: 64 })
 *
 * const servers = Effect.gen(function*() {
 *   const pool = yield* McpSessionPool.McpSessionPool
 *   return (yield* pool.snapshot).map((session) => session.server)
 * }).pipe(Effect.provide(PoolLive))
 * ```
 *
 * @stability stable
 * @since 0.1.0
 * @category layers
 */
export const layerFromFile = (
  path: string,
  options?: Omit<Options, "servers"> & McpConfigFile.Variables
): Layer.Layer<McpSessionPool, ConfigError> => {
  const { env, variables, ...poolOptions } = options ?? {}
  return Layer.effect(
    McpSessionPool,
    Effect.flatMap(
      McpConfigFile.loadServers(path, { env, variables }),
      (servers) => make({ ...poolOptions, servers })
    )
  ).pipe(Layer.provide(nodeFileSystem))
}

/**
 * The pool's metrics: `mcp_pool_sessions_created`, `mcp_pool_connect_failures`,
 * `mcp_pool_connect_duration` (a timer), `mcp_pool_sessions_closed` (attribute `reason`: released,
 * evicted, invalidated, scope-closed, server-closed, cancelled, expired, reloaded, ping-failed, lost,
 * failed, pool-closed) and the gauge `mcp_pool_sessions` (attribute `state`: live, attached, idle,
 * leased; sampled once a second).
 *
 * @stability stable
 * @since 0.1.0
 * @category metrics
 */
export const metrics = internal.metrics
