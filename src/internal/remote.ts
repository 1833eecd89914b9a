/**
 * Remote transports: streamable HTTP, legacy HTTP+SSE, and streamable HTTP falling back to SSE.
 *
 * The SDK's client transports do the protocol work; {@link RemoteTransport} wraps them to give the pool
 * what they lack:
 *
 * - **Death detection.** A dead or restarted HTTP server never fires the SDK transport's `onclose`, so
 *   pending requests would wait for their 60 s timeout. The wrapper watches every HTTP exchange once the
 *   session is established. Conclusive: a 404 (or a 400 naming the session) on a request that carried the
 *   session id, a refused connection, the legacy SSE stream closing. Ambiguous — a connection that broke,
 *   a response stream that broke or ended still owing an answer (and is not resumable) — is settled by a
 *   `ping` carrying the session id: a stale keep-alive socket or a proxy cutting one response must not
 *   cost the session its state. A lost session is reported through `onerror` (a `RemoteSessionLost`), then
 *   `onclose`, so the SDK fails every pending request at once with "Connection closed" and the pool drops
 *   the session. A session that survives gets an error answer for each request whose answer was cut off.
 * - **DELETE on close.** `close()` first sends DELETE (`terminateSession`, bounded, errors ignored) so the
 *   server frees the session's state; skipped when the session is already lost.
 * - **Secrets.** Header values stay `Redacted` until a request is built. The `auth` effect runs once per
 *   request. Error messages are scrubbed of every secret, in case a server echoes one back: Redacted and
 *   `auth` header values, plain values of headers named like credentials (`X-Api-Key`, …), the credential
 *   after an auth scheme of any header (`Bearer abc` → `abc` too; for Basic also the decoded
 *   `user:password` and the password), and the URL's query values. Only the URL's origin is ever quoted.
 * - **Fallback.** In "auto" mode the first message (the `initialize` request) goes over streamable HTTP;
 *   a 4xx answer (other than 401/403) switches to the legacy SSE transport at the same URL, as the MCP
 *   specification's backwards-compatibility section describes. No probe request: the real `initialize`
 *   is the probe, so the server gets exactly one session.
 */
import type { OAuthClientProvider } from "@modelcontextprotocol/sdk/client/auth.js"
import type * as SseModule from "@modelcontextprotocol/sdk/client/sse.js"
import type * as StreamableHttpModule from "@modelcontextprotocol/sdk/client/streamableHttp.js"
import type { FetchLike, Transport, TransportSendOptions } from "@modelcontextprotocol/sdk/shared/transport.js"
import { ErrorCode, type JSONRPCMessage, type MessageExtraInfo } from "@modelcontextprotocol/sdk/types.js"
import { Cause, Effect, Exit, Predicate, Redacted, type Scope } from "effect"
import { ConnectError } from "../McpPoolError.ts"
import { type Headers as HeaderValues, type Http, resolvePerScope } from "../McpServerConfig.ts"
import { show } from "./configSchema.ts"
import { httpStatus } from "./httpStatus.ts"
import { supportedVersions, unsupportedProtocolVersion } from "./negotiate.ts"
import { urlProblem } from "./options.ts"
import { TransportLost } from "./transportLost.ts"

// The SDK's HTTP client transports (with eventsource, pkce-challenge and the OAuth client) are imported
// by the first `openRemote`, not with the package: most apps run stdio servers only. Every use below is
// on a `RemoteTransport`, and `openRemote` loads these before making one.
let SSEClientTransport: typeof SseModule.SSEClientTransport
type SSEClientTransport = SseModule.SSEClientTransport
let SseError: typeof SseModule.SseError
let StreamableHTTPClientTransport: typeof StreamableHttpModule.StreamableHTTPClientTransport
type StreamableHTTPClientTransport = StreamableHttpModule.StreamableHTTPClientTransport
let StreamableHTTPError: typeof StreamableHttpModule.StreamableHTTPError

