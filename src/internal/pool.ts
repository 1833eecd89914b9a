/**
 * The pool's machinery: a pool record and the functions of it, one per arrow of the lifecycle.
 *
 * Lifecycle of one entry (one session for one (server, scope) key):
 *
 *              acquireLease                publishReady                   serve ends
 *   (no entry) ────────────▶ Connecting ──────────────▶ Ready ─────────────────────────────▶ Closing ──▶ (gone)
 *                                │                        │  retire (evict, invalidate, …),        ▲
 *                                │                        │  detachLost, expireWhenDue, closeAll   │
 *                                └── connectFailed / abandoned (last waiter gone, closeAll) ───────┘
 *
 * - One owner fiber per entry (`runOwner`), forked uninterruptibly with exactly the layer's context (one
 *   dispatcher for all the pool's fibers, `withSharedDispatcher`); it is never interrupted, only signalled.
 *   Its phases: `awaitConnected` (the connect runs in a fiber the owner forks and can abandon at the
 *   bound), then `publishReady` and `serveConnected` — `serve` (waits for the close signal,
 *   the transport's death or expiry), `startClosing` (closes the session's `Scope`, bounded) — or, for a
 *   failed or abandoned connect, `closeUnconnected`; last `ownerDone`. Acquire and release are driven by
 *   that one fiber — never by a caller's fiber, whoever asked and whoever was interrupted.
 * - Leases: every `get` counts one lease from the moment it asks (a waiter is a lease), so a session is
 *   never closed to make room while someone waits for it or uses it. `returnLease` gives it back, exactly
 *   once per lease.
 * - Attached entries are in the indexes and are what `get` finds. `detach` (evict, invalidate, closeScope,
 *   closeServer, reload, expiry, death) removes an entry from the indexes at once — the next `get` makes a
 *   fresh one — and `retire` tells its owner to close when its last lease ends. Removals check identity,
 *   so a stale owner never removes its replacement.
 * - The state lives in a `SynchronizedRef`. Every transition is synchronous code: transitions read and
 *   write the ref's cell directly and never queue on its semaphore (which under a burst of cold gets cost
 *   more than the transitions). No transition waits for an owner (owners need the state to detach
 *   themselves).
 * - Completing a `Deferred` resumes its waiters at once, inside the transition that completed it. So a
 *   transition completes its Deferreds last, once the state is consistent, and an owner takes a turn of
 *   its own (a microtask, `afterTransition`) before it acts on a close signal or a failed connect: no user
 *   code (a close, a notification subscriber that asks the pool again) runs in the middle of a transition.
 *   A successful connect is the exception: it ends in a continuation of its own connect (a promise's),
 *   never inside a transition, so the owner publishes at once.
 */
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js"
import {
  Cause,
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  Metric,
  MutableRef,
  Option,
  References,
  Schedule,
  Scheduler,
  Scope,
  SynchronizedRef,
  Tracer
} from "effect"
import { constVoid } from "effect/Function"
import { McpClientHandlers } from "../McpClientHandlers.ts"
import type { McpGetError, McpSessionError } from "../McpPoolError.ts"
import {
  ConfigError,
  ConfigIssue,
  ConnectError,
  ConnectTimeout,
  MissingScope,
  PoolClosed,
  SessionLost,
  UnknownServer
} from "../McpPoolError.ts"
import { McpScope } from "../McpScope.ts"
import type { CallToolParams, McpSession, RequestOptions } from "../McpSession.ts"
import type { CloseReason, McpSessionPoolShape, SessionInfo } from "../McpSessionPool.ts"
import type { Verdicts } from "./negotiate.ts"
import { maxTimerMillis, type ResolvedOptions, resolveServers, samePolicy, type ServerPolicy } from "./options.ts"
import { type ResolvedHandlers, resolveHandlers } from "./serverRequests.ts"
import { openSession, type SessionHandle, tracingEnabled, withTraceContext } from "./session.ts"

// =============================================================================
// Records
// =============================================================================

/** The pool: what `make` builds and every function below takes. */
interface Pool {
  readonly options: ResolvedOptions
  /** Replaced by `reload`. */
  servers: ReadonlyMap<string, ServerPolicy>
  readonly state: SynchronizedRef.SynchronizedRef<PoolState>
  /**
   * What the pool forks beside its owners (idle pings, the sessions gauge); only `closeAll` closes it, once
   * every owner has ended.
   */
  readonly ownersScope: Scope.Closeable
  /** The layer's context: owners run with exactly this, never with a caller's. */
  readonly ownerContext: Context.Context<never>
  /** Which revision each server config speaks, once a connect found out (negotiate.ts). */
  readonly verdicts: Verdicts
  /** The app's answers to server requests (`McpClientHandlers` in the layer's context), if any. */
  readonly handlers: ResolvedHandlers | undefined
}

type PoolState = Open | Closed

interface Open {
  readonly _tag: "Open"
  /**
   * server → scope → entry: the only index; `closeServer` reads one inner map, `closeScope` one entry of each
   * (servers are few: a second index by scope cost every session a Set).
   */
  readonly byServer: Map<string, Map<string, Entry>>
  /** Attached, ready, unleased entries in least-recently-used order (first = coldest). */
  readonly idle: IdleQueue
  /** Every entry whose owner still runs, attached or not: what a forced close must reach. */
  readonly live: Set<Entry>
  attachedCount: number
}

interface Closed {
  readonly _tag: "Closed"
  /** Completed once every owner has finished closing (or at the bound): what a later `closeAll` awaits. */
  readonly done: Deferred.Deferred<void>
}

interface Entry {
  readonly server: string
  readonly scope: string
  readonly policy: ServerPolicy
  readonly createdAt: number
  state: EntryState
  /** Waiters and holders. */
  leases: number
  /** Why it was detached (it is no longer what `get` finds); `undefined` while attached. Set once. */
  detachedFor: CloseReason | undefined
  idleSince: number
  /** Its slot's stamp in the idle queue while idle, else 0 (see {@link IdleQueue}). */
  idleStamp: number
  /** Tells the owner to close, once, for this reason. */
  readonly closeSignal: Deferred.Deferred<CloseReason>
  owner: Fiber.Fiber<void> | undefined
  /** The span of the `get` that created the entry: linked from the connect span, never its parent. */
  readonly requestedBy: Tracer.AnySpan | undefined
  /** Set while the expiry fiber waits for the last lease to end (the idle clock does not run while leased). */
  idleWake: Deferred.Deferred<void> | undefined
  /** The context its fibers run with, once built (`contextOf`). */
  context: Context.Context<never> | undefined
}

type EntryState = Connecting | Ready | Closing

/**
 * The idle entries in least-recently-used order, without moving anything when one is leased: an entry that
 * becomes idle is appended with a fresh stamp, and leaving idle only clears the entry's stamp. A slot whose
 * stamp is not its entry's any more (leased, detached, or idle again since) is stale: the eviction scan
 * drops it, and a compaction drops them all once they outnumber the idle entries. An ordered Set did the
 * same with a delete and an add per hit, which in a pool of 100,000 sessions cost more than the lookup
 * (hash-table cache misses); an append is sequential. A stale slot keeps its entry record (not its session,
 * which the entry drops when it closes) until the next compaction: there are never more than about as many
 * stale slots as idle entries, plus 64.
 */
interface IdleQueue {
  readonly entries: Array<Entry | undefined>
  readonly stamps: Array<number>
  /** Slots before it are dropped. */
  head: number
  /** Idle entries: slots whose stamp is their entry's. */
  size: number
  lastStamp: number
}

