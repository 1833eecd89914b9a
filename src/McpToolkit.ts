/**
 * `effect/ai` tools backed by pooled MCP servers, routed to the current thread's session.
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Chat } from "effect/ai"
 * import { McpScope, McpToolkit } from "effect-mcp-pool"
 *
 * const agent = Effect.gen(function*() {
 *   const mcp = yield* McpToolkit.make({ servers: ["notebook", { server: "web", prefix: "web_" }] })
 *   const chat = yield* Chat.empty
 *   // One turn of one thread: every tool call in it goes to that thread's sessions.
 *   const turn = (threadId: string, text: string) =>
 *     chat.generateText({ prompt: text, toolkit: mcp.toolkit }).pipe(McpScope.provide(threadId))
 *   return turn
 * })
 * ```
 *
 * Routing
 * - Each tool's handler leases its session at call time with `pool.use({ server }, …)` (the scope: the current `McpScope`), so a
 *   toolkit resolved once serves every thread: thread A's calls reach thread A's session, whatever the
 *   concurrency. `toolkit` requires `McpScope` in its type, so a turn without one does not compile; a call
 *   that still has none (a `WithHandler` used outside any scope) fails with `MissingScope`, returned to the
 *   model. The toolkit never remembers a scope: there is no shared default.
 * - Model-facing names map to (server, MCP tool name) through a table built at discovery, never by parsing
 *   a prefix, so `web_` + `scraper_fetch` and `web_scraper_` + `fetch` cannot be confused. When two tools
 *   end up with the same name the server listed first keeps it and the other is left out and reported
 *   (`ToolSkipped`). Characters providers reject (`.`, `/`, …) become `_`.
 *
 * Discovery and its cache
 * - Tool lists are per server, not per scope: each is listed once and cached. By default a server is
 *   listed through the session of the first turn that needs it — a session that thread would open anyway,
 *   so a stateful server (a browser, a REPL process) costs no extra process. Set `discoveryScope` (e.g.
 *   `"__discovery__"`) to list through one dedicated session per server instead; it is an ordinary pool
 *   session, counted against capacity and evicted like any other.
 * - Every session the toolkit touches is watched for `notifications/tools/list_changed`; the server's list
 *   is then re-listed when the next turn resolves the toolkit (`toolsChanged` reports the change).
 * - A list is trusted only while the session it was taken through is still the pool's session for its key.
 *   Once the pool retires that session — `pool.reload` changed the server (checked before `reload`
 *   returns), or it was lost, invalidated, evicted, expired or its scope closed — the next resolution lists
 *   the server again, since the replacement may offer other tools. Without `discoveryScope` that session is
 *   the first lister's thread session, so that thread ending or being evicted costs one more `tools/list`
 *   on the next turn; then the new list is cached as before.
 * - A server that `pool.reload` removed has its tools dropped; `discover` reports it (`ToolDiscoveryError`
 *   with cause `UnknownServer`).
 * - Discovery of a broken server fails that server alone: its tools are left out (or its last good list is
 *   kept), a `ToolDiscoveryError` is logged and reported by `discover`, and the server is tried again after
 *   `retryDiscoveryAfter` (a `reload` that fixes it does not skip that wait: call `invalidate` for that).
 *   The other servers' tools are offered as usual.
 * - Concurrent turns share one listing per server; a turn interrupted while it waits does not cancel it.
 *
 * Results
 * - Content maps to what the model reads: text as text, images and audio as file parts, embedded text
 *   resources as text, resource links as text; structured content stays in the typed result (and is sent
 *   as JSON when a result has no content).
 * - Tools use `failureMode: "return"`: an `isError: true` result reaches the model as a failed tool result
 *   (`McpToolError`), and so do session errors (`SessionLost`, `CallTimeout`, …), so the model can retry or
 *   explain instead of the whole turn failing. The application still sees them, typed, in the response's
 *   tool results, and session errors are logged.
 * - Interrupting a turn interrupts its tool calls; the pool aborts the request and the server is told
 *   (`notifications/cancelled`). The session stays for the thread's next call.
 *
 * @since 0.1.0
 */
