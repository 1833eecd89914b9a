/**
 * `npm run example:otel`: the pool's spans and metrics through OpenTelemetry (`@effect/opentelemetry`).
 *
 * Two threads call the bundled notebook server over stdio inside an `agent turn` span each. With
 * `traceToolCalls: true` every `pool.callTool` is a span named and attributed by OpenTelemetry's
 * conventions for MCP (`tools/call note_write`, `mcp.method.name`, `gen_ai.tool.name`,
 * `mcp.protocol.version`, …), and its request carries the span's `traceparent` in `_meta`. Connects are
 * `McpSession.connect` spans (with `mcp.protocol.version`, `network.transport`) linked to the call that
 * asked; the pool's counters, timer and `mcp_pool_sessions` gauge go to the metric reader. Spans and metrics
 * print on the console here; `observe` takes any span processor and metric reader (the test passes
 * in-memory ones).
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import type { MetricReader } from "@opentelemetry/sdk-metrics"
import { ConsoleMetricExporter, PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics"
import type { SpanProcessor } from "@opentelemetry/sdk-trace-base"
import { ConsoleSpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect, Layer } from "effect"
import { fileURLToPath } from "node:url"
import { McpServerConfig, McpSessionPool } from "../src/index.ts"

const notebook = fileURLToPath(new URL("./notebook-server.ts", import.meta.url))

/** Two threads' turns on a traced pool, exported through `spanProcessor` and `metricReader`. */
export const observe = (options: { readonly spanProcessor: SpanProcessor; readonly metricReader: MetricReader }) => {
  const PoolLive = McpSessionPool.layer({
    servers: { notebook: McpServerConfig.stdio({ command: process.execPath, args: [notebook] }) },
    traceToolCalls: true
  })
  const turn = (thread: string) =>
    Effect.gen(function*() {
      const pool = yield* McpSessionPool.McpSessionPool
      yield* pool.callTool({
        server: "notebook",
        scope: thread,
        name: "note_write",
        arguments: { key: "k", text: thread }
      })
      yield* pool.callTool({ server: "notebook", scope: thread, name: "note_read", arguments: { key: "k" } })
    }).pipe(Effect.withSpan("agent turn", { attributes: { thread } }))
  return Effect.all([turn("alice"), turn("bob")], { concurrency: "unbounded" }).pipe(
    Effect.provide(PoolLive),
    Effect.provide(NodeSdk.layer(() => ({
      resource: { serviceName: "effect-mcp-pool-example" },
      spanProcessor: options.spanProcessor,
      metricReader: options.metricReader
    })))
  )
}

if (import.meta.main) {
  observe({
    spanProcessor: new SimpleSpanProcessor(new ConsoleSpanExporter()),
    metricReader: new PeriodicExportingMetricReader({
      exporter: new ConsoleMetricExporter(),
      exportIntervalMillis: 60_000
    })
  }).pipe(Effect.provide(Layer.empty), NodeRuntime.runMain)
}