interface Connecting {
  readonly _tag: "Connecting"
  /** Completed by the owner: the session, or why there is none. What every waiter awaits. */
  readonly ready: Deferred.Deferred<McpSession, McpGetError>
  /**
   * Completed by the first of: the connect's end, the connect timeout, the close signal (which
   * `signalClose` forwards here while connecting). What the owner awaits: one Deferred, not a race.
   */
  readonly decided: Deferred.Deferred<Connected>
}

interface Ready {
  readonly _tag: "Ready"
  readonly handle: SessionHandle
  /** `handle.session`, kept here: a hit reads the entry and this record only. */
  readonly session: McpSession
  /** The verdict of the idle ping under way, if any: at most one per entry. */
  probing: Deferred.Deferred<boolean> | undefined
}

interface Closing {
  readonly _tag: "Closing"
  readonly reason: CloseReason
}

/** A lease just taken, and what its holder must wait for before it has a session. */
type Lease =
  | { readonly _tag: "Held"; readonly entry: Entry; readonly session: McpSession }
  | { readonly _tag: "AwaitReady"; readonly entry: Entry; readonly ready: Deferred.Deferred<McpSession, McpGetError> }
  /** An idle ping decides: `false` means the session was retired and the holder must connect afresh. */
  | { readonly _tag: "AwaitVerdict"; readonly entry: Entry; readonly verdict: Deferred.Deferred<boolean> }

const stateOf = (pool: Pool): PoolState => SynchronizedRef.getUnsafe(pool.state)

const describe = (entry: Entry): string => `MCP session "${entry.server}" (scope "${entry.scope}")`

// =============================================================================
// Metrics
// =============================================================================

const sessionsCreated = Metric.counter("mcp_pool_sessions_created", {
  description: "Sessions connected successfully",
  incremental: true
})
const connectFailures = Metric.counter("mcp_pool_connect_failures", {
  description: "Connect attempts that failed or timed out",
  incremental: true
})
const connectDuration = Metric.timer("mcp_pool_connect_duration", {
  description: "Spawn or dial plus initialize, for connects that succeeded"
})
const sessionsClosed = Metric.counter("mcp_pool_sessions_closed", {
  description: "Sessions closed, by reason",
  incremental: true
})

/**
 * Sessions by `state`: `live` (every session whose owner runs: connecting, ready or closing), `attached`
 * (the ones `get` can reach), `idle` (attached, ready, no lease) and `leased` (held by a caller). Sampled
 * once a second on the `Clock` by one fiber per pool: neither the hit path nor a connect updates a metric
 * for it (an update costs more than a hit).
 */
const sessions = Metric.gauge("mcp_pool_sessions", {
  description: "Sessions of the pool, by state (sampled every second)"
})

/** The pool's metrics, for dashboards and tests. */
export const metrics = { sessionsCreated, connectFailures, connectDuration, sessionsClosed, sessions } as const

/** The gauge's four series, made once: a metric with attributes is a lookup key of its own. */
const sessionsBy = {
  live: Metric.withAttributes(sessions, { state: "live" }),
  attached: Metric.withAttributes(sessions, { state: "attached" }),
  idle: Metric.withAttributes(sessions, { state: "idle" }),
  leased: Metric.withAttributes(sessions, { state: "leased" })
} as const

/** One sample of the gauge: the counts the state keeps, and the leases of the live sessions. */
const reportSessions = (pool: Pool) =>
  Effect.suspend(() => {
    const state = stateOf(pool)
    if (state._tag === "Closed") return Effect.void
    let leased = 0
    for (const entry of state.live) if (entry.leases > 0) leased++
    return Effect.all([
      Metric.update(sessionsBy.live, state.live.size),
      Metric.update(sessionsBy.attached, state.attachedCount),
      Metric.update(sessionsBy.idle, state.idle.size),
      Metric.update(sessionsBy.leased, leased)
    ], { discard: true })
  })

// =============================================================================
// Sessions seen from outside
// =============================================================================

/**
 * Ready sessions and their entries, for {@link isSessionCurrent}. Weak: a session the pool has closed and
 * nobody references is collected with its entry.
 */
const entryOfSession = new WeakMap<McpSession, Entry>()

/**
 * Whether `session` is still what a `get` of its key would return: its entry is attached (not detached by
 * reload, invalidate, closeScope, closeServer, eviction, expiry or death), the pool is open and the
 * transport is alive. Synchronous, for caches kept beside the pool (the toolkit's tool lists).
 */
export const isSessionCurrent = (session: McpSession): boolean => {
  const entry = entryOfSession.get(session)
  return entry !== undefined && entry.detachedFor === undefined && entry.state._tag === "Ready" &&
    !Deferred.isDoneUnsafe(entry.state.handle.lost)
}

// =============================================================================
// Transitions: synchronous, on the pool's state
// =============================================================================

const signalClose = (entry: Entry, reason: CloseReason): void => {
  if (!Deferred.doneUnsafe(entry.closeSignal, Exit.succeed(reason))) return
  // A connecting owner waits on `decided`, not on the signal. Last: it resumes the owner.
  if (entry.state._tag === "Connecting") {
    Deferred.doneUnsafe(entry.state.decided, Exit.succeed({ _tag: "Abandoned", reason }))
  }
}

/** Removes the entry from the indexes (identity-checked), once: the next `get` of its key makes a new one. */
const detach = (state: Open, entry: Entry, reason: CloseReason): void => {
  if (entry.detachedFor !== undefined) return
  entry.detachedFor = reason
  const scopes = state.byServer.get(entry.server)
  if (scopes?.get(entry.scope) === entry) {
    scopes.delete(entry.scope)
    if (scopes.size === 0) state.byServer.delete(entry.server)
  }
  leaveIdle(state.idle, entry)
  state.attachedCount--
}

/**
 * Ready → Closing on the transport's death: detached at once (no `get` finds a dead session, so a hit
 * need not look at the transport) and its owner told to close, leased or not.
 */
const detachLost = (pool: Pool, entry: Entry): void => {
  const state = stateOf(pool)
  if (state._tag === "Open") detach(state, entry, "lost")
  signalClose(entry, "lost")
}

/** Detaches, and closes now if nobody holds it; otherwise the last lease closes it. */
const retire = (state: Open, entry: Entry, reason: CloseReason): void => {
  detach(state, entry, reason)
  if (entry.leases === 0) signalClose(entry, entry.detachedFor ?? reason)
}

const makeIdleQueue = (): IdleQueue => ({ entries: [], stamps: [], head: 0, size: 0, lastStamp: 0 })

/** Appends an entry that became idle: now the most recently used. */
const enqueueIdle = (idle: IdleQueue, entry: Entry): void => {
  if (entry.idleStamp !== 0) return
  entry.idleStamp = ++idle.lastStamp
  idle.entries.push(entry)
  idle.stamps.push(entry.idleStamp)
  idle.size++
  // Dropped and stale slots at most about as many as the idle entries: amortized O(1) per append.
  if (idle.entries.length > 2 * idle.size + 64) compactIdle(idle)
}

/** The entry is idle no more (leased or detached); its slot goes stale. */
const leaveIdle = (idle: IdleQueue, entry: Entry): void => {
  if (entry.idleStamp === 0) return
  entry.idleStamp = 0
  idle.size--
  // Here too: after many idle sessions are retired at once and none becomes idle, stale slots would keep
  // their entries. Amortized O(1): a compaction leaves at most `size` slots.
  if (idle.entries.length > 2 * idle.size + 64) compactIdle(idle)
}

