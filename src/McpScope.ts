/**
 * The current scope key — usually the chat thread id — as a service, provided once per conversation turn.
 * Pool calls that omit `scope` use it; a call with neither fails with `MissingScope` (there is no shared
 * default scope, so one thread can never silently reach another's session).
 *
 * ```ts
 * declare const agentTurn: Effect.Effect<string, never, McpScope.McpScope>
 *
 * const turn = (threadId: string) => agentTurn.pipe(McpScope.provide(threadId))
 * ```
 *
 * @since 0.1.0
 */
import { Context, Effect } from "effect"
import { dual } from "effect/Function"

/**
 * @stability stable
 * @since 0.1.0
 * @category services
 */
export class McpScope extends Context.Service<McpScope, string>()("effect-mcp-pool/McpScope") {}

/**
 * Runs `effect` with `scope` as the current scope key.
 *
 * @stability stable
 * @since 0.1.0
 * @category combinators
 */
export const provide: {
  (scope: string): <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, Exclude<R, McpScope>>
  <A, E, R>(effect: Effect.Effect<A, E, R>, scope: string): Effect.Effect<A, E, Exclude<R, McpScope>>
} = dual(
  2,
  <A, E, R>(effect: Effect.Effect<A, E, R>, scope: string) => Effect.provideService(effect, McpScope, scope)
)

/**
 * The current scope key, if one is provided.
 *
 * @stability stable
 * @since 0.1.0
 * @category accessors
 */
export const current: Effect.Effect<string | undefined> = Effect.map(
  Effect.serviceOption(McpScope),
  (scope) => scope._tag === "Some" ? scope.value : undefined
)
