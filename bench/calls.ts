/**
 * Per-call cost, side by side in one process: the pool's overhead over a raw SDK `Client` (in-memory and
 * stdio), the saving over connect-per-call, and peer MCP clients on the same stdio server.
 */
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
import { Effect, Exit, Scope } from "effect"
import * as McpClient from "effect/ai/McpClient"
import * as McpProtocol from "effect/ai/McpProtocol"
import * as ChildProcess from "effect/process/ChildProcess"
import * as L from "./lib.ts"
import type { Section } from "./report.ts"

/**
 * Raw SDK, raw SDK inside `Effect.tryPromise`, `pool.callTool`, and a call on a held lease; each variant
 * over `instances` servers of its own.
 */
const overheadVariants = async (makeClient: () => Promise<Client>, pool: L.Pool, instances: number) => {
  const indexes = Array.from({ length: instances }, (_, i) => i)
  const raw: Array<Client> = []
  const wrapped: Array<Client> = []
  for (const _ of indexes) {
    raw.push(await makeClient())
    wrapped.push(await makeClient())
  }
  const leaseScope = Scope.makeUnsafe()
  const held = await Effect.runPromise(
    Effect.forEach(indexes, (i) => pool.get("notebook", `held-${i}`)).pipe(Scope.provide(leaseScope))
  )
  const variants: Array<L.Variant> = [
    L.cycling("raw SDK Client.callTool", raw.map(L.rawCalls)),
    L.cycling("raw SDK in Effect.tryPromise", wrapped.map(L.effectWrappedCalls)),
    L.cycling("pool.callTool", indexes.map((i) => L.poolCalls(pool, "notebook", `thread-${i}`))),
    // The SDK client inside a pool session, called directly: the SDK over this pool's transport.
    L.cycling("raw SDK Client of a pool session", held.map((session) => L.rawCalls(session.client as Client))),
    L.cycling(
      "session.callTool (lease held)",
      held.map((session) => (n: number) =>
        Effect.runPromise(Effect.gen(function*() {
          for (let i = 0; i < n; i++) yield* session.callTool(L.tool)
        }))
      )
    )
  ]
  const close = async () => {
    for (const client of [...raw, ...wrapped]) await client.close()
    await Effect.runPromise(Scope.close(leaseScope, Exit.void))
  }
  return { variants, close }
}

/** Server processes per stdio variant, cycled batch by batch. */
const stdioInstances = 3
/** Calls per server before timing: fewer leave the servers' JIT still settling, some faster than others. */
const stdioWarmup = 10_000

/** Wall and CPU columns: the headline clock is CPU for in-memory (one process), wall for stdio. */
const timingRows = (prefix: string, result: L.Comparison) =>
  Object.keys(result.wall.micros).map((name) => [
    `${prefix}${name}`,
    `${L.fmt(result.wall.micros[name]!)} µs`,
    L.ratioText(result.wall, name),
    `${L.fmt(result.cpu.micros[name]!)} µs`,
    L.ratioText(result.cpu, name)
  ])

const timingHead = (first: string) => [
  first,
  "wall per call",
  "× raw SDK, wall (IQR)",
  "client CPU per call",
  "× raw SDK, CPU (IQR)"
]