/** Takes the coldest idle entry out of the queue; `undefined` when none is idle. */
const takeColdest = (idle: IdleQueue): Entry | undefined => {
  const { entries, stamps } = idle
  while (idle.head < entries.length) {
    const entry = entries[idle.head]
    const stamp = stamps[idle.head]
    entries[idle.head++] = undefined
    if (entry !== undefined && entry.idleStamp === stamp) {
      leaveIdle(idle, entry)
      return entry
    }
  }
  return undefined
}

/** Drops the stale and dropped slots, keeping the order. */
const compactIdle = (idle: IdleQueue): void => {
  const { entries, stamps } = idle
  let kept = 0
  for (let slot = idle.head; slot < entries.length; slot++) {
    const entry = entries[slot]
    if (entry === undefined || entry.idleStamp !== stamps[slot]) continue
    entries[kept] = entry
    stamps[kept++] = stamps[slot]!
  }
  entries.length = kept
  stamps.length = kept
  idle.head = 0
}

/** Evicts idle sessions, coldest first, while over capacity. Connecting or leased ones are never evicted. */
const trim = (pool: Pool, state: Open, room: number): void => {
  while (state.attachedCount + room > pool.options.capacity) {
    const victim = takeColdest(state.idle)
    if (victim === undefined) return
    retire(state, victim, "evicted")
  }
}

const takeLease = (state: Open, entry: Entry): void => {
  entry.leases++
  leaveIdle(state.idle, entry)
}

/**
 * Ready → idle: the idle clock starts now. Wakes the expiry fiber if it waited for the last lease to end,
 * and trims, as the pool may be over capacity. Completes its Deferred last (see the header).
 */
const becomeIdle = (pool: Pool, state: Open, entry: Entry, now: number): void => {
  entry.idleSince = now
  enqueueIdle(state.idle, entry)
  trim(pool, state, 0)
  const wake = entry.idleWake
  entry.idleWake = undefined
  if (wake !== undefined) Deferred.doneUnsafe(wake, Exit.void)
}

/** Whether an idle ping is due before the entry may be handed out. */
const isPingDue = (entry: Entry, now: number): boolean => {
  const { pingAfterIdle } = entry.policy
  return pingAfterIdle !== undefined && entry.leases === 0 && now - entry.idleSince >= Duration.toMillis(pingAfterIdle)
}

/** Gives a lease back, exactly once per lease taken. */
const returnLease = (pool: Pool, entry: Entry, now: number): void => {
  entry.leases--
  if (entry.leases > 0) return
  const state = stateOf(pool)
  if (state._tag === "Closed" || entry.detachedFor !== undefined) {
    signalClose(entry, entry.detachedFor ?? "released")
  } else if (entry.state._tag === "Connecting") {
    // The last waiter gave up: cancel the connect rather than keep a session nobody asked for.
    retire(state, entry, "cancelled")
  } else if (entry.state._tag === "Ready" && entry.state.probing === undefined) {
    becomeIdle(pool, state, entry, now)
  }
  // Ready with a ping under way: never idle (so never evicted) until the ping's verdict puts it there.
}

const releaseLease = (pool: Pool, entry: Entry) =>
  Effect.clockWith((clock) => Effect.sync(() => returnLease(pool, entry, clock.currentTimeMillisUnsafe())))

/**
 * The attached entry for (server, scope) if it can be leased at once, without waiting: ready, no idle ping
 * under way or due. Alive: a dead one is detached at its death (`detachLost`).
 */
const readyEntry = (state: Open, server: string, scope: string, clock: Clock.Clock): Entry | undefined => {
  const entry = state.byServer.get(server)?.get(scope)
  if (entry === undefined || entry.state._tag !== "Ready" || entry.state.probing !== undefined) return undefined
  // The clock only for a server that pings idle sessions: a hit reads it once, when it gives the lease back.
  if (entry.policy.pingAfterIdle === undefined) return entry
  return isPingDue(entry, clock.currentTimeMillisUnsafe()) ? undefined : entry
}

/** The attached entries of one scope, one per server at most. */
const entriesOfScope = (state: Open, scope: string): Array<Entry> => {
  const entries: Array<Entry> = []
  for (const scopes of state.byServer.values()) {
    const entry = scopes.get(scope)
    if (entry !== undefined) entries.push(entry)
  }
  return entries
}

/** Registers a new entry in the indexes; its owner is forked by the caller once the state is consistent. */
const attachNew = (
  state: Open,
  server: string,
  scope: string,
  policy: ServerPolicy,
  now: number,
  ready: Deferred.Deferred<McpSession, McpGetError>,
  requestedBy: Tracer.AnySpan | undefined
): Entry => {
  const entry: Entry = {
    server,
    scope,
    policy,
    createdAt: now,
    state: { _tag: "Connecting", ready, decided: Deferred.makeUnsafe() },
    leases: 1,
    detachedFor: undefined,
    idleSince: now,
    idleStamp: 0,
    closeSignal: Deferred.makeUnsafe(),
    owner: undefined,
    requestedBy,
    idleWake: undefined,
    context: undefined
  }
  let scopes = state.byServer.get(server)
  if (scopes === undefined) state.byServer.set(server, scopes = new Map())
  scopes.set(scope, entry)
  state.attachedCount++
  state.live.add(entry)
  return entry
}

// =============================================================================
// The owner fiber
// =============================================================================

/**
 * The context an entry's fibers run with: exactly the layer's (not merged with a caller's), its logs
 * annotated with the entry's key. Built once per entry, for all of its fibers (owner, connect, pings).
 */
const contextOf = (pool: Pool, entry: Entry): Context.Context<never> => {
  if (entry.context !== undefined) return entry.context
  const annotations = Context.get(pool.ownerContext, References.CurrentLogAnnotations)
  return entry.context = Context.add(pool.ownerContext, References.CurrentLogAnnotations, {
    ...annotations,
    "mcp.server": entry.server,
    "mcp.scope": entry.scope
  })
}

/** Runs `effect` in a fiber of its own with the entry's context ({@link contextOf}). */
const forkForEntry = <A, E>(
  pool: Pool,
  entry: Entry,
  effect: Effect.Effect<A, E>,
  options?: { readonly uninterruptible: boolean }
) => Effect.runForkWith(contextOf(pool, entry))(effect, options)

/**
 * A turn of the owner's own after a signal that a transition may have sent (a Deferred resumes its waiters
 * inside the code that completes it): a microtask, so the owner acts right after that transition, not
 * after a turn of the event loop, which an app driving in-memory servers back to back may not give for a
 * long time (its evicted sessions, or cancelled connects, would wait open meanwhile).
 */
const afterTransition: Effect.Effect<void> = Effect.callback<void>((resume) => {
  queueMicrotask(() => resume(Effect.void))
})

/** The `Clock` a fiber has when nobody provided one (a Reference's default, made once). */
const defaultClock = Context.get(Context.empty(), Clock.Clock)

/**
 * Spawn or dial plus initialize, in the session's scope. Unbounded here: `awaitConnected` bounds it.
 * `traced`: whether a tracing backend is installed (the owner's context is the attempt's).
 */
const connect = (pool: Pool, entry: Entry, sessionScope: Scope.Scope, traced: boolean) =>
  openSession({
    server: entry.server,
    scope: entry.scope,
    policy: entry.policy,
    clientInfo: pool.options.clientInfo,
    verdicts: pool.verdicts,
    handlers: pool.handlers,
    runContext: pool.ownerContext,
    // Once serving, the transport's death is one more reason to close: the owner serves until one signal.
    // (While connecting, a dead transport fails the connect itself.)
    onLost: () => {
      if (entry.state._tag === "Ready") detachLost(pool, entry)
    }
  }).pipe(
    Scope.provide(sessionScope),
    (opening) =>
      traced
        // No stack trace: it would point here, not at the caller, and capturing one costs more than the span.
        ? Effect.withSpan(opening, "McpSession.connect", {
          attributes: { "mcp.server": entry.server, "mcp.scope": entry.scope },
          links: entry.requestedBy === undefined ? [] : [{ span: entry.requestedBy, attributes: {} }],
          captureStackTrace: false
        })
        : opening
  )

