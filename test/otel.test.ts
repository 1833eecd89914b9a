/**
 * The pool's spans and metrics through OpenTelemetry (`examples/otel.ts`), captured by in-memory exporters:
 * tool-call spans named and attributed by the conventions for MCP, children of the caller's span (their
 * requests' `traceparent` is test/serverRequests.test.ts's); connect spans linked to the call that asked;
 * the pool's counters and its sessions gauge.
 */
import {
  AggregationTemporality,
  PeriodicExportingMetricReader,
  type PushMetricExporter,
  type ResourceMetrics
} from "@opentelemetry/sdk-metrics"
import { type ReadableSpan, SimpleSpanProcessor, type SpanExporter } from "@opentelemetry/sdk-trace-base"
import { Effect } from "effect"
import { assert, describe, it } from "vitest"
import { observe } from "../examples/otel.ts"

describe("observability through OpenTelemetry", () => {
  it("tool-call and connect spans by the MCP conventions, and the pool's metrics", async () => {
    // In-memory exporters that keep what they got when the SDK shuts down with the layer (the SDK's own
    // in-memory exporters forget it then); the metric reader exports once more as it shuts down.
    const finished: Array<ReadableSpan> = []
    const spans: SpanExporter = {
      export: (batch, done) => {
        finished.push(...batch)
        done({ code: 0 })
      },
      shutdown: async () => undefined
    }
    const exports: Array<ResourceMetrics> = []
    const metrics: PushMetricExporter = {
      export: (batch, done) => {
        exports.push(batch)
        done({ code: 0 })
      },
      forceFlush: async () => undefined,
      shutdown: async () => undefined,
      selectAggregationTemporality: () => AggregationTemporality.CUMULATIVE
    }
    const reader = new PeriodicExportingMetricReader({ exporter: metrics, exportIntervalMillis: 3_600_000 })
    await Effect.runPromise(observe({ spanProcessor: new SimpleSpanProcessor(spans), metricReader: reader }))

    const turns = finished.filter((span) => span.name === "agent turn")
    assert.strictEqual(turns.length, 2)
    const calls = finished.filter((span) => span.name.startsWith("tools/call "))
    assert.deepStrictEqual(calls.map((span) => span.name).sort(), [
      "tools/call note_read",
      "tools/call note_read",
      "tools/call note_write",
      "tools/call note_write"
    ])
    for (const call of calls) {
      assert.strictEqual(call.kind, 2) // SpanKind.CLIENT
      assert.strictEqual(call.attributes["mcp.method.name"], "tools/call")
      assert.strictEqual(call.attributes["gen_ai.operation.name"], "execute_tool")
      assert.strictEqual(call.attributes["gen_ai.tool.name"], call.name.slice("tools/call ".length))
      // A child of its thread's turn.
      const parent = turns.find((turn) => turn.spanContext().spanId === call.parentSpanContext?.spanId)
      assert.isDefined(parent)
    }
    // Calls on a session already connected know its revision.
    assert.isTrue(calls.some((call) => call.attributes["mcp.protocol.version"] === "2025-11-25"))

    const connects = finished.filter((span) => span.name === "McpSession.connect")
    assert.strictEqual(connects.length, 2)
    for (const connect of connects) {
      assert.strictEqual(connect.attributes["mcp.method.name"], "initialize")
      assert.strictEqual(connect.attributes["network.transport"], "pipe")
      assert.strictEqual(connect.attributes["mcp.protocol.version"], "2025-11-25")
      // Linked to the tool call that asked for the session, not parented by it.
      assert.isTrue(
        connect.links.some((link) => calls.some((call) => call.spanContext().spanId === link.context.spanId))
      )
    }

    const exported = exports.flatMap((resource) => resource.scopeMetrics.flatMap((scope) => scope.metrics))
    const named = (name: string) => exported.filter((metric) => metric.descriptor.name === name)
    assert.isAbove(named("mcp_pool_sessions_created").length, 0)
    const created = named("mcp_pool_sessions_created").at(-1)!.dataPoints.reduce(
      (sum, point) => sum + Number(point.value),
      0
    )
    assert.strictEqual(created, 2)
    const gauge = named("mcp_pool_sessions").at(-1)
    assert.isDefined(gauge)
    const states = new Set(gauge!.dataPoints.map((point) => point.attributes["state"]))
    for (const state of ["live", "attached", "idle", "leased"]) assert.isTrue(states.has(state), state)
  }, 60_000)
})
