/**
 * Shared bench helpers: interleaved sampling, statistics, servers, and a pool in a closeable scope.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js"
import { Server } from "@modelcontextprotocol/sdk/server/index.js"
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import {
  CallToolRequestSchema,
  type JSONRPCMessage,
  LATEST_PROTOCOL_VERSION,
  ListToolsRequestSchema
} from "@modelcontextprotocol/sdk/types.js"
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv"
import type { jsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/types.js"
import { Effect, Exit, Scope } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { makeNotebookServer } from "../examples/notebook-server.ts"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import * as McpSessionPool from "../src/McpSessionPool.ts"
import type { Options } from "../src/McpSessionPool.ts"

export type Pool = McpSessionPool.McpSessionPoolShape

/** `BENCH_QUICK=1` divides the big counts of sections 4 and 5 by 10, to try the bench out quickly. */
export const quick = process.env.BENCH_QUICK === "1"

export const notebookPath = fileURLToPath(new URL("../examples/notebook-server.ts", import.meta.url))
export const clientInfo = { name: "bench", version: "0.0.0" }
/** The call every comparison makes: a tool with a tiny argument and a tiny result. */
export const tool = { name: "counter_increment", arguments: { by: 1 } }

/** Server processes per variant in the stdio per-call comparisons (§1, §6, §10), cycled batch by batch. */
export const stdioInstances = 3
/**
 * Calls per server process before timing. A Node server's own CPU per call keeps falling well past 10,000
 * calls (measured here: 23 µs after 10,000, 17 µs after 40,000, no lower after 80,000), and unevenly
 * between processes, so that with fewer the variants' servers, not their clients, made most of the
 * difference between them.
 */
export const stdioWarmup = 50_000

// --- statistics ---

export const median = (xs: ReadonlyArray<number>): number => percentile(xs, 50)

export const percentile = (xs: ReadonlyArray<number>, p: number): number => {
  if (xs.length === 0) return Number.NaN
  const sorted = [...xs].sort((a, b) => a - b)
  const rank = (p / 100) * (sorted.length - 1)
  const lo = Math.floor(rank)
  const hi = Math.ceil(rank)
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (rank - lo)
}

export const gc = (): void => (globalThis as { gc?: () => void }).gc?.()

/**
 * A forced GC, then idle until V8's helper threads are done with its aftermath (right after `gc()` they
 * use ~10 ms of CPU over the next ~100 ms here, with or without a burst before it): a burst timed at once
 * would be charged for it, a short one (1,000 connects, ~80 ms) far more than a long one. Settled: two
 * 10 ms windows in a row with under 5 % CPU; bounded: at most 40 windows.
 */
export const gcSettled = async (): Promise<void> => {
  gc()
  for (let window = 0, quiet = 0; window < 40 && quiet < 2; window++) {
    const [wallStart, cpuStart] = [performance.now(), cpuMillis()]
    await new Promise((resolve) => setTimeout(resolve, 10))
    quiet = cpuMillis() - cpuStart < 0.05 * (performance.now() - wallStart) ? quiet + 1 : 0
  }
}

export const heapUsed = (): number => {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

// --- interleaved comparison ---

/** This process's CPU time (per-thread CPU time would leave out V8's GC threads, but counts in 4 ms ticks). */
export const cpuMillis = (): number => {
  const { system, user } = process.cpuUsage()
  return (user + system) / 1000
}

/**
 * CPU time the processes have used so far, every thread of theirs, in milliseconds: the scheduler's own
 * nanosecond count (`/proc/<pid>/task/<tid>/schedstat`), where `/proc/<pid>/stat` counts 10 ms ticks, more
 * than a batch of calls takes. A thread that ends between two readings drops out of the later one (V8's
 * helpers live as long as the process).
 */
export const processCpuMillis = (pids: ReadonlyArray<number>): number => {
  let nanos = 0
  for (const pid of pids) {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        nanos += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0])
      } catch (error) {
        // The thread ended after the listing; anything else is not a reading to drop silently.
        const { code } = error as NodeJS.ErrnoException
        if (code !== "ENOENT" && code !== "ESRCH") throw error
      }
    }
  }
  return nanos / 1e6
}