// SDK v2's streamable HTTP transport speaks 2026-07-28 (`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*` headers, no
// session): loaded by the first modern remote session only.
type ModernStreamableHttp = typeof import("@modelcontextprotocol/client").StreamableHTTPClientTransport
let ModernStreamableHTTPClientTransport: ModernStreamableHttp | undefined

const loadModernTransport = Effect.tryPromise(async () => {
  ModernStreamableHTTPClientTransport ??= (await import("@modelcontextprotocol/client")).StreamableHTTPClientTransport
})

const loadTransports = Effect.tryPromise(async () => {
  const [sse, streamable] = await Promise.all([
    import("@modelcontextprotocol/sdk/client/sse.js"),
    import("@modelcontextprotocol/sdk/client/streamableHttp.js")
  ])
  SSEClientTransport = sse.SSEClientTransport
  SseError = sse.SseError
  StreamableHTTPClientTransport = streamable.StreamableHTTPClientTransport
  StreamableHTTPError = streamable.StreamableHTTPError
})

/** How long `close()` waits for the DELETE that ends the server-side session. */
const terminateTimeoutMillis = 2_000

/** How long the liveness probe after an ambiguous failure may take; past it the session is presumed alive. */
const probeTimeoutMillis = 2_000

/** Network failures that say the server is not there at all (rather than that one connection broke). */
const unreachable = new Set(["ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN"])

/** Longest server-provided text kept in an error message (error pages can be whole HTML documents). */
const maxErrorText = 300

/** Headers the SDK transports set themselves: configured headers never replace them. */
const protocolHeaders = new Set(["mcp-session-id", "mcp-protocol-version", "content-type", "accept", "last-event-id"])

/**
 * A failure of the HTTP exchange, its message scrubbed of secrets. The original error is dropped on
 * purpose: its message may quote a server's answer that echoes a token.
 */
export class RemoteTransportError extends Error {
  override readonly name = "RemoteTransportError"
  readonly status: number | undefined
  /**
   * The JSON-RPC error in the answer's body, if any (e.g. a 400 carrying -32022 and the versions the server
   * supports): its message is scrubbed like the rest, its code and data kept for the session to classify.
   */
  readonly code: number | undefined
  readonly data: unknown
  constructor(
    message: string,
    status: number | undefined,
    rpcError?: { readonly code: number; readonly data: unknown }
  ) {
    super(message)
    this.status = status
    this.code = rpcError?.code
    this.data = rpcError?.data
  }
}

/** Reported through `onerror` just before `onclose` when the transport finds the session gone. */
export class RemoteSessionLost extends TransportLost {
  override readonly name = "RemoteSessionLost"
}

/** The config's transport, or `"modern"`: streamable HTTP in the 2026-07-28 revision (SDK v2's transport). */
export type Mode = Http["transport"] | "modern"

type State =
  | "new"
  | "open"
  /** The server no longer has the session: nothing more is sent, not even DELETE. */
  | "lost"
  | "closing"
  | "closed"

interface RemoteTransportOptions {
  readonly url: URL
  readonly mode: Mode
  readonly headers: HeaderValues
  readonly auth: Effect.Effect<HeaderValues, unknown> | undefined
  /** The scope's OAuth client: the SDK transports get and refresh its tokens and send them. */
  readonly authProvider: OAuthClientProvider | undefined
}

const reveal = (value: string | Redacted.Redacted<string>): string =>
  Redacted.isRedacted(value) ? Redacted.value(value) : value

/** Names of headers whose plain value is a credential even without an auth scheme. */
const credentialHeader = /auth|token|secret|key|password|passwd|cookie|credential|signature/i

