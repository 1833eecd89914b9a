/**
 * Section 10: a call in the 2026-07-28 revision over stdio, through the pool (protocol "auto", which finds
 * the revision once) beside the official SDK v2 client pinned to 2026-07-28, on the same SDK v2 server.
 */
import { Client as ModernClient } from "@modelcontextprotocol/client"
import { StdioClientTransport as ModernStdioTransport } from "@modelcontextprotocol/client/stdio"
import { Effect } from "effect"
import { fileURLToPath } from "node:url"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import * as L from "./lib.ts"
import type { Section } from "./report.ts"

const modernServer = fileURLToPath(new URL("../test/fixtures/modern-server.ts", import.meta.url))
const call = { name: "counter_increment", arguments: {} }

const sdkV2Client = async () => {
  const client = new ModernClient(L.clientInfo, { versionNegotiation: { mode: { pin: "2026-07-28" } } })
  await client.connect(new ModernStdioTransport({ command: process.execPath, args: [modernServer], stderr: "ignore" }))
  return client
}

export const modern = async (): Promise<Section> => {
  console.log("modern: 2026-07-28 over stdio, pool.callTool vs SDK v2 Client.callTool (pinned)")
  const { close, pool } = await L.openPool({
    servers: { modern: McpServerConfig.stdio({ command: process.execPath, args: [modernServer] }) }
  })
  const clients = await Promise.all(Array.from({ length: L.stdioInstances }, sdkV2Client))
  const raw = "SDK v2 Client.callTool (pinned 2026-07-28)"
  const ours = "pool.callTool (protocol auto → 2026-07-28)"
  const result = await L.compare([
    L.cycling(
      raw,
      clients.map((client) => async (n: number) => {
        for (let i = 0; i < n; i++) await client.callTool(call)
      })
    ),
    L.cycling(
      ours,
      Array.from({ length: L.stdioInstances }, (_, i) => (n: number) =>
        Effect.runPromise(Effect.gen(function*() {
          for (let j = 0; j < n; j++) yield* pool.callTool({ server: "modern", scope: `thread-${i}`, ...call })
        })))
    )
  ], { rounds: 60, batch: 100, warmup: L.stdioWarmup })
  const revisions = await Effect.runPromise(Effect.map(pool.snapshot, (rows) => rows.map((row) => row.protocolVersion)))
  for (const client of clients) await client.close()
  await close()
  return {
    id: "modern",
    title: "10. The 2026-07-28 revision over stdio: the pool vs SDK v2's own client",
    description: "`counter_increment` on the SDK v2 fixture server (test/fixtures/modern-server.ts, modern-only), " +
      `called through SDK v2's \`Client\` pinned to 2026-07-28 and through \`pool.callTool\` with the default ` +
      `\`protocol: "auto"\` (the pool's sessions spoke ${[...new Set(revisions)].join(", ")}); ` +
      `${L.stdioInstances} server processes per variant, each warmed up with ${L.int(L.stdioWarmup)} calls, ` +
      `interleaved in rotating order on CPUs ${L.allowedCpus()} (as in section 1). Both results are validated ` +
      "by SDK v2's own schemas: the pool's zod-free decoder serves 2025-era sessions only.",
    table: {
      head: ["client", "wall per call", "× SDK v2, wall (IQR)", "client CPU per call", "× SDK v2, CPU (IQR)"],
      rows: Object.keys(result.wall.micros).map((name) => [
        name,
        `${L.fmt(result.wall.micros[name]!)} µs`,
        L.ratioText(result.wall, name),
        `${L.fmt(result.cpu.micros[name]!)} µs`,
        L.ratioText(result.cpu, name)
      ])
    },
    headline: [{
      metric: "2026-07-28 stdio call: pool.callTool ÷ SDK v2 Client.callTool (pinned)",
      value: result.wall.ratio[ours]!,
      text: `${L.fmt(result.wall.ratio[ours]!, 2)}× wall, ${L.fmt(result.cpu.ratio[ours]!, 2)}× client CPU`
    }],
    bars: [{ group: "2026-07-28 stdio call (× SDK v2 client, wall)", label: ours, value: result.wall.ratio[ours]! }]
  }
}