type Connected =
  | { readonly _tag: "Connected"; readonly handle: SessionHandle }
  | { readonly _tag: "Failed"; readonly error: McpGetError }
  /** The close signal came first (last waiter gone, closeAll, …). */
  | { readonly _tag: "Abandoned"; readonly reason: CloseReason }

/** What a connect attempt's end decides. */
const connectedOf = (entry: Entry, exit: Exit.Exit<SessionHandle, McpGetError>): Connected => {
  if (Exit.isSuccess(exit)) return { _tag: "Connected", handle: exit.value }
  const error = Cause.findErrorOption(exit.cause)
  return error._tag === "Some"
    ? { _tag: "Failed", error: error.value }
    : {
      _tag: "Failed",
      error: new ConnectError({
        server: entry.server,
        scope: entry.scope,
        reason: "unexpected defect",
        cause: Cause.squash(exit.cause)
      })
    }
}

/**
 * Owner, connect phase. The connect runs in a fiber of its own (`attempt`) and the owner waits for the
 * first of: its end, the close signal, the connect timeout — all three complete the entry's `decided`
 * (the attempt through an observer, the timeout from a timer, the signal through `signalClose`), so
 * the owner waits on one Deferred. Waiting is all the owner does, so user code stuck in an uninterruptible
 * step (a custom connect's `acquireRelease` whose promise never settles) cannot hold the bound: the
 * attempt is interrupted without waiting for it (`timeout` and `raceFirst` would wait), and what it opened
 * is released when the owner closes the session scope, or as soon as it registers its finalizer there.
 */
const awaitConnected = (
  pool: Pool,
  entry: Entry,
  decided: Deferred.Deferred<Connected>,
  attempt: Fiber.Fiber<SessionHandle, McpGetError>,
  clock: Clock.Clock
): Effect.Effect<Connected> => {
  attempt.addObserver((exit) => {
    if (!Deferred.isDoneUnsafe(decided)) Deferred.doneUnsafe(decided, Exit.succeed(connectedOf(entry, exit)))
  })
  const { connectTimeout } = entry.policy
  const timeoutMillis = Duration.toMillis(connectTimeout)
  // Built only if the timeout wins: an error captures a stack, which costs more than the rest of a get.
  const timedOut = () => {
    if (Deferred.isDoneUnsafe(decided)) return
    const error = new ConnectTimeout({ server: entry.server, scope: entry.scope, timeoutMillis })
    Deferred.doneUnsafe(decided, Exit.succeed<Connected>({ _tag: "Failed", error }))
  }
  let disarm = constVoid
  if (timeoutMillis !== Infinity) {
    if (clock === defaultClock && timeoutMillis <= maxTimerMillis) {
      // On the default clock, a plain timer: what its `sleep` would set, without a fiber to run it in.
      const timer = setTimeout(timedOut, timeoutMillis)
      disarm = () => clearTimeout(timer)
    } else {
      // Another clock (a TestClock): its own sleep, in a timer fiber.
      const timer = forkForEntry(pool, entry, Effect.andThen(clock.sleep(connectTimeout), Effect.sync(timedOut)))
      disarm = () => timer.interruptUnsafe()
    }
  }
  // One step while the connect is under way (what thousands of connects at once each hold). A Connected
  // outcome comes from the attempt's end, in a continuation of its connect, never inside a transition: the
  // owner publishes at once. A turn of its own there would keep every connect of a burst in flight until
  // the whole wave has answered (and the collector copying what each holds). Any other outcome may come
  // from inside a transition: the close signal, or a connect that failed before its first asynchronous
  // step (a config function that throws), inside the `get` that forked the owner and is still leasing.
  // Then the owner acts from a turn of its own (see the header).
  return Effect.flatMap(Deferred.await(decided), (outcome): Effect.Effect<Connected> => {
    disarm()
    return outcome._tag === "Connected" ? Effect.succeed(outcome) : Effect.as(afterTransition, outcome)
  })
}

/** Owner: Connecting → Ready. A connect that beat closeAll by a hair must not hand out a closed pool's session. */
const publishReady = (
  pool: Pool,
  entry: Entry,
  ready: Deferred.Deferred<McpSession, McpGetError>,
  handle: SessionHandle,
  now: number
): void => {
  entry.state = { _tag: "Ready", handle, session: handle.session, probing: undefined }
  entryOfSession.set(handle.session, entry)
  // Died between the connect and now, before `onLost` could tell: never handed out to a later `get`.
  if (Deferred.isDoneUnsafe(handle.lost)) detachLost(pool, entry)
  const state = stateOf(pool)
  if (state._tag === "Open") {
    // Several keys may finish at once while others sit idle: trim after each (becomeIdle trims too).
    if (entry.detachedFor === undefined && entry.leases === 0) becomeIdle(pool, state, entry, now)
    else trim(pool, state, 0)
  }
  Deferred.doneUnsafe(
    ready,
    state._tag === "Closed"
      ? Exit.fail(new PoolClosed({ server: entry.server, scope: entry.scope }))
      : Exit.succeed(handle.session)
  )
}

/**
 * Retires the entry when its idle time-to-live or maximum lifetime runs out, on the `Clock` (so
 * `TestClock` drives it). Wakes at the nearest deadline and re-reads the entry: leases may have come and
 * gone meanwhile. The idle clock does not run while the entry is leased: then it waits for the last lease
 * to end (or the lifetime). Never completes by itself; retiring signals the owner's close.
 */
const expireWhenDue = (pool: Pool, entry: Entry): Effect.Effect<never> => {
  const { idleTimeToLive, maxLifetime } = entry.policy
  const lifetimeEnds = maxLifetime === undefined ? Infinity : entry.createdAt + Duration.toMillis(maxLifetime)
  const nextWait = Effect.clockWith((clock): Effect.Effect<void> => {
    const now = clock.currentTimeMillisUnsafe()
    const state = stateOf(pool)
    if (state._tag === "Closed" || entry.detachedFor !== undefined) return Effect.never
    const idleEnds = idleTimeToLive === undefined || entry.leases > 0
      ? Infinity
      : entry.idleSince + Duration.toMillis(idleTimeToLive)
    if (now >= lifetimeEnds || now >= idleEnds) {
      retire(state, entry, "expired")
      return Effect.never
    }
    const nearest = Math.min(lifetimeEnds, idleEnds)
    const sleep = nearest === Infinity ? Effect.never : Effect.sleep(nearest - now)
    if (idleTimeToLive === undefined || entry.leases === 0) return sleep
    const wake = entry.idleWake ??= Deferred.makeUnsafe<void>()
    return Effect.raceFirst(Deferred.await(wake), sleep)
  })
  return Effect.forever(nextWait)
}

/**
 * Owner, serve phase: waits for the close signal (a retire, closeAll, or the transport's death, which the
 * session reports as `lost`) or expiry; says which. One Deferred, not a race: no fibers held per session.
 */
const serve = (pool: Pool, entry: Entry): Effect.Effect<CloseReason> => {
  const closed = Deferred.await(entry.closeSignal)
  const expires = entry.policy.idleTimeToLive !== undefined || entry.policy.maxLifetime !== undefined
  if (!expires) return closed
  // An expiry that dies (a Clock of the app's whose sleep fails) must not take the owner with it: the
  // session would never be closed. It is served on without expiry, and said so.
  const expiry = Effect.catchCause(
    expireWhenDue(pool, entry),
    (cause) =>
      Effect.andThen(Effect.logWarning("MCP session: its expiry failed; it no longer expires", cause), Effect.never)
  )
  return Effect.raceFirst(closed, expiry)
}