import type {
  CallToolResult,
  ContentBlock as McpContentBlock,
  Tool as McpToolDefinition
} from "@modelcontextprotocol/sdk/types.js"
import {
  Cause,
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  FiberSet,
  Option,
  PubSub,
  Result,
  Schema,
  Stream
} from "effect"
// Types only: the `effect/ai` barrel loads the AI, HTTP and RPC stack, so `make` imports it when it runs.
import type { AiError, Prompt, Tool, Toolkit } from "effect/ai"
import type * as JsonSchema from "effect/JsonSchema"
import type * as Scope from "effect/Scope"
import {
  configDecoder,
  expected,
  expectedWithMessage,
  isRecord,
  objectOf,
  optionalField,
  parsed,
  reject,
  select,
  show,
  uniqueList
} from "./internal/configSchema.ts"
import { durationInput } from "./internal/options.ts"
import { isSessionCurrent } from "./internal/pool.ts"
import * as internal from "./internal/toolkit.ts"
import {
  CallTimeout,
  ConfigError,
  ConnectError,
  ConnectTimeout,
  McpProtocolError,
  MissingScope,
  PoolClosed,
  SessionLost,
  UnknownServer
} from "./McpPoolError.ts"
import { McpScope } from "./McpScope.ts"
import type { McpSession } from "./McpSession.ts"
import * as McpSessionPool from "./McpSessionPool.ts"

// =============================================================================
// Results and errors
// =============================================================================

/**
 * One MCP content block (text, image, audio, resource link, embedded resource), kept as the server sent it.
 *
 * @stability experimental
 * @since 0.1.0
 * @category schemas
 */
export const ContentBlock: Schema.declare<McpContentBlock> = Schema.declare(internal.isContentBlock, {
  identifier: "McpContentBlock"
})

/**
 * A successful tool result: the MCP content and, when the tool declares an output schema, its structured
 * content. The model is sent `toModelOutput(result)`; the application gets this value.
 *
 * @stability experimental
 * @since 0.1.0
 * @category schemas
 */
export const ToolResult = Schema.Struct({
  content: Schema.Array(ContentBlock),
  structuredContent: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown))
})

/**
 * @stability experimental
 * @since 0.1.0
 * @category models
 */
export type ToolResult = typeof ToolResult.Type

/**
 * The tool ran and reported a failure (`isError: true`). Reaches the model as a failed tool result whose
 * `text` is what the tool said.
 *
 * @stability experimental
 * @since 0.1.0
 * @category errors
 */
export class McpToolError extends Schema.TaggedError<McpToolError>()("McpToolError", {
  server: Schema.String,
  tool: Schema.String,
  text: Schema.String,
  structuredContent: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown))
}) {
  override get message(): string {
    return `Tool "${this.tool}" of MCP server "${this.server}" reported an error: ${this.text}`
  }
}

/**
 * What obtaining a session and calling it can fail with (the pool's typed errors).
 *
 * @stability experimental
 * @since 0.1.0
 * @category schemas
 */
export const SessionFailure = Schema.Union([
  SessionLost,
  CallTimeout,
  McpProtocolError,
  ConnectError,
  ConnectTimeout,
  PoolClosed,
  UnknownServer,
  MissingScope
])

/**
 * @stability experimental
 * @since 0.1.0
 * @category models
 */
export type SessionFailure = typeof SessionFailure.Type

/**
 * The failure of one tool call, as returned to the model: the tool's own error or a session error.
 *
 * @stability experimental
 * @since 0.1.0
 * @category schemas
 */
export const ToolFailure = Schema.Union([McpToolError, SessionFailure])

/**
 * @stability experimental
 * @since 0.1.0
 * @category models
 */
export type ToolFailure = typeof ToolFailure.Type

/**
 * Listing one server's tools failed. Only that server's tools are missing; it is tried again after
 * `retryDiscoveryAfter`, or at once after `invalidate` or a `list_changed`.
 *
 * @stability experimental
 * @since 0.1.0
 * @category errors
 */
export class ToolDiscoveryError extends Schema.TaggedError<ToolDiscoveryError>()("ToolDiscoveryError", {
  server: Schema.String,
  scope: Schema.String,
  reason: Schema.String,
  cause: Schema.optionalKey(SessionFailure)
}) {
  override get message(): string {
    return `Could not list the tools of MCP server "${this.server}" (through scope "${this.scope}"): ${this.reason}`
  }
}

