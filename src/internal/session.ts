/**
 * Opening one session: transport (per config kind), SDK client, `initialize` — all inside the `Scope`
 * that the session's owner fiber holds, so that closing that scope releases exactly what was opened,
 * in reverse order (client, then transport / process).
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js"
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import {
  type CallToolResult,
  ErrorCode,
  type Implementation,
  McpError,
  type ServerNotification
} from "@modelcontextprotocol/sdk/types.js"
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv"
import type { jsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/types.js"
import { Deferred, Duration, Effect, Exit, PubSub, Scope, Semaphore, Stream } from "effect"
import {
  CallTimeout,
  ConnectError,
  ConnectTimeout,
  McpProtocolError,
  PoolClosed,
  SessionLost
} from "../McpPoolError.ts"
import type { McpSessionError } from "../McpPoolError.ts"
import { resolvePerScope } from "../McpServerConfig.ts"
import type { CallToolParams, McpSession, RequestOptions } from "../McpSession.ts"
import { callTool } from "./callToolResult.ts"
import { checkArgs, decodeDuration, maxTimerMillis, type ServerPolicy, show } from "./options.ts"
import { openRemote } from "./remote.ts"
import { spawnStdio } from "./stdioTransport.ts"
import { isTransportLost } from "./transportLost.ts"

/** Why a session stopped serving: the error every later (and every in-flight) request fails with. */
export type Termination = SessionLost | PoolClosed

export interface SessionHandle {
  readonly session: McpSession
  /**
   * `tools/call` started at once, for the pool's fused hit path: calls `done` exactly once, with the result
   * or the typed error (an abort of `signal` settles it too). `undefined` when the session limits calls in
   * flight (a call may have to wait for its turn: the pool then takes its full path).
   */
  readonly startCallTool:
    | ((
      params: CallToolParams,
      requestOptions: RequestOptions | undefined,
      signal: AbortSignal,
      done: (exit: Exit.Exit<CallToolResult, McpSessionError>) => void
    ) => void)
    | undefined
  /** Completes when the transport dies on its own, never when the pool closes the session. */
  readonly lost: Deferred.Deferred<SessionLost>
  /**
   * Fails in-flight and later requests with `reason` at once and ends the notification streams; the
   * transport itself is closed by the session's scope. Idempotent.
   */
  readonly terminate: (reason: Termination) => Effect.Effect<void>
}

export interface OpenSessionOptions {
  readonly server: string
  readonly scope: string
  readonly policy: ServerPolicy
  readonly clientInfo: Implementation
  /** Called once, when the transport dies on its own (as `lost` completes): lets the owner wait on one signal. */
  readonly onLost: () => void
}

interface OpenedTransport {
  readonly transport: Transport
  readonly pid: number | undefined
}

const errorText = (error: unknown): string => error instanceof Error ? error.message : String(error)

/**
 * A JSON-RPC error's text with its code said once. The SDK prefixes "MCP error <code>: " to every McpError
 * message, and an SDK server sends its own prefixed message as the error text, so the client's McpError
 * reads "MCP error -32602: MCP error -32602: …".
 */
const protocolMessage = (error: McpError): string =>
  `MCP error ${error.code}: ${error.message.replace(/^(MCP error -?\d+: )+/, "")}`

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

const isLocalTimeout = (error: McpError, timeoutMillis: number): boolean => {
  const data = error.data as { readonly timeout?: unknown } | undefined
  return data?.timeout === sdkTimeout(timeoutMillis)
}

