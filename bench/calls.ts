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
import { readFileSync } from "node:fs"
import * as L from "./lib.ts"
import type { Section, Target } from "./report.ts"

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
    Effect.forEach(indexes, (i) => pool.get({ server: "notebook", scope: `held-${i}` })).pipe(Scope.provide(leaseScope))
  )
  // Connected now (their first call would have), for their processes' ids.
  const called = await Effect.runPromise(
    Effect.forEach(indexes, (i) => Effect.scoped(pool.get({ server: "notebook", scope: `thread-${i}` })))
  )
  // Over stdio, every variant's server processes, whose CPU time is recorded beside this process's.
  const transportPid = (client: Client) =>
    client.transport instanceof StdioClientTransport ? client.transport.pid : undefined
  const heldPids = L.readablePids(held.map((session) => session.pid))
  const variants: Array<L.Variant> = [
    L.cycling("raw SDK Client.callTool", raw.map(L.rawCalls), L.readablePids(raw.map(transportPid))),
    L.cycling(
      "raw SDK in Effect.tryPromise",
      wrapped.map(L.effectWrappedCalls),
      L.readablePids(wrapped.map(transportPid))
    ),
    L.cycling(
      "pool.callTool",
      indexes.map((i) => L.poolCalls(pool, "notebook", `thread-${i}`)),
      L.readablePids(called.map((session) => session.pid))
    ),
    // The SDK client inside a pool session, called directly: the SDK over this pool's transport.
    L.cycling(
      "raw SDK Client of a pool session",
      held.map((session) => L.rawCalls(session.sdk.client as Client)),
      heldPids
    ),
    L.cycling(
      "session.callTool (lease held)",
      held.map((session) => (n: number) =>
        Effect.runPromise(Effect.gen(function*() {
          for (let i = 0; i < n; i++) yield* session.callTool(L.tool)
        }))
      ),
      heldPids
    )
  ]
  const close = async () => {
    for (const client of [...raw, ...wrapped]) await client.close()
    await Effect.runPromise(Scope.close(leaseScope, Exit.void))
  }
  return { variants, close }
}

const vPool = "pool.callTool"
const vFloor = "raw SDK in Effect.tryPromise"
const vLease = "session.callTool (lease held)"
const vViaPool = "raw SDK Client of a pool session"

/**
 * One overhead target on one clock. Beside a miss: the raw call inside `Effect.tryPromise` (what an Effect
 * API that wraps the SDK's call pays) and the call on a held lease, measured in the same rounds; the why
 * splits the pool's time per call into what each step adds, from the variants between the raw call and
 * `pool.callTool`, and, given `server` (the server processes' CPU on the same rounds), what the servers spent.
 */
const overheadTarget = (name: string, bound: number, t: L.Timing, server?: L.Timing): Target => {
  const us = (a: string, b: string) => {
    const d = t.micros[a]! - t.micros[b]!
    return `${d >= 0 ? "+" : "−"}${L.fmt(Math.abs(d), 1)} µs`
  }
  const [lo, hi] = t.spread[vPool]!
  return {
    name,
    where: "§1",
    bound,
    value: t.ratio[vPool]!,
    spread: `${L.fmt(lo, 2)}–${L.fmt(hi, 2)}`,
    floor: `${L.fmt(t.ratio[vLease]!, 2)}× on a held lease; ${
      L.fmt(t.ratio[vFloor]!, 2)
    }× for the raw SDK call in \`Effect.tryPromise\` (with its abort signal)`,
    why: `Medians per call, against the raw SDK call (${L.fmt(t.micros["raw SDK Client.callTool"]!, 1)} µs): ` +
      `the SDK client over the pool's own transport ${us(vViaPool, "raw SDK Client.callTool")}; a call on a ` +
      `held lease (the session's own tools/call, over the pool's transport) ${
        us(vLease, "raw SDK Client.callTool")
      }; ` +
      `taking and returning the lease ${us(vPool, vLease)} more (for reference, the raw call run as an Effect: ` +
      `${us(vFloor, "raw SDK Client.callTool")}).` +
      " `pool.callTool` does not wrap the SDK's call: its hit path is one `Effect.callback` that takes the " +
      "lease, writes `tools/call` to the session's transport itself (toolCalls.ts: no promise chain, timer or " +
      "abort listener per call, results decoded without zod) and returns the lease when the answer is read. " +
      "What it adds to the raw call is the fiber's suspension and resumption, the lease and the session's " +
      "bookkeeping; over stdio most of a call is the server's own work and the two processes' pipe work, " +
      "and the ratio moves by a few percent between runs with how the kernel schedules the two ends." +
      (t.ratio[vLease]! > bound ? " The held lease is over the bound too: the gap is not the lease." : "") +
      (server === undefined ? "" : serverShare(server))
  }
}

