/**
 * Lifecycle settings on in-memory servers: idle TTL and maximum lifetime on the TestClock (semantics 9),
 * ping after idle, per-session concurrency, call timeouts, connect timeouts and reload (semantics 10).
 */
import { assert, describe, it } from "@effect/vitest"
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js"
import { Effect, Exit, Fiber, Queue, Scope } from "effect"
import { TestClock } from "effect/testing"
import { CallTimeout, ConfigError, ConnectTimeout, MissingScope, UnknownServer } from "../src/McpPoolError.ts"
import { McpScope } from "../src/McpScope.ts"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import * as McpSessionPool from "../src/McpSessionPool.ts"
import type { Options } from "../src/McpSessionPool.ts"
import { firstText, legacyClient, makeCallGate, makeProbe, type Probe } from "./utils/probe.ts"
import { within } from "./utils/within.ts"

const makePool = (options: Options) => McpSessionPool.make(options)

const takeBoth = <A>(queue: Queue.Queue<A>, what: string) =>
  Effect.all([Queue.take(queue), Queue.take(queue)]).pipe(within("5 seconds", what))

/** The scope of the next transport the probe releases. */
const nextRelease = (probe: Probe) =>
  Queue.take(probe.released).pipe(within("5 seconds", "a session's transport to be released"))

const increment = (pool: McpSessionPool.McpSessionPoolShape, scope: string, server = "notebook") =>
  pool.callTool({ server, scope, name: "counter_increment" }).pipe(Effect.map(firstText))