/**
 * Owner, close phase: closes the session's scope in a fiber of its own. Finalizers (and a transport's
 * close) cannot be interrupted, so a timeout around them would wait anyway: the owner waits for this fiber
 * instead, bounded. Started at once: under churn a queued close would wait behind new work and closes
 * would pile up.
 */
const startClosing = (
  sessionScope: Scope.Closeable,
  terminate: Effect.Effect<void>,
  exit: Exit.Exit<unknown, unknown>
) => Effect.forkDetach(Effect.andThen(terminate, Scope.close(sessionScope, exit)), { startImmediately: true })

/** Waits for `fiber` until `deadline` (on the Clock); says whether it ended. */
const awaitUntil = (fiber: Fiber.Fiber<unknown, unknown>, deadline: number) =>
  Effect.flatMap(
    Clock.currentTimeMillis,
    (now) =>
      Effect.map(
        Effect.timeoutOption(Fiber.await(fiber), Math.max(0, deadline - now)),
        (ended) => ended._tag === "Some"
      )
  )

/**
 * How long the waiters of a failed connect wait for what it opened to be gone before they hear of the
 * failure anyway: a killed process is gone in milliseconds, a user's slow finalizer must not hold the
 * connect bound.
 */
const failureNoticeMillis = 1_000

const warnNotClosed = (pool: Pool, entry: Entry) =>
  Effect.logWarning(`${describe(entry)} did not close within ${Duration.format(pool.options.closeTimeout)}`)

/**
 * The owner: runs uninterruptibly, and nothing interrupts it (closeAll signals it like any other close, and
 * waits for it). User code (connect, transport close) runs in fibers the owner forks, so the owner always
 * reaches its end.
 * Phases: `awaitConnected`, then `publishReady` and `serveConnected` (serve, close) or `closeUnconnected`,
 * each ending in `ownerDone`. Each phase is a function of its own, so that a session being served does not
 * keep what only its connect needed (the attempt fiber, `decided`) alive.
 */
const runOwner = (pool: Pool, entry: Entry): Effect.Effect<void> =>
  Effect.withFiber((owner) => {
    const clock = owner.getRef(Clock.Clock)
    const sessionScope = Scope.makeUnsafe()
    const connectStarted = clock.currentTimeMillisUnsafe()
    const { decided, ready } = entry.state as Connecting
    const attempt = forkForEntry(pool, entry, connect(pool, entry, sessionScope, tracingEnabled(owner)))
    return Effect.flatMap(awaitConnected(pool, entry, decided, attempt, clock), (outcome) => {
      if (outcome._tag !== "Connected") return closeUnconnected(pool, entry, ready, sessionScope, attempt, outcome)
      const now = clock.currentTimeMillisUnsafe()
      // The metrics' own update, without an Effect each: this runs once per connect of a burst.
      sessionsCreated.updateUnsafe(1, owner.context)
      connectDuration.updateUnsafe(Duration.millis(now - connectStarted), owner.context)
      return Effect.andThen(
        Effect.logDebug("MCP session ready"),
        Effect.suspend(() => {
          publishReady(pool, entry, ready, outcome.handle, clock.currentTimeMillisUnsafe())
          return serveConnected(pool, entry, sessionScope, outcome.handle)
        })
      )
    })
  })

/**
 * Owner: Ready → Closing → done, for a published session. The close phase is a function of its own: a
 * generator suspended in `serve` would keep its frame alive for the session's whole life.
 */
const serveConnected = (
  pool: Pool,
  entry: Entry,
  sessionScope: Scope.Closeable,
  handle: SessionHandle
): Effect.Effect<void> =>
  Effect.flatMap(serve(pool, entry), (reason) => closeServed(pool, entry, sessionScope, handle, reason))

/** Owner, close phase of a published session. */
const closeServed = (
  pool: Pool,
  entry: Entry,
  sessionScope: Scope.Closeable,
  handle: SessionHandle,
  reason: CloseReason
): Effect.Effect<void> =>
  Effect.gen(function*() {
    yield* afterTransition
    // Detached already, by `detachLost`.
    if (reason === "lost") yield* Effect.logWarning("MCP session lost: its transport closed")
    entry.state = { _tag: "Closing", reason }
    const closeBy = (yield* Clock.currentTimeMillis) + Duration.toMillis(pool.options.closeTimeout)
    const terminated = reason === "pool-closed"
      ? new PoolClosed({ server: entry.server, scope: entry.scope })
      : new SessionLost({ server: entry.server, scope: entry.scope, reason: `the session was closed (${reason})` })
    const closing = yield* startClosing(sessionScope, handle.terminate(terminated), Exit.void)
    if (!(yield* awaitUntil(closing, closeBy))) {
      yield* warnNotClosed(pool, entry)
    }
    yield* ownerDone(pool, entry, reason)
  })

/** Owner: Connecting → Closing → done, for a connect that failed or was abandoned. */
const closeUnconnected = (
  pool: Pool,
  entry: Entry,
  ready: Deferred.Deferred<McpSession, McpGetError>,
  sessionScope: Scope.Closeable,
  attempt: Fiber.Fiber<SessionHandle, McpGetError>,
  outcome: Exclude<Connected, { readonly _tag: "Connected" }>
): Effect.Effect<void> =>
  Effect.gen(function*() {
    attempt.interruptUnsafe()
    const failure: McpGetError = outcome._tag === "Failed"
      ? outcome.error
      : new PoolClosed({ server: entry.server, scope: entry.scope })
    const reason: CloseReason = outcome._tag === "Abandoned" ? outcome.reason : "failed"
    if (reason === "failed") {
      yield* Metric.update(connectFailures, 1)
      yield* Effect.logDebug("MCP connect failed", failure.message)
    }
    // Detached at once: the next `get` must try again, never see this failure cached.
    const state = stateOf(pool)
    if (state._tag === "Open") detach(state, entry, reason)
    entry.state = { _tag: "Closing", reason }
    // A session that never served has nothing to flush: the failure exit tells the transport to kill at
    // once. Its waiters hear of the failure once what it opened is gone, or after failureNoticeMillis.
    // One deadline for the whole close: closeAll's bound is closeTimeout + 1 s.
    const now = yield* Clock.currentTimeMillis
    const closeBy = now + Duration.toMillis(pool.options.closeTimeout)
    const closing = yield* startClosing(sessionScope, Effect.void, Exit.fail(failure))
    const closedInTime = yield* awaitUntil(closing, Math.min(closeBy, now + failureNoticeMillis))
    Deferred.doneUnsafe(ready, Exit.fail(failure))
    if (!closedInTime && !(yield* awaitUntil(closing, closeBy))) {
      yield* warnNotClosed(pool, entry)
    }
    // The interrupted attempt may be stuck where it cannot be interrupted: say so rather than hide it.
    if (!(yield* awaitUntil(attempt, closeBy))) {
      yield* Effect.logWarning(
        `${describe(entry)}: its connect did not stop within ${
          Duration.format(pool.options.closeTimeout)
        } of being abandoned (stuck in an uninterruptible step?); what it opens later is released at once`
      )
    }
    yield* ownerDone(pool, entry, reason)
  })

/** Owner, last: the close counted and logged, the entry no longer live. */
const ownerDone = (pool: Pool, entry: Entry, reason: CloseReason): Effect.Effect<void> =>
  Effect.gen(function*() {
    yield* Metric.update(Metric.withAttributes(sessionsClosed, { reason }), 1)
    yield* Effect.logDebug(`MCP session closed (${reason})`)
    const state = stateOf(pool)
    if (state._tag === "Open") state.live.delete(entry)
  })

