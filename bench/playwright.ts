/**
 * A 10-call Playwright MCP flow on the system Chromium: pooled (one session for the flow) vs
 * connect-per-call (a fresh Playwright MCP and browser for every call). Skipped, with a note, where
 * Chromium or Playwright MCP is not available.
 */
import { getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js"
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import { accessSync, constants, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { createServer } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { npmEnvironment } from "../examples/npm-env.ts"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import * as L from "./lib.ts"
import type { Section } from "./report.ts"

const version = "0.0.83"
const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"
const npx = ["-y", "--prefer-offline", `@playwright/mcp@${version}`]
const flags = ["--browser", "chromium", "--executable-path", chromiumPath, "--headless", "--isolated"]
const calls = 10

const title = "8. Playwright MCP: a 10-call browser flow, pooled vs connect-per-call"

const skipped = (reason: string): Section => ({
  id: "playwright",
  title,
  description: "Not measured on this machine.",
  table: { head: ["flow", "note"], rows: [["10 calls, pooled vs connect-per-call", reason]] },
  headline: [{ metric: "Playwright MCP flow (10 calls)", value: Number.NaN, text: `not measured: ${reason}` }],
  bars: []
})

// --- processes, from /proc (Linux) ---

interface Proc {
  readonly pid: number
  readonly startTime: string
  /** CPU so far, in clock ticks: its own and its reaped children's. */
  readonly ticks: number
}

const stat = (pid: number | string) => {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "latin1")
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
    return {
      pid: Number(pid),
      state: fields[0] ?? "",
      ppid: Number(fields[1]),
      startTime: fields[19] ?? "",
      // utime, stime, cutime, cstime (fields 14-17 of the line)
      ticks: Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])
    }
  } catch {
    return undefined
  }
}

/** A process and its descendants (npx, sh, Playwright MCP's node, Chromium and its helpers). */
const tree = (root: number): Array<Proc> => {
  const all = readdirSync("/proc").flatMap((entry) => {
    const s = /^\d+$/.test(entry) ? stat(entry) : undefined
    return s === undefined || s.state === "Z" ? [] : [s]
  })
  const found = all.filter((s) => s.pid === root)
  for (let i = 0; i < found.length; i++) found.push(...all.filter((s) => s.ppid === found[i]!.pid))
  return found.map(({ pid, startTime, ticks }) => ({ pid, startTime, ticks }))
}

const running = (p: Proc) => {
  const s = stat(p.pid)
  return s !== undefined && s.state !== "Z" && s.state !== "X" && s.startTime === p.startTime
}

/** A local page per call, on 127.0.0.1 only. */
const site = () =>
  new Promise<{ readonly origin: string; readonly close: () => void }>((resolve) => {
    const server = createServer((request, response) => {
      response.writeHead(200, { "content-type": "text/html" })
      response.end(`<!doctype html><title>${request.url}</title><p>Page ${request.url}</p><a href="/">home</a>`)
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { readonly port: number }
      resolve({ origin: `http://127.0.0.1:${port}`, close: () => server.close() })
    })
  })

interface Flow {
  /** From the first call to the last result. */
  readonly toResult: number
  /** Including the close of every session the flow opened. */
  readonly total: number
  /** This process's CPU time over the whole flow (the servers' and Chromium's own is not in it). */
  readonly cpu: number
  /** Processes of the flow's sessions still running after their close. */
  readonly left: number
  readonly processes: number
  /** CPU of those processes (npx, Playwright MCP, Chromium) until just before their close, in ms. */
  readonly serverCpu: number
}

/** Clock ticks to milliseconds (Linux: 100 ticks a second). */
const tickMillis = 10
const cpuOf = (procs: ReadonlyArray<Proc>) => procs.reduce((sum, p) => sum + p.ticks, 0) * tickMillis

