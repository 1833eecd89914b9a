/**
 * The pool's bounds and bookkeeping at the edges, whatever user code does: a connect stuck in an
 * uninterruptible step, a transport whose close never settles, an `f` that throws, callers' contexts that
 * must not leak into owners, idle pings racing each other, and failed connects that must be gone before
 * their error is returned.
 */
import { assert, describe, it } from "@effect/vitest"
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js"
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js"
import {
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  Logger,
  Option,
  Queue,
  References,
  Scheduler,
  Scope,
  Stream,
  Tracer
} from "effect"
import { TestClock } from "effect/testing"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { makeNotebookServer } from "../examples/notebook-server.ts"
import { isSessionCurrent } from "../src/internal/pool.ts"
import { ConnectTimeout, McpProtocolError, PoolClosed } from "../src/McpPoolError.ts"
import * as McpScope from "../src/McpScope.ts"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import type { McpSession } from "../src/McpSession.ts"
import * as McpSessionPool from "../src/McpSessionPool.ts"
import { firstText, makeProbe } from "./utils/probe.ts"
import { isRunning } from "./utils/proc.ts"
import { within } from "./utils/within.ts"

/** A promise that never settles, as a hung transport or a stuck handshake gives. */
const never = () => new Promise<never>(() => undefined)

/** An in-memory server with a `block` tool that signals when it is called and never answers. */
const blockingServer = (called: Deferred.Deferred<void>) => {
  const server = new McpServer({ name: "blocking", version: "1.0.0" })
  server.registerTool("block", {}, () => {
    Deferred.doneUnsafe(called, Exit.void)
    return never()
  })
  return server
}

/**
 * A custom connect stuck in an uninterruptible step: an `acquireRelease` (acquire is uninterruptible, the
 * usual way to write a transport) whose promise never settles. `started` completes once it is stuck.
 */
const stuckConnect = (started: Deferred.Deferred<void>, options?: McpServerConfig.ServerOptions) =>
  McpServerConfig.custom(() =>
    Effect.acquireRelease(
      Effect.andThen(Deferred.succeed(started, undefined), Effect.promise(never)),
      () => Effect.void
    ), options)

/** Collects warnings logged by the pool's owners (provide around `make`: owners run in its context). */
const captureWarnings = () => {
  const warnings: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    if (logLevel === "Warn") warnings.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
  })
  return { warnings, layer: Logger.layer([logger]) }
}

/**
 * A custom transport that never answers and has no finalizer of its own: only the pool (or the SDK) can
 * close it. `sentInitialize` and `closed` say how far it got.
 */
const silentTransport = (sentInitialize: Deferred.Deferred<void>, closed: Deferred.Deferred<void>) =>
  McpServerConfig.custom(() =>
    Effect.sync((): Transport => {
      const transport: Transport = {
        start: () => Promise.resolve(),
        send: (message: JSONRPCMessage) => {
          if ("method" in message && message.method === "initialize") Deferred.doneUnsafe(sentInitialize, Effect.void)
          return Promise.resolve()
        },
        close: () => {
          Deferred.doneUnsafe(closed, Effect.void)
          transport.onclose?.()
          return Promise.resolve()
        }
      }
      return transport
    }), { protocol: "2025-11-25", connectTimeout: "30 seconds" })