/**
 * One tool of a server was left out of the toolkit: its name is unusable or taken, or it needs MCP tasks.
 *
 * @stability experimental
 * @since 0.1.0
 * @category errors
 */
export class ToolSkipped extends Schema.TaggedError<ToolSkipped>()("ToolSkipped", {
  server: Schema.String,
  tool: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `Tool "${this.tool}" of MCP server "${this.server}" was left out of the toolkit: ${this.reason}`
  }
}

/**
 * What the toolkit reports about discovery: a server that could not be listed, or a tool left out.
 *
 * @stability experimental
 * @since 0.1.0
 * @category errors
 */
export type DiscoveryProblem = ToolDiscoveryError | ToolSkipped

/**
 * The content a tool result sends to the model (see the module docs for the mapping).
 *
 * @stability experimental
 * @since 0.1.0
 * @category mapping
 */
export const toModelOutput = (result: ToolResult): Array<Prompt.ToolModelOutputPart> =>
  internal.toModelOutput(result.content, result.structuredContent)

// =============================================================================
// Models
// =============================================================================

/**
 * A tool of the toolkit: JSON Schema parameters from the server, `ToolResult` on success, `ToolFailure`
 * returned to the model on failure.
 *
 * @stability experimental
 * @since 0.1.0
 * @category models
 */
export interface McpTool extends
  Tool.Tool<string, {
    readonly parameters: typeof Schema.Unknown
    readonly success: typeof ToolResult
    readonly failure: typeof ToolFailure
    readonly failureMode: "return"
  }>
{}

/**
 * @stability experimental
 * @since 0.1.0
 * @category models
 */
export type Tools = Record<string, McpTool>

/**
 * The MCP tool definition, as listed by the server.
 *
 * @stability experimental
 * @since 0.1.0
 * @category models
 */
export type ToolDefinition = McpToolDefinition

/**
 * @stability experimental
 * @since 0.1.0
 * @category models
 */
export interface ServerOptions {
  readonly server: string
  /**
   * Prepended to this server's tool names, e.g. `"web_"`. Overrides `prefixToolNames`; `""` turns it off
   * for a server whose tools already carry a prefix (Playwright MCP's are `browser_navigate`, …: with
   * `"browser_"` they would become `browser_browser_navigate`).
   */
  readonly prefix?: string | undefined
  /** Offer only the tools for which this returns true. */
  readonly filter?: ((tool: ToolDefinition) => boolean) | undefined
}

/**
 * @stability experimental
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Pool server names (or per-server options), in priority order: the first keeps a contested tool name. */
  readonly servers: ReadonlyArray<string | ServerOptions>
  /** Prefix every tool name with its server's name and `_` (default false). */
  readonly prefixToolNames?: boolean | undefined
  /**
   * The scope key to list tools through. Default: the scope of the turn that first needs a server's list
   * (no extra session). A fixed key, e.g. `"__discovery__"`, keeps one dedicated session per server.
   */
  readonly discoveryScope?: string | undefined
  /** How long a failed discovery is remembered before the server is tried again (default 5 seconds). */
  readonly retryDiscoveryAfter?: Duration.Input | undefined
}

/**
 * One tool as offered to the model.
 *
 * @stability experimental
 * @since 0.1.0
 * @category models
 */
export interface ToolInfo {
  /** The model-facing name. */
  readonly name: string
  readonly server: string
  /** The tool's name on its server. */
  readonly tool: string
  readonly description: string | undefined
}

/**
 * @stability experimental
 * @since 0.1.0
 * @category models
 */
export interface Discovery {
  readonly tools: ReadonlyArray<ToolInfo>
  readonly problems: ReadonlyArray<DiscoveryProblem>
}

/**
 * @stability experimental
 * @since 0.1.0
 * @category models
 */