/**
 * Pings a session that sat idle too long, in a fiber of its own so that no waiter's interruption can leave
 * the others without a verdict. A failed ping retires the session.
 */
const probeIdle = (pool: Pool, entry: Entry, ready: Ready, verdict: Deferred.Deferred<boolean>) =>
  ready.handle.session.ping({ timeout: entry.policy.connectTimeout }).pipe(
    Effect.as(true),
    Effect.catch((error) =>
      Effect.as(
        Effect.andThen(
          Effect.logWarning(`MCP session failed its idle ping (${error._tag}); the next use reconnects`),
          Effect.sync(() => {
            const state = stateOf(pool)
            if (state._tag === "Open") retire(state, entry, "ping-failed")
          })
        ),
        false
      )
    ),
    Effect.onExit((exit) =>
      Effect.clockWith((clock) =>
        Effect.sync(() => {
          if (ready.probing === verdict) ready.probing = undefined
          const healthy = Exit.isSuccess(exit) && exit.value
          const state = stateOf(pool)
          // Every waiter gave up meanwhile: idle from now (it was kept out of the idle queue while pinged).
          if (healthy && state._tag === "Open" && entry.detachedFor === undefined && entry.leases === 0) {
            becomeIdle(pool, state, entry, clock.currentTimeMillisUnsafe())
          }
          Deferred.doneUnsafe(verdict, Exit.succeed(healthy))
        })
      )
    )
  )

// =============================================================================
// Leases
// =============================================================================

/**
 * Lease: takes a lease on the entry for (server, scope), creating the entry (Connecting, and its owner) if
 * missing, or starting an idle ping if one is due.
 */
const acquireLease = (
  pool: Pool,
  server: string,
  scope: string,
  fiber: Fiber.Fiber<unknown, unknown>,
  requestedBy: Tracer.AnySpan | undefined
): Lease | UnknownServer | PoolClosed => {
  const state = stateOf(pool)
  if (state._tag === "Closed") return new PoolClosed({ server, scope })
  const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
  const existing = state.byServer.get(server)?.get(scope)
  // A session known to be dead is never handed out, even before its owner has detached it.
  if (existing?.state._tag === "Ready" && Deferred.isDoneUnsafe(existing.state.handle.lost)) {
    retire(state, existing, "lost")
  } else if (existing !== undefined) {
    const current = existing.state
    if (current._tag === "Connecting") {
      takeLease(state, existing)
      return { _tag: "AwaitReady", entry: existing, ready: current.ready }
    }
    if (current._tag === "Ready") {
      // Whoever arrives while a ping is under way waits for its verdict, however long it has been idle
      // since: one ping (and one verdict) at a time.
      if (current.probing !== undefined) {
        takeLease(state, existing)
        return { _tag: "AwaitVerdict", entry: existing, verdict: current.probing }
      }
      const pingDue = isPingDue(existing, now)
      takeLease(state, existing)
      if (!pingDue) return { _tag: "Held", entry: existing, session: current.handle.session }
      const verdict = Deferred.makeUnsafe<boolean>()
      current.probing = verdict
      Fiber.runIn(
        forkForEntry(pool, existing, probeIdle(pool, existing, current, verdict), { uninterruptible: true }),
        pool.ownersScope
      )
      return { _tag: "AwaitVerdict", entry: existing, verdict }
    }
  }
  const policy = pool.servers.get(server)
  if (policy === undefined) return new UnknownServer({ server, scope, known: Array.from(pool.servers.keys()) })
  const ready = Deferred.makeUnsafe<McpSession, McpGetError>()
  const entry = attachNew(
    state,
    server,
    scope,
    policy,
    now,
    ready,
    requestedBy
  )
  // Forked with the state consistent: the owner starts running at once (until its first wait). Not in the
  // owners scope: `closeAll` waits for every owner (`live`) before it closes that scope, so the scope would
  // never interrupt one, and registering each cost a finalizer and an observer per session.
  entry.owner = forkForEntry(pool, entry, runOwner(pool, entry), { uninterruptible: true })
  // Room for the new entry last: evicting signals owners. The new entry is not idle, so never the victim.
  trim(pool, state, 0)
  return { _tag: "AwaitReady", entry, ready }
}

const isLease = (taken: Lease | UnknownServer | PoolClosed): taken is Lease =>
  taken._tag === "Held" || taken._tag === "AwaitReady" || taken._tag === "AwaitVerdict"

/** The session a lease leads to once ready; `undefined` if its idle ping failed (connect afresh). */
const awaitSession = (lease: Lease): Effect.Effect<McpSession | undefined, McpGetError> => {
  switch (lease._tag) {
    case "Held":
      return Effect.succeed(lease.session)
    case "AwaitReady":
      return Deferred.await(lease.ready)
    case "AwaitVerdict":
      return Effect.map(Deferred.await(lease.verdict), (healthy) => {
        const { state } = lease.entry
        return healthy && state._tag === "Ready" ? state.handle.session : undefined
      })
  }
}

/** The scope a call names, else the caller's `McpScope`; never a shared default. */
const scopeOf = (fiber: Fiber.Fiber<unknown, unknown>, scope: string | undefined): string | undefined =>
  scope ?? Context.getOrUndefined(fiber.context, McpScope)

/**
 * Lease + wait for the session (the full path). The lease bookkeeping is uninterruptible; the waits are
 * interruptible even inside `acquireUseRelease`'s acquire. On failure or interruption of the wait the lease
 * is returned at once, so the last waiter leaving a connecting entry cancels its connect.
 */
const acquireSession = (
  pool: Pool,
  server: string,
  scope: string | undefined,
  span?: Tracer.AnySpan
): Effect.Effect<readonly [Entry, McpSession], McpGetError> =>
  Effect.uninterruptible(Effect.withFiber((fiber) => {
    const key = scopeOf(fiber, scope)
    if (key === undefined) return Effect.fail(new MissingScope({ server }))
    // The connect span links to the `get` span, else to the caller's own.
    const requestedBy = span ?? Context.getOrUndefined(fiber.context, Tracer.ParentSpan)
    const taken = acquireLease(pool, server, key, fiber, requestedBy)
    if (!isLease(taken)) return Effect.fail(taken)
    const { entry } = taken
    return Effect.onExit(
      Effect.interruptible(awaitSession(taken)),
      (exit) => Exit.isSuccess(exit) ? Effect.void : releaseLease(pool, entry)
    ).pipe(
      Effect.flatMap((session) =>
        session === undefined
          // The idle session failed its ping and was retired: connect afresh.
          ? Effect.andThen(releaseLease(pool, entry), acquireSession(pool, server, key, span))
          : Effect.succeed([entry, session] as const)
      )
    )
  }))

/**
 * The hit path's lease, taken synchronously, or `undefined` (then the full path decides). `direct`: only
 * on a session whose calls can start at once (no limit on calls in flight).
 */
const leaseReadyUnsafe = (
  pool: Pool,
  fiber: Fiber.Fiber<unknown, unknown>,
  clock: Clock.Clock,
  server: string,
  scope: string | undefined,
  direct = false
): Entry | undefined => {
  const state = stateOf(pool)
  if (state._tag === "Closed") return undefined
  const key = scopeOf(fiber, scope)
  if (key === undefined) return undefined
  const entry = readyEntry(state, server, key, clock)
  if (entry === undefined || (direct && (entry.state as Ready).handle.startCallTool === undefined)) return undefined
  takeLease(state, entry)
  return entry
}