describe("edges: bounds user code cannot defeat", () => {
  it.effect("a custom transport without a finalizer is closed as soon as its initialize times out", () =>
    Effect.gen(function*() {
      const sentInitialize = yield* Deferred.make<void>()
      const closed = yield* Deferred.make<void>()
      const pool = yield* McpSessionPool.make({ servers: { silent: silentTransport(sentInitialize, closed) } })
      const get = yield* Effect.forkChild(Effect.flip(Effect.scoped(pool.get({ server: "silent", scope: "t" }))))
      yield* Deferred.await(sentInitialize).pipe(within("5 seconds", "initialize to be sent"))
      // The pool's bound runs on the TestClock; the SDK's own backstop (twice the bound, a real timer) never
      // fires during the test, so only the pool can close the transport here.
      yield* TestClock.adjust("31 seconds")
      assert.instanceOf(yield* Fiber.join(get).pipe(within("5 seconds", "the ConnectTimeout")), ConnectTimeout)
      yield* Deferred.await(closed).pipe(within("5 seconds", "the timed-out connect to close its transport"))
    }))

  it.live("a custom connect stuck in an uninterruptible step still fails with ConnectTimeout at the bound", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const pool = yield* McpSessionPool.make({
        servers: {
          stuck: stuckConnect(started, { connectTimeout: "200 millis" })
        },
        closeTimeout: "300 millis"
      })
      const error = yield* pool.get({ server: "stuck", scope: "t" }).pipe(
        Effect.scoped,
        Effect.flip,
        within("5 seconds", "the waiter of a stuck connect got no ConnectTimeout")
      )
      assert.instanceOf(error, ConnectTimeout)
      assert.isTrue(yield* Deferred.isDone(started))
      // closeAll is bounded too: the stuck connect fiber is left behind, not waited for.
      yield* pool.closeAll.pipe(within("5 seconds", "closeAll hung on a stuck connect"))
    }))

  it.live("closeAll returns within closeTimeout + 1 s with a stuck connect and warns naming the session", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const { layer, warnings } = captureWarnings()
      const pool = yield* McpSessionPool.make({
        servers: {
          stuck: stuckConnect(started)
        },
        closeTimeout: "300 millis"
      }).pipe(Effect.provide(layer))
      const waiter = yield* Effect.forkChild(Effect.scoped(pool.get({ server: "stuck", scope: "thread-7" })))
      yield* Deferred.await(started).pipe(within("5 seconds", "the connect never started"))
      yield* pool.closeAll.pipe(within("5 seconds", "closeAll hung on a stuck connect"))
      const exit = yield* Fiber.await(waiter).pipe(within("1 second", "the waiter was left hanging"))
      assert.isTrue(Exit.isFailure(exit))
      assert.instanceOf(
        Exit.isFailure(exit) ? Option.getOrUndefined(Exit.findErrorOption(exit)) : undefined,
        PoolClosed
      )
      assert.isTrue(
        warnings.some((warning) => warning.includes("stuck") && warning.includes("thread-7")),
        `no warning named the stuck session: ${JSON.stringify(warnings)}`
      )
    }))

  it.live("closeAll fails in-flight calls with PoolClosed at once even when the transport's close never settles", () =>
    Effect.gen(function*() {
      const called = yield* Deferred.make<void>()
      const { layer, warnings } = captureWarnings()
      const pool = yield* McpSessionPool.make({
        servers: {
          hung: McpServerConfig.custom(() =>
            Effect.gen(function*() {
              const [client, server] = InMemoryTransport.createLinkedPair()
              yield* Effect.promise(() => blockingServer(called).connect(server))
              // A transport whose close never settles and never reports the close.
              client.close = never
              return client
            })
          )
        },
        closeTimeout: "300 millis"
      }).pipe(Effect.provide(layer))
      const call = yield* Effect.forkChild(pool.callTool({ server: "hung", scope: "t", name: "block" }))
      yield* Deferred.await(called).pipe(within("5 seconds", "the call never reached the server"))
      yield* pool.closeAll.pipe(within("5 seconds", "closeAll hung on a transport close"))
      const exit = yield* Fiber.await(call).pipe(
        within("1 second", "the in-flight call waited for its timeout instead of failing at close")
      )
      assert.instanceOf(
        Exit.isFailure(exit) ? Option.getOrUndefined(Exit.findErrorOption(exit)) : undefined,
        PoolClosed
      )
      assert.isTrue(
        warnings.some((warning) => warning.includes("hung") && warning.includes("did not close")),
        `no warning named the session that did not close: ${JSON.stringify(warnings)}`
      )
    }))
})

