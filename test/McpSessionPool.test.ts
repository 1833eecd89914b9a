/**
 * The pool's semantics (DESIGN.md lines 1–7), each named after its line, on in-memory servers whose
 * connects the tests control. Real processes are in McpSessionPool.stdio.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import { Deferred, Effect, Exit, Fiber, Metric, Queue, Scope } from "effect"
import { metrics } from "../src/internal/pool.ts"
import { ConfigError, ConnectError, PoolClosed, UnknownServer } from "../src/McpPoolError.ts"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import * as McpSessionPool from "../src/McpSessionPool.ts"
import type { Options } from "../src/McpSessionPool.ts"
import { firstText, makeProbe } from "./utils/probe.ts"
import { within } from "./utils/within.ts"

const makePool = (options: Options) => McpSessionPool.make(options)

const increment = (pool: McpSessionPool.McpSessionPoolShape, server: string, scope: string) =>
  pool.callTool({ server, scope, name: "counter_increment", arguments: {} }).pipe(Effect.map(firstText))

/** Waits until `n` items arrived on the queue and returns them. */
const takeN = <A>(queue: Queue.Queue<A>, n: number) =>
  Effect.forEach(Array.from({ length: n }), () => Queue.take(queue))

const attached = (pool: McpSessionPool.McpSessionPoolShape) =>
  Effect.map(pool.snapshot, (rows) => rows.filter((row) => row.attached))