/** `<scheme> <credentials>` (RFC 9110 §11.4), e.g. `Bearer abc`: a server may echo the credentials alone. */
const authScheme = /^\s*([A-Za-z][\w!#$%&'*+.^`|~-]*)\s+(\S(?:.*\S)?)\s*$/s

/**
 * What to scrub because of one header value: the value itself when it is a secret, and always the
 * credentials after an auth scheme; for Basic also the decoded `user:password` and the password.
 */
const headerSecrets = (value: string, wholeIsSecret: boolean): Array<string> => {
  const out = wholeIsSecret ? [value] : []
  const match = authScheme.exec(value)
  if (match === null) return out
  const [, scheme, credentials] = match as unknown as [string, string, string]
  out.push(credentials)
  if (scheme.toLowerCase() === "basic") {
    const decoded = Buffer.from(credentials, "base64").toString("utf8")
    const colon = decoded.indexOf(":")
    // Only real base64 of `user:password`: any other credential would decode to noise.
    const unpadded = (text: string) => text.replace(/=+$/, "")
    if (colon !== -1 && unpadded(Buffer.from(decoded, "utf8").toString("base64")) === unpadded(credentials)) {
      out.push(decoded, decoded.slice(colon + 1))
    }
  }
  return out
}

/** The URL's query values, decoded and as sent: a query often carries a token (`?token=…`, `?key=…`). */
const querySecrets = (url: URL): Array<string> => [
  ...url.searchParams.values(),
  ...url.search.slice(1).split("&").map((pair) => pair.slice(pair.indexOf("=") + 1))
]

/** Each secret as written and URL-encoded (how it appears in a quoted request), empty ones dropped. */
const withEncodings = (secrets: ReadonlyArray<string>): Array<string> =>
  secrets.flatMap((secret) => secret === "" ? [] : [secret, encodeURIComponent(secret)])

/**
 * Secrets shorter than this are scrubbed only where they stand alone (not inside a longer run of letters
 * or digits), so that a `?page=2` cannot turn "HTTP 429" into "HTTP 4<redacted>9".
 */
const shortSecretLength = 8

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

const scrubSecret = (text: string, secret: string): string =>
  secret.length >= shortSecretLength
    ? text.replaceAll(secret, "<redacted>")
    : text.replace(new RegExp(`(?<![\\p{L}\\p{N}])${escapeRegExp(secret)}(?![\\p{L}\\p{N}])`, "gu"), "<redacted>")

const errorMessage = (error: unknown): string => error instanceof Error ? error.message : String(error)

/** The most specific system error code under a fetch failure (`fetch failed` → `ECONNREFUSED`). */
const networkCode = (error: unknown): string => {
  let current: unknown = error
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    if (Predicate.hasProperty(current, "code") && typeof current.code === "string") return current.code
    current = current instanceof AggregateError && current.errors.length > 0 ? current.errors[0] : current.cause
  }
  return errorMessage(error)
}

const isAbort = (error: unknown): boolean =>
  error instanceof Error && (error.name === "AbortError" || error.name === "TimeoutError")

/** The JSON-RPC error in a failed exchange's body, which the SDKs quote in their error messages. */
const bodyError = (
  error: unknown
): { readonly code: unknown; readonly message: unknown; readonly data: unknown } | undefined => {
  const body = errorMessage(error).replace(
    /^(Streamable HTTP error: |SSE error: )?(Error POSTing to endpoint( \(HTTP \d+\))?: )?/,
    ""
  )
  try {
    const parsed: unknown = JSON.parse(body)
    if (!Predicate.hasProperty(parsed, "error") || !Predicate.isObject(parsed.error)) return undefined
    const { code, data, message } = parsed.error as { code?: unknown; message?: unknown; data?: unknown }
    return { code, message, data }
  } catch {
    return undefined
  }
}

/**
 * What the session may know of the body's JSON-RPC error: its code, and of its data only the revisions a
 * -32022 names. The rest of the data is the server's text, which may echo a credential.
 */
const rpcErrorOf = (error: unknown): { readonly code: number; readonly data: unknown } | undefined => {
  const found = bodyError(error)
  if (found === undefined || typeof found.code !== "number") return undefined
  const supported = supportedVersions(found.data)
  return { code: found.code, data: supported === undefined ? undefined : { supported } }
}

/** "HTTP 401: <what the server said>", from the SDK's wordier messages; the JSON-RPC error's text if any. */
const describeFailure = (error: unknown): string => {
  const message = errorMessage(error)
  const status = httpStatus(error)
  if (status === undefined || error instanceof RemoteTransportError) return message
  const found = bodyError(error)
  const detail = typeof found?.message === "string"
    ? found.message
    : message.replace(/^(Streamable HTTP error: |SSE error: )?(Error POSTing to endpoint( \(HTTP \d+\))?: )?/, "")
  return detail.trim() === "" ? `HTTP ${status}` : `HTTP ${status}: ${detail}`
}

/** The JSON-RPC request ids in a POST body: the answers the response stream owes. */
const requestIds = (body: unknown): Array<string | number> => {
  if (typeof body !== "string") return []
  try {
    const parsed: unknown = JSON.parse(body)
    return (Array.isArray(parsed) ? parsed : [parsed]).flatMap((message: unknown) =>
      Predicate.hasProperty(message, "method") && Predicate.hasProperty(message, "id") &&
        (typeof message.id === "string" || typeof message.id === "number")
        ? [message.id]
        : []
    )
  } catch {
    return []
  }
}

/** Resolves after `promise` settles or after `millis`, whichever comes first; never rejects. */
const bounded = (promise: Promise<unknown>, millis: number): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, millis)
    const done = () => {
      clearTimeout(timer)
      resolve()
    }
    promise.then(done, done)
  })