export interface McpToolkit {
  /**
   * The tools with their handlers, as of now: pass it as `toolkit` to `LanguageModel.generateText`,
   * `streamText` or `Chat`, which resolve it once per request — so changed tool lists are picked up
   * between steps. It requires `McpScope`, so the type checker makes you provide the thread's scope
   * around the turn (`McpScope.provide(threadId)`). Never fails: a server that cannot be listed is left
   * out (see `discover`).
   */
  readonly toolkit: Effect.Effect<Toolkit.WithHandler<Tools>, never, McpScope>
  /**
   * Lists what needs listing and reports the tools offered and any problems. Lists through the current
   * `McpScope` unless `discoveryScope` is set.
   */
  readonly discover: Effect.Effect<Discovery, never, McpScope>
  /** Names of servers that sent `notifications/tools/list_changed`, from subscription on. */
  readonly toolsChanged: Stream.Stream<string>
  /**
   * Forgets the cached lists (of one server, or all) and any remembered discovery failure: the next
   * resolution lists them again.
   */
  readonly invalidate: (server?: string) => Effect.Effect<void>
}

// =============================================================================
// Constructor
// =============================================================================

const MAX_PAGES = 100
const DEFAULT_RETRY_AFTER = "5 seconds"

/**
 * `effect/ai`, loaded by the first `make` rather than with this module: importing the package must not
 * cost the whole AI stack to an app that only pools sessions. Node caches the module; a failure to load
 * it is a defect.
 */
const loadAi = Effect.promise(() => import("effect/ai"))

interface Listing {
  readonly generation: number
  /** The session the list was taken through: once the pool retires it, the server may have changed. */
  readonly session: McpSession
  readonly tools: ReadonlyArray<ToolDefinition>
}

interface ServerEntry {
  readonly server: string
  readonly prefix: string
  readonly filter: ((tool: ToolDefinition) => boolean) | undefined
  /** Bumped by `list_changed` and `invalidate`: a list is current when it was taken at this generation. */
  generation: number
  listed: Listing | undefined
  failure: { readonly generation: number; readonly at: number; readonly error: ToolDiscoveryError } | undefined
  inflight: Deferred.Deferred<void> | undefined
}

interface Built {
  readonly key: ReadonlyArray<unknown>
  readonly toolkit: Toolkit.WithHandler<Tools>
  readonly tools: ReadonlyArray<ToolInfo>
  readonly skipped: ReadonlyArray<ToolSkipped>
}

const ServerName = expectedWithMessage((u): u is string => typeof u === "string" && u !== "", "expected a server name")

const ServerItem = select({
  name: ServerName,
  options: Schema.Struct({
    server: ServerName,
    prefix: optionalField(parsed<string>((u) =>
      typeof u === "string" && internal.isValidPrefix(u)
        ? Result.succeed(u)
        : Result.fail(`expected letters, digits, "_" or "-", got ${show(u)}`)
    )),
    filter: optionalField(expected(
      (u): u is (tool: ToolDefinition) => boolean => typeof u === "function",
      "a function of the tool definition"
    ))
  })
}, (u) =>
  typeof u === "string"
    ? "name"
    : isRecord(u)
    ? "options"
    : reject(`expected a server name or server options ({ server, prefix?, filter? }), got ${show(u)}`))

const decodeOptions = configDecoder(
  objectOf(
    Schema.Struct({
      servers: uniqueList(ServerItem, {
        what: "a list of server names or server options",
        empty: "expected at least one server",
        nameOf: (u) => {
          const name = isRecord(u) ? u.server : u
          return typeof name === "string" && name !== "" ? name : undefined
        },
        repeated: (name) => `server "${name}" is listed twice`
      }),
      prefixToolNames: optionalField(expected((u): u is boolean => typeof u === "boolean", "true or false")),
      retryDiscoveryAfter: optionalField(durationInput(() => "expected a non-negative duration")),
      discoveryScope: optionalField(
        expectedWithMessage((u): u is string => typeof u === "string" && u !== "", "expected a non-empty scope key")
      )
    }),
    "an object with `servers`"
  ),
  "(options)"
)

const defaultRetryAfter = Duration.fromInputUnsafe(DEFAULT_RETRY_AFTER)

const validate = (options: Options) =>
  Effect.map(decodeOptions(options, "McpToolkit options"), (decoded) => ({
    entries: decoded.servers.map((item): ServerEntry => {
      const spec: ServerOptions = item.kind === "name" ? { server: item.value } : item.value
      return {
        server: spec.server,
        prefix: spec.prefix ?? (decoded.prefixToolNames === true ? `${spec.server}_` : ""),
        filter: spec.filter,
        generation: 0,
        listed: undefined,
        failure: undefined,
        inflight: undefined
      }
    }),
    retryAfterMillis: Duration.toMillis(decoded.retryDiscoveryAfter ?? defaultRetryAfter)
  }))

