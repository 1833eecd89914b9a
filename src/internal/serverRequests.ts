/**
 * Server → client requests of one session, answered by the app's {@link Handlers} with the session's
 * (server, scope). One home for: the capabilities the handlers imply, running a handler (bounded, in the
 * pool's context, interruptible), the answers' checks, and which handler runs a session must cancel when
 * the calls that could have asked for it are gone.
 *
 * Why "every call in flight as the request arrived": a 2025-era server's request carries no link to the
 * call it serves (over stdio there is none), so a handler is tied to the calls that were running when it
 * started; when the last of them ends (result, error or interruption), nobody waits for its answer.
 */
import type { Client as ModernClient } from "@modelcontextprotocol/client"
import type { Client } from "@modelcontextprotocol/sdk/client/index.js"
import {
  type ClientCapabilities,
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ErrorCode,
  ListRootsRequestSchema,
  ListRootsResultSchema,
  McpError
} from "@modelcontextprotocol/sdk/types.js"
import { Cause, type Context, Duration, Effect, Exit } from "effect"
import type { Handlers, RequestContext } from "../McpClientHandlers.ts"
import { decodeDuration } from "./options.ts"

/** Handlers with their timeout decoded once, for every session of a pool. */
export interface ResolvedHandlers {
  readonly handlers: Handlers
  readonly timeoutMillis: number
  readonly capabilities: ClientCapabilities
}

const defaultTimeout = Duration.minutes(10)

/** `undefined` with the problem when `timeout` is not a duration. */
export const resolveHandlers = (handlers: Handlers): ResolvedHandlers | string => {
  const timeout = handlers.timeout === undefined ? defaultTimeout : decodeDuration(handlers.timeout)
  if (timeout === undefined) return `McpClientHandlers timeout: expected a non-negative duration`
  return {
    handlers,
    timeoutMillis: Duration.toMillis(timeout),
    capabilities: {
      ...(handlers.elicit === undefined ? {} : { elicitation: { form: {}, url: {} } }),
      ...(handlers.createMessage === undefined ? {} : { sampling: {} }),
      ...(handlers.listRoots === undefined ? {} : { roots: { listChanged: true } })
    }
  }
}

/**
 * The calls in flight on one session and the handler runs they may be waiting for. `begin`/`end` bracket
 * every request the session sends; a run is cancelled once every call that was in flight when it started
 * has ended (a run that started with none in flight is the server's own: it is left to finish), and every
 * run is cancelled when the session closes.
 */
export class HandlerRuns {
  private readonly inFlight = new Set<object>()
  private readonly runs = new Set<{ readonly askers: Set<object>; readonly cancel: () => void }>()

  begin(): object {
    const token = {}
    this.inFlight.add(token)
    return token
  }

  end(token: object): void {
    this.inFlight.delete(token)
    for (const run of this.runs) {
      if (run.askers.delete(token) && run.askers.size === 0) {
        this.runs.delete(run)
        run.cancel()
      }
    }
  }

  /** Registers a run, tied to the calls in flight now; returns its removal (for when it ends). */
  start(cancel: () => void): () => void {
    const run = { askers: new Set(this.inFlight), cancel }
    const tied = run.askers.size > 0
    this.runs.add(run)
    if (!tied) {
      // Never cancelled by `end`: no asker to lose.
      run.askers.add(this)
    }
    return () => this.runs.delete(run)
  }

  cancelAll(): void {
    const runs = [...this.runs]
    this.runs.clear()
    for (const run of runs) run.cancel()
  }
}

/** What the server hears: never the handler's own error text, which is the app's business (and may hold secrets). */
const refusal = (method: string, exit: Exit.Exit<unknown, unknown>, timeoutMillis: number): McpError => {
  if (Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)) {
    return new McpError(ErrorCode.InternalError, `the client cancelled its ${method} handler`)
  }
  if (Exit.isFailure(exit) && Cause.squash(exit.cause) instanceof TimeoutAnswer) {
    return new McpError(ErrorCode.RequestTimeout, `the client's ${method} handler took longer than ${timeoutMillis} ms`)
  }
  return new McpError(ErrorCode.InternalError, `the client's ${method} handler failed`)
}

class TimeoutAnswer {}