const openTransport = (
  options: OpenSessionOptions
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
      return Effect.map(openRemote(config, server, scope), (transport) => ({ transport, pid: undefined }))
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

/**
 * Opens a session in the current scope. Interrupting it (connect timeout, last waiter gone, pool closed)
 * aborts `initialize` and the scope's finalizers release whatever was opened.
 */
export const openSession = (
  options: OpenSessionOptions
): Effect.Effect<SessionHandle, ConnectError | ConnectTimeout, Scope.Scope> =>
  Effect.gen(function*() {
    const { scope, server } = options
    const opened = yield* openTransport(options)
    const client = new Client(options.clientInfo, { capabilities: {}, jsonSchemaValidator: lazyValidator() })
    const lost = Deferred.makeUnsafe<SessionLost>()
    let terminated: Termination | undefined
    // Made on the first subscription: most sessions never have one, and a hub costs ~17 KiB up front.
    let hub: PubSub.PubSub<ServerNotification> | undefined

    // The SDK calls onclose once the transport is gone, whoever closed it; only a close we did not start
    // is a death.
    let lostReason = "the connection closed"
    // Our transports say why they gave the session up (HTTP 404, output too large, …) just before closing.
    client.onerror = (error) => {
      if (isTransportLost(error)) lostReason = `the connection closed: ${error.message}`
    }
    client.onclose = () => {
      if (terminated === undefined) {
        terminated = new SessionLost({ server, scope, reason: lostReason })
        Deferred.doneUnsafe(lost, Effect.succeed(terminated))
        options.onLost()
      }
    }
    client.fallbackNotificationHandler = async (notification) => {
      if (hub !== undefined) PubSub.publishUnsafe(hub, notification as ServerNotification)
    }
    const notifications = Stream.unwrap(Effect.suspend(() => {
      if (terminated !== undefined) return Effect.succeed(Stream.empty)
      if (hub !== undefined) return Effect.succeed(Stream.fromPubSub(hub))
      return Effect.map(PubSub.sliding<ServerNotification>(1024), (created) => {
        hub = created
        return Stream.fromPubSub(created)
      })
    }))

    const terminate = (reason: Termination) =>
      Effect.suspend(() => {
        if (terminated === undefined) terminated = reason
        // The SDK fails pending requests when the transport reports its close, which a transport whose
        // close never settles never does: report it now. The handler the SDK wired rejects each pending
        // request once (with `terminated`'s error, see `toError`) and detaches the client; a second report
        // from the transport finds nothing left to do.
        opened.transport.onclose?.()
        return hub === undefined ? Effect.void : PubSub.shutdown(hub)
      })

    yield* Scope.addFinalizer(
      yield* Effect.scope,
      // Suspended: an error captures a stack, which costs more than a connect's own bookkeeping.
      Effect.suspend(() => terminate(new SessionLost({ server, scope, reason: "the session was closed" }))).pipe(
        // The client is detached by now (its own close would do nothing): close the transport directly.
        Effect.andThen(Effect.promise(() => opened.transport.close().catch(() => undefined)))
      )
    )

    // The pool's owner bounds the connect (and kills what it opened at once); the SDK's own timer would
    // race it and close the transport gracefully first, so it only backs that bound up.
    const initializeBackstopMillis = Duration.toMillis(options.policy.connectTimeout) * 2
    yield* Effect.tryPromise({
      try: (signal) => client.connect(opened.transport, { signal, timeout: sdkTimeout(initializeBackstopMillis) }),
      catch: (cause) =>
        cause instanceof McpError && cause.code === ErrorCode.RequestTimeout &&
          isLocalTimeout(cause, initializeBackstopMillis)
          ? new ConnectTimeout({ server, scope, timeoutMillis: Duration.toMillis(options.policy.connectTimeout) })
          : new ConnectError({ server, scope, reason: `initialize failed: ${errorText(cause)}`, cause })
    })

    // Only when limited: a semaphore on every call would cost the common, unlimited case.
    const permits = options.policy.maxConcurrentCalls === undefined
      ? undefined
      : yield* Semaphore.make(options.policy.maxConcurrentCalls)
    const defaultTimeout = Duration.toMillis(options.policy.callTimeout)
    const toError = (method: string, timeoutMillis: number) => (cause: unknown): McpSessionError => {
      if (terminated !== undefined) return terminated
      if (cause instanceof McpError) {
        // The SDK's own timeout carries the bound it was given; a server may send -32001 for other reasons.
        if (cause.code === ErrorCode.RequestTimeout && isLocalTimeout(cause, timeoutMillis)) {
          return new CallTimeout({ server, scope, method, timeoutMillis })
        }
        // A real close has already set `terminated` (the SDK fires onclose before failing pending requests),
        // so a -32000 here is the server's generic error code, and the session stays.
        return new McpProtocolError({
          server,
          scope,
          method,
          code: cause.code,
          message: protocolMessage(cause),
          data: cause.data
        })
      }
      if (cause instanceof Error && cause.message === "Not connected") {
        return new SessionLost({ server, scope, reason: "not connected", cause })
      }
      return new McpProtocolError({ server, scope, method, code: ErrorCode.InternalError, message: errorText(cause) })
    }

    /** The call's own timeout, else the server's; `undefined` when the call's is not a valid duration. */
    const requestTimeout = (requestOptions: RequestOptions | undefined): number | undefined => {
      if (requestOptions?.timeout === undefined) return defaultTimeout
      const parsed = decodeDuration(requestOptions.timeout)
      return parsed === undefined ? undefined : Duration.toMillis(parsed)
    }

    const invalidTimeout = (method: string, requestOptions: RequestOptions | undefined) =>
      new McpProtocolError({
        server,
        scope,
        method,
        code: ErrorCode.InvalidParams,
        message: `invalid request timeout ${
          show(requestOptions?.timeout)
        }: expected a non-negative duration such as "5 seconds" or a number of milliseconds`
      })

    // The SDK's own callTool, with callToolResult.ts's decoder in place of zod's CallToolResultSchema.
    const sdkCallTool = (params: CallToolParams, options: { readonly signal: AbortSignal; readonly timeout: number }) =>
      callTool(client, params, options)

    const startCallTool: SessionHandle["startCallTool"] = options.policy.maxConcurrentCalls !== undefined
      ? undefined
      : (params, requestOptions, signal, done) => {
        const timeout = requestTimeout(requestOptions)
        if (timeout === undefined) return done(Exit.fail(invalidTimeout("tools/call", requestOptions)))
        if (terminated !== undefined) return done(Exit.fail(terminated))
        sdkCallTool(params, { signal, timeout: sdkTimeout(timeout) }).then(
          (result) => done(Exit.succeed(result)),
          (cause) => done(Exit.fail(toError("tools/call", timeout)(cause)))
        )
      }

    const request = <A>(
      method: string,
      run: (sdkOptions: { readonly signal: AbortSignal; readonly timeout: number }) => Promise<A>,
      requestOptions: RequestOptions | undefined
    ): Effect.Effect<A, McpSessionError> => {
      const timeout = requestTimeout(requestOptions)
      if (timeout === undefined) return Effect.fail(invalidTimeout(method, requestOptions))
      const call = Effect.tryPromise({
        try: (signal) =>
          terminated === undefined ? run({ signal, timeout: sdkTimeout(timeout) }) : Promise.reject(terminated),
        catch: toError(method, timeout)
      })
      return permits === undefined ? call : permits.withPermit(call)
    }

    const serverInfo = client.getServerVersion() ?? { name: server, version: "unknown" }
    const session: McpSession = {
      server,
      scope,
      pid: opened.pid,
      serverInfo,
      serverCapabilities: client.getServerCapabilities() ?? {},
      instructions: client.getInstructions(),
      notifications,
      client,
      listTools: (params, requestOptions) =>
        request("tools/list", (o) => client.listTools(params?.cursor === undefined ? {} : params, o), requestOptions),
      callTool: (params, requestOptions) => request("tools/call", (o) => sdkCallTool(params, o), requestOptions),
      listResources: (params, requestOptions) =>
        request(
          "resources/list",
          (o) => client.listResources(params?.cursor === undefined ? {} : params, o),
          requestOptions
        ),
      readResource: (params, requestOptions) =>
        request("resources/read", (o) => client.readResource(params, o), requestOptions),
      listPrompts: (params, requestOptions) =>
        request(
          "prompts/list",
          (o) => client.listPrompts(params?.cursor === undefined ? {} : params, o),
          requestOptions
        ),
      getPrompt: (params, requestOptions) => request("prompts/get", (o) => client.getPrompt(params, o), requestOptions),
      ping: (requestOptions) => Effect.asVoid(request("ping", (o) => client.ping(o), requestOptions))
    }
    return { session, startCallTool, lost, terminate } satisfies SessionHandle
  })