describe("McpSessionPool", () => {
  it.effect("semantics 1: the same scope reuses one session; different scopes never share", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({ servers: { notebook: probe.config } })
      assert.strictEqual(yield* increment(pool, "notebook", "thread-a"), "1")
      assert.strictEqual(yield* increment(pool, "notebook", "thread-a"), "2")
      assert.strictEqual(yield* increment(pool, "notebook", "thread-b"), "1")
      assert.strictEqual(yield* increment(pool, "notebook", "thread-a"), "3")
      const [first, second] = yield* Effect.scoped(
        Effect.all([
          pool.get({ server: "notebook", scope: "thread-a" }),
          pool.get({ server: "notebook", scope: "thread-a" })
        ])
      )
      assert.strictEqual(first, second)
      const other = yield* Effect.scoped(pool.get({ server: "notebook", scope: "thread-b" }))
      assert.notStrictEqual(first, other)
      assert.strictEqual(other.scope, "thread-b")
      assert.strictEqual(probe.counts.connects, 2)
    }))

  it.effect("semantics 2: concurrent gets of a missing key create exactly one session, all waiters get it", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe({ gateOpen: false })
      const pool = yield* makePool({ servers: { notebook: probe.config } })
      const waiters = yield* Effect.forkChild(
        Effect.forEach(
          Array.from({ length: 50 }),
          () => pool.use({ server: "notebook", scope: "thread" }, (session) => Effect.succeed(session)),
          { concurrency: "unbounded" }
        )
      )
      yield* Queue.take(probe.connectStarted)
      yield* probe.gate.open
      const sessions = yield* Fiber.join(waiters)
      assert.strictEqual(new Set(sessions).size, 1)
      assert.strictEqual(probe.counts.connects, 1)
    }))

  it.effect("semantics 2: concurrent waiters of a failing creation all get its error", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe({ gateOpen: false })
      probe.failures = 1
      const pool = yield* makePool({ servers: { notebook: probe.config } })
      const waiters = yield* Effect.forkChild(
        Effect.forEach(
          Array.from({ length: 10 }),
          () => Effect.flip(Effect.scoped(pool.get({ server: "notebook", scope: "thread" }))),
          { concurrency: "unbounded" }
        )
      )
      yield* Queue.take(probe.connectStarted)
      yield* probe.gate.open
      const errors = yield* Fiber.join(waiters)
      assert.strictEqual(errors.length, 10)
      for (const error of errors) {
        assert.instanceOf(error, ConnectError)
        assert.strictEqual(error.scope, "thread")
      }
      assert.strictEqual(probe.counts.connects, 1)
    }))

  it.effect("semantics 3: a failed creation is not cached; the next get tries again", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      probe.failures = 1
      const pool = yield* makePool({ servers: { notebook: probe.config } })
      const error = yield* Effect.flip(increment(pool, "notebook", "thread"))
      assert.instanceOf(error, ConnectError)
      assert.include(error.message, "injected connect failure")
      assert.strictEqual(yield* increment(pool, "notebook", "thread"), "1")
      assert.strictEqual(probe.counts.connects, 2)
      // What the failed attempt opened was released.
      assert.strictEqual(yield* Queue.take(probe.released), "thread")
    }))

  it.effect("semantics 4: interrupting one waiter never fails the others", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe({ gateOpen: false })
      const pool = yield* makePool({ servers: { notebook: probe.config } })
      const waiter = () =>
        Effect.forkChild(Effect.scoped(Effect.map(pool.get({ server: "notebook", scope: "t" }), (s) => s.scope)))
      const first = yield* waiter()
      const second = yield* waiter()
      const third = yield* waiter()
      yield* Queue.take(probe.connectStarted)
      yield* Fiber.interrupt(second)
      yield* probe.gate.open
      assert.strictEqual(yield* Fiber.join(first), "t")
      assert.strictEqual(yield* Fiber.join(third), "t")
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(second)))
      assert.strictEqual(probe.counts.connects, 1)
    }))

  it.effect("semantics 4: interrupting the last waiter cancels the connect and releases what it opened", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      probe.hang = true
      const pool = yield* makePool({ servers: { notebook: probe.config } })
      const waiters = yield* Effect.forkChild(
        Effect.all([
          Effect.scoped(pool.get({ server: "notebook", scope: "t" })),
          Effect.scoped(pool.get({ server: "notebook", scope: "t" }))
        ], {
          concurrency: 2
        })
      )
      yield* Queue.take(probe.connectStarted)
      yield* Fiber.interrupt(waiters)
      // The connect was interrupted and its resources released, by the owner, without any caller waiting.
      assert.strictEqual(yield* Queue.take(probe.released), "t")
      assert.deepStrictEqual(yield* pool.snapshot, [])
      probe.hang = false
      assert.strictEqual(yield* increment(pool, "notebook", "t"), "1")
      assert.strictEqual(probe.counts.connects, 2)
    }))

  it.effect("semantics 5: at capacity a new key evicts the least recently used idle session", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({ servers: { notebook: probe.config }, capacity: 2 })
      yield* increment(pool, "notebook", "a")
      yield* increment(pool, "notebook", "b")
      yield* increment(pool, "notebook", "a") // a is now the most recently used
      yield* increment(pool, "notebook", "c")
      assert.strictEqual(yield* Queue.take(probe.released), "b")
      const kept = (yield* attached(pool)).map((row) => row.scope).sort()
      assert.deepStrictEqual(kept, ["a", "c"])
      // a kept its state, b starts over.
      assert.strictEqual(yield* increment(pool, "notebook", "a"), "3")
      assert.strictEqual(yield* increment(pool, "notebook", "b"), "1")
    }))

  it.effect("semantics 5: eviction stays least recently used through many hits (stale idle slots compacted)", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({ servers: { notebook: probe.config }, capacity: 3 })
      for (const key of ["a", "b", "c"]) yield* increment(pool, "notebook", key)
      // a and b sit idle (a the colder) while every hit on c leaves a stale slot in the idle queue: 350 of
      // them compact it several times over, and the order of a and b must survive each compaction.
      for (let hit = 0; hit < 350; hit++) yield* increment(pool, "notebook", "c")
      assert.strictEqual(probe.counts.releases, 0)
      yield* increment(pool, "notebook", "d")
      assert.strictEqual(yield* Queue.take(probe.released), "a")
      yield* increment(pool, "notebook", "e")
      assert.strictEqual(yield* Queue.take(probe.released), "b")
      // c was never evicted: its session kept its state.
      assert.strictEqual(yield* increment(pool, "notebook", "c"), "352")
      assert.deepStrictEqual((yield* attached(pool)).map((row) => row.scope).sort(), ["c", "d", "e"])
    }))

  it.effect("semantics 5: eviction skips idle sessions closed meanwhile (their slots went stale)", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({ servers: { notebook: probe.config }, capacity: 3 })
      for (const key of ["a", "b", "c"]) yield* increment(pool, "notebook", key)
      yield* pool.closeScope("a")
      assert.strictEqual(yield* Queue.take(probe.released), "a")
      yield* increment(pool, "notebook", "d")
      assert.strictEqual(probe.counts.releases, 1, "a key under capacity evicted a session")
      yield* increment(pool, "notebook", "e")
      assert.strictEqual(yield* Queue.take(probe.released), "b")
      yield* increment(pool, "notebook", "f")
      assert.strictEqual(yield* Queue.take(probe.released), "c")
      assert.deepStrictEqual((yield* attached(pool)).map((row) => row.scope).sort(), ["d", "e", "f"])
    }))

  it.effect("semantics 5: a leased session is never closed to make room; the pool trims as leases end", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({ servers: { notebook: probe.config }, capacity: 1 })
      const leaseA = yield* Scope.make()
      const leaseB = yield* Scope.make()
      const a = yield* pool.get({ server: "notebook", scope: "a" }).pipe(Scope.provide(leaseA))
      // Over capacity while a is leased: b is created anyway, a stays open and usable.
      const b = yield* pool.get({ server: "notebook", scope: "b" }).pipe(Scope.provide(leaseB))
      assert.strictEqual((yield* attached(pool)).length, 2)
      assert.strictEqual(firstText(yield* a.callTool({ name: "counter_increment" })), "1")
      assert.strictEqual(firstText(yield* b.callTool({ name: "counter_increment" })), "1")
      assert.strictEqual(probe.counts.releases, 0)
      // When a's lease ends, a is the only idle session and the pool is over capacity: a goes.
      yield* Scope.close(leaseA, Exit.void)
      assert.strictEqual(yield* Queue.take(probe.released), "a")
      assert.deepStrictEqual((yield* attached(pool)).map((row) => row.scope), ["b"])
      // Back within capacity: b stays when its lease ends.
      yield* Scope.close(leaseB, Exit.void)
      assert.strictEqual(yield* increment(pool, "notebook", "b"), "2")
      assert.strictEqual(probe.counts.releases, 1)
    }))

  it.effect("semantics 5: capacity holds when many keys finish connecting at once", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe({ gateOpen: false })
      const pool = yield* makePool({ servers: { notebook: probe.config }, capacity: 3 })
      const keys = Array.from({ length: 20 }, (_, i) => `thread-${i}`)
      const all = yield* Effect.forkChild(
        Effect.forEach(keys, (key) => increment(pool, "notebook", key), { concurrency: "unbounded" })
      )
      yield* takeN(probe.connectStarted, keys.length)
      yield* probe.gate.open
      assert.deepStrictEqual(yield* Fiber.join(all), keys.map(() => "1"))
      assert.strictEqual((yield* attached(pool)).length, 3)
      yield* takeN(probe.released, 17)
      assert.strictEqual(probe.counts.releases, 17)
    }))

  it.live("semantics 5, 6: under concurrent churn every evicted session starts closing at once; only capacity stays open", () =>
    Effect.gen(function*() {
      // A server that answers at once (a microtask later), so that connects, leases and evictions interleave
      // as tightly as they can.
      const counts = { opened: 0, closed: 0 }
      const quick = McpServerConfig.custom(() =>
        Effect.sync(() => {
          counts.opened++
          let open = true
          const transport: Transport = {
            start: async () => undefined,
            close: async () => {
              if (!open) return
              open = false
              counts.closed++
              transport.onclose?.()
            },
            send: async (message) => {
              if (!("id" in message) || !("method" in message)) return
              const result = message.method === "initialize"
                ? { protocolVersion: "2025-11-25", capabilities: {}, serverInfo: { name: "quick", version: "0" } }
                : {}
              queueMicrotask(() => transport.onmessage?.({ jsonrpc: "2.0", id: message.id, result }))
            }
          }
          return transport
        }), { protocol: "2025-11-25" })
      const pool = yield* makePool({ servers: { quick }, capacity: 256 })
      // Rounds from outside the pool's fibers, back to back, as an app's request loop runs them; right after
      // each, the sessions it evicted must already be closing: none may wait, detached and ready, for a turn
      // of the event loop that a busy app never gives.
      const waiting = yield* Effect.promise(async () => {
        const most: Array<number> = []
        for (let round = 0; round < 4; round++) {
          await Effect.runPromise(Effect.forEach(
            Array.from({ length: 1000 }, (_, i) => i),
            (i) => Effect.scoped(pool.get({ server: "quick", scope: `thread-${(i * 7919 + round * 104729) % 5000}` })),
            { concurrency: 16, discard: true }
          ))
          const rows = await Effect.runPromise(pool.snapshot)
          most.push(rows.filter((row) => !row.attached && row.state === "ready").length)
        }
        return most
      })
      assert.deepStrictEqual(waiting, [0, 0, 0, 0])
      // Every session beyond the capacity was evicted: each closes, none is left detached and open.
      const settled = yield* pool.snapshot.pipe(
        Effect.repeat({ until: (rows) => rows.every((row) => row.attached), times: 500 }),
        within("10 seconds", "every evicted session to close")
      )
      assert.strictEqual(settled.filter((row) => !row.attached).length, 0)
      assert.strictEqual(settled.length, 256)
      assert.strictEqual(counts.opened - counts.closed, 256)
    }))

  it.live("a connect its last waiter gave up on stops before the app's next turn of the event loop", () =>
    Effect.gen(function*() {
      // A server that never answers `initialize`: the connect waits until it is given up.
      const sent = yield* Deferred.make<void>()
      let closed = false
      const silent = McpServerConfig.custom(() =>
        Effect.sync(() => {
          const transport: Transport = {
            start: async () => undefined,
            close: async () => {
              closed = true
            },
            send: async (message) => {
              if ("method" in message && message.method === "initialize") Deferred.doneUnsafe(sent, Effect.void)
            }
          }
          return transport
        }), { protocol: "2025-11-25" })
      const pool = yield* makePool({ servers: { silent } })
      const waiter = yield* Effect.forkDetach(Effect.scoped(pool.get({ server: "silent", scope: "t" })))
      yield* Deferred.await(sent).pipe(within("5 seconds", "initialize to be sent"))
      // From outside the pool's fibers, as an app's request handler gives up: only microtasks from here on,
      // no turn of the event loop (a busy app may not give one for long).
      const turns = yield* Effect.promise(async () => {
        waiter.interruptUnsafe()
        let turn = 0
        while (!closed && turn < 1_000) {
          await Promise.resolve()
          turn++
        }
        return turn
      })
      assert.isTrue(closed, `the transport was still open after ${turns} microtasks`)
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(waiter).pipe(within("5 seconds", "the waiter to end"))))
      const rows = yield* pool.snapshot.pipe(
        Effect.repeat({ until: (rows) => rows.length === 0, times: 500 }),
        within("5 seconds", "the cancelled session to be gone")
      )
      assert.strictEqual(rows.length, 0)
    }))

  it.effect("semantics 6: invalidate detaches at once and closes the session when its last lease ends", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({ servers: { notebook: probe.config } })
      const lease = yield* Scope.make()
      const old = yield* pool.get({ server: "notebook", scope: "t" }).pipe(Scope.provide(lease))
      yield* old.callTool({ name: "counter_increment" })
      yield* pool.invalidate({ server: "notebook", scope: "t" })
      // The next get makes a fresh session while the old one is still leased and still works.
      assert.strictEqual(yield* increment(pool, "notebook", "t"), "1")
      assert.strictEqual(firstText(yield* old.callTool({ name: "counter_increment" })), "2")
      assert.strictEqual(probe.counts.releases, 0)
      const rows = yield* pool.snapshot
      assert.deepStrictEqual(rows.map((row) => [row.attached, row.leases]).sort(), [[false, 1], [true, 0]])
      yield* Scope.close(lease, Exit.void)
      assert.strictEqual(yield* Queue.take(probe.released), "t")
      assert.strictEqual((yield* pool.snapshot).length, 1)
    }))

  it.effect("semantics 6: closeScope closes a thread's sessions on every server, and only those", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const other = yield* makeProbe()
      const pool = yield* makePool({ servers: { one: probe.config, two: other.config } })
      yield* increment(pool, "one", "gone")
      yield* increment(pool, "two", "gone")
      yield* increment(pool, "one", "stays")
      yield* pool.closeScope("gone")
      // Idle sessions are closed by the time closeScope returns.
      assert.strictEqual(probe.counts.releases, 1)
      assert.strictEqual(other.counts.releases, 1)
      assert.deepStrictEqual((yield* pool.snapshot).map((row) => [row.server, row.scope]), [["one", "stays"]])
      assert.strictEqual(yield* increment(pool, "one", "stays"), "2")
      assert.strictEqual(yield* increment(pool, "one", "gone"), "1")
    }))

  it.effect("semantics 6: closeServer closes one server's sessions, and only those", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const other = yield* makeProbe()
      const pool = yield* makePool({ servers: { one: probe.config, two: other.config } })
      yield* increment(pool, "one", "a")
      yield* increment(pool, "one", "b")
      yield* increment(pool, "two", "a")
      yield* pool.closeServer("one")
      assert.strictEqual(probe.counts.releases, 2)
      assert.strictEqual(other.counts.releases, 0)
      assert.strictEqual(yield* increment(pool, "two", "a"), "2")
    }))

  it.effect("semantics 6: closeAll is forced: in-flight calls end with PoolClosed and every session closes", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({ servers: { notebook: probe.config } })
      const started = yield* Deferred.make<void>()
      const call = yield* Effect.forkChild(
        pool.use({ server: "notebook", scope: "busy" }, (session) =>
          Effect.andThen(
            Deferred.succeed(started, undefined),
            session.callTool({ name: "sleep", arguments: { ms: 60_000 } })
          ))
      )
      yield* increment(pool, "notebook", "idle")
      yield* Deferred.await(started)
      yield* pool.closeAll
      const exit = yield* Fiber.await(call)
      assert.isTrue(Exit.isFailure(exit))
      assert.deepStrictEqual(Exit.findErrorOption(exit).pipe((e) => e._tag === "Some" && e.value._tag), "PoolClosed")
      assert.strictEqual(probe.counts.releases, 2)
      assert.deepStrictEqual(yield* pool.snapshot, [])
    }))

  it.effect("semantics 6: layer shutdown is forced, closes every session and leaves none behind", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const layerScope = yield* Scope.make()
      const pool = yield* makePool({ servers: { notebook: probe.config } }).pipe(Scope.provide(layerScope))
      const lease = yield* Scope.make()
      const session = yield* pool.get({ server: "notebook", scope: "held" }).pipe(Scope.provide(lease))
      yield* increment(pool, "notebook", "idle")
      yield* Scope.close(layerScope, Exit.void)
      assert.strictEqual(probe.counts.releases, 2)
      // The lease outlived the pool: its session fails cleanly instead of hanging.
      const error = yield* Effect.flip(session.callTool({ name: "counter_increment" }))
      assert.strictEqual(error._tag, "PoolClosed")
      yield* Scope.close(lease, Exit.void)
    }))

  it.effect("semantics 7: a closed pool never resurrects: creations in flight are cancelled, waiters get PoolClosed", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe({ gateOpen: false })
      const pool = yield* makePool({ servers: { notebook: probe.config } })
      const waiter = yield* Effect.forkChild(Effect.flip(Effect.scoped(pool.get({ server: "notebook", scope: "t" }))))
      yield* Queue.take(probe.connectStarted)
      yield* pool.closeAll
      assert.instanceOf(yield* Fiber.join(waiter), PoolClosed)
      assert.strictEqual(probe.counts.releases, 1)
      yield* probe.gate.open
      assert.instanceOf(yield* Effect.flip(increment(pool, "notebook", "t")), PoolClosed)
      assert.instanceOf(yield* Effect.flip(increment(pool, "notebook", "new")), PoolClosed)
      assert.strictEqual(probe.counts.connects, 1)
    }))

  it.effect("an unknown server is a typed error naming the configured ones", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({ servers: { notebook: probe.config } })
      const error = yield* Effect.flip(increment(pool, "nope", "t"))
      assert.instanceOf(error, UnknownServer)
      assert.include(error.message, `"nope"`)
      assert.include(error.message, `"notebook"`)
    }))

  it.effect("bad options fail with a ConfigError listing every problem with its path", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(makePool({
        servers: {
          ok: McpServerConfig.inMemory(() => {
            throw new Error("unused")
          }),
          noCommand: McpServerConfig.stdio({ command: "" }),
          badGrace: McpServerConfig.stdio({ command: "x", stdinGrace: "soon" as never })
        },
        capacity: 0,
        connectTimeout: "forever" as never
      }))
      assert.instanceOf(error, ConfigError)
      assert.deepStrictEqual(error.issues.map((issue) => issue.path).sort(), [
        "capacity",
        "connectTimeout",
        "servers.badGrace.stdinGrace",
        "servers.noCommand.command"
      ])
      assert.include(error.message, `"forever"`)
    }))
})

describe("McpSessionPool observability", () => {
  it.effect("counts sessions created and closed (by reason) and times connects", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* makePool({ servers: { notebook: probe.config } })
      yield* increment(pool, "notebook", "a")
      yield* increment(pool, "notebook", "b")
      yield* pool.invalidate({ server: "notebook", scope: "a" })
      const created = yield* Metric.value(metrics.sessionsCreated)
      const closed = yield* Metric.value(Metric.withAttributes(metrics.sessionsClosed, { reason: "invalidated" }))
      const connects = yield* Metric.value(metrics.connectDuration)
      assert.strictEqual(created.count, 2)
      assert.strictEqual(closed.count, 1)
      assert.strictEqual(connects.count, 2)
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())))
})