/**
 * An SDK `Transport` over streamable HTTP or legacy SSE that detects a lost session, sends DELETE on
 * close, adds configured and `auth` headers per request, and scrubs secrets from errors.
 */
export class RemoteTransport implements Transport {
  onclose?: (() => void) | undefined
  onerror?: ((error: Error) => void) | undefined
  onmessage?: (<T extends JSONRPCMessage>(message: T, extra?: MessageExtraInfo) => void) | undefined

  private readonly options: RemoteTransportOptions
  private state: State = "new"
  private active: Transport | undefined
  /** "auto" before the first message: that message decides between streamable HTTP and SSE. */
  private fallbackPending: boolean
  /** While the first message tries streamable HTTP, its expected 4xx must not reach `onerror`. */
  private tryingStreamable = false
  /** A POST got a 2xx: from now on a failure means the session is gone, not that connecting failed. */
  private established = false
  private closeNotified = false
  private closing: Promise<void> | undefined
  private readonly whenClosed: Promise<void>
  private signalClosed: () => void = () => undefined
  private probing: Promise<boolean> | undefined
  private probes = 0
  /** Request ids whose answer is owed by an open POST response stream. */
  private readonly outstanding = new Set<string | number>()
  /** What to scrub because of the config (headers and URL): kept for the transport's life. */
  private readonly configuredSecrets: ReadonlyArray<string>
  /** What to scrub because of recent `auth` values; bounded, as tokens rotate. */
  private readonly authSecrets = new Set<string>()

  constructor(options: RemoteTransportOptions) {
    this.options = options
    this.fallbackPending = options.mode === "auto"
    this.whenClosed = new Promise((resolve) => {
      this.signalClosed = resolve
    })
    this.configuredSecrets = [
      ...new Set(withEncodings([
        ...Object.entries(options.headers).flatMap(([name, value]) =>
          headerSecrets(reveal(value), Redacted.isRedacted(value) || credentialHeader.test(name))
        ),
        ...querySecrets(options.url)
      ]))
    ]
  }

  /**
   * SDK v2 reads this: on a 2026-07-28 connection it cancels a request by closing that request's own POST
   * stream (its `requestSignal`, which `send` passes on) rather than by sending `notifications/cancelled`.
   */
  get hasPerRequestStream(): boolean {
    return this.options.mode === "modern"
  }

  get sessionId(): string | undefined {
    return this.active instanceof StreamableHTTPClientTransport ? this.active.sessionId : undefined
  }

  setProtocolVersion(version: string): void {
    this.active?.setProtocolVersion?.(version)
  }