describe("edges: leases come back exactly once", () => {
  it.effect("a `use` whose f throws synchronously returns its lease, on the hit path and the full path", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* McpSessionPool.make({ servers: { notebook: probe.config } })
      const boom = (): Effect.Effect<never> => {
        throw new Error("boom")
      }
      // Full path: the session does not exist yet.
      const first = yield* Effect.exit(pool.use({ server: "notebook", scope: "t" }, boom))
      assert.isTrue(Exit.isFailure(first))
      // Hit path: ready and idle.
      const second = yield* Effect.exit(pool.use({ server: "notebook", scope: "t" }, boom))
      assert.isTrue(Exit.isFailure(second))
      const [row] = yield* pool.snapshot
      assert.strictEqual(row?.leases, 0)
      // Nobody holds it, so invalidate closes it now.
      yield* pool.invalidate({ server: "notebook", scope: "t" })
      assert.strictEqual(probe.counts.releases, 1)
    }))

  it.effect("every lease comes back whether f fails, dies or is interrupted", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* McpSessionPool.make({ servers: { notebook: probe.config } })
      yield* Effect.exit(pool.use({ server: "notebook", scope: "t" }, () => Effect.fail("failed")))
      yield* Effect.exit(pool.use({ server: "notebook", scope: "t" }, () => Effect.die("died")))
      const blocked = yield* Deferred.make<void>()
      const held = yield* Effect.forkChild(
        pool.use({ server: "notebook", scope: "t" }, () =>
          Effect.andThen(Deferred.succeed(blocked, undefined), Effect.never))
      )
      yield* Deferred.await(blocked)
      yield* Fiber.interrupt(held)
      const [row] = yield* pool.snapshot
      assert.strictEqual(row?.leases, 0)
    }))
})

class CallerService extends Context.Service<CallerService, string>()("test/CallerService") {}