/**
 * `pids` when every one is a process whose CPU time {@link processCpuMillis} can read (Linux with
 * schedstat), else `undefined`: then the server CPU column says "–" rather than the bench failing.
 */
export const readablePids = (pids: ReadonlyArray<number | null | undefined>): ReadonlyArray<number> | undefined => {
  if (!pids.every((pid): pid is number => typeof pid === "number")) return undefined
  try {
    const reading = processCpuMillis(pids)
    return Number.isFinite(reading) && reading > 0 ? pids : undefined
  } catch {
    return undefined
  }
}

/** One compared variant: `run(n)` performs the operation `n` times in a row. */
export interface Variant {
  readonly name: string
  readonly run: (n: number) => Promise<unknown>
  /** How many instances (server processes) `run` cycles through; each is warmed up. Default 1. */
  readonly instances?: number
  /** The server processes it calls, if they are processes: their CPU time is recorded batch by batch too. */
  readonly serverPids?: ReadonlyArray<number>
}

/**
 * One variant over several instances, a different one per batch. Server processes differ by several
 * percent in speed (JIT, placement) and that would otherwise pass for a difference between clients.
 */
export const cycling = (
  name: string,
  runs: ReadonlyArray<(n: number) => Promise<unknown>>,
  serverPids?: ReadonlyArray<number>
): Variant => {
  let next = 0
  const run = (n: number) => runs[next++ % runs.length]!(n)
  return serverPids === undefined
    ? { name, instances: runs.length, run }
    : { name, instances: runs.length, run, serverPids }
}

/** The CPUs this process may run on, from /proc (the bench pins the per-call sections with taskset). */
export const allowedCpus = (): string => {
  try {
    return /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "unknown"
  } catch {
    return "unknown"
  }
}

/** Per-variant results on one clock. */
export interface Timing {
  /** Median time of one operation, in microseconds. */
  readonly micros: Record<string, number>
  /** Median over rounds of (variant / baseline) measured in the same round. */
  readonly ratio: Record<string, number>
  /** The 25th and 75th percentiles of those per-round ratios: how much the rounds disagree. */
  readonly spread: Record<string, readonly [number, number]>
  /** Every round's time per operation (µs), in round order: for ratios between any two variants. */
  readonly samples: Record<string, ReadonlyArray<number>>
}

/**
 * The same rounds on two clocks, wall time and this process's CPU time (for variants that run entirely in
 * this process, CPU time leaves out the time other processes held the cores of a shared machine), and on
 * the server processes' CPU time when the variants name them.
 */
export interface Comparison {
  readonly wall: Timing
  readonly cpu: Timing
  /** The server processes' CPU time per operation, when every variant names its servers (`serverPids`). */
  readonly server: Timing | undefined
}

const summarize = (times: Map<string, Array<number>>, baseline: string): Timing => {
  const base = times.get(baseline)!
  const ratios = new Map([...times].map(([name, xs]) => [name, xs.map((x, i) => x / base[i]!)]))
  return {
    micros: Object.fromEntries([...times].map(([name, xs]) => [name, median(xs)])),
    ratio: Object.fromEntries([...ratios].map(([name, xs]) => [name, median(xs)])),
    spread: Object.fromEntries(
      [...ratios].map(([name, xs]) => [name, [percentile(xs, 25), percentile(xs, 75)] as const])
    ),
    samples: Object.fromEntries(times)
  }
}

/** A ratio between two variants measured in the same rounds: its median over rounds and its IQR. */
export interface PairRatio {
  readonly median: number
  readonly lo: number
  readonly hi: number
}

/** Median over rounds of (a ÷ b), both timed in the same round. */
export const pairRatio = (
  a: ReadonlyArray<number>,
  b: ReadonlyArray<number>
): PairRatio => {
  const xs = a.map((x, i) => x / b[i]!)
  return { median: median(xs), lo: percentile(xs, 25), hi: percentile(xs, 75) }
}

export const pairText = (r: PairRatio): string => `${fmt(r.median, 2)} (${fmt(r.lo, 2)}–${fmt(r.hi, 2)})`