export const playwright = async (): Promise<Section> => {
  try {
    accessSync(chromiumPath, constants.X_OK)
  } catch {
    return skipped(`no Chromium at ${chromiumPath} (set CHROMIUM_PATH, or apt-get install -y chromium)`)
  }
  // What npx needs to fetch Playwright MCP where it has not been fetched yet (a proxy, CA certificates, …).
  const npmEnv = npmEnvironment()
  const env = { ...getDefaultEnvironment(), ...npmEnv }
  const probe = spawnSync("npx", [...npx, "--version"], {
    env,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: 120_000
  })
  if (probe.status !== 0) {
    return skipped(`\`npx ${npx.join(" ")} --version\` failed (${probe.error?.message ?? `exit ${probe.status}`})`)
  }
  const chromiumVersion = spawnSync(chromiumPath, ["--version"], { encoding: "utf8" }).stdout?.trim() ?? "?"
  const workDir = mkdtempSync(join(tmpdir(), "mcp-pool-bench-playwright-"))
  const page = await site()
  const { close, pool } = await L.openPool({
    servers: {
      browser: McpServerConfig.stdio({
        command: "npx",
        args: (scope) => [...npx, ...flags, "--output-dir", join(workDir, "output", scope)],
        env: { ...npmEnv, TMPDIR: workDir },
        maxConcurrentCalls: 1
      })
    },
    connectTimeout: "60 seconds",
    callTimeout: "60 seconds"
  })
  const navigate = (scope: string, i: number) =>
    Effect.runPromise(pool.callTool({
      server: "browser",
      scope,
      name: "browser_navigate",
      arguments: { url: `${page.origin}/p/${i}` }
    })).then((result) => {
      if (result.isError === true) throw new Error(`browser_navigate failed: ${JSON.stringify(result.content)}`)
    })
  const processesOf = async (scope: string) => {
    const pid = (await Effect.runPromise(pool.snapshot)).find((r) => r.scope === scope)?.pid
    return pid === undefined ? [] : tree(pid)
  }
  const closeScope = (scope: string) => Effect.runPromise(pool.closeScope(scope))

  /**
   * Pooled: one session for the whole flow; then `calls` more on the open session; then its close. Client
   * CPU and the servers' CPU cover the flow's `calls` calls only.
   */
  const pooled = async (scope: string): Promise<Flow & { readonly warm: number; readonly allProcesses: number }> => {
    const [start, cpuStart] = [performance.now(), L.cpuMillis()]
    for (let i = 0; i < calls; i++) await navigate(scope, i)
    const toResult = performance.now() - start
    const cpu = L.cpuMillis() - cpuStart
    const atResult = await processesOf(scope)
    const warmStart = performance.now()
    for (let i = 0; i < calls; i++) await navigate(scope, calls + i)
    const warm = performance.now() - warmStart
    const procs = await processesOf(scope)
    const closeStart = performance.now()
    await closeScope(scope)
    const total = toResult + performance.now() - closeStart
    return {
      toResult,
      warm,
      total,
      cpu,
      left: procs.filter(running).length,
      processes: procs.length,
      serverCpu: cpuOf(atResult),
      allProcesses: cpuOf(procs)
    }
  }

  /** Connect-per-call: a fresh session (Playwright MCP + Chromium) per call, closed after its result. */
  const perCall = async (flow: string): Promise<Flow> => {
    let toResult = 0
    let total = 0
    const procs: Array<Proc> = []
    const cpuStart = L.cpuMillis()
    for (let i = 0; i < calls; i++) {
      const scope = `${flow}-${i}`
      const start = performance.now()
      await navigate(scope, i)
      toResult += performance.now() - start
      procs.push(...await processesOf(scope))
      await closeScope(scope)
      total += performance.now() - start
    }
    return {
      toResult,
      total,
      cpu: L.cpuMillis() - cpuStart,
      left: procs.filter(running).length,
      processes: procs.length,
      serverCpu: cpuOf(procs)
    }
  }

  let result: { a: Flow & { warm: number; allProcesses: number }; b: Flow; warmUp: number; warmUpTicks: number }
  try {
    console.log("playwright: warm-up (one connect and call), then a pooled flow, then a connect-per-call flow")
    const warmUpStart = performance.now()
    await navigate("warm-up", 0)
    const warmUpTicks = cpuOf(await processesOf("warm-up"))
    await closeScope("warm-up")
    const warmUp = performance.now() - warmUpStart
    const a = await pooled("pooled")
    const b = await perCall("per-call")
    result = { a, b, warmUp, warmUpTicks }
  } finally {
    await close()
    page.close()
    rmSync(workDir, { recursive: true, force: true })
  }
  const { a, b, warmUp, warmUpTicks } = result
  const speedup = b.toResult / a.toResult
  const s = (ms: number) => `${L.fmt(ms / 1000, 2)} s`
  const msText = (ms: number) => `${L.fmt(ms, 0)} ms`
  return {
    id: "playwright",
    title,
    description: `Playwright MCP ${version} (\`npx ${npx.join(" ")} ${flags.join(" ")}\`) on ${chromiumVersion}, ` +
      `${calls} \`browser_navigate\` calls to pages of a local HTTP server on 127.0.0.1 (every call the same ` +
      "work, so that both flows can make it: a flow of clicks on one page could not be made connect-per-call). " +
      "Both flows go through the pool's stdio transport (process group closed in steps), so that they differ " +
      "only in pooling: pooled, one session serves the flow; connect-per-call, every call gets a fresh " +
      "session on a scope of its own (spawn npx, Playwright MCP, initialize, launch Chromium, navigate) closed " +
      "with `closeScope` after its result. A warm-up connect and call first (disk caches, npx's cache " +
      `check; ${s(warmUp)}), then one flow of each (a browser launch per call makes more too slow for this ` +
      "bench). Client CPU is this process's only (npx, Playwright MCP and " +
      "Chromium are not in it). Not pinned: Chromium needs both cores.",
    table: {
      head: [
        "flow",
        `${calls} calls, until the last result`,
        "including close",
        "client CPU",
        "servers' CPU (npx, Playwright MCP, Chromium)",
        "processes (left after close)"
      ],
      rows: [
        [
          "pooled, session opened by the first call",
          s(a.toResult),
          s(a.total),
          msText(a.cpu),
          msText(a.serverCpu),
          `${a.processes} (${a.left})`
        ],
        [
          `pooled, ${calls} more calls on the open session`,
          `${s(a.warm)} (${L.fmt(a.warm / calls, 0)} ms per call)`,
          "–",
          "–",
          "–",
          "–"
        ],
        [
          "connect-per-call",
          s(b.toResult),
          s(b.total),
          msText(b.cpu),
          msText(b.serverCpu),
          `${b.processes} (${b.left})`
        ],
        [
          "connect-per-call ÷ pooled",
          `${L.fmt(speedup, 1)}×`,
          `${L.fmt(b.total / a.total, 1)}×`,
          `${L.fmt(b.cpu / a.cpu, 1)}×`,
          `${L.fmt(b.serverCpu / a.serverCpu, 1)}×`,
          "–"
        ]
      ]
    },
    headline: [{
      metric: `Playwright MCP: ${calls}-call flow, connect-per-call ÷ pooled (until the last result)`,
      value: speedup,
      text: `${L.fmt(speedup, 1)}× (${s(b.toResult)} vs ${s(a.toResult)}; ${b.left + a.left} processes left)`
    }],
    versions: [["Playwright MCP / Chromium", `${version} / ${chromiumVersion}`]],
    // Chromium's processes are reaped by init once their group is killed: run.ts must not count them as
    // another program's CPU.
    unreapedMillis: warmUpTicks + a.allProcesses + b.serverCpu,
    bars: []
  }
}
