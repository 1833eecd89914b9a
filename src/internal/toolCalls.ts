/**
 * `tools/call` on a 1.32 SDK client without the SDK's request path: the request is written to the
 * client's transport and its answer taken off the transport before the SDK sees it. Everything else on the
 * session stays the SDK's: `initialize`, every other request, server requests, notifications, and the calls
 * that ask for progress or progress-based timeouts.
 *
 * Why: per call, `Protocol.request` and `Client.callTool` (a promise chain, a timer set and cleared, an
 * abort listener, the handler maps, zod) were about a third of an in-memory call's CPU, server included;
 * @ai-sdk/mcp, the fastest client the bench compares with, has no such path either.
 *
 * What it keeps of `Client.callTool` and `Protocol.request` (SDK 1.32.2; recheck on a bump):
 * - the guard against tools that require task-based execution and the `outputSchema` check of
 *   `structuredContent`, through the client's own `isToolTaskRequired` and `getToolOutputValidator` (private
 *   in its types), which read what its `listTools` cached; where either is missing (another SDK version),
 *   `ToolCalls.make` returns `undefined` and the session uses the SDK's `callTool`;
 * - the result decoded by callToolResult.ts's decoder, as the SDK's path does in the pool;
 * - a JSON-RPC error answer as `McpError.fromError(code, message, data)`; a timeout as
 *   `McpError(RequestTimeout, "Request timed out", { timeout })`; an abort as
 *   `McpError(RequestTimeout, String(reason))`; the transport's close as `McpError(ConnectionClosed)`; a
 *   failed send as the send's error; a timeout and an abort tell the server (`notifications/cancelled`, with
 *   the same reason text as the SDK's);
 * - the answer settles a microtask after it was read, as the SDK's promise does: the handler of a
 *   notification read before it (which the SDK runs a microtask later) runs before the caller resumes.
 *
 * What differs: instrumentation that wraps `Client.callTool` or `Protocol.request` on `session.sdk.client`
 * does not see these calls; a server that accepts only numeric ids fails them (JSON-RPC allows strings).
 *
 * Ids are strings, `pool-<n>`: the SDK numbers its own (and reads an answer's id with `Number`), so neither
 * takes the other's answers. A late answer to a call already settled (aborted, timed out) is dropped.
 * One timer per session serves every call's deadline, armed for the earliest and holding the process open
 * only while calls are in flight.
 *
 * @internal
 */