export const overhead = async (): Promise<Section> => {
  const rows: Array<Array<string>> = []
  const ratios: Record<string, number> = {}
  for (const kind of ["in-memory", "stdio"] as const) {
    console.log(`overhead (${kind}): 4 variants interleaved`)
    const { close: closePool, pool } = await L.openPool({
      servers: { notebook: kind === "stdio" ? L.notebookStdio : L.notebookInMemory }
    })
    const { close, variants } = kind === "stdio"
      ? await overheadVariants(L.rawStdioClient, pool, stdioInstances)
      : await overheadVariants(L.rawInMemoryClient, pool, 1)
    const result = await L.compare(
      variants,
      kind === "stdio"
        ? { rounds: 90, batch: 100, warmup: stdioWarmup }
        : { rounds: 100, batch: 400, warmup: 3000 }
    )
    rows.push(...timingRows(`${kind}: `, result))
    const headline = kind === "stdio" ? result.wall : result.cpu
    ratios[kind] = headline.ratio["pool.callTool"]!
    ratios[`${kind} floor`] = headline.ratio["raw SDK in Effect.tryPromise"]!
    ratios[`${kind} lease`] = headline.ratio["session.callTool (lease held)"]!
    ratios[`${kind} cpu`] = result.cpu.ratio["pool.callTool"]!
    await close()
    await closePool()
  }
  return {
    id: "overhead",
    title: "1. Overhead: `pool.callTool` vs a raw SDK `Client` already connected",
    description: "One `counter_increment` call on the bundled notebook server. Each variant has servers of " +
      `its own (one in-memory instance; ${stdioInstances} stdio processes, a different one per batch, each ` +
      `warmed up with ${L.int(stdioWarmup)} calls); rounds interleave the variants in rotating order; the ` +
      "ratio is the median over rounds of (variant ÷ raw SDK) within the round. `Effect.tryPromise` around " +
      "the raw call is the floor for any Effect API; calling the SDK client inside a pool session directly " +
      "measures the pool's transport (for stdio: its own, against the SDK's `StdioClientTransport`); the held " +
      "lease isolates the session wrapper from the lease taking. Each batch is timed on the wall clock and on this process's CPU time; the headline ratio " +
      "is CPU time for in-memory (everything runs in this process) and wall time for stdio (two processes per " +
      `call). This section ran on CPUs ${L.allowedCpus()} (the bench pins it to one, so that both ends of a ` +
      "pipe share a core: cross-core wake-ups otherwise make most of the variance). IQR: the interquartile " +
      "range of the per-round ratios.",
    table: {
      head: timingHead("variant"),
      rows
    },
    headline: [
      { metric: "Overhead, in-memory (`pool.callTool` ÷ raw SDK, CPU time)", value: ratios["in-memory"]!, target: 1.1 },
      {
        metric: "Overhead, stdio (`pool.callTool` ÷ raw SDK, wall time)",
        value: ratios["stdio"]!,
        target: 1.1,
        text: `${L.fmt(ratios["stdio"]!, 2)}× (client CPU: ${L.fmt(ratios["stdio cpu"]!, 2)}×)`
      },
      {
        metric: "For reference: raw SDK in `Effect.tryPromise` ÷ raw SDK, in-memory / stdio",
        value: ratios["in-memory floor"]!,
        text: `${L.fmt(ratios["in-memory floor"]!, 2)}× / ${L.fmt(ratios["stdio floor"]!, 2)}×`
      }
    ],
    bars: [
      { group: "in-memory call (× raw SDK)", label: "Effect.tryPromise floor", value: ratios["in-memory floor"]! },
      { group: "in-memory call (× raw SDK)", label: "session.callTool (lease)", value: ratios["in-memory lease"]! },
      { group: "in-memory call (× raw SDK)", label: "pool.callTool", value: ratios["in-memory"]!, target: 1.1 },
      { group: "stdio call (× raw SDK)", label: "Effect.tryPromise floor", value: ratios["stdio floor"]! },
      { group: "stdio call (× raw SDK)", label: "session.callTool (lease)", value: ratios["stdio lease"]! },
      { group: "stdio call (× raw SDK)", label: "pool.callTool", value: ratios["stdio"]!, target: 1.1 }
    ]
  }
}

/** What most clients do per tool call: spawn, initialize, call, close. */
const connectPerCall = async (timings: { toResult: Array<number>; total: Array<number> }) => {
  const start = performance.now()
  const client = new Client(L.clientInfo)
  await client.connect(
    new StdioClientTransport({ command: process.execPath, args: [L.notebookPath], stderr: "ignore" })
  )
  await client.callTool(L.tool)
  timings.toResult.push(performance.now() - start)
  await client.close()
  timings.total.push(performance.now() - start)
}

export const savings = async (): Promise<Section> => {
  console.log("savings: connect-per-call (spawn + initialize + call + close) vs pooled stdio call")
  const { close, pool } = await L.openPool({ servers: { notebook: L.notebookStdio } })
  const timings = { toResult: [] as Array<number>, total: [] as Array<number> }
  const pooledBatch = 200
  const result = await L.compare([
    {
      name: "pooled",
      run: (n) => L.poolCalls(pool, "notebook", "thread")(n * pooledBatch)
    },
    {
      name: "connect-per-call",
      run: async (n) => {
        for (let i = 0; i < n; i++) await connectPerCall(timings)
      }
    }
  ], { rounds: 15, batch: 1, warmup: 1 })
  await close()
  timings.toResult.shift() // the warm-up
  timings.total.shift()
  const pooledMicros = result.wall.micros["pooled"]! / pooledBatch
  const toResultMillis = L.median(timings.toResult)
  const totalMillis = L.median(timings.total)
  const speedup = (toResultMillis * 1000) / pooledMicros
  return {
    id: "savings",
    title: "2. Savings: pooled stdio call vs connect-per-call",
    description: "Connect-per-call spawns the notebook server with the SDK's `StdioClientTransport`, " +
      "initializes, calls once and closes. Rounds interleave one such call with a batch of " +
      `${pooledBatch} pooled calls. The speed-up counts connect-per-call only up to its result (close may ` +
      "run in the background); with the close it is larger.",
    table: {
      head: ["variant", "median per call"],
      rows: [
        ["pooled `pool.callTool` (stdio)", `${L.fmt(pooledMicros)} µs`],
        ["connect-per-call, until the result", `${L.fmt(toResultMillis)} ms`],
        ["connect-per-call, including close", `${L.fmt(totalMillis)} ms`],
        ["speed-up (until the result)", `${L.int(speedup)}×`],
        ["speed-up (including close)", `${L.int((totalMillis * 1000) / pooledMicros)}×`]
      ]
    },
    headline: [{
      metric: "Savings: pooled stdio call vs connect-per-call (speed-up)",
      value: speedup,
      text: `${L.int(speedup)}× faster (${L.fmt(pooledMicros)} µs vs ${L.fmt(toResultMillis)} ms)`
    }],
    bars: []
  }
}

// --- peers ---

