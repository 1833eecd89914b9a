/**
 * In-memory servers that keep a ledger of every session the pool opens, for the reliability tests.
 *
 * Each connect gets a record: who acquired it (fiber id and the owner's log annotations), who released it
 * and how often, whether a test holds a lease on it, whether a fault killed it. Connects consume a shared
 * fault plan ("ok", "fail", "hang", "defect"), and the server can be killed from outside (`record.kill()`)
 * or from inside a call (the `die` tool). Tools:
 *
 * - `whoami`: the record id (also the server's `serverInfo.version`);
 * - `block`: never answers until the client cancels it;
 * - `die`: closes the server's side of the transport mid-call (the session is lost);
 * - `echo { text: string }`: returns `text` (validated, for bad-argument tests);
 * - `big { bytes: number }`: returns a text of that many bytes.
 */
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js"
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import { Effect, References, type Scope } from "effect"
import * as z from "zod/v4"
import * as McpServerConfig from "../../src/McpServerConfig.ts"

export type ConnectFault = "ok" | "fail" | "hang" | "defect"

/** Where a piece of code ran: the fiber, and the log annotations of the pool's owner fiber (if under one). */
export interface RanIn {
  readonly fiberId: number
  readonly server: unknown
  readonly scope: unknown
}

export interface SessionRecord {
  readonly id: number
  readonly server: string
  readonly scope: string
  readonly acquiredIn: RanIn
  readonly releasedIn: Array<RanIn>
  /** Leases a test holds on it right now (marked with `Tracker.markLease`). */
  leases: number
  /** A fault killed its transport: the pool may close it under a lease. */
  died: boolean
  /** Set when it was released while a test held a lease, with no fault and no forced close to explain it. */
  closedWhileLeased: boolean
  /** Connected (not failed, hung or cancelled before the server was up). */
  connected: boolean
  /** The client side saw its transport close: from then on the pool knows this session is dead. */
  closeSeen: boolean
  /** Closes the server's side of the transport (no-op until connected). */
  kill: () => void
}

export interface Tracker {
  readonly records: Array<SessionRecord>
  /** Consumed one per connect, in order; "ok" once empty. */
  readonly faults: Array<ConnectFault>
  /** Set while a forced close (closeAll, shutdown) runs: sessions may then close under their leases. */
  forced: boolean
  readonly config: (server: string, options?: McpServerConfig.ServerOptions) => McpServerConfig.Custom
  readonly byId: (id: string | number) => SessionRecord | undefined
  /** Marks a lease on the session's record for as long as the caller's scope is open. */
  readonly markLease: (record: SessionRecord) => Effect.Effect<void, never, Scope.Scope>
  /** Records still open (acquired, not released). */
  readonly open: () => Array<SessionRecord>
}

const ranIn: Effect.Effect<RanIn> = Effect.gen(function*() {
  const fiberId = yield* Effect.fiberId
  const annotations = yield* References.CurrentLogAnnotations
  return { fiberId, server: annotations["mcp.server"], scope: annotations["mcp.scope"] }
})

const text = (value: string) => ({ content: [{ type: "text" as const, text: value }] })

const makeServer = (record: SessionRecord, die: () => void): McpServer => {
  const server = new McpServer({ name: `tracked-${record.server}`, version: String(record.id) })
  server.registerTool("whoami", { description: "This session's record id." }, () => text(String(record.id)))
  server.registerTool("block", { description: "Never answers until cancelled." }, (extra) =>
    new Promise((resolve) => {
      extra.signal.addEventListener("abort", () => resolve(text("cancelled")), { once: true })
    }))
  server.registerTool("die", { description: "Kills this session's transport mid-call." }, () => {
    die()
    return new Promise<never>(() => {})
  })
  server.registerTool("echo", { inputSchema: { text: z.string() } }, ({ text: value }) => text(value))
  server.registerTool(
    "big",
    { inputSchema: { bytes: z.number().int().min(0) } },
    ({ bytes }) => text("x".repeat(bytes))
  )
  return server
}

export const makeTracker = (): Tracker => {
  let nextId = 0
  const records: Array<SessionRecord> = []
  const index = new Map<number, SessionRecord>()
  const tracker: Tracker = {
    records,
    faults: [],
    forced: false,
    byId: (id) => index.get(Number(id)),
    open: () => records.filter((record) => record.releasedIn.length === 0),
    markLease: (record) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          record.leases++
        }),
        () =>
          Effect.sync(() => {
            record.leases--
          })
      ),
    config: (server, options) =>
      McpServerConfig.custom((scope) =>
        Effect.gen(function*() {
          const record: SessionRecord = {
            id: ++nextId,
            server,
            scope,
            acquiredIn: yield* ranIn,
            releasedIn: [],
            leases: 0,
            died: false,
            closedWhileLeased: false,
            connected: false,
            closeSeen: false,
            kill: () => {}
          }
          records.push(record)
          index.set(record.id, record)
          yield* Effect.addFinalizer(() =>
            Effect.map(ranIn, (where) => {
              record.releasedIn.push(where)
              if (record.leases > 0 && !record.died && !tracker.forced) record.closedWhileLeased = true
            })
          )
          const fault = tracker.faults.shift() ?? "ok"
          if (fault === "fail") return yield* Effect.fail(new Error("injected connect failure"))
          if (fault === "defect") return yield* Effect.die(new Error("injected connect defect"))
          if (fault === "hang") return yield* Effect.never
          const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair()
          record.kill = () => {
            record.died = true
            void serverTransport.close()
          }
          // Note when the client hears of the close, just before the handler the SDK installs runs.
          let onclose: (() => void) | undefined
          Object.defineProperty(clientTransport, "onclose", {
            get: () => {
              const handler = onclose
              return handler === undefined ? undefined : () => {
                record.closeSeen = true
                handler()
              }
            },
            set: (handler: (() => void) | undefined) => {
              onclose = handler
            }
          })
          const mcpServer = makeServer(record, record.kill)
          yield* Effect.promise(() => mcpServer.connect(serverTransport))
          yield* Effect.addFinalizer(() => Effect.promise(() => mcpServer.close().catch(() => undefined)))
          record.connected = true
          return clientTransport
        }), options)
  }
  return tracker
}
