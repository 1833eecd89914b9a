/**
 * Which MCP revision a server speaks: the `server/discover` probe, what its answer means, and the verdicts
 * kept per server config.
 *
 * The 2026-07-28 specification's compatibility rules (basic/versioning), as this pool applies them:
 *
 * - A 2026-07-28 server answers `server/discover` with the versions it supports. Offered → modern.
 * - A 2025-era server answers it with an error (-32601 from SDK 1.32 servers; -32022 naming only 2025-era
 *   versions), ignores it, or exits. Each is evidence for `initialize`. Over stdio silence and exit are
 *   legacy verdicts; over HTTP silence is an outage and a closed connection a connect error.
 * - Over stdio the probe runs on the session's own process: the process the probe asked is the one that
 *   serves (no sibling process). A server that exits on the probe costs one more spawn, once per config.
 * - The verdict is kept per server config (by identity: a reloaded or re-read config is asked again), once a
 *   connect in that revision succeeded, so later sessions connect without a probe. Connects of a local
 *   server that start while another one asks (a burst of cold sessions) open their own process and take
 *   the answer that one gets, as a verdict, rather than ask too; an answer that says nothing about the
 *   revision (no answer, an unknown one) sends each to ask its own process. A verdict that proves
 *   wrong is corrected once, never in a loop: a 2025-era one whose `initialize` is refused with -32022
 *   naming 2026-07-28 is re-probed at once on a fresh connection; a 2026-07-28 one whose first request
 *   gets an answer of the other era is dropped with its session, and the next connect asks again.
 */
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import type { Implementation, JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js"
import { Predicate } from "effect"
import type { McpServerConfig } from "../McpServerConfig.ts"
import { httpStatus } from "./httpStatus.ts"

/** The revision this pool speaks to modern servers. */
export const modernRevision = "2026-07-28"

/** The `initialize` era, by its latest revision (the 1.32 SDK also reaches 2024-11-05 … 2025-06-18). */
export const legacyRevision = "2025-11-25"

/** A JSON-RPC error code of the 2026-07-28 revision: the request's protocol version is not supported. */
export const unsupportedProtocolVersion = -32022

/**
 * What `server/discover` returned, kept to connect later sessions without a probe (the SDK v2 client's
 * `connect(transport, { prior })`). Only the fields the pool reads are typed; the rest travels as is.
 */
export interface Discovery {
  readonly supportedVersions: ReadonlyArray<string>
  readonly [key: string]: unknown
}

export type Verdict =
  | { readonly _tag: "Legacy" }
  | { readonly _tag: "Modern"; readonly discovery: Discovery }
  /**
   * No verdict yet, and a connect of a local server (stdio, custom) is asking: connects that start
   * meanwhile (or after its answer, until a verdict replaces it) take its answer rather than ask too
   * (`undefined` if it got none). Removed if that connect ends without a verdict.
   */
  | { readonly _tag: "Probing"; readonly answer: Promise<ProbeOutcome | undefined> }

/** Verdicts per server config, for one pool. */
export type Verdicts = WeakMap<McpServerConfig, Verdict>

export type ProbeOutcome =
  /** The server offers 2026-07-28. */
  | { readonly _tag: "Modern"; readonly discovery: Discovery }
  /** The server answered in a way that says "2025-era": try `initialize`. `answer` says what it said. */
  | { readonly _tag: "LegacyEvidence"; readonly answer: string }
  /** No answer within the probe's bound. */
  | { readonly _tag: "Silent" }
  /** The connection closed (the process exited) before an answer. */
  | { readonly _tag: "Closed" }
  /** The server speaks 2026-era revisions, none of them ours (e.g. a later one only). */
  | { readonly _tag: "OtherModern"; readonly supported: ReadonlyArray<string> }
  /** Sending the probe failed (HTTP: refused, 401, 5xx, …). */
  | { readonly _tag: "SendFailed"; readonly error: unknown }

const isModernVersion = (version: string): boolean => version >= modernRevision

/** Later revisions only: a server that also names a 2025-era version may still take `initialize`. */
const onlyOtherModern = (supported: ReadonlyArray<string>): boolean =>
  supported.length > 0 && !supported.includes(modernRevision) && supported.every(isModernVersion)

/** The versions a -32022 error's data names (`{ supported: [...] }`), if it names any. */
export const supportedVersions = (data: unknown): ReadonlyArray<string> | undefined => {
  if (!Predicate.hasProperty(data, "supported") || !Array.isArray(data.supported)) return undefined
  const versions = data.supported.filter((v: unknown): v is string => typeof v === "string")
  return versions.length > 0 ? versions : undefined
}

/** Does an `initialize` refusal (its JSON-RPC error code and data) name 2026-07-28 as supported? */
export const refusalOffersModern = (code: number, data: unknown): boolean =>
  code === unsupportedProtocolVersion && (supportedVersions(data)?.includes(modernRevision) ?? false)

const classifyError = (code: unknown, message: unknown, data: unknown): ProbeOutcome => {
  const answer = `error ${String(code)}${typeof message === "string" ? ` "${message.slice(0, 120)}"` : ""}`
  if (code === unsupportedProtocolVersion) {
    const supported = supportedVersions(data)
    if (supported !== undefined && onlyOtherModern(supported)) return { _tag: "OtherModern", supported }
  }
  return { _tag: "LegacyEvidence", answer }
}

const classifyResult = (result: unknown): ProbeOutcome => {
  if (Predicate.hasProperty(result, "supportedVersions") && Array.isArray(result.supportedVersions)) {
    const supported = result.supportedVersions.filter((v: unknown): v is string => typeof v === "string")
    if (supported.includes(modernRevision)) return { _tag: "Modern", discovery: result as unknown as Discovery }
    if (onlyOtherModern(supported)) return { _tag: "OtherModern", supported }
  }
  // A result that is no discover result: a server that answers anything with something. Not modern evidence.
  return { _tag: "LegacyEvidence", answer: "a result that is not a server/discover result" }
}

/**
 * Starts a transport that is not started yet, sends `server/discover` on it, and reads the answer. On
 * return the transport is started, its handlers detached, and its next `start()` (the SDK client's) is a
 * no-op, so a client takes the connection over as it is. Never rejects: every failure is an outcome,
 * except a failure of `start` itself, which is rethrown (nothing was probed).
 */
export const probe = async (
  transport: Transport,
  options: { readonly clientInfo: Implementation; readonly timeoutMillis: number; readonly signal: AbortSignal }
): Promise<ProbeOutcome> => {
  const id = "effect-mcp-pool-discover"
  let settle: (outcome: ProbeOutcome) => void = () => undefined
  const answered = new Promise<ProbeOutcome>((resolve) => {
    settle = resolve
  })
  transport.onmessage = (message: JSONRPCMessage) => {
    if (!Predicate.hasProperty(message, "id") || message.id !== id) return
    if (Predicate.hasProperty(message, "error")) {
      const error = message.error as { readonly code?: unknown; readonly message?: unknown; readonly data?: unknown }
      settle(classifyError(error.code, error.message, error.data))
    } else if (Predicate.hasProperty(message, "result")) {
      settle(classifyResult(message.result))
    }
  }
  transport.onclose = () => settle({ _tag: "Closed" })
  transport.onerror = () => undefined
  const timer = setTimeout(() => settle({ _tag: "Silent" }), options.timeoutMillis)
  const onAbort = () => settle({ _tag: "Silent" })
  options.signal.addEventListener("abort", onAbort)
  try {
    await transport.start()
    transport.send({
      jsonrpc: "2.0",
      id,
      method: "server/discover",
      params: {
        _meta: {
          "io.modelcontextprotocol/protocolVersion": modernRevision,
          "io.modelcontextprotocol/clientInfo": options.clientInfo,
          "io.modelcontextprotocol/clientCapabilities": {}
        }
      }
    }).catch((error: unknown) => {
      // A modern endpoint answers a JSON-RPC error in a 400's body, which SDK v2's transport delivers as the
      // answer. Any other 4xx is a 2025-era endpoint refusing a request outside a session (400 "No valid
      // session ID", 404, 405); 401/403 are about credentials, 5xx about the server: both fail the connect.
      const status = httpStatus(error)
      if (status !== undefined && status >= 400 && status < 500 && status !== 401 && status !== 403) {
        settle({ _tag: "LegacyEvidence", answer: `HTTP ${status}` })
      } else {
        settle({ _tag: "SendFailed", error })
      }
    })
    return await answered
  } finally {
    clearTimeout(timer)
    options.signal.removeEventListener("abort", onAbort)
    transport.onmessage = undefined
    transport.onclose = undefined
    transport.onerror = undefined
    handOver(transport)
  }
}

/** Makes the transport's next `start()` a no-op (it is started already), then restores it. */
const handOver = (transport: Transport): void => {
  const start = transport.start
  transport.start = () => {
    transport.start = start
    return Promise.resolve()
  }
}

/** What the probe heard, for error messages. */
export const describeOutcome = (outcome: ProbeOutcome): string => {
  switch (outcome._tag) {
    case "Modern":
      return `it offers ${outcome.discovery.supportedVersions.join(", ")}`
    case "LegacyEvidence":
      return `it answered ${outcome.answer}`
    case "Silent":
      return "it did not answer"
    case "Closed":
      return "the connection closed"
    case "OtherModern":
      return `it supports only ${outcome.supported.join(", ")}`
    case "SendFailed":
      return `the request failed: ${outcome.error instanceof Error ? outcome.error.message : String(outcome.error)}`
  }
}