/** The part of LangChain's `MultiServerMCPClient` used here (imported at run time from bench/peers). */
interface LangChainClient {
  getTools(): Promise<Array<{ name: string; invoke(input: unknown): Promise<unknown> }>>
  close(): Promise<void>
}

interface Instance {
  readonly run: (n: number) => Promise<unknown>
  readonly close: () => Promise<void>
}

const langchainInstance = async (): Promise<Instance | string> => {
  let module: { MultiServerMCPClient: new(config: unknown) => LangChainClient }
  try {
    const specifier = "./peers/node_modules/@langchain/mcp-adapters/dist/index.js"
    module = await import(new URL(specifier, import.meta.url).href)
  } catch (error) {
    return `not installed (${error instanceof Error ? error.message.split("\n")[0] : String(error)})`
  }
  const client = new module.MultiServerMCPClient({
    mcpServers: {
      notebook: { transport: "stdio", command: process.execPath, args: [L.notebookPath], stderr: "ignore" }
    }
  })
  const tool = (await client.getTools()).find((t) => t.name.endsWith(L.tool.name))
  if (tool === undefined) return "the counter tool was not found"
  return {
    run: async (n) => {
      for (let i = 0; i < n; i++) await tool.invoke(L.tool.arguments)
    },
    close: () => client.close()
  }
}

const effectAiInstance = async (): Promise<Instance> => {
  // Transport and client both live in `scope` (providing the transport as a Layer would close it as soon
  // as the client is built).
  const scope = Scope.makeUnsafe()
  const client = await Effect.runPromise(
    Effect.gen(function*() {
      const transport = yield* McpClient.stdio({
        command: ChildProcess.make(process.execPath, [L.notebookPath]),
        protocol: McpProtocol.v2025_11_25
      })
      return yield* McpClient.make({ name: "bench", version: "0.0.0" }).pipe(
        Effect.provideService(McpClient.Transport, transport)
      )
    }).pipe(Effect.provide(NodeServices.layer), Scope.provide(scope))
  )
  const tools = await Effect.runPromise(client.listTools())
  const tool = tools.find((t) => t.name === L.tool.name)!
  return {
    run: (n) =>
      Effect.runPromise(Effect.gen(function*() {
        for (let i = 0; i < n; i++) yield* client.callTool({ tool, arguments: L.tool.arguments })
      })),
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

/** `stdioInstances` instances of a peer as one variant, or why it could not be measured. */
const peerVariant = async (
  name: string,
  make: () => Promise<Instance | string>,
  closers: Array<() => Promise<void>>
): Promise<L.Variant | string> => {
  const runs: Array<Instance["run"]> = []
  for (let i = 0; i < stdioInstances; i++) {
    let instance: Instance | string
    try {
      instance = await make()
    } catch (error) {
      instance = String(error)
    }
    if (typeof instance === "string") return `${name}: ${instance}`
    runs.push(instance.run)
    closers.push(instance.close)
  }
  return L.cycling(name, runs)
}

export const peers = async (): Promise<Section> => {
  console.log("peers: raw SDK, this pool, LangChain, effect/ai on the same stdio server")
  const { close, pool } = await L.openPool({ servers: { notebook: L.notebookStdio } })
  const closers: Array<() => Promise<void>> = [close]
  const made = [
    await peerVariant("raw SDK Client.callTool", async () => {
      const client = await L.rawStdioClient()
      return { run: L.rawCalls(client), close: () => client.close() }
    }, closers),
    L.cycling(
      "effect-mcp-pool pool.callTool",
      Array.from({ length: stdioInstances }, (_, i) => L.poolCalls(pool, "notebook", `thread-${i}`))
    ),
    await peerVariant("@langchain/mcp-adapters tool.invoke", langchainInstance, closers),
    await peerVariant("effect/ai McpClient.callTool", effectAiInstance, closers)
  ]
  const variants = made.filter((v): v is L.Variant => typeof v !== "string")
  const missing = made.filter((v): v is string => typeof v === "string")
  const result = await L.compare(variants, { rounds: 60, batch: 100, warmup: stdioWarmup })
  for (const closer of closers) await closer()
  return {
    id: "peers",
    title: "6. Peers on the same stdio server",
    description: "The bundled notebook server over stdio, `counter_increment` called through each client's " +
      `own API; each client has ${stdioInstances} server processes of its own, and variants are interleaved ` +
      `in rotating order on CPUs ${L.allowedCpus()} (same method as section 1).`,
    table: {
      head: timingHead("client"),
      rows: timingRows("", result)
    },
    notes: missing.map((m) => `Not measured: ${m}.`),
    headline: variants.slice(1).map((v) => ({
      metric: `Peer call, stdio: ${v.name} ÷ raw SDK`,
      value: result.wall.ratio[v.name]!,
      text: `${L.fmt(result.wall.ratio[v.name]!, 2)}× wall, ${L.fmt(result.cpu.ratio[v.name]!, 2)}× client CPU`
    })),
    bars: variants.slice(1).map((v) => ({
      group: "peers, stdio call (× raw SDK)",
      label: v.name,
      value: result.wall.ratio[v.name]!
    }))
  }
}