describe("edges: owners run in the pool's context", () => {
  it.live("the owner sees neither the caller's services, McpScope, annotations nor span; the span is linked", () =>
    Effect.gen(function*() {
      const seen = yield* Deferred.make<{
        readonly service: Option.Option<string>
        readonly scope: Option.Option<string>
        readonly annotation: unknown
        readonly parentIsCaller: boolean
        readonly linkedToCaller: boolean
      }>()
      let callerSpan: Tracer.AnySpan | undefined
      const pool = yield* McpSessionPool.make({
        servers: {
          mem: McpServerConfig.custom(() =>
            Effect.gen(function*() {
              const span = yield* Effect.currentSpan
              const annotations = yield* References.CurrentLogAnnotations
              yield* Deferred.succeed(seen, {
                service: yield* Effect.serviceOption(CallerService),
                scope: yield* Effect.serviceOption(McpScope.McpScope),
                annotation: annotations["caller"],
                parentIsCaller: Option.getOrUndefined(span.parent) === callerSpan,
                // Linked to the `McpSessionPool.get` span the caller opened (or to the caller's own span).
                linkedToCaller: span.links.some((link) =>
                  link.span === callerSpan ||
                  (link.span._tag === "Span" && Option.getOrUndefined(link.span.parent) === callerSpan)
                )
              })
              const [client, server] = InMemoryTransport.createLinkedPair()
              yield* Effect.promise(() => makeNotebookServer().connect(server))
              return client as Transport
            })
          )
        }
      })
      yield* Effect.gen(function*() {
        callerSpan = yield* Effect.currentSpan
        yield* Effect.scoped(pool.get({ server: "mem" }))
      }).pipe(
        Effect.withSpan("caller"),
        Effect.annotateLogs({ caller: "yes" }),
        Effect.provideService(CallerService, "the caller's"),
        McpScope.provide("thread-1")
      )
      const observed = yield* Deferred.await(seen).pipe(within("5 seconds", "the connect never ran"))
      assert.isTrue(Option.isNone(observed.service), "the owner saw the caller's service")
      assert.isTrue(Option.isNone(observed.scope), "the owner saw the caller's McpScope")
      assert.isUndefined(observed.annotation, "the owner saw the caller's log annotations")
      assert.isFalse(observed.parentIsCaller, "the connect span is a child of the caller's span")
      assert.isTrue(observed.linkedToCaller, "the connect span is not linked to the caller's span")
    }).pipe(Effect.withTracer(recordingTracer())))

  it.live("without a tracing backend (Effect's native tracer) neither get nor connect makes a span", () =>
    Effect.gen(function*() {
      const spanInConnect = yield* Deferred.make<Option.Option<Tracer.AnySpan>>()
      const pool = yield* McpSessionPool.make({
        servers: {
          mem: McpServerConfig.custom(() =>
            Effect.gen(function*() {
              yield* Deferred.succeed(spanInConnect, yield* Effect.option(Effect.currentParentSpan))
              const [client, server] = InMemoryTransport.createLinkedPair()
              yield* Effect.promise(() => makeNotebookServer().connect(server))
              return client as Transport
            })
          )
        }
      })
      // Every span the native tracer makes, named (it is the tracer in use here).
      const made: Array<string> = []
      const nativeTracer = Tracer.nativeTracer as { span: Tracer.Tracer["span"] }
      const nativeSpan = nativeTracer.span
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          nativeTracer.span = (options) => {
            made.push(options.name)
            return nativeSpan.call(Tracer.nativeTracer, options)
          }
        }),
        () => Effect.sync(() => (nativeTracer.span = nativeSpan))
      )
      yield* Effect.scoped(pool.get({ server: "mem", scope: "thread-1" }))
      const span = yield* Deferred.await(spanInConnect).pipe(within("5 seconds", "the connect never ran"))
      assert.isTrue(Option.isNone(span), "the connect ran in a span nobody could see")
      assert.deepStrictEqual(made.filter((name) => name.startsWith("Mcp")), [])
      // The spy sees spans: one made in the test's own code is counted.
      yield* Effect.withSpan(Effect.void, "McpTest.spy")
      assert.deepStrictEqual(made.filter((name) => name.startsWith("Mcp")), ["McpTest.spy"])
    }))

  it.live("with a tracing backend, a cold get makes a McpSessionPool.get span and a linked McpSession.connect span", () => {
    const tracer = recordingTracer()
    return Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* McpSessionPool.make({ servers: { notebook: probe.config } })
      yield* Effect.scoped(pool.get({ server: "notebook", scope: "thread-1" }))
      yield* Effect.scoped(pool.get({ server: "notebook", scope: "thread-1" })) // a hit: no span
      const names = tracer.spans.map((span) => span.name)
      assert.deepStrictEqual(names.filter((name) => name.startsWith("Mcp")), [
        "McpSessionPool.get",
        "McpSession.connect"
      ])
      const [get, connect] = tracer.spans
      assert.isTrue(connect!.links.some((link) => link.span === get), "the connect span is not linked to the get")
      assert.strictEqual(connect!.attributes.get("mcp.method.name"), "initialize")
    }).pipe(Effect.withTracer(tracer))
  })
})

/** A tracer that keeps the spans it made (in order of creation): a backend, unlike Effect's native one. */
const recordingTracer = () => {
  const spans: Array<Tracer.NativeSpan> = []
  return Object.assign(
    Tracer.make({
      span: (options) => {
        const span = new Tracer.NativeSpan(options)
        spans.push(span)
        return span
      }
    }),
    { spans }
  )
}

/** An in-memory notebook server whose client pings are held until the test releases them. */
const heldPings = Effect.gen(function*() {
  const pings = yield* Queue.unbounded<() => void>()
  let pending = 0
  /** For each tool call, how many pings were pending when the server ran it. */
  const pendingAtCall: Array<number> = []
  let sent = 0
  const config = McpServerConfig.custom(() =>
    Effect.gen(function*() {
      const [client, server] = InMemoryTransport.createLinkedPair()
      const notebook = makeNotebookServer()
      yield* Effect.promise(() => notebook.connect(server))
      const send = client.send.bind(client)
      client.send = (message: JSONRPCMessage, options) => {
        if ("method" in message && message.method === "ping") {
          sent++
          pending++
          Queue.offerUnsafe(pings, () => {
            pending--
            void send(message, options)
          })
          return Promise.resolve()
        }
        if ("method" in message && message.method === "tools/call") pendingAtCall.push(pending)
        return send(message, options)
      }
      return client
    }), { pingAfterIdle: "1 minute" })
  return { config, pings, pendingAtCall, sent: () => sent }
})