/**
 * Over stdio, on one CPU, a call's wall time is about the two processes' CPU time in turn: what the
 * servers spent per call, beside the client's.
 */
const serverShare = (server: L.Timing) =>
  ` The servers' own CPU per call: ${L.fmt(server.micros[vPool]!, 1)} µs answering \`pool.callTool\`, ${
    L.fmt(server.micros["raw SDK Client.callTool"]!, 1)
  } µs answering the raw SDK (${L.fmt(server.ratio[vPool]!, 2)}× round by round, IQR ${
    L.fmt(server.spread[vPool]![0], 2)
  }–${L.fmt(server.spread[vPool]![1], 2)}): the same tool in the same server code, on processes of their ` +
  "own, costs the servers more or less with how the calls reach them (the two variants on a held lease " +
  "share their processes and still differ)."

/**
 * Wall and CPU columns: the headline clock is CPU for in-memory (one process), wall for stdio. With
 * `serverColumn`, the server processes' CPU too ("–" where the server runs in this process).
 */
const timingRows = (prefix: string, result: L.Comparison, serverColumn = false) =>
  Object.keys(result.wall.micros).map((name) => [
    `${prefix}${name}`,
    `${L.fmt(result.wall.micros[name]!)} µs`,
    L.ratioText(result.wall, name),
    `${L.fmt(result.cpu.micros[name]!)} µs`,
    L.ratioText(result.cpu, name),
    ...(serverColumn ? [result.server === undefined ? "–" : `${L.fmt(result.server.micros[name]!)} µs`] : [])
  ])

const timingHead = (first: string, serverColumn = false) => [
  first,
  "wall per call",
  "× raw SDK, wall (IQR)",
  "client CPU per call",
  "× raw SDK, CPU (IQR)",
  ...(serverColumn ? ["server CPU per call"] : [])
]

export const overhead = async (): Promise<Section> => {
  const rows: Array<Array<string>> = []
  const ratios: Record<string, number> = {}
  const results: Record<string, L.Comparison> = {}
  for (const kind of ["in-memory", "stdio"] as const) {
    console.log(`overhead (${kind}): 5 variants interleaved`)
    const { close: closePool, pool } = await L.openPool({
      servers: { notebook: kind === "stdio" ? L.notebookStdio : L.notebookInMemory }
    })
    const { close, variants } = kind === "stdio"
      ? await overheadVariants(L.rawStdioClient, pool, L.stdioInstances)
      : await overheadVariants(L.rawInMemoryClient, pool, 1)
    const result = await L.compare(
      variants,
      kind === "stdio"
        ? { rounds: 90, batch: 100, warmup: L.stdioWarmup }
        : { rounds: 100, batch: 400, warmup: 3000 }
    )
    rows.push(...timingRows(`${kind}: `, result, true))
    results[kind] = result
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
      `its own (one in-memory instance; ${L.stdioInstances} stdio processes, a different one per batch, each ` +
      `warmed up with ${L.int(L.stdioWarmup)} calls; the two variants on a held lease share theirs); rounds ` +
      "interleave the variants in rotating order; the ratio is the median over rounds of (variant ÷ raw " +
      "SDK) within the round. `Effect.tryPromise` around the raw call, its abort signal passed to the SDK, " +
      "is what any Effect API that cancels that way pays " +
      "(`pool.callTool` wraps no SDK call: its hit path writes `tools/call` to the session's transport itself " +
      "and cancels it there); calling the SDK client inside a pool session directly " +
      "measures the pool's transport (for stdio: its own, against the SDK's `StdioClientTransport`); the held " +
      "lease isolates the session wrapper from the lease taking. Each batch is timed on the wall clock and on " +
      "this process's CPU time, and over stdio on its server processes' CPU time (the scheduler's count, " +
      "/proc/<pid>/task/*/schedstat, read between batches); the headline ratio is CPU time for in-memory " +
      "(everything runs in this process) and wall time for stdio (two processes per " +
      `call). This section ran on CPUs ${L.allowedCpus()} (the bench pins it to one, so that both ends of a ` +
      "pipe share a core: cross-core wake-ups otherwise make most of the variance). IQR: the interquartile " +
      "range of the per-round ratios.",
    table: {
      head: timingHead("variant", true),
      rows
    },
    targets: [
      overheadTarget(
        "stdio: `pool.callTool` ÷ raw SDK call, wall",
        1.0,
        results["stdio"]!.wall,
        results["stdio"]!.server
      ),
      overheadTarget("stdio: `pool.callTool` ÷ raw SDK call, client CPU", 1.05, results["stdio"]!.cpu),
      overheadTarget("in-memory: `pool.callTool` ÷ raw SDK call, CPU", 1.1, results["in-memory"]!.cpu)
    ],
    headline: [
      {
        metric: "For reference: raw SDK in `Effect.tryPromise` ÷ raw SDK, in-memory / stdio",
        value: ratios["in-memory floor"]!,
        text: `${L.fmt(ratios["in-memory floor"]!, 2)}× / ${L.fmt(ratios["stdio floor"]!, 2)}×`
      }
    ],
    bars: [
      { group: "in-memory call (× raw SDK, CPU)", label: "Effect.tryPromise floor", value: ratios["in-memory floor"]! },
      {
        group: "in-memory call (× raw SDK, CPU)",
        label: "session.callTool (lease)",
        value: ratios["in-memory lease"]!
      },
      { group: "in-memory call (× raw SDK, CPU)", label: "pool.callTool", value: ratios["in-memory"]!, target: 1.1 },
      { group: "stdio call (× raw SDK, wall)", label: "Effect.tryPromise floor", value: ratios["stdio floor"]! },
      { group: "stdio call (× raw SDK, wall)", label: "session.callTool (lease)", value: ratios["stdio lease"]! },
      { group: "stdio call (× raw SDK, wall)", label: "pool.callTool", value: ratios["stdio"]!, target: 1.0 },
      {
        group: "stdio call (× raw SDK, wall)",
        label: "pool.callTool (on client CPU)",
        value: ratios["stdio cpu"]!,
        target: 1.05
      }
    ]
  }
}