/**
 * Runs one handler for a server request: in the pool's context, bounded, interrupted when the server
 * cancels (`signal`), when the session closes, or when the calls that could have asked are gone. Resolves
 * to the handler's value; rejects with the JSON-RPC error the server gets.
 */
const run = <A>(
  options: SessionRequests,
  method: string,
  handler: Effect.Effect<A, unknown>,
  signal: AbortSignal
): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const fiber = Effect.runForkWith(options.runContext)(
      handler.pipe(
        Effect.timeoutOrElse({
          duration: Duration.millis(options.resolved.timeoutMillis),
          orElse: () => Effect.die(new TimeoutAnswer())
        }),
        Effect.tapCause((cause) =>
          Cause.hasInterruptsOnly(cause)
            ? Effect.void
            : Effect.logWarning(
              `the ${method} handler of ${options.origin.server}/${options.origin.scope} failed`,
              cause
            )
        )
      )
    )
    const cancel = () => fiber.interruptUnsafe()
    const forget = options.runs.start(cancel)
    signal.addEventListener("abort", cancel, { once: true })
    fiber.addObserver((exit) => {
      forget()
      signal.removeEventListener("abort", cancel)
      if (Exit.isSuccess(exit)) resolve(exit.value)
      else reject(refusal(method, exit, options.resolved.timeoutMillis))
    })
  })

/** What a session gives the handlers: who it is, the pool's context, and its calls and runs. */
export interface SessionRequests {
  readonly resolved: ResolvedHandlers
  readonly origin: RequestContext
  readonly runContext: Context.Context<never>
  readonly runs: HandlerRuns
}

const checkedRoots = (roots: unknown): { roots: Array<unknown> } => {
  const parsed = ListRootsResultSchema.safeParse({ roots })
  if (!parsed.success) {
    throw new McpError(
      ErrorCode.InternalError,
      `the client's roots handler returned invalid roots: ${parsed.error.message}`
    )
  }
  return parsed.data
}

/**
 * Installs the handlers on a 2025-era client. The SDK checks the requests and the elicitation and sampling
 * answers itself (a malformed answer reaches the server as -32602); roots are checked here.
 */
export const installLegacy = (client: Client, options: SessionRequests): void => {
  const { handlers } = options.resolved
  const context = options.origin
  if (handlers.elicit !== undefined) {
    const elicit = handlers.elicit
    client.setRequestHandler(
      ElicitRequestSchema,
      (request, extra) => run(options, "elicitation/create", elicit(request.params, context), extra.signal)
    )
  }
  if (handlers.createMessage !== undefined) {
    const createMessage = handlers.createMessage
    client.setRequestHandler(
      CreateMessageRequestSchema,
      (request, extra) =>
        run(options, "sampling/createMessage", createMessage(request.params, context), extra.signal) as never
    )
  }
  if (handlers.listRoots !== undefined) {
    const listRoots = handlers.listRoots
    client.setRequestHandler(
      ListRootsRequestSchema,
      async (_request, extra) =>
        checkedRoots(await run(options, "roots/list", listRoots(context), extra.signal)) as never
    )
  }
}

/**
 * Installs the handlers on a 2026-07-28 client. The server's `input_required` rounds are fulfilled by SDK
 * v2 through these same registrations, inside the call that got them.
 */
export const installModern = (client: ModernClient, options: SessionRequests): void => {
  const { handlers } = options.resolved
  const context = options.origin
  if (handlers.elicit !== undefined) {
    const elicit = handlers.elicit
    client.setRequestHandler(
      "elicitation/create",
      (request, ctx) =>
        run(options, "elicitation/create", elicit(request.params as never, context), ctx.mcpReq.signal) as never
    )
  }
  if (handlers.createMessage !== undefined) {
    const createMessage = handlers.createMessage
    client.setRequestHandler(
      "sampling/createMessage",
      (request, ctx) =>
        run(
          options,
          "sampling/createMessage",
          createMessage(request.params as never, context),
          ctx.mcpReq.signal
        ) as never
    )
  }
  if (handlers.listRoots !== undefined) {
    const listRoots = handlers.listRoots
    client.setRequestHandler(
      "roots/list",
      async (_request, ctx) =>
        checkedRoots(await run(options, "roots/list", listRoots(context), ctx.mcpReq.signal)) as never
    )
  }
}
