/**
 * Server → client requests routed by scope, against real servers over stdio: the reference
 * `@modelcontextprotocol/server-everything` (2025-11-25: its elicitation, sampling, roots and long-running
 * tools) and the SDK v2 fixture (2026-07-28: `input_required`). Two threads at once prove that each request
 * reaches its own thread's handler.
 */
import { assert, describe, it } from "@effect/vitest"
import type { ElicitResult } from "@modelcontextprotocol/sdk/types.js"
import { Deferred, Effect, Fiber, Stream } from "effect"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"
import * as McpClientHandlers from "../src/McpClientHandlers.ts"
import { ConfigError } from "../src/McpPoolError.ts"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import type { Options } from "../src/McpSessionPool.ts"
import { allText, firstText, poolWithHandlers } from "./utils/probe.ts"
import { within } from "./utils/within.ts"

const everything = createRequire(import.meta.url).resolve("@modelcontextprotocol/server-everything/dist/index.js")
const modernServer = fileURLToPath(new URL("./fixtures/modern-server.ts", import.meta.url))

const servers = {
  everything: McpServerConfig.stdio({ command: process.execPath, args: [everything, "stdio"] }),
  modern: McpServerConfig.stdio({ command: process.execPath, args: [modernServer] })
}

const poolWith = (handlers: McpClientHandlers.Handlers, options: Partial<Options> = {}) =>
  poolWithHandlers({ servers, connectTimeout: "20 seconds", callTimeout: "20 seconds", ...options }, handlers)