/**
 * Builds a toolkit over the pool's servers. Nothing is listed yet: servers are listed when a turn first
 * resolves `toolkit` (or `discover`). The toolkit's watchers and listings live in the current `Scope`.
 *
 * @stability experimental
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<McpToolkit, ConfigError, McpSessionPool.McpSessionPool | Scope.Scope> =>
  Effect.gen(function*() {
    const { entries, retryAfterMillis } = yield* validate(options)
    const pool = yield* McpSessionPool.McpSessionPool
    const ai = yield* loadAi
    // Listings and watchers outlive the turn that started them; they end with the toolkit's scope.
    const fibers = yield* FiberSet.make()
    const changes = yield* PubSub.sliding<string>(256)
    const watched = new WeakSet<McpSession>()
    // Registered after the FiberSet, so it runs first: no listing is started into a closed set (its waiters
    // would wait for a fiber that never runs).
    let closed = false
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closed = true
      })
    )

    // --- list_changed ---

    const markChanged = (entry: ServerEntry) =>
      Effect.suspend(() => {
        entry.generation++
        return PubSub.publish(changes, entry.server)
      }).pipe(Effect.andThen(Effect.logDebug(`MCP tools of "${entry.server}" changed`)))

    /** Watches a session for `list_changed` until it closes (its notification stream then ends). */
    const watch = (entry: ServerEntry, session: McpSession): Effect.Effect<void> => {
      if (watched.has(session) || session.serverCapabilities.tools?.listChanged !== true) return Effect.void
      watched.add(session)
      return FiberSet.run(
        fibers,
        Stream.runForEach(
          session.notifications,
          (notification) =>
            notification.method === "notifications/tools/list_changed" ? markChanged(entry) : Effect.void
        ),
        // Subscribed before this returns, so a change right after the listing is not missed.
        { startImmediately: true }
      ).pipe(Effect.asVoid)
    }

    // --- discovery ---

    const listAll = (session: McpSession) =>
      Effect.gen(function*() {
        const tools: Array<ToolDefinition> = []
        const cursors = new Set<string>()
        let cursor: string | undefined
        for (let page = 0; page < MAX_PAGES; page++) {
          const result = yield* session.listTools(cursor === undefined ? undefined : { cursor })
          tools.push(...result.tools)
          if (result.nextCursor === undefined) return tools
          if (cursors.has(result.nextCursor)) return yield* Effect.fail("the server repeated a list cursor")
          cursors.add(cursor = result.nextCursor)
        }
        return yield* Effect.fail(`the tool list is longer than ${MAX_PAGES} pages`)
      })

    /**
     * Taken at the current generation through a session the pool still serves. A session the pool retired
     * (reload, invalidate, eviction, expiry, loss, closeScope) may be replaced by a server with other tools.
     */
    const isCurrent = (entry: ServerEntry): boolean =>
      entry.listed !== undefined && entry.listed.generation === entry.generation &&
      isSessionCurrent(entry.listed.session)

    /** Runs in its own fiber: whoever waits for it may be interrupted without cancelling it. */
    const runDiscovery = (entry: ServerEntry, scope: string, generation: number, done: Deferred.Deferred<void>) =>
      pool.use(
        { server: entry.server, scope },
        (session) =>
          Effect.andThen(
            watch(entry, session),
            Effect.map(listAll(session), (tools): Listing => ({ generation, session, tools }))
          )
      ).pipe(
        Effect.exit,
        Effect.flatMap((exit) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) => {
            if (Exit.isSuccess(exit)) {
              entry.listed = exit.value
              if (entry.failure !== undefined && entry.failure.generation <= generation) entry.failure = undefined
              return Effect.logDebug(`MCP tools of "${entry.server}" listed (${exit.value.tools.length})`)
            }
            const found = Cause.findErrorOption(exit.cause)
            // Interrupted (the toolkit is closing) or a defect: nothing to remember; the next turn retries.
            if (Option.isNone(found)) return Effect.failCause(exit.cause)
            const error = found.value
            const failure = typeof error === "string"
              ? new ToolDiscoveryError({ server: entry.server, scope, reason: error })
              : new ToolDiscoveryError({ server: entry.server, scope, reason: error.message, cause: error })
            entry.failure = { generation, at: now, error: failure }
            // No longer configured (removed by `pool.reload`): its last list names tools that cannot be called.
            if (typeof error !== "string" && error._tag === "UnknownServer" && entry.listed !== undefined) {
              entry.listed = undefined
              return Effect.logWarning(`${failure.message}; its tools are no longer offered`)
            }
            return Effect.logWarning(failure.message)
          })
        ),
        Effect.ensuring(Effect.sync(() => {
          if (entry.inflight === done) entry.inflight = undefined
          Deferred.doneUnsafe(done, Exit.void)
        })),
        Effect.withSpan("McpToolkit.discover", { attributes: { "mcp.server": entry.server, "mcp.scope": scope } })
      )

    /**
     * One attempt to make the entry's list current, unless its last attempt failed recently; never fails.
     * True when it waited for a listing, which may have finished stale (a reload or `list_changed` while it ran).
     */
    const listOnce = (entry: ServerEntry, scope: string): Effect.Effect<boolean> =>
      Effect.uninterruptibleMask((restore) =>
        Clock.clockWith((clock) => {
          if (closed || isCurrent(entry)) return Effect.succeed(false)
          if (entry.inflight !== undefined) return Effect.as(restore(Deferred.await(entry.inflight)), true)
          const failure = entry.failure
          if (
            failure !== undefined && failure.generation === entry.generation &&
            clock.currentTimeMillisUnsafe() - failure.at < retryAfterMillis
          ) return Effect.succeed(false)
          // Check and claim in one step (no yield in between), so concurrent turns share one listing.
          const done = Deferred.makeUnsafe<void>()
          entry.inflight = done
          return FiberSet.run(fibers, runDiscovery(entry, scope, entry.generation, done), { startImmediately: true })
            .pipe(Effect.andThen(restore(Deferred.await(done))), Effect.as(true))
        })
      )

    /**
     * A listing that finished stale is tried again once, not until it sticks: a server whose session dies
     * after every listing must not hold a turn. The second attempt runs outside the first one's mask, or
     * its `restore` could not make the wait interruptible again.
     */
    const ensureListed = (entry: ServerEntry, scope: string): Effect.Effect<void> =>
      Effect.flatMap(listOnce(entry, scope), (waited) => waited ? Effect.asVoid(listOnce(entry, scope)) : Effect.void)

    const listEverything = (scope: string) =>
      Effect.forEach(entries, (entry) => ensureListed(entry, scope), { concurrency: "unbounded", discard: true })

    // --- the toolkit ---

    const callTool =
      (entry: ServerEntry, tool: string, name: string) =>
      (params: unknown): Effect.Effect<ToolResult, ToolFailure | AiError.AiErrorReason> => {
        if (params !== undefined && !isRecord(params)) {
          return Effect.fail(
            new ai.AiError.ToolParameterValidationError({ toolName: name, description: "expected a JSON object" })
          )
        }
        // No scope: the pool takes the caller's McpScope, so routing follows the calling thread.
        return pool.use(
          { server: entry.server },
          (session) => Effect.andThen(watch(entry, session), session.callTool({ name: tool, arguments: params }))
        ).pipe(
          Effect.tapError((error) => Effect.logWarning(`MCP tool "${name}" failed: ${error.message}`)),
          Effect.flatMap((result: CallToolResult) =>
            result.isError === true
              ? Effect.fail(
                new McpToolError({
                  server: entry.server,
                  tool,
                  text: ai.Prompt.toolModelOutputToText(
                    internal.toModelOutput(result.content, result.structuredContent)
                  ),
                  ...(result.structuredContent === undefined ? {} : { structuredContent: result.structuredContent })
                })
              )
              : Effect.succeed<ToolResult>(
                result.structuredContent === undefined
                  ? { content: result.content }
                  : { content: result.content, structuredContent: result.structuredContent }
              )
          ),
          Effect.withSpan("McpToolkit.callTool", { attributes: { "mcp.server": entry.server, "mcp.tool": tool } })
        )
      }

    const makeTool = (name: string, definition: ToolDefinition): McpTool => {
      const hints = definition.annotations
      const title = definition.title ?? hints?.title
      let tool: McpTool = ai.Tool.dynamic(name, {
        description: definition.description,
        parameters: definition.inputSchema as JsonSchema.JsonSchema,
        success: ToolResult,
        failure: ToolFailure,
        failureMode: "return",
        toModelOutput
      })
        // Server schemas are rarely valid for strict mode (every property required, no extras).
        .annotate(ai.Tool.Strict, false)
      if (title !== undefined) tool = tool.annotate(ai.Tool.Title, title)
      if (hints?.readOnlyHint !== undefined) tool = tool.annotate(ai.Tool.Readonly, hints.readOnlyHint)
      if (hints?.destructiveHint !== undefined) tool = tool.annotate(ai.Tool.Destructive, hints.destructiveHint)
      if (hints?.idempotentHint !== undefined) tool = tool.annotate(ai.Tool.Idempotent, hints.idempotentHint)
      if (hints?.openWorldHint !== undefined) tool = tool.annotate(ai.Tool.OpenWorld, hints.openWorldHint)
      return tool
    }

    let built: Built | undefined

    /** The toolkit for the current lists; rebuilt only when a list changed. */
    const build = Effect.suspend((): Effect.Effect<Built> => {
      const key = entries.map((entry) => entry.listed)
      if (built !== undefined && built.key.every((listed, i) => listed === key[i])) return Effect.succeed(built)
      const tools: Array<McpTool> = []
      const infos: Array<ToolInfo> = []
      const handlers: Record<string, ReturnType<typeof callTool>> = {}
      const owners = new Map<string, ToolInfo>()
      const skipped: Array<ToolSkipped> = []
      for (const entry of entries) {
        for (const definition of entry.listed?.tools ?? []) {
          if (entry.filter !== undefined && !entry.filter(definition)) continue
          const skip = (reason: string) =>
            skipped.push(new ToolSkipped({ server: entry.server, tool: definition.name, reason }))
          if (internal.requiresTasks(definition)) {
            skip("it requires task-augmented execution (MCP tasks)")
            continue
          }
          const name = internal.modelToolName(entry.prefix, definition.name)
          if (typeof name !== "string") {
            skip(name.invalid)
            continue
          }
          const owner = owners.get(name)
          if (owner !== undefined) {
            skip(`its name "${name}" is taken by tool "${owner.tool}" of server "${owner.server}" (set a prefix)`)
            continue
          }
          const info: ToolInfo = {
            name,
            server: entry.server,
            tool: definition.name,
            description: definition.description
          }
          owners.set(name, info)
          infos.push(info)
          tools.push(makeTool(name, definition))
          handlers[name] = callTool(entry, definition.name, name)
        }
      }
      const toolkit = ai.Toolkit.make(...tools)
      // `toHandlers` captures the current services and `handle` merges them under the caller's. Capture
      // none: the builder's McpScope must never become the fallback scope of another thread's call.
      const handlerContext = toolkit.toHandlers(handlers).pipe(
        Effect.updateContext((_: Context.Context<never>) => Context.empty())
      )
      return Effect.flatMap(handlerContext, (context) => Effect.provideContext(toolkit, context)).pipe(
        Effect.map((withHandler): Built => ({ key, toolkit: withHandler, tools: infos, skipped })),
        Effect.tap((next) =>
          Effect.sync(() => {
            built = next
          }).pipe(Effect.andThen(Effect.forEach(skipped, (problem) => Effect.logWarning(problem.message))))
        )
      )
    })

    const toolkit = Effect.gen(function*() {
      const scope = yield* McpScope
      yield* listEverything(options.discoveryScope ?? scope)
      return (yield* build).toolkit
    })

    const discover = Effect.gen(function*() {
      yield* listEverything(options.discoveryScope ?? (yield* McpScope))
      const current = yield* build
      const failures = entries.flatMap((entry) =>
        entry.failure !== undefined && entry.failure.generation >= (entry.listed?.generation ?? -1)
          ? [entry.failure.error]
          : []
      )
      return { tools: current.tools, problems: [...failures, ...current.skipped] } satisfies Discovery
    })

    return {
      toolkit,
      discover,
      toolsChanged: Stream.fromPubSub(changes),
      invalidate: (server) =>
        Effect.sync(() => {
          for (const entry of entries) if (server === undefined || entry.server === server) entry.generation++
        })
    } satisfies McpToolkit
  })
