/**
 * Remote transports (streamable HTTP, legacy SSE). Placeholder until the HTTP work lands.
 */
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import { Effect, type Scope } from "effect"
import { ConnectError } from "../McpPoolError.ts"
import type { Http } from "../McpServerConfig.ts"

export const openRemote = (
  _config: Http,
  server: string,
  scope: string
): Effect.Effect<Transport, ConnectError, Scope.Scope> =>
  Effect.fail(new ConnectError({ server, scope, reason: "HTTP transports are not implemented yet" }))
