/**
 * Credentials per scope over real HTTP on 127.0.0.1: a resource server (the 1.32 SDK's stateful streamable
 * HTTP, one MCP session per pooled session) that accepts only bearer tokens from an authorization server on
 * another port (RFC 9728 discovery, refresh tokens, client credentials). One server config serves two users,
 * each with the SDK's `OAuthClientProvider` of their own: tokens rotate inside a session without touching its
 * key, never reach errors, and configured headers never reach the authorization server.
 */
import { assert, describe, it } from "@effect/vitest"
import { ClientCredentialsProvider } from "@modelcontextprotocol/sdk/client/auth-extensions.js"
import type { OAuthClientProvider } from "@modelcontextprotocol/sdk/client/auth.js"
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js"
import type { OAuthClientInformationMixed, OAuthTokens } from "@modelcontextprotocol/sdk/shared/auth.js"
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js"
import { Effect, Redacted, References } from "effect"
import { randomUUID } from "node:crypto"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import * as McpSessionPool from "../src/McpSessionPool.ts"
import { firstText } from "./utils/probe.ts"

const readBody = (request: Http.IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    request.on("error", reject)
  })

const listen = (server: Http.Server): Promise<string> =>
  new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`))
  )

const stop = (server: Http.Server): Promise<void> =>
  new Promise((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  })

interface World {
  readonly mcpUrl: string
  readonly authUrl: string
  /** access token → subject, for tokens still valid. */
  readonly valid: Map<string, string>
  /** refresh token → subject. */
  readonly refreshable: Map<string, string>
  /** Every access token the resource server was shown, by the subject it belongs to (invalid ones too). */
  readonly shown: Map<string, Set<string>>
  /** Headers of every request the authorization server received. */
  readonly authServerSaw: Array<Http.IncomingHttpHeaders>
  /** MCP sessions the resource server opened. */
  readonly sessions: () => number
  /** The next MCP request gets a 500 whose body echoes its Authorization header. */
  echoNext: boolean
}

const world = Effect.acquireRelease(
  Effect.promise(async () => {
    const valid = new Map<string, string>()
    const refreshable = new Map<string, string>()
    const shown = new Map<string, Set<string>>()
    const authServerSaw: Array<Http.IncomingHttpHeaders> = []
    const issue = (subject: string): OAuthTokens => {
      const access = `access-${subject}-${randomUUID()}`
      const refresh = `refresh-${subject}-${randomUUID()}`
      valid.set(access, subject)
      refreshable.set(refresh, subject)
      return { access_token: access, token_type: "Bearer", expires_in: 3600, refresh_token: refresh }
    }

    const authServer = Http.createServer(async (request, response) => {
      authServerSaw.push(request.headers)
      const json = (status: number, body: unknown) => {
        response.writeHead(status, { "content-type": "application/json" })
        response.end(JSON.stringify(body))
      }
      if (request.url === "/.well-known/oauth-authorization-server") {
        return json(200, {
          issuer: authUrl,
          authorization_endpoint: `${authUrl}/authorize`,
          token_endpoint: `${authUrl}/token`,
          response_types_supported: ["code"],
          grant_types_supported: ["authorization_code", "refresh_token", "client_credentials"],
          token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post", "none"],
          code_challenge_methods_supported: ["S256"]
        })
      }
      if (request.url === "/token" && request.method === "POST") {
        const form = new URLSearchParams(await readBody(request))
        if (form.get("grant_type") === "refresh_token") {
          const subject = refreshable.get(form.get("refresh_token") ?? "")
          return subject === undefined ? json(400, { error: "invalid_grant" }) : json(200, issue(subject))
        }
        if (form.get("grant_type") === "client_credentials") {
          const basic = request.headers.authorization?.replace(/^Basic /, "")
          const [id, secret] = basic === undefined
            ? [form.get("client_id"), form.get("client_secret")]
            : Buffer.from(basic, "base64").toString("utf8").split(":").map(decodeURIComponent)
          return secret === `secret-of-${id}` ? json(200, issue(id!)) : json(401, { error: "invalid_client" })
        }
        return json(400, { error: "unsupported_grant_type" })
      }
      json(404, {})
    })
    const authUrl = await listen(authServer)

    const transports = new Map<string, StreamableHTTPServerTransport>()
    const state = { echoNext: false }
    const resourceServer = Http.createServer(async (request, response) => {
      if (request.url?.startsWith("/.well-known/oauth-protected-resource")) {
        response.writeHead(200, { "content-type": "application/json" })
        return response.end(JSON.stringify({ resource: `${mcpBase}/mcp`, authorization_servers: [authUrl] }))
      }
      const token = request.headers.authorization?.replace(/^Bearer /, "") ?? ""
      const subject = valid.get(token)
      const owner = subject ?? [...valid.values(), ...refreshable.values()].find((s) => token.includes(`-${s}-`))
      if (token !== "") {
        const seen = shown.get(owner ?? "?") ?? new Set()
        seen.add(token)
        shown.set(owner ?? "?", seen)
      }
      if (subject === undefined) {
        response.writeHead(401, {
          "www-authenticate": `Bearer resource_metadata="${mcpBase}/.well-known/oauth-protected-resource/mcp"`
        })
        return response.end()
      }
      if (state.echoNext) {
        state.echoNext = false
        response.writeHead(500, { "content-type": "text/plain" })
        return response.end(`internal error while checking ${request.headers.authorization}`)
      }
      const raw = request.method === "POST" ? await readBody(request) : ""
      const body: unknown = raw === "" ? undefined : JSON.parse(raw)
      const sessionId = request.headers["mcp-session-id"]
      let transport = typeof sessionId === "string" ? transports.get(sessionId) : undefined
      if (transport === undefined && isInitializeRequest(body)) {
        const created = new StreamableHTTPServerTransport({
          sessionIdGenerator: randomUUID,
          onsessioninitialized: (id) => void transports.set(id, created)
        })
        const mcp = new McpServer({ name: "protected", version: "1.0.0" })
        mcp.registerTool("whoami", {}, (extra) => ({
          content: [{ type: "text", text: valid.get(String(extra.authInfo?.token ?? "")) ?? subjectOf(extra) }]
        }))
        await mcp.connect(created)
        transport = created
      }
      if (transport === undefined) {
        response.writeHead(404)
        return response.end()
      }
      // The SDK server gives tools the request's auth info when the request carries it.
      Object.assign(request, { auth: { token, clientId: subject, scopes: [] } })
      await transport.handleRequest(request, response, body)
    })
    const mcpBase = await listen(resourceServer)
    const subjectOf = (extra: { readonly requestInfo?: { readonly headers: Http.IncomingHttpHeaders } }) =>
      valid.get(String(extra.requestInfo?.headers.authorization ?? "").replace(/^Bearer /, "")) ?? "?"

    const self: World & { readonly close: () => Promise<void> } = {
      mcpUrl: `${mcpBase}/mcp`,
      authUrl,
      valid,
      refreshable,
      shown,
      authServerSaw,
      sessions: () => transports.size,
      get echoNext() {
        return state.echoNext
      },
      set echoNext(value: boolean) {
        state.echoNext = value
      },
      close: async () => {
        await stop(resourceServer)
        await stop(authServer)
      }
    }
    return self
  }),
  (self) => Effect.promise(() => self.close())
)

/** A user's provider with tokens already granted (authorization code done before): it can only refresh. */
const grantedProvider = (tokens: OAuthTokens): OAuthClientProvider & { readonly saved: Array<OAuthTokens> } => {
  let current = tokens
  const saved: Array<OAuthTokens> = []
  const client: OAuthClientInformationMixed = { client_id: "agent-app" }
  return {
    saved,
    get redirectUrl() {
      return "http://127.0.0.1/callback"
    },
    get clientMetadata() {
      return { client_name: "agent-app", redirect_uris: ["http://127.0.0.1/callback"] }
    },
    clientInformation: () => client,
    tokens: () => current,
    saveTokens: (next) => {
      current = next
      saved.push(next)
    },
    redirectToAuthorization: () => {
      throw new Error("this test's users are already authorized")
    },
    saveCodeVerifier: () => undefined,
    codeVerifier: () => "unused"
  }
}

describe("credentials per scope: the SDK's OAuth providers, one config for many users", () => {
  it.live(
    "each scope's own provider: refresh and client credentials; tokens rotate inside a session; nothing leaks",
    () =>
      Effect.gen(function*() {
        const w = yield* world
        // alice authorized earlier; her access token has since expired (the server no longer accepts it).
        const alice = grantedProvider({
          access_token: "access-alice-expired",
          token_type: "Bearer",
          refresh_token: "r"
        })
        w.refreshable.set("r", "alice")
        const bob = new ClientCredentialsProvider({
          clientId: "bob",
          clientSecret: "secret-of-bob",
          expectedIssuer: w.authUrl
        })
        const providers: Record<string, OAuthClientProvider> = { alice, bob }
        const pool = yield* McpSessionPool.make({
          servers: {
            docs: McpServerConfig.http({
              url: w.mcpUrl,
              // A configured header is for the MCP server only.
              headers: { "X-Api-Key": Redacted.make("configured-key-1") },
              authProvider: (scope) => providers[scope]!
            })
          },
          connectTimeout: "10 seconds",
          callTimeout: "10 seconds"
        }).pipe(Effect.provideService(References.MinimumLogLevel, "None"))
        const whoami = (scope: string) =>
          Effect.map(pool.callTool({ server: "docs", scope, name: "whoami" }), firstText)

        assert.strictEqual(yield* whoami("alice"), "alice")
        assert.strictEqual(yield* whoami("bob"), "bob")
        // Refreshed, and kept by her own provider (the revision probe and initialize may each have met the 401).
        const refreshed = alice.saved.length
        assert.isAtLeast(refreshed, 1)
        assert.strictEqual(w.sessions(), 2)

        // alice's token is revoked mid-session: the SDK refreshes on the 401; the session (and its key) stays.
        w.valid.delete(alice.saved.at(-1)!.access_token)
        assert.strictEqual(yield* whoami("alice"), "alice")
        assert.strictEqual(alice.saved.length, refreshed + 1)
        assert.strictEqual(w.sessions(), 2)
        const rows = yield* pool.snapshot
        assert.deepStrictEqual(rows.map((row) => row.scope).sort(), ["alice", "bob"])

        // Each user's tokens went out on that user's requests only.
        for (const token of w.shown.get("alice") ?? []) assert.notInclude(token, "bob")
        for (const token of w.shown.get("bob") ?? []) assert.notInclude(token, "alice")
        // The authorization server never saw the MCP server's configured header.
        for (const headers of w.authServerSaw) assert.isUndefined(headers["x-api-key"])

        // A server echoing the token the SDK sent: the error does not repeat it.
        w.echoNext = true
        const error = yield* Effect.flip(whoami("alice"))
        const current = alice.saved.at(-1)!.access_token
        assert.notInclude(error.message, current)
        assert.include(error.message, "<redacted>")
      }).pipe(Effect.scoped),
    60_000
  )
})
