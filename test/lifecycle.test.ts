/**
 * Lifecycle settings on in-memory servers: idle TTL and maximum lifetime on the TestClock (semantics 9),
 * ping after idle, per-session concurrency, call timeouts, connect timeouts and reload (semantics 10).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Queue, Scope } from "effect"
import { TestClock } from "effect/testing"
import { CallTimeout, ConfigError, ConnectTimeout, UnknownServer } from "../src/McpPoolError.ts"
import { McpScope } from "../src/McpScope.ts"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import { McpSessionPool, type Options } from "../src/McpSessionPool.ts"
import { firstText, makeProbe } from "./utils/probe.ts"

const makePool = (options: Options) => McpSessionPool.make(options)

const takeBoth = <A>(queue: Queue.Queue<A>) => Effect.all([Queue.take(queue), Queue.take(queue)])

const increment = (pool: McpSessionPool["Service"], scope: string, server = "notebook") =>
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
      assert.strictEqual(yield* Queue.take(probe.released), "t")
      assert.deepStrictEqual(yield* pool.snapshot, [])
      assert.strictEqual(yield* increment(pool, "t"), "1")
    }))

  it.effect("semantics 9: a leased session does not expire while leased", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({ servers: { notebook: probe.config }, idleTimeToLive: "1 minute" })
      const lease = yield* Scope.make()
      const session = yield* pool.get("notebook", "t").pipe(Scope.provide(lease))
      yield* TestClock.adjust("10 minutes")
      assert.strictEqual(firstText(yield* session.callTool({ name: "counter_increment" })), "1")
      assert.strictEqual(probe.counts.releases, 0)
      yield* Scope.close(lease, Exit.void)
      yield* TestClock.adjust("59 seconds")
      assert.strictEqual(probe.counts.releases, 0)
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(yield* Queue.take(probe.released), "t")
    }))

  it.effect("semantics 9: a session is retired at its maximum lifetime, however busy, after its lease ends", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({
        servers: { notebook: McpServerConfig.custom(probe.config.connect, { maxLifetime: "1 hour" }) }
      })
      const lease = yield* Scope.make()
      const session = yield* pool.get("notebook", "t").pipe(Scope.provide(lease))
      yield* TestClock.adjust("61 minutes")
      // Detached at once (the next get starts afresh) but kept for its holder until the lease ends.
      assert.strictEqual(yield* increment(pool, "t"), "1")
      assert.strictEqual(firstText(yield* session.callTool({ name: "counter_increment" })), "1")
      assert.strictEqual(probe.counts.releases, 0)
      yield* Scope.close(lease, Exit.void)
      assert.strictEqual(yield* Queue.take(probe.released), "t")
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
      assert.strictEqual(yield* increment(pool, "t"), "1")
      assert.strictEqual(probe.counts.connects, 2)
    }))

  it.effect("maxConcurrentCalls: 1 runs one session's calls one at a time, in order", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({
        servers: { notebook: McpServerConfig.custom(probe.config.connect, { maxConcurrentCalls: 1 }) }
      })
      const session = yield* pool.get("notebook", "t")
      const first = yield* Effect.forkChild(session.callTool({ name: "sleep", arguments: { ms: 60_000 } }))
      const second = yield* Effect.forkChild(session.callTool({ name: "counter_increment" }))
      // The second waits for the first's permit: it cannot have reached the server yet.
      yield* Effect.yieldNow
      assert.isUndefined(second.pollUnsafe())
      yield* Fiber.interrupt(first)
      assert.strictEqual(firstText(yield* Fiber.join(second)), "1")
    }))

  it.effect("callTimeout per server: CallTimeout, the session stays", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({
        servers: { notebook: McpServerConfig.custom(probe.config.connect, { callTimeout: "50 millis" }) }
      })
      const error = yield* Effect.flip(
        pool.callTool({ server: "notebook", scope: "t", name: "sleep", arguments: { ms: 60_000 } })
      )
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
      yield* Queue.take(probe.connectStarted)
      yield* TestClock.adjust("30 seconds")
      const error = yield* Fiber.join(attempt)
      assert.instanceOf(error, ConnectTimeout)
      assert.strictEqual(error.timeoutMillis, 30_000)
      assert.strictEqual(yield* Queue.take(probe.released), "t")
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
      const held = yield* pool.get("changed", "held")
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

  it.live("closeTimeout bounds a close whose finalizer never returns: closeAll still finishes", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const stuck = McpServerConfig.custom((scope) =>
        Effect.andThen(Effect.addFinalizer(() => Effect.never), probe.config.connect(scope))
      )
      const pool = yield* makePool({ servers: { stuck }, closeTimeout: "100 millis" })
      assert.strictEqual(yield* increment(pool, "t", "stuck"), "1")
      yield* pool.closeAll
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
      const viaUse = yield* Effect.forkChild(pool.use("notebook", "b", () => Effect.void))
      yield* takeBoth(probe.connectStarted)
      // Were the waits uninterruptible (acquireUseRelease's acquire), these would block until connectTimeout,
      // which the TestClock never reaches.
      yield* Fiber.interrupt(viaCall)
      yield* Fiber.interrupt(viaUse)
      assert.deepStrictEqual((yield* takeBoth(probe.released)).sort(), ["a", "b"])
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
      const results = yield* Effect.all([increment(pool, "t"), increment(pool, "t")], { concurrency: 2 })
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
      yield* pool.invalidate("neverCloses", "t")
      yield* pool.closeAll
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
