/**
 * Playwright MCP on the system Chromium through the pool: a browser per chat thread.
 *
 *   node examples/playwright.ts        (Node >= 22.18; in this repository `npx node examples/playwright.ts`
 *                                       runs it on the project's own Node 24)
 *
 *   1. Two threads at once: each opens the same page of a local HTTP server (one origin, so they would share
 *      its storage if they shared a browser profile) and writes localStorage and a cookie there.
 *   2. Each thread reads them back and finds only its own.
 *   3. A new thread starts clean. Closing a thread ends its Playwright MCP and its Chromium processes.
 *   4. Shutting the pool down leaves no process behind (checked in /proc).
 *
 * It needs Chromium and npx; it prints how to get them and exits 0 if either is missing.
 *
 *   apt-get install -y chromium               Debian/Ubuntu: /usr/bin/chromium, the default
 *   CHROMIUM_PATH=/opt/chromium/chrome ...    another Chromium or Chrome binary
 *
 * Playwright MCP is run with `npx -y --prefer-offline @playwright/mcp@<PLAYWRIGHT_MCP_VERSION>`: npx fetches
 * that exact version from the npm registry on first use, and `--prefer-offline` runs it from npx's cache after
 * that without asking the registry again (a pinned version does not change). With no registry at all, install
 * it yourself (`npm install @playwright/mcp@0.0.83`) and set PLAYWRIGHT_MCP_CLI=node_modules/@playwright/mcp/cli.js.
 *
 * The Playwright MCP flags:
 *
 *   --browser chromium --executable-path <path>  Use this Chromium. Playwright otherwise looks for Google Chrome
 *                    (/opt/google/chrome/chrome) or a browser it downloaded itself. On Linux `--browser chromium`
 *                    also turns Chromium's sandbox off, which Chromium requires when run as root (a container);
 *                    as any other user you may add `--sandbox`.
 *   --headless       No window (the default anyway when DISPLAY is not set).
 *   --isolated       The profile lives in memory, one per process. Without it every Playwright MCP process uses
 *                    the same profile on disk (~/.cache/ms-playwright-mcp/…): a second thread at the same time
 *                    fails ("Browser is already in use … use --isolated"), and a later thread gets whatever
 *                    cookies and localStorage earlier threads left there. To keep a thread's browser state from
 *                    one session to the next instead, give each thread its own profile:
 *                    `args: (thread) => [..., "--user-data-dir", `/srv/profiles/${thread}`]`.
 *   --output-dir     Where Playwright MCP writes its page snapshots (by default `.playwright-mcp/` in its cwd).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js"
import { Console, Effect } from "effect"
import { spawnSync } from "node:child_process"
import { accessSync, constants, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { createServer } from "node:http"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { McpServerConfig, McpSessionPool } from "../src/index.ts"
import { npmEnvironment } from "./npm-env.ts"

const PLAYWRIGHT_MCP_VERSION = "0.0.83"
const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"
const localCli = process.env.PLAYWRIGHT_MCP_CLI

// How to start Playwright MCP: npx with a pinned version, or a local install run with this Node.
const command = localCli === undefined ? "npx" : process.execPath
const commandArgs = localCli === undefined
  ? ["-y", "--prefer-offline", `@playwright/mcp@${PLAYWRIGHT_MCP_VERSION}`]
  : [resolve(localCli)]
const shown = [localCli === undefined ? "npx" : "node", ...commandArgs].join(" ")

// A stdio server gets a safe default environment (PATH, HOME, …), not ours; npx talks to the npm registry,
// so it gets what that may take here (a proxy, extra CA certificates, a registry).
const npmEnv = npmEnvironment()

// =============================================================================
// Before anything else: is there a Chromium, and can Playwright MCP be started?
// =============================================================================

const skip = (lines: ReadonlyArray<string>): never => {
  console.log([...lines, "Skipping the Playwright example."].join("\n"))
  process.exit(0)
}

try {
  accessSync(chromiumPath, constants.X_OK)
} catch {
  skip([
    `Chromium was not found at ${chromiumPath}.`,
    "Install it (Debian/Ubuntu: apt-get install -y chromium) or set CHROMIUM_PATH to a Chromium or Chrome binary."
  ])
}

// Also downloads Playwright MCP on the first run, so that the pool's connect does not wait for it.
const probe = spawnSync(command, [...commandArgs, "--version"], {
  env: { ...getDefaultEnvironment(), ...npmEnv },
  encoding: "utf8",
  stdio: ["ignore", "pipe", "pipe"],
  timeout: 120_000
})
if (probe.status !== 0) {
  const reason = probe.error !== undefined
    ? probe.error.message
    : probe.signal !== null
    ? `no answer within 2 minutes (${probe.signal})`
    : probe.stderr.split("\n").find((line) => /error/i.test(line))?.trim() ?? `exit code ${probe.status}`
  skip([
    `Playwright MCP could not be started with \`${shown} --version\`: ${reason}`,
    localCli === undefined
      ? "npx needs the npm registry to fetch it. Offline: npm install @playwright/mcp@" + PLAYWRIGHT_MCP_VERSION +
        ", then PLAYWRIGHT_MCP_CLI=node_modules/@playwright/mcp/cli.js node examples/playwright.ts"
      : "PLAYWRIGHT_MCP_CLI must point at the cli.js of an installed @playwright/mcp."
  ])
}

// =============================================================================
// Processes, as /proc shows them (Linux); elsewhere the process checks are skipped
// =============================================================================

const hasProc = existsSync("/proc/self/stat")

interface Process {
  readonly pid: number
  readonly name: string
  /** With the pid, names one process even if the pid is reused later. */
  readonly startTime: string
}