describe("edges: idle pings", () => {
  it.effect("one ping at a time: nobody gets a session whose ping is pending", () =>
    Effect.gen(function*() {
      const held = yield* heldPings
      const pool = yield* McpSessionPool.make({ servers: { s: held.config } })
      const increment = pool.callTool({ server: "s", scope: "t", name: "counter_increment" }).pipe(
        Effect.map(firstText)
      )
      assert.strictEqual(yield* increment, "1")
      yield* TestClock.adjust("2 minutes")
      // A: past pingAfterIdle, so its use pings first; it gives up while the ping is pending.
      const a = yield* Effect.forkChild(increment, { startImmediately: true })
      const releaseFirst = yield* Queue.take(held.pings)
      yield* Fiber.interrupt(a)
      // Idle again for longer than pingAfterIdle, the first ping still pending.
      yield* TestClock.adjust("2 minutes")
      // Started at once, so each has asked for its lease before the next step.
      const b = yield* Effect.forkChild(increment, { startImmediately: true })
      releaseFirst()
      const c = yield* Effect.forkChild(increment, { startImmediately: true })
      // Further pings (there should be none) are answered, so nothing hangs if the pool sends one.
      const answerPings = yield* Effect.forkChild(Effect.forever(Effect.map(Queue.take(held.pings), (f) => f())))
      const results = yield* Fiber.joinAll([b, c])
      yield* Fiber.interrupt(answerPings)
      assert.sameMembers([...results], ["2", "3"])
      assert.strictEqual(held.sent(), 1, "a second ping was started while the first was pending")
      assert.deepStrictEqual(held.pendingAtCall, [0, 0, 0], "a call ran while a ping was pending")
    }))

  it.effect("a lease that ends while its idle ping is pending still starts the idle clock (expiry is woken)", () =>
    Effect.gen(function*() {
      const held = yield* heldPings
      const pool = yield* McpSessionPool.make({ servers: { s: held.config }, idleTimeToLive: "5 minutes" })
      const session = yield* pool.use({ server: "s", scope: "t" }, (s) => Effect.succeed(s))
      yield* TestClock.adjust("2 minutes")
      // A's use needs a ping; while it is pending (A holds the lease) the expiry check finds the session leased.
      const a = yield* Effect.forkChild(pool.use({ server: "s", scope: "t" }, () => Effect.void), {
        startImmediately: true
      })
      const releasePing = yield* Queue.take(held.pings)
      yield* TestClock.adjust("4 minutes")
      // The lease ends during the ping; the healthy verdict then makes the session idle.
      yield* Fiber.interrupt(a)
      releasePing()
      // Bounded: the ping's answer crosses the in-memory transport, then the verdict makes the session idle.
      const [row] = yield* pool.snapshot.pipe(
        Effect.tap(() => Effect.yieldNow),
        Effect.repeat({ until: (rows) => rows[0]?.idleSince !== undefined, times: 1_000 })
      )
      assert.isDefined(row?.idleSince, "the healthy verdict did not make the session idle")
      yield* TestClock.adjust("10 minutes")
      assert.isFalse(isSessionCurrent(session), "the session never expired once idle")
    }))

  it.effect("idleTimeToLive: 0 never retires a leased session; it closes once its lease ends", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* McpSessionPool.make({ servers: { notebook: probe.config }, idleTimeToLive: 0 })
      const lease = yield* Scope.make()
      const session = yield* pool.get({ server: "notebook", scope: "t" }).pipe(Scope.provide(lease))
      yield* TestClock.adjust("10 minutes")
      const [row] = yield* pool.snapshot
      assert.isTrue(row?.attached, "the leased session was retired")
      assert.isTrue(isSessionCurrent(session))
      assert.strictEqual(firstText(yield* session.callTool({ name: "counter_increment" })), "1")
      // The same scope gets the same session while it is leased.
      const again = yield* Effect.scoped(
        pool.use({ server: "notebook", scope: "t" }, (s) => s.callTool({ name: "counter_increment" }))
      )
      assert.strictEqual(firstText(again), "2")
      yield* Scope.close(lease, Exit.void)
      yield* TestClock.adjust(0)
      assert.strictEqual(yield* Queue.take(probe.released), "t")
      assert.isFalse(isSessionCurrent(session))
    }))
})