/**
 * Runs the variants side by side: every round times one batch of each, in a rotating order (A B C, B C A,
 * …) so that no variant always goes first. The first variant is the baseline of the ratios. Each batch is
 * timed on the wall clock and on this process's CPU time (and on its servers' CPU time, when every variant
 * names its server processes). No forced GC between rounds: a full GC also discards warm caches, which
 * slowed every variant here and widened the spread several times.
 */
export const compare = async (
  variants: ReadonlyArray<Variant>,
  options: {
    readonly rounds: number
    readonly batch: number
    readonly warmup: number
  }
): Promise<Comparison> => {
  for (const variant of variants) {
    for (let i = 0; i < (variant.instances ?? 1); i++) await variant.run(options.warmup)
  }
  const wall = new Map(variants.map((v) => [v.name, [] as Array<number>]))
  const cpu = new Map(variants.map((v) => [v.name, [] as Array<number>]))
  const server = new Map(variants.map((v) => [v.name, [] as Array<number>]))
  const withServers = variants.every((v) => v.serverPids !== undefined)
  for (let round = 0; round < options.rounds; round++) {
    for (let i = 0; i < variants.length; i++) {
      const variant = variants[(round + i) % variants.length]!
      // Read outside the timed window: the reads' own cost stays out of the batch's clocks.
      const serverStart = withServers ? processCpuMillis(variant.serverPids!) : 0
      const [wallStart, cpuStart] = [performance.now(), cpuMillis()]
      await variant.run(options.batch)
      wall.get(variant.name)!.push(((performance.now() - wallStart) * 1000) / options.batch)
      cpu.get(variant.name)!.push(((cpuMillis() - cpuStart) * 1000) / options.batch)
      if (withServers) {
        server.get(variant.name)!.push(((processCpuMillis(variant.serverPids!) - serverStart) * 1000) / options.batch)
      }
    }
    if (round % 5 === 4) process.stdout.write(".")
  }
  process.stdout.write("\n")
  return {
    wall: summarize(wall, variants[0]!.name),
    cpu: summarize(cpu, variants[0]!.name),
    server: withServers ? summarize(server, variants[0]!.name) : undefined
  }
}

/** "1.23 (1.10–1.31)": the median ratio and its interquartile range over rounds. */
export const ratioText = (t: Timing, name: string): string => {
  const [lo, hi] = t.spread[name]!
  return `${fmt(t.ratio[name]!, 2)} (${fmt(lo, 2)}–${fmt(hi, 2)})`
}

// --- servers ---

/**
 * A JSON Schema validator that builds its Ajv instance on first use. The SDK's `Client` and `Server` each
 * build one eagerly (about 0.3 ms and 17 KiB here), and only use it for tool output schemas and
 * elicitation.
 */
export const lazyValidator = (): jsonSchemaValidator => {
  let ajv: AjvJsonSchemaValidator | undefined
  return { getValidator: (schema) => (ajv ??= new AjvJsonSchemaValidator()).getValidator(schema) }
}

/**
 * The smallest useful MCP server: one `echo` tool on the SDK's low-level `Server` (with a lazy validator),
 * for the scale and churn sections, where a full `McpServer` per session would mostly measure the server.
 */
export const makeTinyServer = (): Server => {
  const server = new Server({ name: "tiny", version: "0.0.0" }, {
    capabilities: { tools: {} },
    jsonSchemaValidator: lazyValidator()
  })
  server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: [{ name: "echo", inputSchema: { type: "object" } }]
  }))
  server.setRequestHandler(CallToolRequestSchema, (request) => ({
    content: [{ type: "text", text: JSON.stringify(request.params.arguments ?? {}) }]
  }))
  return server
}

/**
 * The lightest possible in-memory MCP server: a transport that answers `initialize`, `ping`, `tools/list`
 * and `tools/call` (an echo) itself, one microtask later. For the 100,000-session scale test, where an SDK
 * server object per session would dominate what is measured. `counts` tracks opens and closes (leaks).
 */
export const echoCounts = { opened: 0, closed: 0 }

/**
 * `held`: `initialize` answers are pushed there (to be called later) instead of sent, so that connects can
 * be measured while they wait for them.
 */