  async start(): Promise<void> {
    if (this.state !== "new") throw new Error("RemoteTransport already started")
    this.state = "open"
    const transport = this.options.mode === "sse" ? this.makeSse() : this.makeStreamable()
    this.active = transport
    try {
      await this.untilClosed(transport.start())
    } catch (error) {
      // A failed SSE start leaves its EventSource retrying every few seconds: stop it.
      this.active = undefined
      this.state = "closed"
      await transport.close().catch(() => undefined)
      throw this.scrub(error, this.options.mode === "sse" ? "could not open the SSE stream" : undefined)
    }
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    if (this.fallbackPending) return this.sendFirst(message, options)
    const transport = this.active
    // "Not connected" is what the SDK says too; the pool reads it as a lost session.
    if (transport === undefined || this.state !== "open") throw new Error("Not connected")
    try {
      await transport.send(message, options)
    } catch (error) {
      throw this.scrub(error)
    }
  }

  close(): Promise<void> {
    this.closing ??= this.doClose()
    return this.closing
  }

  private async doClose(): Promise<void> {
    const terminate = this.state === "open"
    this.state = "closing"
    this.signalClosed()
    const transport = this.active
    if (terminate && transport instanceof StreamableHTTPClientTransport && transport.sessionId !== undefined) {
      // DELETE lets the server free the session's state now rather than at its own timeout. The server
      // may be gone or may refuse (405): bounded, errors ignored.
      await bounded(transport.terminateSession(), terminateTimeoutMillis)
    }
    await transport?.close().catch(() => undefined)
    this.state = "closed"
    this.notifyClosed()
  }

  /** "auto": sends the first message over streamable HTTP, or over SSE if the server answers 4xx. */
  private async sendFirst(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    this.fallbackPending = false
    const streamable = this.active
    if (streamable === undefined || this.state !== "open") throw new Error("Not connected")
    this.tryingStreamable = true
    let status: number | undefined
    try {
      await streamable.send(message, options)
      return
    } catch (error) {
      status = httpStatus(error)
      // 401/403 are about credentials, not the protocol: SSE would fail the same way, less clearly.
      // A -32022 in the body is a streamable HTTP server refusing the revision, not one that lacks the
      // transport: SSE would not help, and the session needs to hear which revisions it supports.
      const fallback = error instanceof StreamableHTTPError && status !== undefined && status >= 400 &&
        status < 500 && status !== 401 && status !== 403 && rpcErrorOf(error)?.code !== unsupportedProtocolVersion
      if (!fallback || this.state !== "open") throw this.scrub(error)
    } finally {
      this.tryingStreamable = false
    }
    const sse = this.makeSse()
    this.active = sse
    await streamable.close().catch(() => undefined)
    try {
      await this.untilClosed(sse.start())
      await sse.send(message)
    } catch (error) {
      throw this.scrub(error, `streamable HTTP answered HTTP ${status} and the SSE fallback failed`)
    }
  }

  private makeStreamable(): Transport {
    if (this.options.mode === "modern") {
      // Loaded by `openRemote` before it makes a modern transport.
      if (ModernStreamableHTTPClientTransport === undefined) throw new Error("SDK v2's HTTP transport is not loaded")
      // The two SDKs' Transport interfaces agree in shape; only their message types come from two packages.
      const modern = new ModernStreamableHTTPClientTransport(this.options.url, {
        fetch: this.fetch,
        // The same provider interface, declared by the other package.
        ...(this.options.authProvider === undefined ? {} : { authProvider: this.options.authProvider as never })
      })
      return this.wire(modern as unknown as Transport)
    }
    return this.wire(new StreamableHTTPClientTransport(this.options.url, this.sdkOptions()))
  }

  private makeSse(): SSEClientTransport {
    return this.wire(new SSEClientTransport(this.options.url, this.sdkOptions()))
  }

  private wire<T extends Transport>(transport: T): T {
    transport.onmessage = (message: JSONRPCMessage, extra?: MessageExtraInfo) => {
      if (this.active !== transport) return
      if (Predicate.hasProperty(message, "id") && !Predicate.hasProperty(message, "method")) {
        this.outstanding.delete(message.id as string | number)
      }
      this.onmessage?.(message, extra)
    }
    transport.onerror = (error) => {
      if (this.active !== transport || this.tryingStreamable || this.state !== "open") return
      // The legacy SSE session lives exactly as long as its stream: the EventSource would reconnect into
      // a new server session that was never initialized.
      if (transport instanceof SSEClientTransport && error instanceof SseError) {
        return this.lose(`the SSE stream closed (${this.scrubText(error.message)})`)
      }
      this.onerror?.(this.scrub(error))
    }
    transport.onclose = () => {
      if (this.active === transport) this.notifyClosed()
    }
    return transport
  }

