/**
 * What the app answers when a server asks its client something: elicitation (ask the thread's user),
 * sampling (ask the app's model) and roots (the thread's workspace). Every request comes from one pooled
 * session, so it carries that session's (server, scope): an elicitation from thread A's browser reaches
 * the handler with scope A, never B.
 *
 * ```ts
 * import type { ElicitResult } from "@modelcontextprotocol/sdk/types.js"
 * import { Effect, Layer } from "effect"
 * import { McpClientHandlers, McpServerConfig, McpSessionPool } from "effect-mcp-pool"
 *
 * declare const servers: Record<string, McpServerConfig.McpServerConfig>
 * declare const askUserOfThread: (threadId: string, message: string) => Effect.Effect<ElicitResult>
 *
 * const HandlersLive = McpClientHandlers.layer({
 *   elicit: (request, { scope }) => askUserOfThread(scope, request.message), // → { action: "accept", content }
 *   listRoots: ({ scope }) => Effect.succeed([{ uri: `file:///work/threads/${scope}`, name: "workspace" }])
 * })
 * const PoolLive = McpSessionPool.layer({ servers }).pipe(Layer.provide(HandlersLive))
 * ```
 *
 * Lifecycle:
 * - The pool reads the service once, when it is built. The capabilities it declares to servers follow the
 *   handlers given: `elicitation` (form and URL modes) with `elicit`, `sampling` with `createMessage`,
 *   `roots` (with `listChanged`) with `listRoots`. Without the service the pool declares none, and servers
 *   never ask.
 * - Both revisions reach the same handler: a 2025-11-25 server's request (`elicitation/create`, …), and a
 *   2026-07-28 server's `input_required` answer, after which the call is retried with the handler's answer.
 * - A handler that fails, dies or runs longer than `timeout` answers the server with a JSON-RPC error; the
 *   session stays. A result that is not what the protocol expects is refused the same way.
 * - A handler is interrupted when the server cancels its request, when the session closes, and when every
 *   call that was in flight on the session as the request arrived has ended (e.g. the tool call that asked
 *   was interrupted): nobody is left to answer for.
 * - `McpSessionPool.rootsChanged(scope)` tells that scope's sessions to ask for the roots again
 *   (`notifications/roots/list_changed`).
 *
 * @since 0.2.0
 */
import type {
  CreateMessageRequest,
  CreateMessageResult,
  ElicitRequest,
  ElicitResult,
  Root
} from "@modelcontextprotocol/sdk/types.js"
import { Context, type Duration, type Effect, Layer } from "effect"

/**
 * Which session a server request came from.
 *
 * @stability experimental
 * @since 0.2.0
 * @category models
 */
export interface RequestContext {
  readonly server: string
  readonly scope: string
}

/**
 * @stability experimental
 * @since 0.2.0
 * @category models
 */
export interface Handlers {
  /** `elicitation/create`: ask the thread's user (form mode: fields; URL mode: a page to open). */
  readonly elicit?:
    | ((request: ElicitRequest["params"], context: RequestContext) => Effect.Effect<ElicitResult, unknown>)
    | undefined
  /** `sampling/createMessage`: ask the app's model. */
  readonly createMessage?:
    | ((
      request: CreateMessageRequest["params"],
      context: RequestContext
    ) => Effect.Effect<CreateMessageResult, unknown>)
    | undefined
  /** `roots/list`: the thread's workspace roots. */
  readonly listRoots?: ((context: RequestContext) => Effect.Effect<ReadonlyArray<Root>, unknown>) | undefined
  /** How long one handler may take before the server is answered with an error. Default 10 minutes. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * @stability experimental
 * @since 0.2.0
 * @category services
 */
export class McpClientHandlers extends Context.Service<McpClientHandlers, Handlers>()(
  "effect-mcp-pool/McpClientHandlers"
) {}

/**
 * The handlers as a layer, for `Layer.provide` under the pool's layer.
 *
 * @stability experimental
 * @since 0.2.0
 * @category layers
 */
export const layer = (handlers: Handlers): Layer.Layer<McpClientHandlers> => Layer.succeed(McpClientHandlers, handlers)