const sessionOf = (entry: Entry): McpSession => (entry.state as Ready).session

const noStack = () => undefined

const getStackFrame = (parent: References.StackFrame | undefined): References.StackFrame => ({
  name: "McpSessionPool.get",
  stack: noStack,
  parent
})

const get = (pool: Pool, server: string, scope?: string): Effect.Effect<McpSession, McpGetError, Scope.Scope> =>
  Effect.uninterruptible(Effect.withFiber((fiber) => {
    // Hit: no span (it would cost more than the lease); the full path has one.
    const hit = leaseReadyUnsafe(pool, fiber, fiber.getRef(Clock.Clock), server, scope)
    if (hit !== undefined) return Effect.as(Effect.addFinalizer(() => releaseLease(pool, hit)), sessionOf(hit))
    // The stack frame, so that a failed get still reads "at McpSessionPool.get".
    const leased = (span: Tracer.AnySpan | undefined) =>
      Effect.flatMap(
        acquireSession(pool, server, scope, span),
        ([entry, session]) => Effect.as(Effect.addFinalizer(() => releaseLease(pool, entry)), session)
      ).pipe(Effect.updateService(References.CurrentStackFrame, getStackFrame))
    // No tracing backend: no span (nobody would see it). Else one, not made the current one (`withSpan`
    // would): nothing in the wait opens spans or logs, and the connect span links to it explicitly.
    return tracingEnabled(fiber)
      ? Effect.useSpan(
        "McpSessionPool.get",
        { attributes: { "mcp.server": server, "mcp.scope": scopeOf(fiber, scope) ?? "" } },
        leased
      )
      : leased(undefined)
  }))

const use = <A, E, R>(
  pool: Pool,
  server: string,
  scope: string | undefined,
  f: (session: McpSession) => Effect.Effect<A, E, R>
): Effect.Effect<A, E | McpGetError, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.withFiber((fiber) => {
      const clock = fiber.getRef(Clock.Clock)
      const hit = leaseReadyUnsafe(pool, fiber, clock, server, scope)
      if (hit === undefined) {
        return restore(Effect.acquireUseRelease(
          acquireSession(pool, server, scope),
          ([, session]) => Effect.suspend(() => f(session)),
          ([entry]) => releaseLease(pool, entry)
        ))
      }
      // Suspended: a synchronous throw in `f` must still return the lease.
      return Effect.onExit(restore(Effect.suspend(() => f(sessionOf(hit)))), () => {
        returnLease(pool, hit, clock.currentTimeMillisUnsafe())
        return Effect.void
      })
    })
  )

/**
 * `tools/call` on the hit path as one async step: the lease is taken when it registers and returned exactly
 * once when the call settles — an interruption aborts the request (the server is told) and so settles it.
 * Anything else (a miss, a session that limits calls in flight) takes the full path.
 */
const callTool = (
  pool: Pool,
  server: string,
  scope: string | undefined,
  params: CallToolParams,
  requestOptions: RequestOptions | undefined
): Effect.Effect<CallToolResult, McpGetError | McpSessionError> =>
  Effect.withFiber((fiber) =>
    // No signal from Effect (it would make an AbortController per call): the session aborts its own request.
    Effect.callback<CallToolResult, McpGetError | McpSessionError>((resume) => {
      // Leased here, in the registration: nothing can interrupt between taking the lease and the canceler
      // that returns it (a scheduler yield before the callback would).
      const clock = fiber.getRef(Clock.Clock)
      const hit = leaseReadyUnsafe(pool, fiber, clock, server, scope, true)
      if (hit === undefined) {
        return resume(use(pool, server, scope, (session) => session.callTool(params, requestOptions)))
      }
      let leased = true
      const giveBack = () => {
        if (!leased) return
        leased = false
        returnLease(pool, hit, clock.currentTimeMillisUnsafe())
      }
      // Defined: leaseReadyUnsafe(…, true) leases only sessions whose calls start at once.
      const start = (hit.state as Ready).handle.startCallTool!
      const abort = start(withTraceContext(params, fiber), requestOptions, (exit) => {
        giveBack()
        resume(exit)
      })
      // Interrupted: the request is aborted (the SDK tells the server) and the lease comes back now, not
      // when the aborted promise settles.
      return Effect.sync(() => {
        // The lease comes back even if aborting throws (a custom transport's send, called by the SDK).
        try {
          abort()
        } finally {
          giveBack()
        }
      })
    })
  )

/** `pool.callTool`'s request as the call's params: the SDK sends `params` as they are, so only what belongs. */
const untracedCallTool = (
  pool: Pool,
  request: Parameters<McpSessionPoolShape["callTool"]>[0],
  requestOptions: RequestOptions | undefined
) =>
  callTool(
    pool,
    request.server,
    request.scope,
    request._meta === undefined
      ? { name: request.name, arguments: request.arguments }
      : { name: request.name, arguments: request.arguments, _meta: request._meta },
    requestOptions
  )

/**
 * `pool.callTool` in a span named and attributed by the OpenTelemetry semantic conventions for MCP
 * (`tools/call <tool>`, kind client, `mcp.method.name`, `gen_ai.tool.name`, `gen_ai.operation.name`,
 * `mcp.protocol.version`, `error.type`): opt-in (`traceToolCalls`), as a span costs more than the pool's
 * whole hit path. The span is current during the call, so the request's `traceparent` names it.
 */
const tracedCallTool = (
  pool: Pool,
  request: Parameters<McpSessionPoolShape["callTool"]>[0],
  requestOptions: RequestOptions | undefined
) =>
  Effect.withFiber((fiber) => {
    const scope = scopeOf(fiber, request.scope)
    const known = scope === undefined ? undefined : stateOf(pool)
    const entry = known?._tag === "Open" ? known.byServer.get(request.server)?.get(scope!) : undefined
    const session = entry?.state._tag === "Ready" ? entry.state.handle.session : undefined
    return untracedCallTool(pool, request, requestOptions).pipe(
      Effect.tapError((error) => Effect.annotateCurrentSpan("error.type", error._tag)),
      Effect.withSpan(`tools/call ${request.name}`, {
        kind: "client",
        attributes: {
          "mcp.method.name": "tools/call",
          "gen_ai.tool.name": request.name,
          "gen_ai.operation.name": "execute_tool",
          "mcp.server": request.server,
          "mcp.scope": scope ?? "",
          ...(session === undefined ? {} : { "mcp.protocol.version": session.protocolVersion })
        }
      }, { captureStackTrace: false })
    )
  })

// =============================================================================
// Closing
// =============================================================================

/** Retires the chosen entries; waits for those nobody holds to finish closing. */
const retireWhere = (pool: Pool, select: (state: Open) => Iterable<Entry>, reason: CloseReason) =>
  Effect.suspend(() => {
    const state = stateOf(pool)
    if (state._tag === "Closed") return Effect.void
    const closingNow: Array<Fiber.Fiber<void>> = []
    for (const entry of Array.from(select(state))) {
      retire(state, entry, reason)
      if (entry.leases === 0 && entry.owner !== undefined) closingNow.push(entry.owner)
    }
    return Effect.asVoid(Fiber.awaitAll(closingNow))
  })

/**
 * Forced: marks the pool closed, signals every live entry, and waits for the owners, which bound their own
 * closes by `closeTimeout`; this wait stops at `closeTimeout` + 1 s whatever user code does, and names the
 * sessions that had not finished closing. A later (or concurrent) `closeAll` waits for the first one's end.
 */