const readStat = (pid: number | string) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return {
      pid: Number(pid),
      name: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")),
      state: fields[0] ?? "",
      ppid: Number(fields[1]),
      startTime: fields[19] ?? ""
    }
  } catch {
    return undefined
  }
}

/**
 * A process and its descendants: npx, sh, Playwright MCP's node, Chromium and its helpers. (Chromium's two
 * crash reporters detach from the tree; they exit by themselves once Chromium has.)
 */
const processTree = (root: number): Array<Process> => {
  if (!hasProc) return []
  const all = readdirSync("/proc").flatMap((entry) => {
    const stat = /^\d+$/.test(entry) ? readStat(entry) : undefined
    return stat === undefined || stat.state === "Z" ? [] : [stat]
  })
  const tree = all.filter((stat) => stat.pid === root)
  for (let i = 0; i < tree.length; i++) tree.push(...all.filter((stat) => stat.ppid === tree[i]!.pid))
  return tree.map(({ name, pid, startTime }) => ({ pid, name, startTime }))
}

/** Gone means no /proc entry, or only a zombie waiting for its parent. */
const isRunning = (proc: Process): boolean => {
  const stat = readStat(proc.pid)
  return stat !== undefined && stat.state !== "Z" && stat.state !== "X" && stat.startTime === proc.startTime
}

const describeTree = (tree: ReadonlyArray<Process>): string => {
  const chromium = tree.filter((proc) => proc.name.startsWith("chrom")).length
  return `${tree.length - chromium} processes of npx and Playwright MCP, ${chromium} of Chromium`
}

// =============================================================================
// The example
// =============================================================================

/** A tiny site on 127.0.0.1 (localStorage needs an http origin): every thread visits the same origin. */
const testSite = Effect.acquireRelease(
  Effect.promise(() =>
    new Promise<{ readonly origin: string; readonly close: () => void }>((resolveSite) => {
      const server = createServer((_request, response) => {
        response.writeHead(200, { "content-type": "text/html" })
        response.end("<!doctype html><title>notes</title><p>A page whose storage each thread writes.</p>")
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as { readonly port: number }
        resolveSite({ origin: `http://127.0.0.1:${port}`, close: () => server.close() })
      })
    })
  ),
  (site) => Effect.sync(site.close)
)

/** Playwright MCP's text answer; an `isError` result (a browser that would not start, say) fails the example. */
const tool = (thread: string, name: string, args: Record<string, unknown>) =>
  Effect.gen(function*() {
    const pool = yield* McpSessionPool.McpSessionPool
    const result = yield* pool.callTool({ server: "browser", scope: thread, name, arguments: args })
    const text = result.content.flatMap((part) => part.type === "text" ? [part.text] : []).join("\n")
    if (result.isError === true) return yield* Effect.die(new Error(`${name} failed in thread ${thread}:\n${text}`))
    return text
  })

interface Storage {
  readonly localStorage: string | null
  readonly cookie: string
}

/** Runs a function in the thread's page; Playwright MCP answers "### Result\n<JSON>\n### Ran Playwright code…". */
const evaluate = (thread: string, fn: string) =>
  Effect.map(tool(thread, "browser_evaluate", { function: fn }), (text): Storage => {
    const json = /### Result\n([\s\S]*?)(?:\n###|$)/.exec(text)?.[1]
    return JSON.parse(json ?? text)
  })

const readStorage = (thread: string) =>
  evaluate(thread, `() => ({ localStorage: localStorage.getItem("owner"), cookie: document.cookie })`)

const writeStorage = (thread: string) =>
  evaluate(
    thread,
    `() => { localStorage.setItem("owner", ${JSON.stringify(thread)}); ` +
      `document.cookie = "owner=${thread}; path=/; max-age=3600"; ` +
      `return { localStorage: localStorage.getItem("owner"), cookie: document.cookie } }`
  )