describe("server requests reach the handler of their own thread", () => {
  it.live(
    "elicitation over stdio: two threads at once, each answered by its own scope's handler",
    () =>
      Effect.gen(function*() {
        const asked: Array<string> = []
        const bothAsked = yield* Deferred.make<void>()
        const pool = yield* poolWith({
          elicit: (request, { scope, server }) =>
            Effect.gen(function*() {
              asked.push(`${server}/${scope}`)
              if (asked.length === 2) yield* Deferred.succeed(bothAsked, undefined)
              // Neither answers before both were asked: the two requests are pending at once.
              yield* Deferred.await(bothAsked)
              assert.strictEqual(request.mode ?? "form", "form")
              return { action: "accept" as const, content: { name: `user-of-${scope}` } }
            })
        })
        const [alice, bob] = yield* Effect.all([
          pool.callTool({ server: "everything", scope: "alice", name: "trigger-elicitation-request" }),
          pool.callTool({ server: "everything", scope: "bob", name: "trigger-elicitation-request" })
        ], { concurrency: 2 }).pipe(within("20 seconds", "both elicitations to be answered"))
        assert.deepStrictEqual(asked.sort(), ["everything/alice", "everything/bob"])
        assert.include(allText(alice), "user-of-alice")
        assert.notInclude(allText(alice), "user-of-bob")
        assert.include(allText(bob), "user-of-bob")
        assert.notInclude(allText(bob), "user-of-alice")
      }),
    60_000
  )

  it.live("sampling and roots per scope; rootsChanged makes the server ask again", () =>
    Effect.gen(function*() {
      const roots = new Map([["alice", "file:///work/alice"], ["bob", "file:///work/bob"]])
      const rootsAsked = yield* Deferred.make<void>()
      const pool = yield* poolWith({
        createMessage: (request, { scope }) =>
          Effect.succeed({
            model: "test-model",
            role: "assistant" as const,
            content: { type: "text" as const, text: `reply for ${scope} to ${JSON.stringify(request.messages.length)}` }
          }),
        listRoots: ({ scope }) =>
          Effect.as(
            scope === "alice" && roots.get("alice") === "file:///work/alice-2"
              ? Deferred.succeed(rootsAsked, undefined)
              : Effect.void,
            [{ uri: roots.get(scope)!, name: `${scope}'s workspace` }]
          )
      })
      const sampled = yield* pool.callTool({
        server: "everything",
        scope: "alice",
        name: "trigger-sampling-request",
        arguments: { prompt: "hi" }
      })
      assert.include(allText(sampled), "reply for alice")
      const [aliceRoots, bobRoots] = yield* Effect.all([
        pool.callTool({ server: "everything", scope: "alice", name: "get-roots-list" }),
        pool.callTool({ server: "everything", scope: "bob", name: "get-roots-list" })
      ], { concurrency: 2 })
      assert.include(allText(aliceRoots), "file:///work/alice")
      assert.notInclude(allText(aliceRoots), "file:///work/bob")
      assert.include(allText(bobRoots), "file:///work/bob")

      // The server logs once it has stored the roots it asked for: wait for that, not just for the asking.
      const session = yield* pool.get({ server: "everything", scope: "alice" })
      const stored = yield* Effect.forkChild(
        session.notifications.pipe(
          Stream.filter((n) => n.method === "notifications/message" && String(n.params.data).includes("Roots updated")),
          Stream.take(1),
          Stream.runDrain
        )
      )
      yield* Effect.yieldNow
      roots.set("alice", "file:///work/alice-2")
      yield* pool.rootsChanged("alice")
      yield* Deferred.await(rootsAsked).pipe(within("10 seconds", "the server to ask alice's roots again"))
      yield* Fiber.join(stored).pipe(within("10 seconds", "the server to store alice's new roots"))
      const again = yield* pool.callTool({ server: "everything", scope: "alice", name: "get-roots-list" })
      assert.include(allText(again), "file:///work/alice-2")
    }).pipe(Effect.scoped), 60_000)

  it.live(
    "capabilities follow the handlers given: no elicit handler, no elicitation tool",
    () =>
      Effect.gen(function*() {
        const pool = yield* poolWith({ listRoots: () => Effect.succeed([]) })
        const session = yield* pool.get({ server: "everything", scope: "t" }).pipe(Effect.scoped)
        const names = (yield* session.listTools()).tools.map((tool) => tool.name)
        assert.include(names, "get-roots-list")
        assert.notInclude(names, "trigger-elicitation-request")
        assert.notInclude(names, "trigger-sampling-request")
      }),
    60_000
  )

  it.live(
    "a failing, slow or malformed handler answers the server with an error; the session stays",
    () =>
      Effect.gen(function*() {
        let mode: "fail" | "hang" | "malformed" = "fail"
        const pool = yield* poolWith({
          elicit: () =>
            mode === "fail"
              ? Effect.fail(new Error("the UI crashed: secret-detail-123"))
              : mode === "hang"
              ? Effect.never
              : Effect.succeed({ action: "maybe" } as unknown as ElicitResult),
          timeout: "300 millis"
        })
        const session = yield* pool.get({ server: "everything", scope: "t" }).pipe(Effect.scoped)
        const outcome = (name: string) =>
          pool.callTool({ server: "everything", scope: "t", name }).pipe(
            Effect.map(allText),
            Effect.catch((error) => Effect.succeed(`error: ${error.message}`)),
            within("20 seconds", name)
          )
        const failed = yield* outcome("trigger-elicitation-request")
        assert.include(failed, "handler failed")
        // The app's error text stays the app's: the server never hears it.
        assert.notInclude(failed, "secret-detail-123")
        mode = "hang"
        assert.include(yield* outcome("trigger-elicitation-request"), "took longer than 300 ms")
        mode = "malformed"
        assert.include(yield* outcome("trigger-elicitation-request"), "Invalid elicitation result")
        const after = yield* pool.get({ server: "everything", scope: "t" }).pipe(Effect.scoped)
        assert.strictEqual(after.pid, session.pid)
      }),
    60_000
  )

  it.live("interrupting the tool call interrupts its pending handler", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const interrupted = yield* Deferred.make<void>()
      const pool = yield* poolWith({
        elicit: () =>
          Deferred.succeed(started, undefined).pipe(
            Effect.andThen(Effect.never),
            Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
          )
      })
      const call = yield* Effect.forkChild(
        pool.callTool({ server: "everything", scope: "t", name: "trigger-elicitation-request" })
      )
      yield* Deferred.await(started).pipe(within("20 seconds", "the handler to start"))
      yield* Fiber.interrupt(call)
      yield* Deferred.await(interrupted).pipe(within("5 seconds", "the handler to be interrupted"))
    }), 60_000)

  it.live("progress: every notification reaches the callback before the result", () =>
    Effect.gen(function*() {
      const pool = yield* poolWith({})
      const seen: Array<number> = []
      const result = yield* pool.callTool(
        {
          server: "everything",
          scope: "t",
          name: "trigger-long-running-operation",
          arguments: { duration: 0.5, steps: 5 }
        },
        {
          onProgress: (progress) => seen.push(progress.progress),
          resetTimeoutOnProgress: true,
          maxTotalTimeout: "20 seconds"
        }
      ).pipe(within("20 seconds", "the long-running operation"))
      // The last progress event arrived before the result, not lost to it.
      assert.deepStrictEqual(seen, [1, 2, 3, 4, 5])
      assert.include(allText(result), "completed")
    }), 60_000)

  it.live("2026-07-28: input_required rounds reach the same handler, per thread", () =>
    Effect.gen(function*() {
      const asked: Array<string> = []
      const pool = yield* poolWith({
        elicit: (_request, { scope }) =>
          Effect.sync(() => {
            asked.push(scope)
            return { action: "accept" as const, content: { name: scope } }
          })
      })
      const [alice, bob] = yield* Effect.all([
        pool.callTool({ server: "modern", scope: "alice", name: "ask_user" }),
        pool.callTool({ server: "modern", scope: "bob", name: "ask_user" })
      ], { concurrency: 2 }).pipe(within("20 seconds", "both modern elicitations"))
      assert.strictEqual(firstText(alice), "hello alice")
      assert.strictEqual(firstText(bob), "hello bob")
      assert.deepStrictEqual(asked.sort(), ["alice", "bob"])
      const session = yield* pool.get({ server: "modern", scope: "alice" }).pipe(Effect.scoped)
      assert.strictEqual(session.revision, "2026-07-28")
    }), 60_000)

  it.effect("a bad handler timeout is a ConfigError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(poolWith({ timeout: "soon" as never }))
      assert.instanceOf(error, ConfigError)
      assert.deepStrictEqual(error.issues.map((issue) => issue.path), ["timeout"])
    }).pipe(Effect.scoped))
})