  private notifyClosed(): void {
    if (this.closeNotified) return
    this.closeNotified = true
    this.signalClosed()
    this.onclose?.()
  }

  /** The session is gone: report why, stop the SDK transport, and fail pending requests via `onclose`. */
  private lose(reason: string): void {
    if (this.state !== "open") return
    this.state = "lost"
    this.onerror?.(new RemoteSessionLost(reason))
    void this.active?.close().catch(() => undefined)
    this.notifyClosed()
  }

  /** Whether a failure of this exchange says something about the session (rather than about connecting). */
  private judges(method: string): boolean {
    return this.state === "open" && this.established && method !== "DELETE"
  }

  private untilClosed<A>(promise: Promise<A>): Promise<A> {
    return Promise.race([
      promise,
      this.whenClosed.then((): never => {
        throw new Error("Not connected")
      })
    ])
  }

  /** Every HTTP request of the SDK transports goes through here (POST, the GET streams, DELETE). */
  private sdkOptions() {
    return this.options.authProvider === undefined
      ? { fetch: this.fetch }
      : { fetch: this.fetch, authProvider: this.options.authProvider }
  }

  private readonly fetch: FetchLike = async (url, init) => {
    const headers = new Headers(init?.headers)
    // The configured headers are for the MCP server: an OAuth flow's requests to an authorization server
    // elsewhere (discovery, token refresh) go through here too, and must not carry them.
    if (new URL(url).origin === this.options.url.origin) {
      for (const [name, value] of Object.entries(await this.extraHeaders(init?.signal ?? undefined))) {
        if (!(protocolHeaders.has(name.toLowerCase()) && headers.has(name))) headers.set(name, value)
      }
    }
    // A token the SDK got from the OAuth provider is a secret like any configured one.
    const authorization = headers.get("authorization")
    if (authorization !== null) {
      for (const secret of withEncodings(headerSecrets(authorization, true))) this.remember(secret)
    }
    const method = init?.method ?? "GET"
    const carriedSession = headers.has("mcp-session-id")
    let response: Response
    try {
      response = await globalThis.fetch(url, { ...init, headers })
    } catch (error) {
      if (isAbort(error) || init?.signal?.aborted === true || this.state !== "open") throw error
      const code = networkCode(error)
      // Without a code the message stands in for it, and undici's may quote the URL.
      const reason = `the connection to ${this.options.url.origin} failed (${this.scrubText(code)})`
      // A refused connection is conclusive. A broken one may be a stale keep-alive socket of a live
      // server: ask the server before giving the session up.
      if (this.judges(method)) {
        if (unreachable.has(code)) this.lose(reason)
        else await this.verify(reason)
      }
      throw new RemoteTransportError(reason, undefined)
    }
    if (response.ok) {
      if (method !== "POST") return response
      this.established = true
      return this.watch(response, requestIds(init?.body))
    }
    if (this.judges(method) && await this.sessionGone(response, carriedSession, method)) {
      this.lose(`the server no longer knows the session (HTTP ${response.status})`)
    }
    return response
  }

  private async sessionGone(response: Response, carriedSession: boolean, method: string): Promise<boolean> {
    const sse = this.active instanceof SSEClientTransport
    // Streamable HTTP names the session in a header; legacy SSE in the POST URL's query.
    if (!(sse ? method === "POST" : carriedSession)) return false
    if (response.status === 404) return true
    if (response.status !== 400) return false
    // The SDK's examples answer an unknown session with 400 "No valid session ID" (and a fresh
    // transport with "Server not initialized").
    const text = await response.clone().text().catch(() => "")
    return /session|not initialized/i.test(text)
  }