export const makeEchoTransport = (held?: Array<() => void>): Transport => {
  echoCounts.opened++
  let open = true
  const transport: Transport = {
    start: () => Promise.resolve(),
    close: () => {
      if (open) {
        open = false
        echoCounts.closed++
        transport.onclose?.()
      }
      return Promise.resolve()
    },
    send: (message: JSONRPCMessage) => {
      if (!open) return Promise.reject(new Error("Not connected"))
      if (!("id" in message) || !("method" in message)) return Promise.resolve()
      const result = message.method === "initialize"
        ? {
          protocolVersion: LATEST_PROTOCOL_VERSION,
          capabilities: { tools: {} },
          serverInfo: { name: "echo", version: "0" }
        }
        : message.method === "tools/list"
        ? { tools: [{ name: "echo", inputSchema: { type: "object" } }] }
        : message.method === "tools/call"
        ? { content: [{ type: "text", text: JSON.stringify(message.params?.arguments ?? {}) }] }
        : {}
      const answer = () => transport.onmessage?.({ jsonrpc: "2.0", id: message.id, result })
      if (held !== undefined && message.method === "initialize") held.push(answer)
      else queueMicrotask(answer)
      return Promise.resolve()
    }
  }
  return transport
}

export const echoConfig = McpServerConfig.custom(() => Effect.sync(makeEchoTransport))

/**
 * The echo server pinned to 2025-11-25, the one revision the raw SDK 1.32 client speaks: a pool connect
 * then does what a raw connect does (`initialize`), without the `server/discover` probe of negotiation.
 * `held`: as `makeEchoTransport`'s, the `initialize` answers kept until the caller sends them.
 */
export const echoConfigPinnedHolding = (held?: Array<() => void>) =>
  McpServerConfig.custom(() => Effect.sync(() => makeEchoTransport(held)), { protocol: "2025-11-25" })

export const echoConfigPinned = echoConfigPinnedHolding()

/** A raw SDK client connected to a fresh in-memory notebook server. */
export const rawInMemoryClient = async (): Promise<Client> => {
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair()
  await makeNotebookServer().connect(serverTransport)
  const client = new Client(clientInfo)
  await client.connect(clientTransport)
  return client
}

/** A raw SDK client over the SDK's own stdio transport, to a fresh notebook server process. */
export const rawStdioClient = async (): Promise<Client> => {
  const client = new Client(clientInfo)
  await client.connect(new StdioClientTransport({ command: process.execPath, args: [notebookPath], stderr: "ignore" }))
  return client
}

export const notebookStdio = McpServerConfig.stdio({ command: process.execPath, args: [notebookPath] })
export const notebookInMemory = McpServerConfig.inMemory(() => makeNotebookServer())

// --- the pool, in a scope we close ourselves ---

export interface OpenPool {
  readonly pool: Pool
  readonly close: () => Promise<void>
}

export const openPool = async (options: Options): Promise<OpenPool> => {
  const scope = Scope.makeUnsafe()
  const pool = await Effect.runPromise(
    McpSessionPool.make(options).pipe(Scope.provide(scope))
  )
  return { pool, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

/** `n` sequential pooled calls, as an Effect program would make them. */
export const poolCalls = (pool: Pool, server: string, scope: string) => (n: number) =>
  Effect.runPromise(Effect.gen(function*() {
    for (let i = 0; i < n; i++) yield* pool.callTool({ server, scope, ...tool })
  }))

/** `n` sequential raw SDK calls. */
export const rawCalls = (client: Client) => async (n: number) => {
  for (let i = 0; i < n; i++) await client.callTool(tool)
}

/** `n` sequential raw SDK calls, each wrapped in `Effect.tryPromise`: the floor of any Effect API. */
export const effectWrappedCalls = (client: Client) => (n: number) =>
  Effect.runPromise(Effect.gen(function*() {
    for (let i = 0; i < n; i++) {
      yield* Effect.tryPromise((signal) => client.callTool(tool, undefined, { signal }))
    }
  }))

export const fmt = (x: number, digits = 1): string =>
  Number.isFinite(x)
    ? x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : "n/a"

export const int = (x: number): string => Math.round(x).toLocaleString("en-US")