describe("edges: an expiry that dies", () => {
  it.effect("a Clock whose sleep dies leaves the session served (not expiring) and closed with the pool", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const clock = yield* Clock.clockWith(Effect.succeed)
      // The app's Clock, broken for sleeping only: the owner's expiry is the first to sleep on it.
      const broken: Clock.Clock = Object.assign(Object.create(clock), { sleep: () => Effect.die("broken clock") })
      const reported = Deferred.makeUnsafe<void>()
      const logger = Logger.make(({ logLevel, message }) => {
        if (logLevel === "Warn" && String(message).includes("expiry failed")) Deferred.doneUnsafe(reported, Exit.void)
      })
      const pool = yield* McpSessionPool.make({ servers: { notebook: probe.config }, idleTimeToLive: "1 minute" })
        .pipe(Effect.provideService(Clock.Clock, broken), Effect.provide(Logger.layer([logger])))
      const session = yield* Effect.scoped(pool.get({ server: "notebook", scope: "t" }))
      yield* Deferred.await(reported).pipe(within("5 seconds", "the expiry's failure to be reported"))
      assert.strictEqual(
        firstText(yield* pool.callTool({ server: "notebook", scope: "t", name: "counter_increment" })),
        "1"
      )
      assert.isTrue(isSessionCurrent(session))
      // Its owner is alive: closeAll closes the session (a dead owner never would).
      yield* pool.closeAll
      assert.strictEqual(yield* Queue.take(probe.released).pipe(within("5 seconds", "the session to close")), "t")
      assert.deepStrictEqual(yield* pool.snapshot, [])
    }))
})

describe("edges: failed connects", () => {
  it.live("ConnectTimeout is returned once the timed-out process is gone", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "mcp-pool-edges-"))
      const pidFile = join(dir, "pid")
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const pool = yield* McpSessionPool.make({
        servers: {
          // Never answers initialize and ignores the end of stdin.
          silent: McpServerConfig.stdio({
            command: "/bin/sh",
            args: ["-c", `echo $$ > "${pidFile}"; exec sleep 600`],
            connectTimeout: "300 millis"
          })
        }
      })
      const error = yield* pool.get({ server: "silent", scope: "t" }).pipe(
        Effect.scoped,
        Effect.flip,
        within("10 seconds", "no ConnectTimeout")
      )
      assert.instanceOf(error, ConnectTimeout)
      const pid = Number(readFileSync(pidFile, "utf8").trim())
      assert.isFalse(isRunning(pid), `pid ${pid} still ran when ConnectTimeout was returned`)
    }))

  it.live("a connect waiting on another's revision probe is released when that connect is cancelled", () =>
    Effect.gen(function*() {
      const probeHeld = yield* Deferred.make<void>()
      const waiterOpened = yield* Deferred.make<void>()
      let discovers = 0
      const pool = yield* McpSessionPool.make({
        servers: {
          // A 2025-era SDK server in this process; thread a's transport never delivers its probe.
          s: McpServerConfig.custom((scope) =>
            Effect.gen(function*() {
              const [client, server] = InMemoryTransport.createLinkedPair()
              yield* Effect.promise(() => makeNotebookServer().connect(server))
              const send = client.send.bind(client)
              client.send = (message: JSONRPCMessage, options) => {
                if ("method" in message && message.method === "server/discover") {
                  discovers++
                  if (scope === "a") return Deferred.doneUnsafe(probeHeld, Exit.void), Promise.resolve()
                }
                return send(message, options)
              }
              if (scope === "b") Deferred.doneUnsafe(waiterOpened, Exit.void)
              return client as Transport
            })
          )
        },
        connectTimeout: "20 seconds"
      })
      const asker = yield* Effect.forkChild(Effect.scoped(pool.get({ server: "s", scope: "a" })))
      yield* Deferred.await(probeHeld).pipe(within("5 seconds", "thread a's probe"))
      const waiter = yield* Effect.forkChild(Effect.scoped(pool.get({ server: "s", scope: "b" })))
      yield* Deferred.await(waiterOpened).pipe(within("5 seconds", "thread b's transport"))
      // Thread a's only waiter leaves: its connect (and its probe) is cancelled.
      yield* Fiber.interrupt(asker)
      const session = yield* Fiber.join(waiter).pipe(within("10 seconds", "thread b, waiting on a's answer"))
      assert.strictEqual(session.revision, "2025-11-25")
      assert.strictEqual(discovers, 2) // b asked its own server once a's question was gone
      assert.deepStrictEqual((yield* pool.snapshot).map((row) => row.scope), ["b"])
    }))
})