/** What most clients do per tool call: spawn, initialize, call, close. */
const connectPerCall = async (timings: { toResult: Array<number>; total: Array<number>; cpu: Array<number> }) => {
  const start = performance.now()
  const cpuStart = L.cpuMillis()
  const client = new Client(L.clientInfo)
  await client.connect(
    new StdioClientTransport({ command: process.execPath, args: [L.notebookPath], stderr: "ignore" })
  )
  await client.callTool(L.tool)
  timings.toResult.push(performance.now() - start)
  await client.close()
  timings.total.push(performance.now() - start)
  timings.cpu.push(L.cpuMillis() - cpuStart)
}

export const savings = async (): Promise<Section> => {
  console.log("savings: connect-per-call (spawn + initialize + call + close) vs pooled stdio call")
  const { close, pool } = await L.openPool({ servers: { notebook: L.notebookStdio } })
  const timings = { toResult: [] as Array<number>, total: [] as Array<number>, cpu: [] as Array<number> }
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
  timings.cpu.shift()
  const pooledMicros = result.wall.micros["pooled"]! / pooledBatch
  const pooledCpuMicros = result.cpu.micros["pooled"]! / pooledBatch
  const cpuMillis = L.median(timings.cpu)
  const toResultMillis = L.median(timings.toResult)
  const totalMillis = L.median(timings.total)
  const speedup = (toResultMillis * 1000) / pooledMicros
  return {
    id: "savings",
    title: "2. Savings: pooled stdio call vs connect-per-call",
    description: "Connect-per-call spawns the notebook server with the SDK's `StdioClientTransport`, " +
      "initializes, calls once and closes. Rounds interleave one such call with a batch of " +
      `${pooledBatch} pooled calls. The speed-up counts connect-per-call only up to its result (close may ` +
      "run in the background); with the close it is larger. Client CPU is this process's (the spawned " +
      "servers' own CPU is not in it). Not pinned: a spawn per call needs both cores.",
    table: {
      head: ["variant", "wall per call (median)", "client CPU per call (median)"],
      rows: [
        ["pooled `pool.callTool` (stdio)", `${L.fmt(pooledMicros)} µs`, `${L.fmt(pooledCpuMicros)} µs`],
        ["connect-per-call, until the result", `${L.fmt(toResultMillis)} ms`, "–"],
        ["connect-per-call, including close", `${L.fmt(totalMillis)} ms`, `${L.fmt(cpuMillis)} ms`],
        ["speed-up (until the result)", `${L.int(speedup)}×`, "–"],
        [
          "speed-up (including close)",
          `${L.int((totalMillis * 1000) / pooledMicros)}×`,
          `${L.int((cpuMillis * 1000) / pooledCpuMicros)}×`
        ]
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
  const module = await peerModule<{ MultiServerMCPClient: new(config: unknown) => LangChainClient }>(
    "@langchain/mcp-adapters/dist/index.js"
  )
  if (typeof module === "string") return module
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

/** A module of bench/peers, or why it could not be loaded. */
const peerModule = async <A>(specifier: string): Promise<A | string> => {
  try {
    return await import(new URL(`./peers/node_modules/${specifier}`, import.meta.url).href)
  } catch (error) {
    return `not installed (${error instanceof Error ? error.message.split("\n")[0] : String(error)})`
  }
}

/** The version of a package installed in bench/peers. */
const peerVersion = (name: string): string => {
  try {
    return JSON.parse(readFileSync(new URL(`./peers/node_modules/${name}/package.json`, import.meta.url), "utf8"))
      .version
  } catch {
    return "not installed"
  }
}

/** An AI SDK / Mastra tool: `execute(input, options)`. */
interface ExecutableTool {
  execute(input: unknown, options: unknown): Promise<unknown>
}

/**
 * `@ai-sdk/mcp`: `createMCPClient` over its own stdio transport; the tool's `execute`, as `generateText`
 * would call it.
 */
const aiSdkInstance = async (): Promise<Instance | string> => {
  const mcp = await peerModule<{
    createMCPClient(
      config: unknown
    ): Promise<{ tools(): Promise<Record<string, ExecutableTool>>; close(): Promise<void> }>
  }>("@ai-sdk/mcp/dist/index.js")
  if (typeof mcp === "string") return mcp
  const stdio = await peerModule<{ StdioMCPTransport: new(config: unknown) => unknown }>(
    "@ai-sdk/mcp/dist/mcp-stdio/index.js"
  )
  if (typeof stdio === "string") return stdio
  const client = await mcp.createMCPClient({
    transport: new stdio.StdioMCPTransport({ command: process.execPath, args: [L.notebookPath], stderr: "ignore" })
  })
  const tool = (await client.tools())[L.tool.name]
  if (tool === undefined) return "the counter tool was not found"
  const options = { toolCallId: "bench", messages: [] }
  return {
    run: async (n) => {
      for (let i = 0; i < n; i++) await tool.execute(L.tool.arguments, options)
    },
    close: () => client.close()
  }
}

/**
 * `@mastra/mcp` 2.0 (on the MCP SDK 2.0 client): `MCPClient.listTools()` connects (it probes
 * `server/discover` first and, on "Method not found", spawns the server again: two cold starts, one process
 * left), then the namespaced tool's `execute`. Calls are timed on the established client only.
 */
let mastraClients = 0

const mastraInstance = async (): Promise<Instance | string> => {
  const mastra = await peerModule<{
    MCPClient: new(config: unknown) => {
      listTools(): Promise<Record<string, ExecutableTool>>
      disconnect(): Promise<void>
    }
  }>("@mastra/mcp/dist/index.js")
  if (typeof mastra === "string") return mastra
  const client = new mastra.MCPClient({
    // Mastra refuses a second client with the same options unless each has its own id.
    id: `bench-${++mastraClients}`,
    servers: { notebook: { command: process.execPath, args: [L.notebookPath], stderr: "ignore" } }
  })
  const tool = (await client.listTools())[`notebook_${L.tool.name}`]
  if (tool === undefined) return "the counter tool was not found"
  return {
    run: async (n) => {
      for (let i = 0; i < n; i++) await tool.execute(L.tool.arguments, {})
    },
    close: () => client.disconnect()
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

/** `L.stdioInstances` instances of a peer as one variant, or why it could not be measured. */
const peerVariant = async (
  name: string,
  make: () => Promise<Instance | string>,
  closers: Array<() => Promise<void>>
): Promise<L.Variant | string> => {
  const runs: Array<Instance["run"]> = []
  for (let i = 0; i < L.stdioInstances; i++) {
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
  console.log("peers: raw SDK, this pool, @ai-sdk/mcp, @mastra/mcp, LangChain, effect/ai on the same stdio server")
  const { close, pool } = await L.openPool({ servers: { notebook: L.notebookStdio } })
  const closers: Array<() => Promise<void>> = [close]
  const made = [
    await peerVariant("raw SDK Client.callTool", async () => {
      const client = await L.rawStdioClient()
      return { run: L.rawCalls(client), close: () => client.close() }
    }, closers),
    L.cycling(
      "effect-mcp-pool pool.callTool",
      Array.from({ length: L.stdioInstances }, (_, i) => L.poolCalls(pool, "notebook", `thread-${i}`))
    ),
    await peerVariant("@ai-sdk/mcp tool.execute", aiSdkInstance, closers),
    await peerVariant("@mastra/mcp tool.execute", mastraInstance, closers),
    await peerVariant("@langchain/mcp-adapters tool.invoke", langchainInstance, closers),
    await peerVariant("effect/ai McpClient.callTool", effectAiInstance, closers)
  ]
  const variants = made.filter((v): v is L.Variant => typeof v !== "string")
  const missing = made.filter((v): v is string => typeof v === "string")
  const result = await L.compare(variants, { rounds: 60, batch: 100, warmup: L.stdioWarmup })
  for (const closer of closers) await closer()
  const ours = "effect-mcp-pool pool.callTool"
  const others = variants.slice(1).map((v) => v.name).filter((name) => name !== ours)
  const fastest = others.sort((a, b) => result.wall.ratio[a]! - result.wall.ratio[b]!)[0]
  const vsFastest = fastest === undefined ? undefined : {
    wall: L.pairRatio(result.wall.samples[ours]!, result.wall.samples[fastest]!),
    cpu: L.pairRatio(result.cpu.samples[ours]!, result.cpu.samples[fastest]!)
  }
  return {
    id: "peers",
    title: "6. Peers on the same stdio server",
    description: "The bundled notebook server over stdio, `counter_increment` called through each client's " +
      `own API (for @ai-sdk/mcp and @mastra/mcp, the tool's \`execute\`, as an agent loop calls it); each ` +
      `client has ${L.stdioInstances} server processes of its own, each warmed up with ${L.int(L.stdioWarmup)} ` +
      `calls, and variants are interleaved in rotating order on CPUs ${L.allowedCpus()} (same method as ` +
      "section 1). Every client is connected before timing starts: only calls are timed.",
    table: {
      head: timingHead("client"),
      rows: timingRows("", result)
    },
    notes: [
      ...missing.map((m) => `Not measured: ${m}.`),
      "@mastra/mcp 2.0 first probes `server/discover` and, when the server answers \"Method not found\" (this " +
      "SDK 1.32 server does), spawns it a second time: its connect is two cold starts (the first process " +
      "exits; one is left per client). That is outside the timed calls here.",
      "@mastra/mcp's `execute` returns the tool's `structuredContent` (here `{ value }`) rather than the whole " +
      "result; @ai-sdk/mcp parses results with its own code instead of the SDK's zod schemas."
    ],
    versions: [
      ["@ai-sdk/mcp", peerVersion("@ai-sdk/mcp")],
      ["@mastra/mcp / @mastra/core", `${peerVersion("@mastra/mcp")} / ${peerVersion("@mastra/core")}`],
      [
        "@langchain/mcp-adapters / @langchain/core",
        `${peerVersion("@langchain/mcp-adapters")} / ${peerVersion("@langchain/core")}`
      ]
    ],
    headline: [
      ...variants.slice(1).map((v) => ({
        metric: `Peer call, stdio: ${v.name} ÷ raw SDK`,
        value: result.wall.ratio[v.name]!,
        text: `${L.fmt(result.wall.ratio[v.name]!, 2)}× wall, ${L.fmt(result.cpu.ratio[v.name]!, 2)}× client CPU`
      })),
      ...(fastest === undefined ? [] : [{
        metric: `Peer call, stdio: effect-mcp-pool ÷ the fastest peer (${fastest}), same rounds`,
        value: vsFastest!.wall.median,
        text: `${L.pairText(vsFastest!.wall)} wall, ${L.pairText(vsFastest!.cpu)} client CPU`
      }])
    ],
    bars: variants.slice(1).map((v) => ({
      group: "peers, stdio call (× raw SDK)",
      label: v.name,
      value: result.wall.ratio[v.name]!
    }))
  }
}
