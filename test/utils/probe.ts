/**
 * A controllable in-memory server config for pool tests: counts connects and releases, can hold each
 * connect at a latch, fail the next connects, and runs a fresh notebook server per session. Also a server
 * that holds calls at a gate and counts how many run at once (`makeCallGate`).
 */
import type { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js"
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import { type Duration, Effect, Latch, Layer, Queue, References } from "effect"
import { makeNotebookServer } from "../../examples/notebook-server.ts"
import * as McpClientHandlers from "../../src/McpClientHandlers.ts"
import * as McpServerConfig from "../../src/McpServerConfig.ts"
import type { McpSession } from "../../src/McpSession.ts"
import * as McpSessionPool from "../../src/McpSessionPool.ts"
import type { Options } from "../../src/McpSessionPool.ts"

/** The 1.32 SDK client of a 2025-era session (throws for a 2026-07-28 one: a test that expects legacy). */
export const legacyClient = (session: McpSession): Client => {
  if (session.sdk.revision !== "2025-11-25") throw new Error(`expected a 2025-era session, got ${session.revision}`)
  return session.sdk.client
}

export interface Probe {
  readonly config: McpServerConfig.Custom
  /** Scope keys, in the order their connects started. */
  readonly connectStarted: Queue.Queue<string>
  /** Scope keys, in the order their transports were released. */
  readonly released: Queue.Queue<string>
  readonly counts: { connects: number; releases: number }
  /** Connects wait here while it is closed. */
  readonly gate: Latch.Latch
  /** The next `failures` connects fail. */
  failures: number
  /** When true, connects never finish (until interrupted). */
  hang: boolean
  /** From now on the scope's current server gets nothing the client sends, yet its transport stays open. */
  readonly mute: (scope: string) => void
}

export const makeProbe = (
  options?: { readonly gateOpen?: boolean; readonly connectTimeout?: Duration.Input }
) =>
  Effect.gen(function*() {
    const connectStarted = yield* Queue.unbounded<string>()
    const released = yield* Queue.unbounded<string>()
    const gate = yield* Latch.make(options?.gateOpen ?? true)
    const connections = new Map<string, { muted: boolean }>()
    const probe: Probe = {
      mute: (scope) => {
        const connection = connections.get(scope)
        if (connection !== undefined) connection.muted = true
      },
      connectStarted,
      released,
      gate,
      counts: { connects: 0, releases: 0 },
      failures: 0,
      hang: false,
      config: McpServerConfig.custom(
        (scope) =>
          Effect.gen(function*() {
            probe.counts.connects++
            // Everything opened from here on is released when the session's scope closes.
            yield* Effect.addFinalizer(() =>
              Effect.sync(() => {
                probe.counts.releases++
                Queue.offerUnsafe(released, scope)
              })
            )
            Queue.offerUnsafe(connectStarted, scope)
            yield* gate.await
            if (probe.hang) return yield* Effect.never
            if (probe.failures > 0) {
              probe.failures--
              return yield* Effect.fail(new Error("injected connect failure"))
            }
            const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair()
            const connection = { muted: false }
            connections.set(scope, connection)
            const send = clientTransport.send.bind(clientTransport)
            clientTransport.send = (message, sendOptions) =>
              connection.muted ? Promise.resolve() : send(message, sendOptions)
            const server = makeNotebookServer()
            yield* Effect.promise(() => server.connect(serverTransport))
            yield* Effect.addFinalizer(() => Effect.promise(() => server.close()))
            return clientTransport
          }),
        options?.connectTimeout === undefined ? undefined : { connectTimeout: options.connectTimeout }
      )
    }
    return probe
  })

/** The text of a tool result's first content block. */
export const firstText = (result: { readonly content: ReadonlyArray<unknown> }): string => {
  const block = result.content[0] as { readonly type?: string; readonly text?: string } | undefined
  return block?.type === "text" && block.text !== undefined ? block.text : ""
}

/** Every text block of a tool result, joined by newlines. */
export const allText = (result: { readonly content: ReadonlyArray<unknown> }): string =>
  result.content.flatMap((block) =>
    typeof block === "object" && block !== null && "text" in block ? [String(block.text)] : []
  ).join("\n")

/** A pool whose layer context has `handlers` (`McpClientHandlers`), built in the caller's scope; logs off. */
export const poolWithHandlers = (options: Options, handlers: McpClientHandlers.Handlers) =>
  Layer.build(McpSessionPool.layer(options).pipe(Layer.provide(McpClientHandlers.layer(handlers)))).pipe(
    Effect.map((context) =>
      context.mapUnsafe.get(McpSessionPool.McpSessionPool.key) as McpSessionPool.McpSessionPoolShape
    ),
    Effect.provideService(References.MinimumLogLevel, "None")
  )

/** What a {@link CallGate} server has seen: `hold` calls started, running now, and most running at once. */
export interface CallCounts {
  arrived: number
  inFlight: number
  peak: number
}

export interface CallGate {
  /** A server whose `hold` calls wait at the gate, and whose `in_flight` tool answers `counts` as JSON. */
  readonly config: (options?: McpServerConfig.ServerOptions) => McpServerConfig.Custom
  /** Each `hold` call's arrival number (1, 2, …), offered by the server's handler as the call starts. */
  readonly arrivals: Queue.Queue<number>
  readonly counts: CallCounts
  /** Lets every held call, and every later one, finish. */
  readonly open: () => void
}

/** An in-memory server that holds `hold` calls until the test opens its gate, counting calls in flight. */
export const makeCallGate = Effect.gen(function*() {
  const arrivals = yield* Queue.unbounded<number>()
  const counts: CallCounts = { arrived: 0, inFlight: 0, peak: 0 }
  let open = () => {}
  const opened = new Promise<void>((resolve) => (open = resolve))
  const text = (value: string) => ({ content: [{ type: "text" as const, text: value }] })
  const makeServer = () => {
    const server = new McpServer({ name: "call-gate", version: "0.1.0" })
    server.registerTool("hold", { description: "Waits at the gate." }, async () => {
      counts.arrived++
      counts.inFlight++
      counts.peak = Math.max(counts.peak, counts.inFlight)
      Queue.offerUnsafe(arrivals, counts.arrived)
      await opened
      counts.inFlight--
      return text("released")
    })
    // Registered like `hold` (no input schema), so that the SDK starts the two in the order they arrive.
    server.registerTool("in_flight", { description: "The counts, as JSON." }, () => text(JSON.stringify(counts)))
    return server
  }
  const gate: CallGate = {
    arrivals,
    counts,
    open: () => open(),
    config: (options) =>
      McpServerConfig.custom(() =>
        Effect.gen(function*() {
          const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair()
          const server = makeServer()
          yield* Effect.promise(() => server.connect(serverTransport))
          yield* Effect.addFinalizer(() => Effect.promise(() => server.close()))
          return clientTransport
        }), options)
  }
  return gate
})