describe("edges: messages", () => {
  it.effect("a protocol error says its code once", () =>
    Effect.gen(function*() {
      const pool = yield* McpSessionPool.make({
        servers: { mem: McpServerConfig.inMemory(() => makeNotebookServer()) }
      })
      const error = yield* pool.use({ server: "mem", scope: "t" }, (session) =>
        session.getPrompt({ name: "no-such-prompt" })).pipe(
          Effect.flip
        )
      assert.instanceOf(error, McpProtocolError)
      assert.strictEqual(error.message.match(/MCP error/g)?.length, 1, error.message)
    }))
})

describe("edges: per-call and per-scope input", () => {
  it.effect("a per-call timeout that is NaN or {} is a typed error, not a zero bound", () =>
    Effect.gen(function*() {
      const pool = yield* McpSessionPool.make({
        servers: { mem: McpServerConfig.inMemory(() => makeNotebookServer()) }
      })
      for (const timeout of [Number.NaN, {}]) {
        const error = yield* pool.use({ server: "mem", scope: "t" }, (session) =>
          session.callTool({ name: "counter_increment" }, { timeout: timeout as Duration.Input })).pipe(Effect.flip)
        assert.instanceOf(error, McpProtocolError)
        assert.include(error.message, "invalid request timeout")
      }
    }))

  it.live("stdio args per scope reach each thread's process (its argv in /proc)", () =>
    Effect.gen(function*() {
      const fixture = join(import.meta.dirname, "fixtures", "stdio-server.ts")
      const pool = yield* McpSessionPool.make({
        servers: {
          perThread: McpServerConfig.stdio({
            command: process.execPath,
            args: (scope) => [fixture, `--profile=/profiles/${scope}`]
          })
        }
      })
      for (const scope of ["a", "b"]) {
        const pid = yield* pool.callTool({ server: "perThread", scope, name: "pid" }).pipe(Effect.map(firstText))
        const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")
        assert.include(argv, `--profile=/profiles/${scope}`)
      }
    }))
})