  /**
   * A POST's response body is where the answer arrives (an SSE stream or JSON). A body that breaks, or an
   * SSE stream that ends while an answer is still owed, means the server went away mid-request: the SDK
   * would wait for the request timeout. A stream carrying event ids is resumable: the SDK reconnects with
   * GET and that request's outcome decides.
   */
  private watch(response: Response, ids: ReadonlyArray<string | number>): Response {
    const body = response.body
    if (body === null || response.status === 204 || response.status === 205) return response
    const eventStream = (response.headers.get("content-type") ?? "").toLowerCase().includes("text/event-stream")
    if (eventStream) { for (const id of ids) this.outstanding.add(id) }
    const decoder = new TextDecoder()
    let resumable = false
    let tail = ""
    const ended = (broken: boolean) => {
      // The SDK parses what was read so far in promise jobs; judge once they ran.
      setImmediate(() => {
        const owed = ids.filter((id) => this.outstanding.has(id))
        for (const id of ids) this.outstanding.delete(id)
        if (!this.judges("POST") || (eventStream ? owed.length === 0 || resumable : !broken)) return
        const reason = broken
          ? "the connection to the server broke during a response"
          : "the server ended a response stream without answering"
        void this.verify(reason).then((alive) => {
          // The session survived but these answers will never come: fail the requests now rather than
          // at their timeout.
          if (alive) { for (const id of owed) this.answerWithError(id, reason) }
        })
      })
    }
    const reader = body.getReader()
    const watched = new ReadableStream<Uint8Array>({
      pull: (controller) =>
        reader.read().then(({ done, value }) => {
          if (done) {
            controller.close()
            ended(false)
            return
          }
          if (eventStream && !resumable) {
            const text = tail + decoder.decode(value, { stream: true })
            resumable = /(^|\n)id:/.test(text)
            tail = text.slice(-3)
          }
          controller.enqueue(value)
        }, (error: unknown) => {
          controller.error(error)
          ended(true)
        }),
      cancel: (reason) => reader.cancel(reason)
    })
    return new Response(watched, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers
    })
  }

  /**
   * After an ambiguous failure: asks the server whether it still has the session (a `ping` carrying the
   * session id, outside the SDK) and drops the session if not. Concurrent failures share one probe.
   * Resolves to whether the session is still usable.
   */
  private verify(reason: string): Promise<boolean> {
    this.probing ??= this.probe().then((gone) => {
      this.probing = undefined
      if (gone !== undefined) this.lose(`${reason}, and ${gone}`)
      return this.state === "open"
    })
    return this.probing
  }

  /** Why the session is gone (the server never heard of it, or cannot be reached), or undefined. */
  private async probe(): Promise<string | undefined> {
    const transport = this.active
    // Legacy SSE: the stream is the session, and its own failure is reported. Stateless servers: nothing
    // to lose.
    if (!(transport instanceof StreamableHTTPClientTransport) || transport.sessionId === undefined) return undefined
    const headers = new Headers(await this.extraHeaders(undefined).catch(() => ({})))
    headers.set("content-type", "application/json")
    headers.set("accept", "application/json, text/event-stream")
    headers.set("mcp-session-id", transport.sessionId)
    if (transport.protocolVersion !== undefined) headers.set("mcp-protocol-version", transport.protocolVersion)
    let response: Response
    try {
      response = await globalThis.fetch(this.options.url, {
        method: "POST",
        headers,
        body: JSON.stringify({ jsonrpc: "2.0", id: `effect-mcp-pool-probe-${++this.probes}`, method: "ping" }),
        redirect: "manual",
        signal: AbortSignal.timeout(probeTimeoutMillis)
      })
    } catch (error) {
      // A slow answer is no proof of death: the requests' own timeouts deal with a hung server.
      return isAbort(error) ? undefined : `the server cannot be reached (${this.scrubText(networkCode(error))})`
    }
    const gone = await this.sessionGone(response, true, "POST")
    await response.body?.cancel().catch(() => undefined)
    return gone ? `the server no longer knows the session (HTTP ${response.status})` : undefined
  }

  private answerWithError(id: string | number, reason: string): void {
    this.onmessage?.({ jsonrpc: "2.0", id, error: { code: ErrorCode.InternalError, message: reason } })
  }

  /** The configured headers, then the `auth` hook's (which win), revealed for this one request. */
  private async extraHeaders(signal: AbortSignal | undefined): Promise<Record<string, string>> {
    const out: Record<string, string> = {}
    for (const [name, value] of Object.entries(this.options.headers)) out[name] = reveal(value)
    if (this.options.auth === undefined) return out
    const exit = await Effect.runPromiseExit(this.options.auth, { signal })
    if (Exit.isFailure(exit)) {
      if (Cause.hasInterruptsOnly(exit.cause)) throw new DOMException("The auth hook was interrupted", "AbortError")
      throw new RemoteTransportError(
        `the auth hook failed: ${this.scrubText(errorMessage(Cause.squash(exit.cause)))}`,
        undefined
      )
    }
    for (const [name, value] of Object.entries(exit.value)) {
      const revealed = reveal(value)
      out[name] = revealed
      // The hook exists to supply credentials: every value it gives is a secret, plain or Redacted.
      for (const secret of withEncodings(headerSecrets(revealed, true))) this.remember(secret)
    }
    return out
  }

  private remember(secret: string): void {
    if (this.authSecrets.has(secret)) return
    this.authSecrets.add(secret)
    // Tokens rotate: keep the recent ones (an error may arrive after the next refresh), not all of them.
    if (this.authSecrets.size > 64) {
      for (const old of this.authSecrets) {
        this.authSecrets.delete(old)
        break
      }
    }
  }

  private scrubText(text: string): string {
    // Longest first: a whole value goes before the credential inside it.
    const secrets = [...this.configuredSecrets, ...this.authSecrets].sort((a, b) => b.length - a.length)
    const out = secrets.reduce(scrubSecret, text)
    return out.length > maxErrorText ? `${out.slice(0, maxErrorText)}…` : out
  }

  private scrub(error: unknown, context?: string): Error {
    if (error instanceof RemoteTransportError && context === undefined) return error
    if (error instanceof Error && error.message === "Not connected" && context === undefined) return error
    const text = this.scrubText(describeFailure(error))
    return new RemoteTransportError(
      context === undefined ? text : `${context}: ${text}`,
      httpStatus(error),
      rpcErrorOf(error)
    )
  }
}