import type { Client } from "@modelcontextprotocol/sdk/client/index.js"
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import type { CallToolRequest, CallToolResult, JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js"
import { ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js"
import type { JsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/types.js"
import { decodeCallToolResult, InvalidCallToolResult } from "./callToolResult.ts"

/** What the 1.32 client caches from `listTools`, read through its own (type-private) methods. */
interface ToolCache {
  readonly isToolTaskRequired: (name: string) => boolean
  readonly getToolOutputValidator: (name: string) => JsonSchemaValidator<unknown> | undefined
}

/** A call's own bound and abort signal: what the session gives the SDK's `callTool`, minus progress. */
export interface ToolCallOptions {
  readonly timeout: number
  readonly signal: AbortSignal
}

/** How a call settles: with its result, or with `undefined` and why it failed. */
export type Settle = (result: CallToolResult | undefined, cause?: unknown) => void

const idPrefix = "pool-"

class PendingCall {
  readonly name: string
  readonly deadline: number
  readonly timeout: number
  readonly settle: Settle
  constructor(name: string, deadline: number, timeout: number, settle: Settle) {
    this.name = name
    this.deadline = deadline
    this.timeout = timeout
    this.settle = settle
  }
}

export class ToolCalls {
  /**
   * Takes over `tools/call` answers on `client`'s transport; `undefined` where the client lacks what the
   * direct path reads (not connected, or an SDK without the cache methods).
   */
  static make(client: Client): ToolCalls | undefined {
    const cache = client as unknown as Partial<ToolCache>
    const transport = client.transport
    // Handlers that cannot be read back (a custom transport's write-only accessors) cannot be wrapped.
    if (
      transport === undefined || typeof transport.onmessage !== "function" || typeof transport.onclose !== "function" ||
      typeof cache.isToolTaskRequired !== "function" || typeof cache.getToolOutputValidator !== "function"
    ) return undefined
    return new ToolCalls(client as unknown as ToolCache, transport)
  }

  readonly #cache: ToolCache
  readonly #transport: Transport
  /** Made on the first call: most sessions of a large pool hold none in flight. */
  #pending: Map<string, PendingCall> | undefined = undefined
  #nextId = 0
  #closed = false
  #timer: ReturnType<typeof setTimeout> | undefined = undefined
  /** When `#timer` fires. */
  #timerAt = Infinity

  private constructor(cache: ToolCache, transport: Transport) {
    this.#cache = cache
    this.#transport = transport
    // Wrapped after the SDK's own handlers (installed by `connect`): ours see each message first.
    const sdkMessage = transport.onmessage
    transport.onmessage = (message, extra) => {
      if (!this.#answered(message)) sdkMessage?.(message, extra)
    }
    const sdkClose = transport.onclose
    transport.onclose = () => {
      // The SDK's first: it reports the close to the session, which then knows why calls fail.
      try {
        sdkClose?.()
      } finally {
        this.#close()
      }
    }
  }

  /**
   * Sends `tools/call` and settles it once: with the answer, a failure, or `cancel`. Returns the call's id
   * (`cancel` of a settled call does nothing), or `undefined` when it was refused before being sent.
   */
  start(params: CallToolRequest["params"], timeout: number, settle: Settle): string | undefined {
    if (this.#closed) return void settle(undefined, new Error("Not connected"))
    if (this.#cache.isToolTaskRequired(params.name)) {
      return void settle(
        undefined,
        new McpError(
          ErrorCode.InvalidRequest,
          `Tool "${params.name}" requires task-based execution. Use client.experimental.tasks.callToolStream() instead.`
        )
      )
    }
    const id = idPrefix + this.#nextId++
    const call = new PendingCall(params.name, performance.now() + timeout, timeout, settle)
    ;(this.#pending ??= new Map()).set(id, call)
    this.#armFor(call.deadline)
    const failed = (error: unknown) => {
      if (this.#take(id) !== undefined) settle(undefined, error)
    }
    try {
      this.#transport.send({ jsonrpc: "2.0", id, method: "tools/call", params }).catch(failed)
    } catch (error) {
      // A custom transport that throws instead of rejecting: the call must not wait for its timeout.
      failed(error)
    }
    return id
  }

  /** `start` as a promise that an abort signal cancels: the shape of the SDK's `callTool`. */
  call(params: CallToolRequest["params"], options: ToolCallOptions): Promise<CallToolResult> {
    return new Promise((resolve, reject) => {
      const { signal } = options
      if (signal.aborted) return reject(signal.reason)
      const id = this.start(
        params,
        options.timeout,
        (result, cause) => result === undefined ? reject(cause) : resolve(result)
      )
      if (id !== undefined) signal.addEventListener("abort", () => this.cancel(id, signal.reason))
    })
  }

  /** Whether `message` answers one of our calls (and so is not the SDK's to handle). */
  #answered(message: JSONRPCMessage): boolean {
    const id = (message as { readonly id?: unknown }).id
    if (typeof id !== "string" || !id.startsWith(idPrefix) || "method" in message) return false
    const answer = message as { readonly result?: unknown; readonly error?: unknown }
    const hasResult = "result" in answer
    // Neither a result nor a well-formed error (transports that do not validate messages): the SDK reports
    // it as a message of unknown type, and the call waits for its timeout, as on the SDK's path.
    if (!hasResult && !isJsonRpcError(answer.error)) return false
    const call = this.#take(id)
    if (call === undefined) return true
    // A microtask later, as the SDK's promise would: the handlers of notifications read before the answer
    // (which the SDK runs a microtask later) run before the caller resumes.
    queueMicrotask(() => {
      if (hasResult) settleResult(this.#cache, call, answer.result)
      else {
        const error = answer.error as JsonRpcError
        call.settle(undefined, McpError.fromError(error.code, error.message, error.data))
      }
    })
    return true
  }

  /** Removes the call `id` from those in flight; its record if it was one. */
  #take(id: string): PendingCall | undefined {
    const pending = this.#pending
    const call = pending?.get(id)
    if (call === undefined) return undefined
    pending!.delete(id)
    // Nothing in flight: the timer stays armed (cheaper than clearing it each call) but lets the process exit.
    if (pending!.size === 0) this.#timer?.unref()
    return call
  }

  /** Settles the call `id` (if still in flight) with `reason` and tells the server, as the SDK's `cancel` does. */
  cancel(id: string, reason: unknown): void {
    const call = this.#take(id)
    if (call === undefined) return
    call.settle(undefined, reason instanceof McpError ? reason : new McpError(ErrorCode.RequestTimeout, String(reason)))
    // The call is settled either way; a transport that cannot send is closing, and says so itself.
    try {
      this.#transport.send({
        jsonrpc: "2.0",
        method: "notifications/cancelled",
        params: { requestId: id, reason: String(reason) }
      }).catch(ignore)
    } catch {
      // As above, thrown instead of rejected.
    }
  }

  #armFor(deadline: number): void {
    if (this.#timer !== undefined && deadline >= this.#timerAt) {
      this.#timer.ref()
      return
    }
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timerAt = deadline
    this.#timer = setTimeout(expire, Math.max(0, deadline - performance.now()), this)
  }

  /** The timer fired: fails every call past its deadline, and re-arms for the earliest one left. @internal */
  expireDue(): void {
    this.#timer = undefined
    this.#timerAt = Infinity
    const pending = this.#pending
    if (pending === undefined) return
    const now = performance.now()
    let next = Infinity
    for (const [id, call] of pending) {
      if (call.deadline <= now) {
        this.cancel(id, McpError.fromError(ErrorCode.RequestTimeout, "Request timed out", { timeout: call.timeout }))
      } else if (call.deadline < next) next = call.deadline
    }
    if (next !== Infinity) this.#armFor(next)
  }

  #close(): void {
    if (this.#closed) return
    this.#closed = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    const pending = this.#pending
    if (pending === undefined) return
    this.#pending = undefined
    const closed = new McpError(ErrorCode.ConnectionClosed, "Connection closed")
    for (const call of pending.values()) call.settle(undefined, closed)
  }
}

interface JsonRpcError {
  readonly code: number
  readonly message: string
  readonly data?: unknown
}

const expire = (calls: ToolCalls): void => calls.expireDue()

const ignore = () => {}

const isJsonRpcError = (value: unknown): value is JsonRpcError =>
  typeof value === "object" && value !== null && typeof (value as JsonRpcError).code === "number" &&
  typeof (value as JsonRpcError).message === "string"

/** A result as `Client.callTool` settles it: decoded, then checked against the tool's `outputSchema`. */
const settleResult = (cache: ToolCache, call: PendingCall, raw: unknown): void => {
  const decoded = decodeCallToolResult(raw)
  if (typeof decoded === "string") return call.settle(undefined, new InvalidCallToolResult(decoded))
  const validator = cache.getToolOutputValidator(call.name)
  if (validator === undefined) return call.settle(decoded)
  if (!decoded.structuredContent && !decoded.isError) {
    return call.settle(
      undefined,
      new McpError(
        ErrorCode.InvalidRequest,
        `Tool ${call.name} has an output schema but did not return structured content`
      )
    )
  }
  if (decoded.structuredContent) {
    let verdict: ReturnType<JsonSchemaValidator<unknown>>
    try {
      verdict = validator(decoded.structuredContent)
    } catch (error) {
      return call.settle(
        undefined,
        new McpError(
          ErrorCode.InvalidParams,
          `Failed to validate structured content: ${error instanceof Error ? error.message : String(error)}`
        )
      )
    }
    if (!verdict.valid) {
      return call.settle(
        undefined,
        new McpError(
          ErrorCode.InvalidParams,
          `Structured content does not match the tool's output schema: ${verdict.errorMessage}`
        )
      )
    }
  }
  call.settle(decoded)
}