describe("edges: found in review of the lock-free pool", () => {
  it.live("pool.callTool interrupted at a scheduler yield returns its lease (every point before the call)", () =>
    Effect.gen(function*() {
      const probe = yield* makeProbe()
      const pool = yield* McpSessionPool.make({ servers: { nb: probe.config } })
      const call = pool.callTool({ server: "nb", scope: "t", name: "counter_increment" })
      yield* call
      // k no-op steps before the call, yielding every 32 ops: the interrupt lands at each point in turn.
      for (let k = 0; k < 70; k++) {
        const child = yield* Effect.forkChild(
          Effect.andThen(Effect.forEach(Array.from({ length: k }), () => Effect.void, { discard: true }), call).pipe(
            Effect.provideService(Scheduler.MaxOpsBeforeYield, 32)
          ),
          { startImmediately: true }
        )
        yield* Fiber.interrupt(child)
        const [row] = yield* pool.snapshot
        assert.strictEqual(row?.leases, 0, `a lease was kept after an interrupt at step ${k}`)
      }
      yield* pool.closeScope("t")
      assert.strictEqual(probe.counts.releases, 1)
    }))

  it.live("a notification subscriber that asks the pool again while an eviction runs gets the one session", () =>
    Effect.gen(function*() {
      let connects = 0
      const pool = yield* McpSessionPool.make({
        servers: {
          nb: McpServerConfig.custom(() =>
            Effect.gen(function*() {
              connects++
              const server = makeNotebookServer()
              // Sends a notification, so the test knows when a subscriber hears the session's stream.
              server.registerTool("notify", {}, () => {
                server.sendToolListChanged()
                return { content: [] }
              })
              const [client, serverSide] = InMemoryTransport.createLinkedPair()
              yield* Effect.promise(() => server.connect(serverSide))
              return client as Transport
            })
          )
        },
        capacity: 1
      })
      const leaseA = yield* Scope.make()
      const a = yield* pool.get({ server: "nb", scope: "a" }).pipe(Scope.provide(leaseA))
      const subscribed = yield* Deferred.make<void>()
      const seen: Array<McpSession> = []
      // When a's stream ends (a is evicted to make room for b), the subscriber uses b at once.
      const subscriber = yield* Effect.forkChild(
        Effect.andThen(
          Effect.exit(Stream.runForEach(a.notifications, () => Deferred.succeed(subscribed, undefined))),
          pool.use({ server: "nb", scope: "b" }, (session) => Effect.sync(() => seen.push(session)))
        ),
        { startImmediately: true }
      )
      // Bounded handshake: a notification sent before the subscription exists is not buffered for it.
      yield* a.callTool({ name: "notify" }).pipe(
        Effect.andThen(Deferred.isDone(subscribed)),
        Effect.repeat({ until: (done) => done, times: 100 })
      )
      assert.isTrue(yield* Deferred.isDone(subscribed), "the subscriber never heard a notification")
      yield* Scope.close(leaseA, Exit.void) // a is idle now, and capacity is 1
      yield* pool.use({ server: "nb", scope: "b" }, (session) => Effect.sync(() => seen.push(session)))
      yield* Fiber.join(subscriber).pipe(within("5 seconds", "the subscriber's use of b"))
      assert.strictEqual(seen.length, 2)
      assert.strictEqual(seen[0], seen[1], "two sessions were made for one key")
      assert.strictEqual(connects, 2)
    }))

  it.live("a second closeAll (the layer's finalizer after an explicit one) waits for the sessions to close", () =>
    Effect.gen(function*() {
      let released = false
      const scope = yield* Scope.make()
      const pool = yield* McpSessionPool.make({
        servers: {
          slow: McpServerConfig.custom(() =>
            Effect.gen(function*() {
              // Closing takes a while: a second closeAll must not return before it is done.
              yield* Effect.addFinalizer(() => Effect.andThen(Effect.sleep(300), Effect.sync(() => released = true)))
              const [client, server] = InMemoryTransport.createLinkedPair()
              yield* Effect.promise(() => makeNotebookServer().connect(server))
              return client as Transport
            })
          )
        }
      }).pipe(Scope.provide(scope))
      yield* Effect.scoped(pool.get({ server: "slow", scope: "t" }))
      const first = yield* Effect.forkChild(pool.closeAll, { startImmediately: true })
      yield* Scope.close(scope, Exit.void).pipe(within("5 seconds", "the layer's closeAll"))
      assert.isTrue(released, "the second closeAll returned before the session was released")
      yield* Fiber.join(first)
    }))

  it.live("a failed connect's waiters hear of it even while a slow finalizer of the connect still runs", () =>
    Effect.gen(function*() {
      const finalizerMayEnd = yield* Deferred.make<void>()
      const pool = yield* McpSessionPool.make({
        servers: {
          silent: McpServerConfig.custom(() =>
            Effect.gen(function*() {
              yield* Effect.addFinalizer(() => Deferred.await(finalizerMayEnd))
              // A transport whose server never answers initialize.
              const [client] = InMemoryTransport.createLinkedPair()
              return client as Transport
            }), { connectTimeout: "200 millis" })
        },
        closeTimeout: "30 seconds"
      })
      const error = yield* pool.get({ server: "silent", scope: "t" }).pipe(
        Effect.scoped,
        Effect.flip,
        within("5 seconds", "ConnectTimeout while the connect's finalizer is still running")
      )
      assert.instanceOf(error, ConnectTimeout)
      yield* Deferred.succeed(finalizerMayEnd, undefined)
    }))
})