const closeAll = (pool: Pool): Effect.Effect<void> =>
  Effect.uninterruptible(Effect.suspend(() => {
    const bound = Duration.sum(pool.options.closeTimeout, Duration.seconds(1))
    const state = stateOf(pool)
    if (state._tag === "Closed") return Effect.asVoid(Effect.timeoutOption(Deferred.await(state.done), bound))
    const done = Deferred.makeUnsafe<void>()
    // The ref's cell, written directly like every transition (see the header).
    MutableRef.set(pool.state.backing.ref, { _tag: "Closed", done })
    const entries = Array.from(state.live)
    for (const entry of entries) {
      // No longer what a `get` would return (there is no `get` any more): caches beside the pool see it.
      entry.detachedFor ??= "pool-closed"
    }
    for (const entry of entries) signalClose(entry, "pool-closed")
    const owners = entries.flatMap((entry) => entry.owner === undefined ? [] : [entry.owner])
    return Effect.gen(function*() {
      // Then ends what is left in the owners scope (idle pings under way), in the same bound.
      const ending = yield* Effect.forkDetach(
        Effect.andThen(Fiber.awaitAll(owners), Scope.close(pool.ownersScope, Exit.void)),
        { startImmediately: true }
      )
      const finished = yield* Effect.timeoutOption(Fiber.await(ending), bound)
      if (finished._tag === "None") {
        const stuck = entries.filter((entry) => entry.owner !== undefined && entry.owner.pollUnsafe() === undefined)
        yield* Effect.logWarning(
          `MCP pool closed with ${stuck.length} session(s) still closing after ${Duration.format(bound)}: ${
            stuck.map((entry) => `${entry.server} (scope "${entry.scope}")`).join(", ")
          }`
        )
      }
      Deferred.doneUnsafe(done, Exit.void)
    })
  }))

const snapshot = (pool: Pool): Effect.Effect<ReadonlyArray<SessionInfo>> =>
  Effect.sync(() => {
    const state = stateOf(pool)
    if (state._tag === "Closed") return []
    return Array.from(state.live, (entry): SessionInfo => {
      const session = entry.state._tag === "Ready" ? entry.state.handle.session : undefined
      return {
        server: entry.server,
        scope: entry.scope,
        state: entry.state._tag === "Connecting" ? "connecting" : entry.state._tag === "Ready" ? "ready" : "closing",
        attached: entry.detachedFor === undefined,
        leases: entry.leases,
        createdAt: new Date(entry.createdAt),
        idleSince: entry.leases === 0 && session !== undefined ? new Date(entry.idleSince) : undefined,
        pid: session?.pid,
        protocolVersion: session?.protocolVersion,
        threadState: session?.threadState
      }
    })
  })

/** Reload: swaps the configs and retires the sessions made with a config that changed or was removed. */
const reload = (pool: Pool, servers: Parameters<McpSessionPoolShape["reload"]>[0]) =>
  Effect.flatMap(
    resolveServers(servers, pool.options.defaults, "McpSessionPool.reload"),
    (next) =>
      Effect.suspend(() => {
        // New gets use the new configs from now on; the sessions made with a changed one are retired.
        pool.servers = next
        return retireWhere(pool, (state) => {
          const stale: Array<Entry> = []
          for (const scopes of state.byServer.values()) {
            for (const entry of scopes.values()) {
              if (!samePolicy(entry.policy, next.get(entry.server))) stale.push(entry)
            }
          }
          return stale
        }, "reloaded")
      })
  )

// =============================================================================
// Construction
// =============================================================================

/**
 * The layer's context with its scheduler handing every fiber one dispatcher. Effect gives each fiber that
 * yields a dispatcher of its own (a task queue and a `setImmediate` per yield, kept for the fiber's life):
 * when every owner yielded once after its connect, that was ~0.6 KiB per idle session and a tenth of a cold
 * get's CPU. Owners now take their turns as microtasks (`afterTransition`), but connects, pings and handlers
 * still yield (an op budget spent, user code's `yieldNow`). Every fiber the pool runs with this context
 * (owners, connect attempts, idle pings, the app's server-request handlers) shares one dispatcher, whose
 * batch runs in one `setImmediate` as Effect 3's did: a promise continuation started in one fiber's turn
 * runs after the batch, not before the next fiber's turn (nothing here depends on that interleaving).
 */
const withSharedDispatcher = (context: Context.Context<never>): Context.Context<never> => {
  const scheduler = Context.get(context, Scheduler.Scheduler)
  let shared: Scheduler.SchedulerDispatcher | undefined
  return Context.add(context, Scheduler.Scheduler, {
    executionMode: scheduler.executionMode,
    shouldYield: (fiber) => scheduler.shouldYield(fiber),
    makeDispatcher: () => shared ??= scheduler.makeDispatcher()
  })
}

export const make = Effect.fnUntraced(function*(options: ResolvedOptions) {
  const layerScope = yield* Effect.scope
  const given = yield* Effect.serviceOption(McpClientHandlers)
  const handlers = Option.isSome(given) ? resolveHandlers(given.value) : undefined
  if (typeof handlers === "string") {
    return yield* Effect.fail(
      new ConfigError({
        source: "McpClientHandlers",
        issues: [new ConfigIssue({ path: "timeout", message: handlers })]
      })
    )
  }
  const pool: Pool = {
    options,
    servers: options.servers,
    state: yield* SynchronizedRef.make<PoolState>({
      _tag: "Open",
      byServer: new Map(),
      idle: makeIdleQueue(),
      live: new Set(),
      attachedCount: 0
    }),
    // A scope of its own that only closeAll closes, after marking the pool closed: so no idle ping is
    // interrupted while the pool still takes work, whatever order the layer's finalizers run in.
    ownersScope: yield* Scope.make("parallel"),
    ownerContext: withSharedDispatcher(yield* Effect.context<never>()),
    verdicts: new WeakMap(),
    handlers
  }
  yield* Scope.addFinalizer(layerScope, closeAll(pool))
  // In the owners scope: closeAll ends it once the owners have ended.
  yield* Effect.forkIn(
    Effect.repeat(reportSessions(pool), Schedule.spaced(Duration.seconds(1))),
    pool.ownersScope,
    { startImmediately: true }
  )

  return {
    get: (key) => get(pool, key.server, key.scope),
    use: (key, f) => use(pool, key.server, key.scope, f),
    // The SDK sends `params` as they are: pass only what belongs in the request.
    callTool: options.traceToolCalls
      ? (request, requestOptions) => tracedCallTool(pool, request, requestOptions)
      : (request, requestOptions) => untracedCallTool(pool, request, requestOptions),
    invalidate: ({ scope, server }) =>
      Effect.withFiber((fiber) => {
        const key = scopeOf(fiber, scope)
        if (key === undefined) return Effect.fail(new MissingScope({ server }))
        return retireWhere(pool, (state) => {
          const entry = state.byServer.get(server)?.get(key)
          return entry === undefined ? [] : [entry]
        }, "invalidated")
      }),
    closeScope: (scope) => retireWhere(pool, (state) => entriesOfScope(state, scope), "scope-closed"),
    closeServer: (server) => retireWhere(pool, (state) => state.byServer.get(server)?.values() ?? [], "server-closed"),
    closeAll: closeAll(pool),
    rootsChanged: (scope) =>
      Effect.suspend(() => {
        const state = stateOf(pool)
        if (state._tag === "Closed" || pool.handlers?.handlers.listRoots === undefined) return Effect.void
        const ready = entriesOfScope(state, scope).flatMap((entry) =>
          entry.state._tag === "Ready" ? [entry.state.handle] : []
        )
        return Effect.forEach(ready, (handle) => handle.rootsChanged(), { concurrency: "unbounded", discard: true })
      }),
    snapshot: snapshot(pool),
    reload: (servers) => reload(pool, servers)
  } satisfies McpSessionPoolShape
})