describe("lifecycle", () => {
  it.effect("semantics 9: an idle session closes after its idle time-to-live, on the Clock", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({ servers: { notebook: probe.config }, idleTimeToLive: "15 minutes" })
      yield* increment(pool, "t")
      yield* TestClock.adjust("14 minutes")
      assert.strictEqual(yield* increment(pool, "t"), "2") // used again: the idle clock restarts
      yield* TestClock.adjust("14 minutes")
      assert.strictEqual(probe.counts.releases, 0)
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* nextRelease(probe), "t")
      assert.deepStrictEqual(yield* pool.snapshot, [])
      assert.strictEqual(yield* increment(pool, "t"), "1")
    }))

  it.effect("semantics 9: a leased session does not expire while leased", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({ servers: { notebook: probe.config }, idleTimeToLive: "1 minute" })
      const lease = yield* Scope.make()
      const session = yield* pool.get({ server: "notebook", scope: "t" }).pipe(Scope.provide(lease))
      yield* TestClock.adjust("10 minutes")
      assert.strictEqual(firstText(yield* session.callTool({ name: "counter_increment" })), "1")
      assert.strictEqual(probe.counts.releases, 0)
      yield* Scope.close(lease, Exit.void)
      yield* TestClock.adjust("59 seconds")
      assert.strictEqual(probe.counts.releases, 0)
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(yield* nextRelease(probe), "t")
    }))

  it.effect("semantics 9: a session is retired at its maximum lifetime, however busy, after its lease ends", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({
        servers: { notebook: McpServerConfig.custom(probe.config.connect, { maxLifetime: "1 hour" }) }
      })
      const lease = yield* Scope.make()
      const session = yield* pool.get({ server: "notebook", scope: "t" }).pipe(Scope.provide(lease))
      yield* TestClock.adjust("61 minutes")
      // Detached at once (the next get starts afresh) but kept for its holder until the lease ends.
      assert.strictEqual(yield* increment(pool, "t"), "1")
      assert.strictEqual(firstText(yield* session.callTool({ name: "counter_increment" })), "1")
      assert.strictEqual(probe.counts.releases, 0)
      yield* Scope.close(lease, Exit.void)
      assert.strictEqual(yield* nextRelease(probe), "t")
    }))

  it.effect("a session idle past pingAfterIdle is pinged first; one that does not answer is replaced", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({
        servers: { notebook: probe.config },
        pingAfterIdle: "5 minutes",
        connectTimeout: "200 millis"
      })
      yield* increment(pool, "t")
      yield* TestClock.adjust("6 minutes")
      assert.strictEqual(yield* increment(pool, "t"), "2") // answered its ping: kept
      // The server stops answering without closing its transport (a hung remote server).
      probe.mute("t")
      yield* TestClock.adjust("6 minutes")
      assert.strictEqual(yield* increment(pool, "t").pipe(within("5 seconds", "the unanswered ping to fail")), "1")
      assert.strictEqual(probe.counts.connects, 2)
    }))

  it.effect("maxConcurrentCalls: with more calls asked than the limit, the server runs exactly the limit at once", () =>
    Effect.gen(function*() {
      for (const [limit, asked] of [[1, 3], [2, 5]] as const) {
        const gate = yield* makeCallGate
        const pool = yield* makePool({ servers: { gated: gate.config({ maxConcurrentCalls: limit }) } })
        const session = yield* pool.get({ server: "gated", scope: "t" })
        const calls = yield* Effect.forEach(
          Array.from({ length: asked }),
          () => Effect.forkChild(session.callTool({ name: "hold" }))
        )
        for (let arrival = 1; arrival <= limit; arrival++) {
          yield* Queue.take(gate.arrivals).pipe(within("5 seconds", `call ${arrival} of ${limit} to reach the server`))
        }
        // Asked on the SDK client itself, past the pool's permits, on the same transport: the server starts it
        // after every call sent before it, so a call let through beyond the limit would be counted here.
        const seen = yield* Effect.promise(() =>
          legacyClient(session).callTool({ name: "in_flight" }) as Promise<CallToolResult>
        ).pipe(
          within("5 seconds", "the server's counts")
        )
        assert.deepStrictEqual(JSON.parse(firstText(seen)), { arrived: limit, inFlight: limit, peak: limit })
        gate.open()
        const results = yield* Fiber.joinAll(calls).pipe(within("5 seconds", "the held calls to finish"))
        assert.deepStrictEqual(results.map(firstText), Array.from({ length: asked }, () => "released"))
        // The waiting calls ran as permits came back: never more than the limit at once.
        assert.deepStrictEqual(gate.counts, { arrived: asked, inFlight: 0, peak: limit })
      }
    }))

  it.effect("callTimeout per server: CallTimeout, the session stays", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({
        servers: { notebook: McpServerConfig.custom(probe.config.connect, { callTimeout: "50 millis" }) }
      })
      const error = yield* Effect.flip(
        pool.callTool({ server: "notebook", scope: "t", name: "sleep", arguments: { ms: 60_000 } })
      ).pipe(within("5 seconds", "the call to time out"))
      assert.instanceOf(error, CallTimeout)
      assert.strictEqual(error.timeoutMillis, 50)
      assert.strictEqual(yield* increment(pool, "t"), "1")
      assert.strictEqual(probe.counts.connects, 1)
    }))

  it.effect("connectTimeout: a connect that never finishes fails with ConnectTimeout and is released", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      probe.hang = true
      const pool = yield* makePool({ servers: { notebook: probe.config }, connectTimeout: "30 seconds" })
      const attempt = yield* Effect.forkChild(Effect.flip(increment(pool, "t")))
      yield* Queue.take(probe.connectStarted).pipe(within("5 seconds", "the connect to start"))
      yield* TestClock.adjust("30 seconds")
      const error = yield* Fiber.join(attempt).pipe(within("5 seconds", "the connect to time out"))
      assert.instanceOf(error, ConnectTimeout)
      assert.strictEqual(error.timeoutMillis, 30_000)
      assert.strictEqual(yield* nextRelease(probe), "t")
      probe.hang = false
      assert.strictEqual(yield* increment(pool, "t"), "1")
    }))

  it.effect("semantics 10: reload retires sessions of changed or removed servers and keeps the rest", () =>
    Effect.gen(function*() {
      const kept = yield* makeProbe()
      const changed = yield* makeProbe()
      const removed = yield* makeProbe()
      const pool = yield* makePool({
        servers: { kept: kept.config, changed: changed.config, removed: removed.config }
      })
      yield* Effect.forEach(["kept", "changed", "removed"], (server) => increment(pool, "t", server))
      const held = yield* pool.get({ server: "changed", scope: "held" })
      yield* pool.reload({
        kept: kept.config,
        // An equal config built anew is not a change; a new timeout is.
        changed: McpServerConfig.custom(changed.config.connect, { callTimeout: "5 seconds" })
      })
      assert.strictEqual(kept.counts.releases, 0)
      assert.strictEqual(removed.counts.releases, 1)
      assert.strictEqual(changed.counts.releases, 1) // the idle one; the held one waits for its lease
      assert.strictEqual(yield* increment(pool, "t", "kept"), "2")
      assert.strictEqual(yield* increment(pool, "t", "changed"), "1")
      assert.instanceOf(yield* Effect.flip(increment(pool, "t", "removed")), UnknownServer)
      assert.strictEqual(firstText(yield* held.callTool({ name: "counter_increment" })), "1")
      const error = yield* Effect.flip(pool.reload({ bad: McpServerConfig.stdio({ command: "" }) }))
      assert.instanceOf(error, ConfigError)
      assert.strictEqual(error.issues[0]?.path, "servers.bad.command")
    }))

  it.effect("a call with no scope uses McpScope, and fails with MissingScope without one", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({ servers: { notebook: probe.config } })
      const call = pool.callTool({ server: "notebook", name: "counter_increment" }).pipe(Effect.map(firstText))
      assert.strictEqual(yield* Effect.provideService(call, McpScope, "thread-a"), "1")
      assert.strictEqual(yield* Effect.provideService(call, McpScope, "thread-a"), "2")
      assert.strictEqual(yield* Effect.provideService(call, McpScope, "thread-b"), "1")
      const error = yield* Effect.flip(call)
      assert.strictEqual(error._tag, "MissingScope")
      assert.include(error.message, "McpScope")
    }))

  it.effect("get, use and invalidate take the same key: without scope, McpScope; with neither, MissingScope", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({ servers: { notebook: probe.config } })
      const inThreadA = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provideService(effect, McpScope, "thread-a")
      const viaGet = yield* inThreadA(Effect.scoped(pool.get({ server: "notebook" })))
      const viaUse = yield* inThreadA(pool.use({ server: "notebook" }, Effect.succeed))
      assert.strictEqual(viaUse, viaGet)
      assert.strictEqual(yield* Effect.scoped(pool.get({ server: "notebook", scope: "thread-a" })), viaGet)
      assert.strictEqual(probe.counts.connects, 1)
      // Neither a scope nor McpScope: each fails with MissingScope naming the server, and nothing is retired.
      for (
        const missing of [Effect.scoped(pool.get({ server: "notebook" })), pool.invalidate({ server: "notebook" })]
      ) {
        const error = yield* Effect.flip(missing)
        assert.instanceOf(error, MissingScope)
        assert.strictEqual(error.server, "notebook")
      }
      assert.deepStrictEqual((yield* pool.snapshot).map((row) => [row.scope, row.attached]), [["thread-a", true]])
      // invalidate in thread A's McpScope retires thread A's session: the next get connects afresh.
      yield* inThreadA(pool.invalidate({ server: "notebook" }))
      const fresh = yield* Effect.scoped(pool.get({ server: "notebook", scope: "thread-a" }))
      assert.notStrictEqual(fresh, viaGet)
      assert.strictEqual(probe.counts.connects, 2)
    }))

  it.live("closeTimeout bounds a close whose finalizer never returns: closeAll still finishes", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const stuck = McpServerConfig.custom((scope) =>
        Effect.andThen(Effect.addFinalizer(() => Effect.never), probe.config.connect(scope))
      )
      const pool = yield* makePool({ servers: { stuck }, closeTimeout: "100 millis" })
      assert.strictEqual(yield* increment(pool, "t", "stuck"), "1")
      yield* pool.closeAll.pipe(within("5 seconds", "closeAll to give up on the stuck finalizer"))
      // The transport opened after the stuck finalizer was released (finalizers run in reverse order).
      assert.strictEqual(probe.counts.releases, 1)
      assert.deepStrictEqual(yield* pool.snapshot, [])
    }))

  it.effect("semantics 4: interrupting use or callTool while the session connects is prompt and cancels it", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      probe.hang = true
      const pool = yield* makePool({ servers: { notebook: probe.config } })
      const viaCall = yield* Effect.forkChild(increment(pool, "a"))
      const viaUse = yield* Effect.forkChild(pool.use({ server: "notebook", scope: "b" }, () => Effect.void))
      yield* takeBoth(probe.connectStarted, "both connects to start")
      // Were the waits uninterruptible (acquireUseRelease's acquire), these would block until connectTimeout,
      // which the TestClock never reaches.
      yield* Fiber.interrupt(viaCall).pipe(within("5 seconds", "callTool to end on interruption"))
      yield* Fiber.interrupt(viaUse).pipe(within("5 seconds", "use to end on interruption"))
      assert.deepStrictEqual((yield* takeBoth(probe.released, "both connects to be released")).sort(), ["a", "b"])
    }))

  it.effect("concurrent users of a session under its idle ping all wait for the verdict", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({
        servers: { notebook: probe.config },
        pingAfterIdle: "5 minutes",
        connectTimeout: "200 millis"
      })
      yield* increment(pool, "t")
      probe.mute("t")
      yield* TestClock.adjust("6 minutes")
      const results = yield* Effect.all([increment(pool, "t"), increment(pool, "t")], { concurrency: 2 }).pipe(
        within("5 seconds", "both users to get the ping's verdict")
      )
      assert.deepStrictEqual(results.sort(), ["1", "2"]) // both on the fresh session, none on the dead one
      assert.strictEqual(probe.counts.connects, 2)
    }))

  it.live("closeTimeout bounds a transport whose close never settles: invalidate returns", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const neverCloses = McpServerConfig.custom((scope) =>
        Effect.map(probe.config.connect(scope), (transport) => {
          transport.close = () => new Promise<void>(() => {})
          return transport
        })
      )
      const pool = yield* makePool({ servers: { neverCloses }, closeTimeout: "100 millis" })
      assert.strictEqual(yield* increment(pool, "t", "neverCloses"), "1")
      yield* pool.invalidate({ server: "neverCloses", scope: "t" }).pipe(
        within("5 seconds", "invalidate to give up on the close")
      )
      yield* pool.closeAll.pipe(within("5 seconds", "closeAll to finish"))
      assert.deepStrictEqual(yield* pool.snapshot, [])
    }))

  it.live("a callTimeout beyond Node's timer range means no bound, not 1 ms", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({ servers: { notebook: probe.config }, callTimeout: "25 days" })
      const result = yield* pool.callTool({ server: "notebook", scope: "t", name: "sleep", arguments: { ms: 20 } })
      assert.deepStrictEqual(result.structuredContent, { completed: true })
    }))
})
