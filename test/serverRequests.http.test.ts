/**
 * Server → client requests routed by scope over streamable HTTP on 127.0.0.1: the reference
 * `@modelcontextprotocol/server-everything` (2025-11-25, started as its own process on a free port) and the
 * SDK v2 fixture (2026-07-28, `input_required` rounds). Two threads at once, each answered by its own handler.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import { spawn } from "node:child_process"
import { createRequire } from "node:module"
import * as Net from "node:net"
import * as McpClientHandlers from "../src/McpClientHandlers.ts"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import { startModernHttp } from "./fixtures/modern-http.ts"
import { allText, firstText, poolWithHandlers } from "./utils/probe.ts"
import { awaitGone } from "./utils/proc.ts"
import { within } from "./utils/within.ts"

const everything = createRequire(import.meta.url).resolve("@modelcontextprotocol/server-everything/dist/index.js")

const freePort = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const probe = Net.createServer()
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as Net.AddressInfo
      probe.close(() => resolve(port))
    })
  })
)

/** server-everything over streamable HTTP, in its own process; ready once it says it listens. */
const serveEverything = Effect.gen(function*() {
  const port = yield* freePort
  const child = yield* Effect.acquireRelease(
    Effect.sync(() =>
      spawn(process.execPath, [everything, "streamableHttp"], {
        env: { ...process.env, PORT: String(port) },
        stdio: ["ignore", "ignore", "pipe"]
      })
    ),
    (child) =>
      Effect.andThen(
        Effect.sync(() => child.kill("SIGKILL")),
        child.pid === undefined ? Effect.void : Effect.orDie(awaitGone(child.pid))
      )
  )
  const listening = yield* Deferred.make<void>()
  let said = ""
  child.stderr!.on("data", (chunk: Buffer) => {
    said += chunk.toString("utf8")
    if (said.includes("listening on port")) Deferred.doneUnsafe(listening, Effect.void)
  })
  yield* Deferred.await(listening).pipe(within("20 seconds", "server-everything to listen"))
  return `http://127.0.0.1:${port}/mcp`
})

const poolWith = (servers: Record<string, McpServerConfig.McpServerConfig>, handlers: McpClientHandlers.Handlers) =>
  poolWithHandlers({ servers, connectTimeout: "20 seconds", callTimeout: "20 seconds" }, handlers)

describe("server requests over HTTP reach the handler of their own thread", () => {
  it.live(
    "server-everything: elicitation (two threads at once), sampling and roots per scope",
    () =>
      Effect.gen(function*() {
        const url = yield* serveEverything
        const bothAsked = yield* Deferred.make<void>()
        let asked = 0
        const pool = yield* poolWith({ everything: McpServerConfig.http({ url }) }, {
          elicit: (_request, { scope }) =>
            Effect.gen(function*() {
              if (++asked === 2) yield* Deferred.succeed(bothAsked, undefined)
              yield* Deferred.await(bothAsked) // both pending at once before either is answered
              return { action: "accept" as const, content: { name: `user-of-${scope}` } }
            }),
          createMessage: (_request, { scope }) =>
            Effect.succeed({
              model: "test-model",
              role: "assistant" as const,
              content: { type: "text" as const, text: `reply for ${scope}` }
            }),
          listRoots: ({ scope }) => Effect.succeed([{ uri: `file:///work/${scope}`, name: scope }])
        })
        const call = (scope: string, name: string, args: Record<string, unknown> = {}) =>
          pool.callTool({ server: "everything", scope, name, arguments: args }).pipe(
            Effect.map(allText),
            within("20 seconds", `${name} for ${scope}`)
          )
        const [alice, bob] = yield* Effect.all([
          call("alice", "trigger-elicitation-request"),
          call("bob", "trigger-elicitation-request")
        ], { concurrency: 2 })
        assert.include(alice, "user-of-alice")
        assert.notInclude(alice, "user-of-bob")
        assert.include(bob, "user-of-bob")
        assert.notInclude(bob, "user-of-alice")
        assert.include(yield* call("bob", "trigger-sampling-request", { prompt: "hi" }), "reply for bob")
        const roots = yield* Effect.all([call("alice", "get-roots-list"), call("bob", "get-roots-list")], {
          concurrency: 2
        })
        assert.include(roots[0], "file:///work/alice")
        assert.notInclude(roots[0], "file:///work/bob")
        assert.include(roots[1], "file:///work/bob")
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("2026-07-28 over HTTP: input_required rounds reach each thread's own handler", () =>
    Effect.gen(function*() {
      const server = yield* Effect.acquireRelease(
        Effect.promise(() => startModernHttp({ legacy: "reject" })),
        (server) => Effect.promise(() => server.close())
      )
      const pool = yield* poolWith({ modern: McpServerConfig.http({ url: server.url }) }, {
        elicit: (_request, { scope }) => Effect.succeed({ action: "accept" as const, content: { name: scope } })
      })
      const [alice, bob] = yield* Effect.all([
        pool.callTool({ server: "modern", scope: "alice", name: "ask_user" }),
        pool.callTool({ server: "modern", scope: "bob", name: "ask_user" })
      ], { concurrency: 2 }).pipe(within("20 seconds", "both answers"))
      assert.strictEqual(firstText(alice), "hello alice")
      assert.strictEqual(firstText(bob), "hello bob")
    }).pipe(Effect.scoped), 60_000)
})
