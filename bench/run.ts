/**
 * `npm run bench`: runs every section in its own Node process (fresh heap, `--expose-gc`), then writes
 * bench/RESULTS.md and bench/results.svg. `node bench/run.ts overhead peers` runs only those sections
 * (and still writes the files, with only them).
 *
 * The peer clients (@ai-sdk/mcp, @mastra/mcp, LangChain) live in bench/peers/package.json, out of the
 * library's dependencies; they are installed (npm ci) on first run.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { cpus, loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import type { Section } from "./report.ts"

const sections = [
  "overhead",
  "savings",
  "burst",
  "scale",
  "churn",
  "peers",
  "shutdown",
  "playwright",
  "import",
  "modern"
] as const
type SectionId = (typeof sections)[number]

/**
 * CPU time, in clock ticks: every core's busy time (from /proc/stat), and this process's own plus its
 * reaped children's (every section process, with the servers it spawned and reaped). The difference over
 * a section is what other processes used meanwhile: tests or another bench sharing the cores.
 */
const ticks = (): { busy: number; ours: number } | undefined => {
  try {
    const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal
    const busy = cpu[0]! + cpu[1]! + cpu[2]! + cpu[5]! + cpu[6]! + cpu[7]!
    const stat = readFileSync("/proc/self/stat", "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number)
    // utime stime cutime cstime are fields 14-17 of the stat line: 11-14 after the name.
    const ours = fields[11]! + fields[12]! + fields[13]! + fields[14]!
    return { busy, ours }
  } catch {
    return undefined
  }
}

const runSection = async (id: SectionId): Promise<Section> => {
  const calls = await import("./calls.ts")
  const lifecycle = await import("./lifecycle.ts")
  const startup = await import("./startup.ts")
  const browser = await import("./playwright.ts")
  const modern = await import("./modern.ts")
  const run: Record<SectionId, () => Promise<Section>> = {
    overhead: calls.overhead,
    savings: calls.savings,
    peers: calls.peers,
    burst: lifecycle.burst,
    scale: lifecycle.scale,
    churn: lifecycle.churn,
    shutdown: lifecycle.shutdown,
    playwright: browser.playwright,
    import: startup.importCost,
    modern: modern.modern
  }
  return run[id]()
}

const installPeers = () => {
  const peers = fileURLToPath(new URL("./peers/", import.meta.url))
  const wanted = ["@langchain/mcp-adapters", "@ai-sdk/mcp", "@mastra/mcp"]
  if (wanted.every((name) => existsSync(join(peers, "node_modules", name)))) return
  console.log("installing the peer clients in bench/peers (npm ci)…")
  // npm's own script runner tells us which npm is running; otherwise take the one on PATH.
  const npm = process.env.npm_execpath
  const [command, args] = npm !== undefined && npm.endsWith(".js")
    ? [process.execPath, [npm]]
    : ["npm", []]
  try {
    execFileSync(command, [...args, "ci", "--legacy-peer-deps", "--no-audit", "--no-fund", "--loglevel=error"], {
      cwd: peers,
      stdio: "inherit"
    })
  } catch {
    console.log("could not install the peers: section 6 will say so")
  }
}

/**
 * The per-call sections run on one CPU (with their servers, which inherit it): a call's two ends then take
 * turns on one core instead of waking each other across two, whose latency swings far more than the
 * differences measured. Without `taskset` they run unpinned, and their descriptions say so.
 */
const pinned: ReadonlyArray<SectionId> = ["overhead", "peers", "modern"]
const pinToOneCpu = spawnSync("taskset", ["-c", String(cpus().length - 1), "true"]).status === 0
  ? ["taskset", "-c", String(cpus().length - 1), process.execPath]
  : [process.execPath]

if (process.argv[2] === "--child") {
  const result = await runSection(process.argv[3] as SectionId)
  writeFileSync(process.argv[4]!, JSON.stringify(result))
  // Pools left open on purpose (the 100,000-session one) would take long to close: just exit.
  process.exit(0)
} else {
  const started = performance.now()
  const loadAtStart = loadavg().map((x) => x.toFixed(2)).join(", ")
  const wanted = process.argv.slice(2).filter((a): a is SectionId => (sections as ReadonlyArray<string>).includes(a))
  const chosen = wanted.length > 0 ? wanted : sections
  if (chosen.includes("peers")) installPeers()
  const dir = mkdtempSync(join(tmpdir(), "mcp-pool-bench-"))
  const results: Array<Section> = []
  for (const id of chosen) {
    const out = join(dir, `${id}.json`)
    const sectionStart = performance.now()
    const loadStart = loadavg()[0]!
    const ticksStart = ticks()
    const [command, ...prefix] = pinned.includes(id) ? pinToOneCpu : [process.execPath]
    const child = spawnSync(command!, [
      ...prefix,
      "--expose-gc",
      // 100,000 live sessions need more than the default old space.
      ...(id === "scale" ? ["--max-old-space-size=16384"] : []),
      fileURLToPath(import.meta.url),
      "--child",
      id,
      out
    ], { stdio: "inherit" })
    if (child.status !== 0 || !existsSync(out)) {
      console.error(`section ${id} failed (exit ${child.status ?? child.signal})`)
      process.exitCode = 1
      continue
    }
    const seconds = (performance.now() - sectionStart) / 1000
    const ticksEnd = ticks()
    // Other processes' CPU over the section, as a share of all cores (clock ticks are 1/100 s here).
    const section: Section = JSON.parse(readFileSync(out, "utf8"))
    const unreaped = (section.unreapedMillis ?? 0) / 10
    const others = ticksStart === undefined || ticksEnd === undefined
      ? undefined
      : Math.max(0, (ticksEnd.busy - ticksStart.busy) - (ticksEnd.ours - ticksStart.ours) - unreaped) /
        (seconds * 100 * cpus().length)
    results.push({
      ...section,
      run: { seconds, loadStart, loadEnd: loadavg()[0]!, ...(others === undefined ? {} : { others }) }
    })
    console.log(`  (${id}: ${((performance.now() - sectionStart) / 1000).toFixed(1)} s)\n`)
  }
  const { write } = await import("./report.ts")
  write(results, (performance.now() - started) / 60_000, loadAtStart)
  console.log("wrote bench/RESULTS.md and bench/results.svg")
  for (const section of results) {
    for (const t of section.targets ?? []) {
      const ok = Number.isFinite(t.value) && t.value <= t.bound
      console.log(`TARGET ${t.name}: ${t.value.toFixed(3)}× (≤ ${t.bound.toFixed(2)}) ${ok ? "✓" : "✗"}`)
    }
  }
  for (const section of results) {
    for (const h of section.headline) {
      console.log(`${h.metric}: ${h.text ?? (Number.isFinite(h.value) ? `${h.value.toFixed(2)}×` : "n/a")}`)
    }
  }
}