const show = (storage: Storage) =>
  `localStorage owner = ${JSON.stringify(storage.localStorage)}, cookies "${storage.cookie}"`

const pidOf = (thread: string) =>
  Effect.gen(function*() {
    const pool = yield* McpSessionPool.McpSessionPool
    return yield* pool.use({ server: "browser", scope: thread }, (session) => Effect.succeed(session.pid ?? -1))
  })

const example = (origin: string) =>
  Effect.gen(function*() {
    const pool = yield* McpSessionPool.McpSessionPool
    const page = `${origin}/notes`
    const threads = ["alice", "bob"] as const

    yield* Console.log(`\n1. Two threads at once, each with its own browser, on the same page (${page})`)
    const opened = yield* Effect.forEach(threads, (thread) =>
      Effect.gen(function*() {
        const started = Date.now()
        yield* tool(thread, "browser_navigate", { url: page })
        const ready = Date.now() - started
        const written = yield* writeStorage(thread)
        return `   ${thread}: session and browser started, page open in ${ready} ms; wrote ${show(written)}`
      }), { concurrency: "unbounded" })
    yield* Console.log(opened.join("\n"))

    yield* Console.log("\n2. Each thread reads the page's storage back (both have written by now)")
    const seen = yield* Effect.forEach(threads, readStorage, { concurrency: "unbounded" })
    const trees = new Map<string, Array<Process>>()
    for (const [i, thread] of threads.entries()) {
      const tree = processTree(yield* pidOf(thread))
      trees.set(thread, tree)
      yield* Console.log(`   ${thread} sees ${show(seen[i]!)}${hasProc ? `   [${describeTree(tree)}]` : ""}`)
    }
    const isolated = threads.every((thread, i) =>
      seen[i]!.localStorage === thread && seen[i]!.cookie === `owner=${thread}`
    )
    if (!isolated) return yield* Effect.die(new Error("the threads share browser storage: is --isolated set?"))
    yield* Console.log("   neither thread sees the other's localStorage or cookie")

    yield* Console.log("\n3. A new thread starts with a clean browser; closing a thread ends its processes")
    yield* tool("carol", "browser_navigate", { url: page })
    yield* Console.log(`   carol sees ${show(yield* readStorage("carol"))}`)
    trees.set("carol", processTree(yield* pidOf("carol")))
    yield* pool.closeScope("alice")
    const aliceLeft = (trees.get("alice") ?? []).filter(isRunning)
    if (hasProc) {
      yield* Console.log(
        aliceLeft.length === 0
          ? `   closeScope("alice"): all ${trees.get("alice")?.length} of its processes have exited`
          : `   LEAK: closeScope("alice") left ${aliceLeft.map((proc) => proc.pid).join(", ")}`
      )
    }

    const live = yield* pool.snapshot
    yield* Console.log(
      `\n4. Shutting the pool down (${live.length} live sessions: ${live.map((row) => row.scope).join(", ")})`
    )
    return [...trees.values()].flat()
  })

const main = Effect.gen(function*() {
  // Each thread's snapshots in a folder of its own, and Playwright's and Chromium's temporary files (the
  // --isolated profiles among them) in one temporary folder, removed at the end.
  const workDir = yield* Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "playwright-example-"))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )
  const site = yield* testSite
  yield* Console.log(
    `Playwright MCP ${PLAYWRIGHT_MCP_VERSION} (${shown}), Chromium at ${chromiumPath}`
  )

  const PoolLive = McpSessionPool.layer({
    servers: {
      browser: McpServerConfig.stdio({
        command,
        // A function of the thread: the flags every thread shares, plus an output folder of its own.
        args: (thread) => [
          ...commandArgs,
          "--browser",
          "chromium",
          "--executable-path",
          chromiumPath,
          "--headless",
          "--isolated",
          "--output-dir",
          join(workDir, "output", thread)
        ],
        env: { ...npmEnv, TMPDIR: workDir },
        maxConcurrentCalls: 1 // one page per thread: its calls in order
      })
    },
    connectTimeout: "60 seconds",
    callTimeout: "60 seconds"
  })

  // The layer is released when `example` ends: that is the pool's shutdown.
  const processes = yield* Effect.provide(example(site.origin), PoolLive)
  if (!hasProc) return yield* Console.log("   (no /proc here: the process checks were skipped)")
  const left = processes.filter(isRunning)
  if (left.length > 0) {
    return yield* Effect.die(new Error(`processes left behind: ${left.map((p) => `${p.pid} (${p.name})`).join(", ")}`))
  }
  yield* Console.log(`   all ${processes.length} processes of the three sessions have exited; nothing left behind`)
}).pipe(Effect.scoped)

NodeRuntime.runMain(main)
