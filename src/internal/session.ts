/**
 * Opening one session: transport (per config kind), the revision (negotiate.ts), the SDK client of that
 * revision and its handshake — all inside the `Scope` that the session's owner fiber holds, so that
 * closing that scope releases exactly what was opened, in reverse order (client, then transport / process).
 *
 * 2025-era sessions run on the 1.32 SDK's `Client` (`initialize`); 2026-07-28 sessions on SDK v2's `Client`,
 * given the `server/discover` result so that it connects without a round trip. Both run over the pool's
 * own transports. Everything above the SDK client (typed errors, timeouts, termination, notifications) is
 * one code path for both, through {@link Wire}.
 */
import type {
  Client as ModernClient,
  ClientCapabilities as ModernCapabilities,
  DiscoverResult,
  Transport as ModernTransport
} from "@modelcontextprotocol/client"
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js"
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import {
  type CallToolResult,
  ErrorCode,
  type GetPromptResult,
  type Implementation,
  type JSONRPCMessage,
  type ListPromptsResult,
  type ListResourcesResult,
  type ListToolsResult,
  type LoggingLevel,
  McpError,
  type MessageExtraInfo,
  type Progress,
  type ReadResourceResult,
  type ResourceUpdatedNotification,
  type ServerCapabilities,
  type ServerNotification
} from "@modelcontextprotocol/sdk/types.js"
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv"
import type { jsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/types.js"
import {
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  type Fiber,
  Predicate,
  PubSub,
  Scope,
  Semaphore,
  Stream,
  Tracer
} from "effect"
import { constVoid } from "effect/Function"
import {
  CallTimeout,
  ConnectError,
  ConnectTimeout,
  McpProtocolError,
  PoolClosed,
  SessionLost
} from "../McpPoolError.ts"
import type { McpSessionError } from "../McpPoolError.ts"
import { type McpServerConfig, resolvePerScope } from "../McpServerConfig.ts"
import type { CallToolParams, McpSession, RequestOptions, SdkClient, ThreadState } from "../McpSession.ts"
import { callTool } from "./callToolResult.ts"
import { show } from "./configSchema.ts"
import {
  describeOutcome,
  type Discovery,
  legacyRevision,
  modernRevision,
  probe,
  type ProbeOutcome,
  refusalOffersModern,
  supportedVersions,
  unsupportedProtocolVersion,
  type Verdict,
  type Verdicts
} from "./negotiate.ts"
import { checkArgs, decodeDuration, maxTimerMillis, type ServerPolicy } from "./options.ts"
import { openRemote, RemoteTransportError } from "./remote.ts"
import {
  HandlerRuns,
  installLegacy,
  installModern,
  type ResolvedHandlers,
  type SessionRequests
} from "./serverRequests.ts"
import { spawnStdio } from "./stdioTransport.ts"
import { type Settle, ToolCalls } from "./toolCalls.ts"
import { isTransportLost } from "./transportLost.ts"

/** Why a session stopped serving: the error every later (and every in-flight) request fails with. */
export type Termination = SessionLost | PoolClosed

export interface SessionHandle {
  readonly session: McpSession
  /**
   * `tools/call` started at once, for the pool's fused hit path: calls `done` exactly once, with the result
   * or the typed error; returns what aborts the request (the server is told; `done` is called then too).
   * `undefined` when the session limits calls in flight (a call may have to wait for its turn: the pool
   * then takes its full path).
   */
  readonly startCallTool:
    | ((
      params: CallToolParams,
      requestOptions: RequestOptions | undefined,
      done: (exit: Exit.Exit<CallToolResult, McpSessionError>) => void
    ) => () => void)
    | undefined
  /** Completes when the transport dies on its own, never when the pool closes the session. */
  readonly lost: Deferred.Deferred<SessionLost>
  /**
   * Fails in-flight and later requests with `reason` at once and ends the notification streams; the
   * transport itself is closed by the session's scope. Idempotent.
   */
  readonly terminate: (reason: Termination) => Effect.Effect<void>
  /** Tells the server the scope's roots changed (`notifications/roots/list_changed`); errors ignored. */
  readonly rootsChanged: () => Effect.Effect<void>
}

export interface OpenSessionOptions {
  readonly server: string
  readonly scope: string
  readonly policy: ServerPolicy
  readonly clientInfo: Implementation
  /** Called once, when the transport dies on its own (as `lost` completes): lets the owner wait on one signal. */
  readonly onLost: () => void
  /** The pool's revision verdicts per server config: read before a connect, written after a probe. */
  readonly verdicts: Verdicts
  /** The app's answers to server requests (`McpClientHandlers`), if it gave any. */
  readonly handlers: ResolvedHandlers | undefined
  /** The layer's context, for running those handlers. */
  readonly runContext: Context.Context<never>
}

interface OpenedTransport {
  readonly transport: Transport
  readonly pid: number | undefined
}

const errorText = (error: unknown): string => error instanceof Error ? error.message : String(error)

/**
 * The SDK client builds its Ajv validator eagerly (~17 KiB, ~0.3 ms per session); most sessions never
 * validate a tool's output schema, so build it on first use.
 */
const lazyValidator = (): jsonSchemaValidator => {
  let ajv: AjvJsonSchemaValidator | undefined
  return { getValidator: (schema) => (ajv ??= new AjvJsonSchemaValidator()).getValidator(schema) }
}

/** Longer bounds than a Node timer honours mean "no bound" to the SDK (clamped, not fired after 1 ms). */
const sdkTimeout = (millis: number): number => Math.min(millis, maxTimerMillis)

const openTransport = (
  options: OpenSessionOptions,
  remoteMode: "legacy" | "modern"
): Effect.Effect<OpenedTransport, ConnectError, Scope.Scope> => {
  const { policy: { config }, scope, server } = options
  const connectError = (reason: string) => (cause: unknown) => new ConnectError({ server, scope, reason, cause })
  switch (config._tag) {
    case "Stdio":
      return Effect.try({
        // `args`, `env` and `cwd` may be functions of the scope: user code that may throw.
        try: () => ({
          args: resolvePerScope(config.args, scope),
          env: resolvePerScope(config.env, scope),
          cwd: config.cwd === undefined ? undefined : resolvePerScope(config.cwd, scope)
        }),
        catch: (cause) => connectError(`the args, env or cwd function threw: ${errorText(cause)}`)(cause)
      }).pipe(
        Effect.flatMap(({ args, cwd, env }) => {
          const badArgs = checkArgs(args)
          if (badArgs !== undefined) {
            return Effect.fail(connectError(`the args function returned a bad value: ${badArgs}`)(undefined))
          }
          return spawnStdio({
            command: config.command,
            args,
            env,
            inheritEnv: config.inheritEnv,
            cwd,
            stderr: config.stderr === "log" ? "pipe" : config.stderr,
            stdinGrace: Duration.fromInputUnsafe(config.stdinGrace),
            terminateGrace: Duration.fromInputUnsafe(config.terminateGrace)
          }).pipe(
            Effect.mapError((error) => connectError(`could not start "${config.command}": ${error.message}`)(error))
          )
        }),
        Effect.map(({ pid, transport }) => ({ transport, pid }))
      )
    case "InMemory":
      return Effect.gen(function*() {
        const mcpServer = yield* Effect.try({
          try: () => config.makeServer(scope),
          catch: connectError("the in-memory server factory threw")
        })
        const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair()
        yield* Effect.acquireRelease(
          Effect.tryPromise({
            try: () => mcpServer.connect(serverTransport),
            catch: connectError("the in-memory server did not start")
          }),
          () => Effect.promise(() => mcpServer.close().catch(() => undefined))
        )
        return { transport: clientTransport, pid: undefined }
      })
    case "Http":
      return Effect.map(
        openRemote(config, server, scope, remoteMode === "modern" ? "modern" : config.transport),
        (transport) => ({ transport, pid: undefined })
      )
    case "Custom":
      return Effect.suspend(() => {
        let connecting: unknown
        try {
          connecting = config.connect(scope)
        } catch (cause) {
          return Effect.fail(new Error(`connect threw: ${errorText(cause)}`, { cause }))
        }
        if (Effect.isEffect(connecting)) return connecting as Effect.Effect<Transport, unknown, Scope.Scope>
        // An easy slip from JavaScript: a Promise would also reject unobserved and crash the process.
        if (connecting instanceof Promise) connecting.catch(() => undefined)
        return Effect.fail(new Error("McpServerConfig.custom: connect must return an Effect of a Transport"))
      }).pipe(
        Effect.map((transport) => ({ transport, pid: undefined })),
        Effect.mapError((error) => connectError(errorText(error))(error))
      )
  }
}

// =============================================================================
// The SDK client of each revision, in one shape
// =============================================================================

interface SdkRequestOptions {
  readonly signal: AbortSignal
  readonly timeout: number
  readonly onprogress?: (progress: Progress) => void
  readonly resetTimeoutOnProgress?: boolean
  readonly maxTotalTimeout?: number
}

type Cursor = { readonly cursor?: string | undefined } | undefined

/** What a session needs of its SDK client, whichever revision it speaks. */
interface Wire {
  readonly sdk: SdkClient
  readonly protocolVersion: string
  readonly serverInfo: Implementation | undefined
  readonly serverCapabilities: ServerCapabilities
  readonly instructions: string | undefined
  readonly callTool: (params: CallToolParams, options: SdkRequestOptions) => Promise<CallToolResult>
  readonly listTools: (params: Cursor, options: SdkRequestOptions) => Promise<ListToolsResult>
  readonly listResources: (params: Cursor, options: SdkRequestOptions) => Promise<ListResourcesResult>
  readonly readResource: (params: { readonly uri: string }, options: SdkRequestOptions) => Promise<ReadResourceResult>
  readonly listPrompts: (params: Cursor, options: SdkRequestOptions) => Promise<ListPromptsResult>
  readonly getPrompt: (
    params: { readonly name: string; readonly arguments?: Record<string, string> | undefined },
    options: SdkRequestOptions
  ) => Promise<GetPromptResult>
  readonly ping: (options: SdkRequestOptions) => Promise<unknown>
  readonly sendRootsListChanged: () => Promise<void>
  /** Asks for `notifications/resources/updated` of `uri`; resolves to what ends the subscription. */
  readonly subscribe: (uri: string, options: SdkRequestOptions) => Promise<() => Promise<unknown>>
  /** `undefined` where the revision has no `logging/setLevel`. */
  readonly setLoggingLevel: ((level: LoggingLevel, options: SdkRequestOptions) => Promise<unknown>) | undefined
  /** An abort signal for one request, and what aborts it. */
  readonly abortable: () => Abortable
  /** `tools/call` without the SDK's request path (toolCalls.ts); `undefined` where the SDK's is used. */
  readonly toolCalls: ToolCalls | undefined
}

/** The part of an `AbortController` a request needs. */
interface Abortable {
  readonly signal: AbortSignal
  readonly abort: () => void
}

/** The reason a real AbortController gives: the SDK's notifications/cancelled quotes it. */
const abortReason = () => new DOMException("This operation was aborted", "AbortError")

/**
 * A request's abort signal for the 1.32 SDK, without an `EventTarget`: a real `AbortController` and its
 * listener cost ~0.3 µs, a few per cent of a whole in-memory call, on every hit-path call that takes the
 * SDK's request path (those asking for progress; the rest go through toolCalls.ts). It has
 * what `Protocol.request` reads of `options.signal` (SDK 1.32.2; recheck on a bump): `aborted`, `reason`,
 * `throwIfAborted()` and `addEventListener("abort", …)`. SDK v2 may combine signals (`AbortSignal.any`),
 * which needs real ones: its sessions use an `AbortController`.
 */
class RequestAbort implements Abortable {
  aborted = false
  reason: unknown = undefined
  #listeners: Array<() => void> | undefined = undefined
  get signal(): AbortSignal {
    return this as unknown as AbortSignal
  }
  throwIfAborted(): void {
    if (this.aborted) throw this.reason
  }
  addEventListener(type: string, listener: () => void): void {
    if (type === "abort") (this.#listeners ??= []).push(listener)
  }
  abort(): void {
    if (this.aborted) return
    this.aborted = true
    this.reason = abortReason()
    for (const listener of this.#listeners ?? []) listener()
  }
}

/** A page request without a cursor is sent without params, as the SDK's own list helpers do. */
const page = (params: Cursor) => params?.cursor === undefined ? {} : { cursor: params.cursor }

/**
 * The 1.32 SDK's client as a `Wire`. A class: its methods live on the prototype, not in 13 closures per
 * session (a pool holds thousands).
 */
class LegacyWire implements Wire {
  readonly sdk: SdkClient
  readonly serverInfo: Implementation | undefined
  readonly serverCapabilities: ServerCapabilities
  readonly instructions: string | undefined
  readonly protocolVersion: string
  readonly #client: Client
  readonly toolCalls: ToolCalls | undefined
  constructor(client: Client, protocolVersion: string) {
    this.#client = client
    this.toolCalls = ToolCalls.make(client)
    this.protocolVersion = protocolVersion
    this.sdk = { revision: "2025-11-25", client }
    this.serverInfo = client.getServerVersion()
    this.serverCapabilities = client.getServerCapabilities() ?? {}
    this.instructions = client.getInstructions()
  }
  // Calls that ask for progress (or timeouts reset by it) take the SDK's own callTool, with callToolResult.ts's
  // decoder in place of zod's CallToolResultSchema; the rest go straight to the transport (toolCalls.ts).
  callTool(params: CallToolParams, options: SdkRequestOptions) {
    return this.toolCalls !== undefined && options.onprogress === undefined &&
        options.resetTimeoutOnProgress === undefined && options.maxTotalTimeout === undefined &&
        options.signal !== undefined && options.timeout !== undefined
      ? this.toolCalls.call(params, { signal: options.signal, timeout: options.timeout })
      : callTool(this.#client, params, options)
  }
  listTools(params: Cursor, options: SdkRequestOptions) {
    return this.#client.listTools(page(params), options)
  }
  listResources(params: Cursor, options: SdkRequestOptions) {
    return this.#client.listResources(page(params), options)
  }
  readResource(params: { readonly uri: string }, options: SdkRequestOptions) {
    return this.#client.readResource(params, options)
  }
  listPrompts(params: Cursor, options: SdkRequestOptions) {
    return this.#client.listPrompts(page(params), options)
  }
  getPrompt(
    params: { readonly name: string; readonly arguments?: Record<string, string> | undefined },
    options: SdkRequestOptions
  ) {
    return this.#client.getPrompt(params, options)
  }
  ping(options: SdkRequestOptions) {
    return this.#client.ping(options)
  }
  sendRootsListChanged() {
    return this.#client.sendRootsListChanged()
  }
  async subscribe(uri: string, options: SdkRequestOptions) {
    await this.#client.subscribeResource({ uri }, options)
    return () => this.#client.unsubscribeResource({ uri })
  }
  setLoggingLevel(level: LoggingLevel, options: SdkRequestOptions) {
    return this.#client.setLoggingLevel(level, options)
  }
  abortable(): Abortable {
    return new RequestAbort()
  }
}

/**
 * SDK v2's client as a `Wire`. Its results are the same JSON shapes as the 1.32 SDK's types the session
 * exposes, declared by another package (with 2026-era fields such as `ttlMs` and `resultType` passed
 * through): one cast each.
 */
class ModernWire implements Wire {
  readonly sdk: SdkClient
  readonly protocolVersion: string
  readonly serverInfo: Implementation | undefined
  readonly serverCapabilities: ServerCapabilities
  readonly instructions: string | undefined
  // Removed in 2026-07-28: a level travels in each request's `_meta` instead.
  readonly setLoggingLevel = undefined
  // SDK v2's own request path serves every call.
  readonly toolCalls = undefined
  readonly #client: ModernClient
  constructor(client: ModernClient) {
    this.#client = client
    this.sdk = { revision: "2026-07-28", client }
    this.protocolVersion = client.getNegotiatedProtocolVersion() ?? modernRevision
    this.serverInfo = client.getServerVersion()
    this.serverCapabilities = (client.getServerCapabilities() ?? {}) as ServerCapabilities
    this.instructions = client.getInstructions()
  }
  callTool(params: CallToolParams, options: SdkRequestOptions) {
    return this.#client.callTool(params, options) as Promise<CallToolResult>
  }
  listTools(params: Cursor, options: SdkRequestOptions) {
    return this.#client.listTools(page(params), options) as Promise<ListToolsResult>
  }
  listResources(params: Cursor, options: SdkRequestOptions) {
    return this.#client.listResources(page(params), options) as Promise<ListResourcesResult>
  }
  readResource(params: { readonly uri: string }, options: SdkRequestOptions) {
    return this.#client.readResource(params, options) as Promise<ReadResourceResult>
  }
  listPrompts(params: Cursor, options: SdkRequestOptions) {
    return this.#client.listPrompts(page(params), options) as Promise<ListPromptsResult>
  }
  getPrompt(
    params: { readonly name: string; readonly arguments?: Record<string, string> | undefined },
    options: SdkRequestOptions
  ) {
    return this.#client.getPrompt(params, options) as Promise<GetPromptResult>
  }
  // 2026-07-28 has no `ping` (SDK v2 refuses to send one); `server/discover` is what every server answers.
  ping(options: SdkRequestOptions) {
    return this.#client.discover(options)
  }
  sendRootsListChanged() {
    return this.#client.sendRootsListChanged()
  }
  // 2026-07-28 replaces resources/subscribe with a `subscriptions/listen` stream; its notifications reach
  // the same handlers as 2025-era ones (the session's hub).
  async subscribe(uri: string, options: SdkRequestOptions) {
    const subscription = await this.#client.listen({ resourceSubscriptions: [uri] }, options)
    return () => subscription.close()
  }
  abortable(): Abortable {
    return new AbortController()
  }
}

// SDK v2 (with its own zod schemas) is loaded by the first 2026-07-28 session, not with the package.
let ModernClientClass: typeof ModernClient | undefined
let ModernProtocolError: typeof import("@modelcontextprotocol/client").ProtocolError | undefined
const loadModernClient = Effect.tryPromise(async () => {
  if (ModernClientClass === undefined) {
    const sdk = await import("@modelcontextprotocol/client")
    ModernProtocolError = sdk.ProtocolError
    ModernClientClass = sdk.Client
  }
  return ModernClientClass
})

/** The SDK failure behind a rejected request, in the terms the session maps to typed errors. */
type SdkFailure =
  | { readonly _tag: "Rpc"; readonly code: number; readonly message: string; readonly data: unknown }
  | { readonly _tag: "Timeout"; readonly timeout: unknown }
  | { readonly _tag: "NotConnected" }
  | { readonly _tag: "InputRequired" }
  | { readonly _tag: "Other"; readonly message: string }

/**
 * 1.32: `McpError` (numeric code; a timeout is -32001 with `data.timeout`) and "Not connected". SDK v2:
 * `ProtocolError` (numeric code) for the server's errors and `SdkError` (string code) for its own.
 */
const sdkFailure = (cause: unknown): SdkFailure => {
  if (cause instanceof McpError) {
    const data = cause.data as { readonly timeout?: unknown } | undefined
    return cause.code === ErrorCode.RequestTimeout && data?.timeout !== undefined
      ? { _tag: "Timeout", timeout: data.timeout }
      : { _tag: "Rpc", code: cause.code, message: cause.message, data: cause.data }
  }
  if (ModernProtocolError !== undefined && cause instanceof ModernProtocolError) {
    return { _tag: "Rpc", code: cause.code, message: cause.message, data: cause.data }
  }
  // The pool's remote transport: the JSON-RPC error a failed HTTP answer carried, if any.
  if (cause instanceof RemoteTransportError && cause.code !== undefined) {
    return { _tag: "Rpc", code: cause.code, message: cause.message, data: cause.data }
  }
  if (!(cause instanceof Error)) return { _tag: "Other", message: String(cause) }
  if (cause.message === "Not connected") return { _tag: "NotConnected" }
  // SDK v2's `SdkError`: its own failures, with a string code.
  const code: unknown = Predicate.hasProperty(cause, "code") ? cause.code : undefined
  const data: unknown = Predicate.hasProperty(cause, "data") ? cause.data : undefined
  switch (code) {
    case "REQUEST_TIMEOUT":
      return { _tag: "Timeout", timeout: Predicate.hasProperty(data, "timeout") ? data.timeout : undefined }
    case "NOT_CONNECTED":
    case "CONNECTION_CLOSED":
      return { _tag: "NotConnected" }
    case "UNSUPPORTED_RESULT_TYPE":
      return Predicate.hasProperty(data, "resultType") && data.resultType === "input_required"
        ? { _tag: "InputRequired" }
        : { _tag: "Other", message: cause.message }
    default:
      return { _tag: "Other", message: cause.message }
  }
}

/**
 * A JSON-RPC error's text with its code said once. The 1.32 SDK prefixes "MCP error <code>: " to every
 * McpError message, and an SDK server sends its own prefixed message as the error text, so the client's
 * McpError reads "MCP error -32602: MCP error -32602: …"; SDK v2 adds none.
 */
const rpcMessage = (failure: { readonly code: number; readonly message: string }): string =>
  `MCP error ${failure.code}: ${failure.message.replace(/^(MCP error -?\d+: )+/, "")}`

// =============================================================================
// Connecting in one revision or the other
// =============================================================================

/** The callbacks of an SDK client, the same in both SDKs. */
interface ClientCallbacks {
  onclose?: (() => void) | undefined
  onerror?: ((error: Error) => void) | undefined
  fallbackNotificationHandler?: ((notification: never) => Promise<void>) | undefined
}

/** What a session gives the SDK client it adopts: its callbacks, and the app's answers to server requests. */
interface ClientWiring {
  readonly onclose: () => void
  readonly onerror: (error: Error) => void
  readonly onnotification: (notification: ServerNotification) => void
  readonly requests: SessionRequests | undefined
}

/**
 * Routes a client's callbacks to the session once the session adopts the client (after its handshake);
 * a close before then is replayed at adoption. A client whose connect failed is never adopted, so its
 * close (the SDK closes the transport) is not the session's death.
 */
const routeEvents = (client: ClientCallbacks, wiring: ClientWiring): () => void => {
  let adopted = false
  let early: { error: Error | undefined; closed: boolean } = { error: undefined, closed: false }
  client.onerror = (error) => adopted ? wiring.onerror(error) : (early.error = error)
  client.onclose = () => adopted ? wiring.onclose() : (early.closed = true)
  ;(client as { fallbackNotificationHandler?: (notification: ServerNotification) => Promise<void> })
    .fallbackNotificationHandler = async (notification) => {
      if (adopted) wiring.onnotification(notification)
    }
  return () => {
    adopted = true
    const { closed, error } = early
    early = { error: undefined, closed: false }
    if (error !== undefined) wiring.onerror(error)
    if (closed) wiring.onclose()
  }
}

interface Connected {
  readonly wire: Wire
  readonly transport: Transport
  readonly pid: number | undefined
  /** Connected on a cached 2026-07-28 verdict, with no round trip: nothing has confirmed it yet. */
  readonly fromVerdict?: boolean
}

/** How long `server/discover` may go unanswered before a local server counts as 2025-era (silent). */
const probeBoundMillis = 5_000

const connectFailure = (options: OpenSessionOptions, backstopMillis: number) => (cause: unknown) => {
  const { scope, server } = options
  const failure = sdkFailure(cause)
  if (failure._tag === "Timeout" && failure.timeout === sdkTimeout(backstopMillis)) {
    return new ConnectTimeout({ server, scope, timeoutMillis: Duration.toMillis(options.policy.connectTimeout) })
  }
  const reason = failure._tag === "Rpc" ? rpcMessage(failure) : errorText(cause)
  return new ConnectError({ server, scope, reason, cause })
}

/** `initialize` with the 1.32 SDK's client on an opened (possibly probed) transport. */
const connectLegacy = (
  options: OpenSessionOptions,
  opened: OpenedTransport,
  wiring: ClientWiring
): Effect.Effect<Connected, ConnectError | ConnectTimeout> =>
  Effect.suspend(() => {
    const client = new Client(options.clientInfo, {
      capabilities: wiring.requests?.resolved.capabilities ?? {},
      jsonSchemaValidator: lazyValidator()
    })
    if (wiring.requests !== undefined) installLegacy(client, wiring.requests)
    const adopt = routeEvents(client, wiring)
    // The pool's owner bounds the connect (and kills what it opened at once); the SDK's own timer would
    // race it and close the transport gracefully first, so it only backs that bound up.
    const backstopMillis = Duration.toMillis(options.policy.connectTimeout) * 2
    // The 1.32 client keeps the version `initialize` agreed on only by handing it to the transport.
    const { transport } = opened
    let agreed: string = legacyRevision
    const setProtocolVersion = transport.setProtocolVersion
    transport.setProtocolVersion = (version) => {
      agreed = version
      setProtocolVersion?.call(transport, version)
    }
    // One step, not a chain of combinators: what a connect holds while it waits is what thousands of
    // connects at once hold (and the collector copies).
    return Effect.callback<Connected, ConnectError | ConnectTimeout>((resume) => {
      let abandoned = false
      // An abandoned connect is restored and closed already, and nobody waits for its outcome (an error would
      // capture a stack). A throw while making the outcome is a defect of the connect, as tryPromise made it,
      // never a hang.
      const settle = (outcome: () => Effect.Effect<Connected, ConnectError | ConnectTimeout>) => {
        if (abandoned) return
        transport.setProtocolVersion = setProtocolVersion
        let made: Effect.Effect<Connected, ConnectError | ConnectTimeout>
        try {
          made = outcome()
        } catch (defect) {
          made = Effect.die(defect)
        }
        resume(made)
      }
      // No abort signal: a client must not cancel `initialize` (the spec says so), and none spares every
      // connect an AbortController and its listener. An abandoned connect closes the transport instead,
      // which fails the request: a custom transport may have no finalizer of its own, and the session
      // scope's close of it is added only once the session is made.
      client.connect(transport, { timeout: sdkTimeout(backstopMillis) }).then(
        () =>
          settle(() => {
            adopt()
            return Effect.succeed({ wire: new LegacyWire(client, agreed), transport, pid: opened.pid })
          }),
        (cause) => settle(() => Effect.fail(connectFailure(options, backstopMillis)(cause)))
      )
      return Effect.sync(() => {
        abandoned = true
        transport.setProtocolVersion = setProtocolVersion
        void transport.close().catch(() => undefined)
      })
    })
  })

/** SDK v2's client on an opened transport, given what `server/discover` said: no round trip. */
const connectModern = (
  options: OpenSessionOptions,
  opened: OpenedTransport,
  discovery: Discovery,
  wiring: ClientWiring
): Effect.Effect<Connected, ConnectError | ConnectTimeout> =>
  Effect.gen(function*() {
    const ModernClient = yield* Effect.mapError(
      loadModernClient,
      (cause) =>
        new ConnectError({ server: options.server, scope: options.scope, reason: "could not load SDK v2", cause })
    )
    // With handlers, SDK v2 answers a server's `input_required` rounds through them and retries the call;
    // without, it surfaces one as a typed error rather than retrying with no answers.
    const client = new ModernClient(options.clientInfo, {
      // The same capability objects, declared by the other package's types.
      capabilities: (wiring.requests?.resolved.capabilities ?? {}) as ModernCapabilities,
      inputRequired: { autoFulfill: wiring.requests !== undefined }
    })
    if (wiring.requests !== undefined) installModern(client, wiring.requests)
    const adopt = routeEvents(client, wiring)
    const backstopMillis = Duration.toMillis(options.policy.connectTimeout) * 2
    yield* Effect.tryPromise({
      try: (signal) =>
        client.connect(opened.transport as unknown as ModernTransport, {
          prior: { kind: "modern", discover: discovery as unknown as DiscoverResult },
          signal,
          timeout: sdkTimeout(backstopMillis)
        }),
      catch: connectFailure(options, backstopMillis)
    })
    adopt()
    return { wire: new ModernWire(client), transport: opened.transport, pid: opened.pid }
  })

/** An `initialize` refused with -32022 naming 2026-07-28: a cached 2025-era verdict gone stale. */
const refusedForModern = (error: ConnectError | ConnectTimeout): boolean => {
  if (error._tag !== "ConnectError") return false
  const failure = sdkFailure(error.cause)
  return failure._tag === "Rpc" && refusalOffersModern(failure.code, failure.data)
}

/**
 * A transport opened in a scope of its own under the session's, so that a connect that gives it up (the
 * server exited on the probe, refused a stale verdict, or needs the other SDK's transport) releases it
 * then, killing what it started, rather than with the session hours later.
 */
const openAttempt = (options: OpenSessionOptions, remoteMode: "legacy" | "modern") =>
  Effect.flatMap(Effect.scope, (sessionScope) => {
    const attemptScope = Scope.forkUnsafe(sessionScope)
    return Effect.map(Scope.provide(openTransport(options, remoteMode), attemptScope), (opened) => ({
      opened,
      // A failure exit: a stdio server given up on is killed at once, not asked to finish. Built only if
      // used: most connects keep their first transport.
      abandon: Effect.suspend(() => Scope.close(attemptScope, Exit.fail("abandoned")))
    }))
  })

/**
 * `first`: a connect's own question, bounded for a local server by the probe's bound, whose answer connects
 * of the same config that start meanwhile share; `own`: the same, not shared (asked again by a connect whose
 * shared answer led to a refused `initialize`); `patient`: asked again, as long as the connect may take,
 * after a local server's silence led to an `initialize` it refused.
 */
type ProbeMode = "first" | "own" | "patient"

/**
 * Asks the server which revision it speaks (`server/discover` on a fresh connection) and connects in the
 * one it answers for, on the same connection when the answer allows (see negotiate.ts), recording the
 * verdict once the connect succeeded. Asks at most twice in one connect: again, patiently and on a fresh
 * process, only when a local server's silence led to an `initialize` it refused for 2026-07-28 (a slow
 * start, e.g. `npx` fetching the server).
 */
const probeAndConnect = (
  options: OpenSessionOptions,
  wiring: ClientWiring,
  mode: ProbeMode = "first"
): Effect.Effect<Connected, ConnectError | ConnectTimeout, Scope.Scope> =>
  Effect.flatMap(openAttempt(options, "modern"), ({ abandon, opened }) => {
    const { config } = options.policy
    // Read again now that the transport is open: another connect may have asked, or decided, meanwhile.
    const known = sharesAnswers(config, mode) ? options.verdicts.get(config) : undefined
    if (known === undefined) return askAndConnect(options, wiring, mode, opened, abandon)
    const answer: Effect.Effect<ProbeOutcome | undefined> = known._tag === "Probing"
      ? Effect.promise(() => known.answer)
      : Effect.succeed(
        known._tag === "Modern"
          ? { _tag: "Modern", discovery: known.discovery }
          : { _tag: "LegacyEvidence", answer: "a cached verdict" }
      )
    return Effect.flatMap(
      answer,
      (outcome) =>
        Effect.flatMap(
          connectOnAnswer(options, wiring, opened, abandon, outcome),
          (connected) =>
            connected === undefined ? askAndConnect(options, wiring, mode, opened, abandon) : Effect.succeed(connected)
        )
    )
  })

/**
 * Over HTTP a deployed server answers: silence, a closed connection or a failed send is an outage. A local
 * process, or a custom transport, may be a 2025-era server that ignores, exits on, or cannot carry a request
 * before `initialize`: each is a verdict, as before the probe existed; a first question's answer is shared.
 */
const sharesAnswers = (config: McpServerConfig, mode: ProbeMode): boolean => config._tag !== "Http" && mode === "first"

/** `probeAndConnect`'s own question, on its opened transport, and the connect its answer leads to. */
const askAndConnect = (
  options: OpenSessionOptions,
  wiring: ClientWiring,
  mode: ProbeMode,
  opened: OpenedTransport,
  abandon: Effect.Effect<void>
): Effect.Effect<Connected, ConnectError | ConnectTimeout, Scope.Scope> => {
  const { policy: { config, protocol }, scope, server } = options
  // Set while this connect is the one asking for its config: it stays, answered, until a verdict replaces
  // it (this connect, or one on its answer, connected), so connects that start late take the answer too;
  // removed when this connect ends without one (a failed connect is not cached).
  let marker: Verdict | undefined
  let answered: ((outcome: ProbeOutcome | undefined) => void) | undefined
  const clearMarker = Effect.sync(() => {
    // Interrupted before the probe began, its waiters still hear (nothing): a second resolve is a no-op.
    answered?.(undefined)
    if (marker !== undefined && options.verdicts.get(config) === marker) options.verdicts.delete(config)
  })
  return Effect.gen(function*() {
    const fail = (reason: string, cause?: unknown) => Effect.fail(new ConnectError({ server, scope, reason, cause }))
    const remote = config._tag === "Http"
    // The first to ask for this config: connects that start meanwhile wait for this answer.
    if (sharesAnswers(config, mode) && options.verdicts.get(config) === undefined) {
      marker = { _tag: "Probing", answer: new Promise((resolve) => (answered = resolve)) }
      options.verdicts.set(config, marker)
    }
    const connectMillis = Duration.toMillis(options.policy.connectTimeout)
    const outcome: ProbeOutcome = yield* Effect.tryPromise({
      try: (signal) =>
        probe(opened.transport, {
          clientInfo: options.clientInfo,
          // Past the connect's own bound the owner ends the wait (this one only backs it up).
          timeoutMillis: remote || mode === "patient"
            ? sdkTimeout(connectMillis * 2)
            : Math.min(probeBoundMillis, connectMillis / 2),
          signal
        }),
      catch: (cause) => new ConnectError({ server, scope, reason: `could not start: ${errorText(cause)}`, cause })
    }).pipe(
      (probing) =>
        answered === undefined
          ? probing
          : Effect.onExit(
            probing,
            (exit) => Effect.sync(() => answered!(Exit.isSuccess(exit) ? exit.value : undefined))
          )
    )
    const asked = `server/discover: ${describeOutcome(outcome)}`
    if (outcome._tag === "Modern") {
      const connected = yield* connectModern(options, opened, outcome.discovery, wiring)
      options.verdicts.set(config, { _tag: "Modern", discovery: outcome.discovery })
      return connected
    }
    if (protocol === modernRevision) {
      return yield* fail(
        `the server does not offer the pinned revision ${modernRevision} (${asked}); ` +
          `an earlier one may work: set protocol to "auto" or "${legacyRevision}"`
      )
    }
    let legacy = opened
    switch (outcome._tag) {
      case "OtherModern":
        return yield* fail(`the server speaks neither ${legacyRevision} nor ${modernRevision} (${asked})`)
      case "SendFailed":
        if (remote) return yield* fail(asked, outcome.error)
        break
      case "Silent":
        if (remote) return yield* fail(`no answer from the server (${asked})`)
        break
      case "Closed":
        if (remote) return yield* fail(`the connection closed (${asked})`)
        // A 2025-era server that exits on any request before `initialize`: start it again, once.
        yield* abandon
        legacy = (yield* openAttempt(options, "legacy")).opened
        break
      case "LegacyEvidence":
        if (remote) {
          // A modern connection's transport is SDK v2's: a 2025-era session needs the 1.32 SDK's.
          yield* abandon
          legacy = (yield* openAttempt(options, "legacy")).opened
        }
        break
    }
    const connected = yield* connectLegacy(options, legacy, wiring).pipe(
      Effect.catchIf(
        (error) => mode !== "patient" && outcome._tag === "Silent" && refusedForModern(error),
        () => Effect.andThen(abandon, probeAndConnect(options, wiring, "patient"))
      ),
      Effect.mapError((error) => {
        if (error._tag !== "ConnectError" || error.reason.startsWith("the server")) return error
        const reason = outcome._tag === "Closed"
          ? `the server exited on the revision probe, and the one started again failed too (initialize: ${error.reason})`
          : `the server speaks neither ${legacyRevision} nor ${modernRevision} (${asked}; initialize: ${error.reason})`
        return new ConnectError({ server, scope, reason, cause: error.cause })
      })
    )
    if (connected.wire.sdk.revision === legacyRevision) options.verdicts.set(config, { _tag: "Legacy" })
    return connected
  }).pipe(Effect.onExit(() => clearMarker))
}

/**
 * A local server's connect on the answer another connect of the same config got to its probe (see
 * negotiate.ts), on this connect's own, unprobed transport: 2026-07-28 as on a cached verdict; `initialize`
 * where that connect goes on to `initialize` (its server answered as a 2025-era one, ignored the probe,
 * exited on it, or could not carry it), re-asked on a fresh transport if refused for 2026-07-28 — patiently
 * after silence, as that connect would. `undefined` when the answer says nothing (none, or only later
 * revisions): this connect asks its own transport.
 */
const connectOnAnswer = (
  options: OpenSessionOptions,
  wiring: ClientWiring,
  opened: OpenedTransport,
  abandon: Effect.Effect<void>,
  answer: ProbeOutcome | undefined
): Effect.Effect<Connected | undefined, ConnectError | ConnectTimeout, Scope.Scope> => {
  const { config, protocol } = options.policy
  if (answer?._tag === "Modern") {
    return Effect.map(connectModern(options, opened, answer.discovery, wiring), (connected) => {
      options.verdicts.set(config, { _tag: "Modern", discovery: answer.discovery })
      return { ...connected, fromVerdict: true }
    })
  }
  if (answer === undefined || answer._tag === "OtherModern" || protocol === modernRevision) {
    return Effect.succeed(undefined)
  }
  return connectLegacy(options, opened, wiring).pipe(
    Effect.catchIf(
      refusedForModern,
      () => Effect.andThen(abandon, probeAndConnect(options, wiring, answer._tag === "Silent" ? "patient" : "own"))
    ),
    Effect.tap((connected) =>
      Effect.sync(() => {
        if (connected.wire.sdk.revision === legacyRevision) options.verdicts.set(config, { _tag: "Legacy" })
      })
    )
  )
}

/** Transport plus SDK client in the revision the config asks for or the server speaks. */
const connectInRevision = (
  options: OpenSessionOptions,
  wiring: ClientWiring
): Effect.Effect<Connected, ConnectError | ConnectTimeout, Scope.Scope> =>
  Effect.suspend(() => {
    const { policy: { config, protocol }, scope, server } = options
    const legacyOnly = config._tag === "InMemory" || (config._tag === "Http" && config.transport === "sse")
    // A connect that keeps its one transport opens it in the session's scope: no attempt scope to release.
    if (legacyOnly || protocol === legacyRevision) {
      return Effect.flatMap(openTransport(options, "legacy"), (opened) =>
        connectLegacy(options, opened, wiring).pipe(
          Effect.mapError((error) => {
            if (protocol !== legacyRevision || error._tag !== "ConnectError") return error
            const failure = sdkFailure(error.cause)
            const offered = failure._tag === "Rpc" ? supportedVersions(failure.data) : undefined
            return offered === undefined ? error : new ConnectError({
              server,
              scope,
              reason: `the server refuses the pinned revision ${legacyRevision}: it supports only ${
                offered.join(", ")
              }`,
              cause: error.cause
            })
          })
        ))
    }
    const known = options.verdicts.get(config)
    if (known?._tag === "Modern") {
      return Effect.flatMap(openTransport(options, "modern"), (opened) =>
        Effect.map(
          connectModern(options, opened, known.discovery, wiring),
          (connected): Connected => ({ ...connected, fromVerdict: true })
        ))
    }
    if (known?._tag === "Legacy") {
      return Effect.flatMap(openAttempt(options, "legacy"), ({ abandon, opened }) =>
        connectLegacy(options, opened, wiring).pipe(
          Effect.catchIf(refusedForModern, () => {
            // Only the verdict read here: another connect may have started asking meanwhile.
            if (options.verdicts.get(config) === known) options.verdicts.delete(config)
            return Effect.andThen(abandon, probeAndConnect(options, wiring))
          })
        ))
    }
    return probeAndConnect(options, wiring)
  })

/**
 * Answers a 2025-era server gives a request of 2026-07-28 it was never introduced to: -32022, "not
 * initialized", or a result without the `resultType` every 2026-07-28 result has (SDK v2 refuses it).
 */
const answersOfTheOtherEra = (failure: SdkFailure): boolean =>
  failure._tag === "Rpc"
    ? failure.code === unsupportedProtocolVersion || /not initialized/i.test(failure.message)
    : failure._tag === "Other" && /resultType/.test(failure.message)

const threadStateOf = (config: McpServerConfig, connected: Connected): ThreadState => {
  switch (config._tag) {
    case "Stdio":
      return "process"
    case "InMemory":
      return "session"
    case "Http":
      return connected.wire.sdk.revision === "2025-11-25" && connected.transport.sessionId !== undefined
        ? "session"
        : "none"
    case "Custom":
      return connected.wire.sdk.revision === "2025-11-25" ? "session" : "none"
  }
}

/** W3C trace ids are 32 and 16 lower-case hex digits; a span with other ids has no `traceparent`. */
const traceIds = /^[0-9a-f]{32}-[0-9a-f]{16}$/

/**
 * Whether a tracing backend is installed. With Effect's own `nativeTracer` a span is seen by nobody, so the
 * connect path makes none (the Tracer module's advice): two spans were an eighth of a cold get's CPU.
 */
export const tracingEnabled = (fiber: Fiber.Fiber<unknown, unknown>): boolean =>
  fiber.getRef(Tracer.Tracer) !== Tracer.nativeTracer

/**
 * The call's params with the current span's W3C `traceparent` in `_meta` (SEP-414), unless there is no
 * span or the caller set one. The copy is made only then: a call without a span is sent as given.
 */
export const withTraceContext = (params: CallToolParams, fiber: Fiber.Fiber<unknown, unknown>): CallToolParams => {
  if (params._meta?.traceparent !== undefined) return params
  const span = Context.getOrUndefined(fiber.context, Tracer.ParentSpan)
  if (span === undefined) return params
  const ids = `${span.traceId}-${span.spanId}`
  if (!traceIds.test(ids)) return params
  return { ...params, _meta: { ...params._meta, traceparent: `00-${ids}-${span.sampled ? "01" : "00"}` } }
}

// =============================================================================
// The session
// =============================================================================

/**
 * A session as its users see it: the fields and request functions `openSession` gives it, and its
 * notification stream, made on first read. A class for that one getter: on the prototype it leaves every
 * session a fast object, where a getter in an object literal would put each one in dictionary mode (about
 * 1.5 KiB more per session, and slower reads of its methods on every call).
 */
class PooledSession implements McpSession {
  declare readonly server: string
  declare readonly scope: string
  declare readonly pid: number | undefined
  declare readonly revision: McpSession["revision"]
  declare readonly protocolVersion: string
  declare readonly threadState: ThreadState
  declare readonly serverInfo: Implementation
  declare readonly serverCapabilities: ServerCapabilities
  declare readonly instructions: string | undefined
  declare readonly sdk: SdkClient
  declare readonly listTools: McpSession["listTools"]
  declare readonly callTool: McpSession["callTool"]
  declare readonly listResources: McpSession["listResources"]
  declare readonly readResource: McpSession["readResource"]
  declare readonly listPrompts: McpSession["listPrompts"]
  declare readonly getPrompt: McpSession["getPrompt"]
  declare readonly subscribe: McpSession["subscribe"]
  declare readonly setLoggingLevel: McpSession["setLoggingLevel"]
  declare readonly ping: McpSession["ping"]
  readonly #notifications: () => Stream.Stream<ServerNotification>
  constructor(fields: Omit<McpSession, "notifications">, notifications: () => Stream.Stream<ServerNotification>) {
    // Always the same fields in the same order: every session shares one hidden class.
    Object.assign(this, fields)
    this.#notifications = notifications
  }
  get notifications(): Stream.Stream<ServerNotification> {
    return this.#notifications()
  }
}

/**
 * Opens a session in the current scope. Interrupting it (connect timeout, last waiter gone, pool closed)
 * aborts the handshake and the scope's finalizers release whatever was opened.
 */
export const openSession = (
  options: OpenSessionOptions
): Effect.Effect<SessionHandle, ConnectError | ConnectTimeout, Scope.Scope> =>
  // No generator: a suspended one keeps every local of this function alive while the connect waits.
  Effect.suspend(() => {
    const { scope, server } = options
    const lost = Deferred.makeUnsafe<SessionLost>()
    let terminated: Termination | undefined
    // Made on the first subscription: most sessions never have one, and a hub costs ~17 KiB up front.
    let hub: PubSub.PubSub<ServerNotification> | undefined

    // The SDK calls onclose once the transport is gone, whoever closed it; only a close we did not start
    // is a death.
    let lostReason = "the connection closed"
    const wiring: ClientWiring = {
      // Our transports say why they gave the session up (HTTP 404, output too large, …) just before closing.
      onerror: (error) => {
        if (isTransportLost(error)) lostReason = `the connection closed: ${error.message}`
      },
      onclose: () => {
        if (terminated === undefined) {
          terminated = new SessionLost({ server, scope, reason: lostReason })
          Deferred.doneUnsafe(lost, Effect.succeed(terminated))
          options.onLost()
        }
      },
      onnotification: (notification) => {
        if (hub !== undefined) PubSub.publishUnsafe(hub, notification)
      },
      requests: options.handlers === undefined ? undefined : {
        resolved: options.handlers,
        origin: { server, scope },
        runContext: options.runContext,
        runs: new HandlerRuns()
      }
    }
    // Only with handlers: tracking which calls are in flight costs the common case nothing.
    const runs = wiring.requests?.runs
    /** The session's hub, made on first use; `undefined` once the session ended. */
    const hubNow = () =>
      Effect.suspend(() => {
        if (terminated !== undefined) return Effect.succeed(undefined)
        if (hub !== undefined) return Effect.succeed(hub)
        return Effect.map(PubSub.sliding<ServerNotification>(1024), (created) => (hub = created))
      })
    /** Built on first read: most sessions are never asked for their notifications. */
    let notifications: Stream.Stream<ServerNotification> | undefined

    return Effect.flatMap(connectInRevision(options, wiring), (connected) =>
      Effect.withFiber((fiber) => {
        const { transport, wire } = connected

        // The 1.32 SDK hands a notification to its handler a microtask later but a response at once: the last
        // progress notification of a call, read in the same chunk as its result, would find the call already
        // gone (seen on Node 22). While calls that asked for progress are in flight, responses wait one
        // microtask too, behind the notifications read before them.
        let progressCalls = 0
        const deliver = transport.onmessage
        if (deliver !== undefined) {
          transport.onmessage = <T extends JSONRPCMessage>(message: T, extra?: MessageExtraInfo) => {
            if (progressCalls > 0 && !("method" in message)) queueMicrotask(() => deliver(message, extra))
            else deliver(message, extra)
          }
        }

        const terminate = (reason: Termination) =>
          Effect.suspend(() => {
            if (terminated === undefined) terminated = reason
            // The SDK fails pending requests when the transport reports its close, which a transport whose
            // close never settles never does: report it now. The handler the SDK wired rejects each pending
            // request once (with `terminated`'s error, see `toError`) and detaches the client; a second report
            // from the transport finds nothing left to do.
            transport.onclose?.()
            runs?.cancelAll()
            return hub === undefined ? Effect.void : PubSub.shutdown(hub)
          })

        // Built at close: an error captures a stack, which costs more than a connect's own bookkeeping.
        const closed = () =>
          Effect.andThen(
            terminate(new SessionLost({ server, scope, reason: "the session was closed" })),
            // The client is detached by now (its own close would do nothing): close the transport directly.
            Effect.promise(() => transport.close().catch(() => undefined))
          )
        // Registered before the session is built: one that fails to be made still closes its transport.
        return Effect.flatMap(Scope.addFinalizerExit(Context.getUnsafe(fiber.context, Scope.Scope), closed), () => {
          // Only when limited: a semaphore on every call would cost the common, unlimited case.
          const permits = options.policy.maxConcurrentCalls === undefined
            ? undefined
            : Semaphore.makeUnsafe(options.policy.maxConcurrentCalls)
          const defaultTimeout = Duration.toMillis(options.policy.callTimeout)
          // A cached 2026-07-28 verdict connects with no round trip: the first answer confirms it. An answer of
          // the other era (the server was rolled back) drops the verdict and the session, once: the next connect
          // asks again. The request that met it may have run on the server: it fails with SessionLost.
          let unconfirmed = connected.fromVerdict === true
          const confirmed = () => {
            unconfirmed = false
          }
          const toError = (method: string, timeoutMillis: number) => (cause: unknown): McpSessionError => {
            if (terminated !== undefined) return terminated
            const failure = sdkFailure(cause)
            if (unconfirmed && answersOfTheOtherEra(failure)) {
              unconfirmed = false
              // The 2026-07-28 verdict this session came from; not a connect's ask begun meanwhile.
              if (options.verdicts.get(options.policy.config)?._tag === "Modern") {
                options.verdicts.delete(options.policy.config)
              }
              lostReason = `the server no longer speaks ${modernRevision}, the revision it was found to speak (${
                failure._tag === "Rpc" ? rpcMessage(failure) : failure._tag === "Other" ? failure.message : failure._tag
              }); the next connect asks it again`
              void transport.close().catch(() => undefined)
              return new SessionLost({ server, scope, reason: lostReason })
            }
            confirmed()
            switch (failure._tag) {
              case "Timeout":
                // The SDK's own timeout carries the bound it was given; a server may send -32001 for other reasons.
                if (failure.timeout === sdkTimeout(timeoutMillis)) {
                  return new CallTimeout({ server, scope, method, timeoutMillis })
                }
                return new McpProtocolError({
                  server,
                  scope,
                  method,
                  code: ErrorCode.RequestTimeout,
                  message: errorText(cause)
                })
              case "Rpc":
                // A real close has already set `terminated` (the SDK fires onclose before failing pending
                // requests), so a -32000 here is the server's generic error code, and the session stays.
                return new McpProtocolError({
                  server,
                  scope,
                  method,
                  code: failure.code,
                  message: rpcMessage(failure),
                  data: failure.data
                })
              case "NotConnected":
                return new SessionLost({ server, scope, reason: "not connected", cause })
              case "InputRequired":
                return new McpProtocolError({
                  server,
                  scope,
                  method,
                  code: ErrorCode.InvalidRequest,
                  message:
                    `the server asked the client for input (input_required) during ${method}; the pool answers such requests only through McpClientHandlers, and none were provided`
                })
              case "Other":
                return new McpProtocolError({
                  server,
                  scope,
                  method,
                  code: ErrorCode.InternalError,
                  message: failure.message
                })
            }
          }

          /** A bound given to one request, decoded; `undefined` when it is not a valid duration. */
          const bound = (value: Duration.Input | undefined, fallback: number): number | undefined => {
            if (value === undefined) return fallback
            const parsed = decodeDuration(value)
            return parsed === undefined ? undefined : Duration.toMillis(parsed)
          }

          const invalidBound = (method: string, field: string, value: unknown) =>
            new McpProtocolError({
              server,
              scope,
              method,
              code: ErrorCode.InvalidParams,
              message: `invalid request ${field} ${
                show(value)
              }: expected a non-negative duration such as "5 seconds" or a number of milliseconds`
            })

          /**
           * A request that asks nothing of progress, with its bound. `direct`: so a 1.32 session's `tools/call`
           * may skip the SDK's request path.
           */
          const bounded = (timeout: number) => ({
            timeout,
            direct: true,
            sdk: (signal: AbortSignal): SdkRequestOptions => ({ signal, timeout: sdkTimeout(timeout) })
          })
          /** A request that asks nothing: the session's call timeout. Made once, not per request. */
          const unasked = bounded(defaultTimeout)
          /**
           * The SDK's options for one request — its own timeout, else the server's, and what it asks about
           * progress — or the error its invalid bound is. Most requests ask nothing: they share one shape.
           */
          const prepare = (method: string, requestOptions: RequestOptions | undefined) => {
            if (requestOptions === undefined) return unasked
            const timeout = bound(requestOptions.timeout, defaultTimeout)
            if (timeout === undefined) return invalidBound(method, "timeout", requestOptions?.timeout)
            const onProgress = requestOptions?.onProgress
            const maxTotal = requestOptions?.maxTotalTimeout
            if (
              onProgress === undefined && requestOptions?.resetTimeoutOnProgress === undefined && maxTotal === undefined
            ) {
              return bounded(timeout)
            }
            const maxTotalTimeout = maxTotal === undefined ? undefined : bound(maxTotal, 0)
            if (maxTotal !== undefined && maxTotalTimeout === undefined) {
              return invalidBound(method, "maxTotalTimeout", maxTotal)
            }
            return {
              timeout,
              direct: false,
              sdk: (signal: AbortSignal): SdkRequestOptions => ({
                signal,
                timeout: sdkTimeout(timeout),
                ...(onProgress === undefined ? {} : { onprogress: onProgress }),
                ...(requestOptions?.resetTimeoutOnProgress === undefined
                  ? {}
                  : { resetTimeoutOnProgress: requestOptions.resetTimeoutOnProgress }),
                ...(maxTotalTimeout === undefined ? {} : { maxTotalTimeout: sdkTimeout(maxTotalTimeout) })
              })
            }
          }

          const startCallTool: SessionHandle["startCallTool"] = options.policy.maxConcurrentCalls !== undefined
            ? undefined
            : (params, requestOptions, done) => {
              const prepared = prepare("tools/call", requestOptions)
              if (prepared instanceof McpProtocolError) {
                done(Exit.fail(prepared))
                return constVoid
              }
              if (terminated !== undefined) {
                done(Exit.fail(terminated))
                return constVoid
              }
              const token = runs?.begin()
              const settle: Settle = (result, cause) => {
                if (token !== undefined) runs!.end(token)
                if (result === undefined) return done(Exit.fail(toError("tools/call", prepared.timeout)(cause)))
                if (unconfirmed) confirmed()
                done(Exit.succeed(result))
              }
              const { toolCalls } = wire
              if (toolCalls !== undefined && prepared.direct) {
                const id = toolCalls.start(params, sdkTimeout(prepared.timeout), settle)
                return id === undefined ? constVoid : () => toolCalls.cancel(id, abortReason())
              }
              const abortable = wire.abortable()
              let sent = wire.callTool(params, prepared.sdk(abortable.signal))
              if (requestOptions?.onProgress !== undefined) {
                progressCalls++
                sent = sent.finally(() => {
                  progressCalls--
                })
              }
              sent.then(settle, (cause) => settle(undefined, cause))
              return () => abortable.abort()
            }

          const request = <A>(
            method: string,
            run: (sdkOptions: SdkRequestOptions) => Promise<A>,
            requestOptions: RequestOptions | undefined
          ): Effect.Effect<A, McpSessionError> => {
            const prepared = prepare(method, requestOptions)
            if (prepared instanceof McpProtocolError) return Effect.fail(prepared)
            const call = Effect.tryPromise({
              try: (signal) => {
                if (terminated !== undefined) return Promise.reject(terminated)
                const progressing = requestOptions?.onProgress !== undefined
                if (progressing) progressCalls++
                let sent = run(prepared.sdk(signal))
                if (progressing) {
                  sent = sent.finally(() => {
                    progressCalls--
                  })
                }
                if (unconfirmed) {
                  sent = sent.then((value) => {
                    confirmed()
                    return value
                  })
                }
                if (runs === undefined) return sent
                const token = runs.begin()
                return sent.finally(() => runs.end(token))
              },
              catch: toError(method, prepared.timeout)
            })
            return permits === undefined ? call : permits.withPermit(call)
          }

          const session = new PooledSession({
            server,
            scope,
            pid: connected.pid,
            revision: wire.sdk.revision,
            protocolVersion: wire.protocolVersion,
            threadState: threadStateOf(options.policy.config, connected),
            serverInfo: wire.serverInfo ?? { name: server, version: "unknown" },
            serverCapabilities: wire.serverCapabilities,
            instructions: wire.instructions,
            sdk: wire.sdk,
            listTools: (params, requestOptions) =>
              request("tools/list", (o) => wire.listTools(params, o), requestOptions),
            callTool: (params, requestOptions) =>
              Effect.withFiber((fiber) => {
                const traced = withTraceContext(params, fiber)
                return request("tools/call", (o) => wire.callTool(traced, o), requestOptions)
              }),
            listResources: (params, requestOptions) =>
              request("resources/list", (o) => wire.listResources(params, o), requestOptions),
            readResource: (params, requestOptions) =>
              request("resources/read", (o) => wire.readResource(params, o), requestOptions),
            listPrompts: (params, requestOptions) =>
              request("prompts/list", (o) => wire.listPrompts(params, o), requestOptions),
            getPrompt: (params, requestOptions) =>
              request("prompts/get", (o) => wire.getPrompt(params, o), requestOptions),
            subscribe: (uri, requestOptions) =>
              Stream.unwrap(Effect.gen(function*() {
                const current = yield* hubNow()
                if (current === undefined) return Stream.empty
                // Subscribed to the hub before asking: an update sent right after the server's answer is kept.
                const updates = yield* PubSub.subscribe(current)
                const end = yield* request(
                  wire.sdk.revision === "2025-11-25" ? "resources/subscribe" : "subscriptions/listen",
                  (o) => wire.subscribe(uri, o),
                  requestOptions
                )
                yield* Effect.addFinalizer(() => Effect.promise(() => end().catch(() => undefined)))
                return Stream.fromSubscription(updates).pipe(
                  Stream.filter((n): n is ResourceUpdatedNotification =>
                    n.method === "notifications/resources/updated" && n.params.uri === uri
                  ),
                  Stream.map((n) => n.params)
                )
              })),
            setLoggingLevel: (level, requestOptions) => {
              // Bound: the wire's methods live on its prototype.
              const set = wire.setLoggingLevel?.bind(wire)
              return set === undefined
                ? Effect.fail(
                  new McpProtocolError({
                    server,
                    scope,
                    method: "logging/setLevel",
                    code: ErrorCode.MethodNotFound,
                    message:
                      "logging/setLevel is not part of 2026-07-28: the log level travels in each request's _meta (io.modelcontextprotocol/logLevel)"
                  })
                )
                : Effect.asVoid(request("logging/setLevel", (o) => set(level, o), requestOptions))
            },
            ping: (requestOptions) =>
              Effect.asVoid(
                request(
                  wire.sdk.revision === "2025-11-25" ? "ping" : "server/discover",
                  (o) => wire.ping(o),
                  requestOptions
                )
              )
          }, () =>
            notifications ??= Stream.unwrap(
              Effect.map(hubNow(), (current) => current === undefined ? Stream.empty : Stream.fromPubSub(current))
            ))
          const rootsChanged = () =>
            Effect.promise(() =>
              terminated === undefined ? wire.sendRootsListChanged().catch(() => undefined) : Promise.resolve()
            )
          const handle: SessionHandle = { session, startCallTool, lost, terminate, rootsChanged }
          // The connect span (the pool's), in OpenTelemetry's terms for MCP; none without a tracing backend.
          if (!tracingEnabled(fiber)) return Effect.succeed(handle)
          return Effect.as(
            Effect.annotateCurrentSpan({
              "mcp.method.name": wire.sdk.revision === legacyRevision ? "initialize" : "server/discover",
              "mcp.protocol.version": wire.protocolVersion,
              "network.transport": options.policy.config._tag === "Stdio"
                ? "pipe"
                : options.policy.config._tag === "Http"
                ? "tcp"
                : "inproc",
              ...(transport.sessionId === undefined ? {} : { "mcp.session.id": transport.sessionId })
            }),
            handle
          )
        })
      }))
  })