/**
 * Opens a remote transport (not yet started: `Client.connect` starts it) in the session's scope. Closing
 * the scope closes it, DELETE first; the SDK client's own close usually got there already.
 */
export const openRemote = (
  config: Http,
  server: string,
  scope: string,
  mode: Mode = config.transport
): Effect.Effect<Transport, ConnectError, Scope.Scope> =>
  Effect.gen(function*() {
    const fail = (reason: string) => (cause: unknown) => new ConnectError({ server, scope, reason, cause })
    const url = yield* Effect.try({
      try: () => resolvePerScope(config.url, scope),
      catch: fail("the url function threw")
    })
    // The URL may carry a token in its query: never quote it.
    const problem = typeof url === "string" ? urlProblem(url) : `expected a URL, got ${show(url)}`
    if (problem !== undefined) {
      return yield* Effect.fail(new ConnectError({ server, scope, reason: `invalid url: ${problem}` }))
    }
    const headers = yield* Effect.try({
      try: () => resolvePerScope(config.headers, scope),
      catch: fail("the headers function threw")
    })
    const authProvider = config.authProvider === undefined ? undefined : yield* Effect.try({
      try: () => resolvePerScope(config.authProvider!, scope),
      catch: fail("the authProvider function threw")
    })
    yield* Effect.mapError(loadTransports, fail("could not load the SDK's HTTP transports"))
    if (mode === "modern") yield* Effect.mapError(loadModernTransport, fail("could not load SDK v2's HTTP transport"))
    return yield* Effect.acquireRelease(
      Effect.sync(() => new RemoteTransport({ url: new URL(url), mode, headers, auth: config.auth, authProvider })),
      (transport) => Effect.promise(() => transport.close())
    )
  })
