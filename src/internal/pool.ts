/**
 * The pool's machinery.
 *
 * Lifecycle of one entry (one session for one (server, scope) key):
 *
 *   Connecting ──ready──▶ Ready ──close signal / lost──▶ Closed
 *        └──── failed / cancelled / pool closed ─────────▶ Closed
 *
 * - One owner fiber per entry, forked (uninterruptible) into the pool's owners scope. It opens a `Scope`,
 *   connects inside it, publishes the session through `ready`, waits for `closeSignal` (or the transport's
 *   death), then closes that scope: acquire and release are driven by that one fiber — never by a
 *   caller's fiber, whoever asked and whoever was interrupted.
 * - Leases: every `get` counts one lease from the moment it asks (a waiter is a lease), so a session is
 *   never closed to make room while someone waits for it or uses it.
 * - Attached entries are in the indexes and are what `get` finds. Detaching (evict, invalidate, closeScope,
 *   closeServer, death) removes an entry from the indexes at once — the next `get` makes a fresh one —
 *   and its owner is told to close when its last lease ends. Removals check identity, so a stale owner
 *   never removes its replacement.
 * - The state lives in one `SynchronizedRef`. Every transition is synchronous code run under
 *   `uninterruptibleMask`, and none waits for an owner while holding the ref (owners need it to detach
 *   themselves). Being synchronous, a transition is atomic by itself: the hot hit path of `use` leases a
 *   ready session and returns the lease without taking the ref's semaphore; everything else goes through
 *   the ref.
 */
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
  Scope,
  SynchronizedRef,
  Tracer
} from "effect"
import type { McpGetError } from "../McpPoolError.ts"
import { ConnectError, ConnectTimeout, MissingScope, PoolClosed, SessionLost, UnknownServer } from "../McpPoolError.ts"
import { McpScope } from "../McpScope.ts"
import type { McpSession } from "../McpSession.ts"
import type { McpSessionPoolShape } from "../McpSessionPool.ts"
import { type ResolvedOptions, resolveServers, samePolicy, type ServerPolicy } from "./options.ts"
import { openSession, type SessionHandle } from "./session.ts"

/** Why an entry is being closed. `pool-closed` is the only forced one. */
export type CloseReason =
  | "released"
  | "evicted"
  | "invalidated"
  | "scope-closed"
  | "server-closed"
  | "cancelled"
  | "expired"
  | "reloaded"
  | "ping-failed"
  | "lost"
  | "failed"
  | "pool-closed"

type EntryState =
  | { readonly _tag: "Connecting" }
  | { readonly _tag: "Ready"; readonly handle: SessionHandle }
  | { readonly _tag: "Closing" }

interface Entry {
  readonly server: string
  readonly scope: string
  readonly policy: ServerPolicy
  readonly createdAt: number
  state: EntryState
  /** Waiters and holders. */
  leases: number
  attached: boolean
  /** Set once, at detach; the owner closes for this reason when the last lease ends. */
  closeReason: CloseReason | undefined
  idleSince: number
  readonly ready: Deferred.Deferred<McpSession, McpGetError>
  readonly closeSignal: Deferred.Deferred<CloseReason>
  owner: Fiber.Fiber<void> | undefined
  /** The verdict of the idle ping under way, if any: at most one per entry. */
  probing: Deferred.Deferred<boolean> | undefined
  /** The span of the caller whose `get` created the entry: linked from the connect span, never its parent. */
  readonly requestedBy: Tracer.AnySpan | undefined
  /** Set while the expiry fiber waits for the last lease to end (the idle clock does not run while leased). */
  idleWake: Deferred.Deferred<void> | undefined
}

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
  return entry !== undefined && entry.attached && entry.state._tag === "Ready" &&
    !Deferred.isDoneUnsafe(entry.state.handle.lost)
}

/** A lease just taken; `verdict` is set while an idle ping (past `pingAfterIdle`) decides the session. */
interface Lease {
  readonly entry: Entry
  readonly verdict: Deferred.Deferred<boolean> | undefined
}

interface Open {
  readonly _tag: "Open"
  /** server → scope → entry: the primary index; `closeServer` reads one inner map. */
  readonly byServer: Map<string, Map<string, Entry>>
  readonly byScope: Map<string, Set<Entry>>
  /** Attached, ready, unleased entries in least-recently-used order (first = coldest). */
  readonly idle: Set<Entry>
  /** Every entry whose owner still runs, attached or not: what a forced close must reach. */
  readonly live: Set<Entry>
  attachedCount: number
}

type PoolState = Open | { readonly _tag: "Closed" }

/** One row of `snapshot`. */
export interface SessionInfo {
  readonly server: string
  readonly scope: string
  readonly state: "connecting" | "ready" | "closing"
  /** False once detached (invalidated, evicted, …): it closes when its last lease ends. */
  readonly attached: boolean
  readonly leases: number
  readonly createdAt: Date
  readonly idleSince: Date | undefined
  readonly pid: number | undefined
}

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

/** The pool's metrics, for dashboards and tests. */
export const metrics = { sessionsCreated, connectFailures, connectDuration, sessionsClosed } as const

export const make = Effect.fnUntraced(function*(options: ResolvedOptions) {
  const layerScope = yield* Effect.scope
  // Owners live in a scope of their own that only closeAll closes, after marking the pool closed: so no
  // owner is interrupted while the pool still takes work, whatever order the layer's finalizers run in.
  const ownersScope = yield* Scope.make("parallel")
  // Owners run with the layer's services, never the first caller's (its span, its provided services).
  const ownerContext = yield* Effect.context<never>()
  const ref = yield* SynchronizedRef.make<PoolState>({
    _tag: "Open",
    byServer: new Map(),
    byScope: new Map(),
    idle: new Set(),
    live: new Set(),
    attachedCount: 0
  })
  // Replaced by `reload`; read and written only inside the ref's lock.
  let serverPolicies = options.servers

  // --- state transitions; each runs inside the ref's lock and only touches memory ---

  const signalClose = (entry: Entry, reason: CloseReason): void => {
    Deferred.doneUnsafe(entry.closeSignal, Exit.succeed(reason))
  }

  const detach = (state: Open, entry: Entry, reason: CloseReason): void => {
    if (!entry.attached) return
    entry.attached = false
    entry.closeReason = reason
    const scopes = state.byServer.get(entry.server)
    if (scopes?.get(entry.scope) === entry) {
      scopes.delete(entry.scope)
      if (scopes.size === 0) state.byServer.delete(entry.server)
    }
    const servers = state.byScope.get(entry.scope)
    if (servers !== undefined) {
      servers.delete(entry)
      if (servers.size === 0) state.byScope.delete(entry.scope)
    }
    state.idle.delete(entry)
    state.attachedCount--
  }

  /** Detach, and close now if nobody holds it; otherwise the last lease closes it. */
  const retire = (state: Open, entry: Entry, reason: CloseReason): void => {
    detach(state, entry, reason)
    if (entry.leases === 0) signalClose(entry, entry.closeReason ?? reason)
  }

  /** Evict idle sessions, coldest first, while over capacity. Connecting or leased ones are never evicted. */
  const trim = (state: Open, room: number): void => {
    for (const victim of state.idle) {
      if (state.attachedCount + room <= options.capacity) return
      retire(state, victim, "evicted")
    }
  }

  /** Synchronous, like every transition: safe inside the ref's lock or, on the hit path, without it. */
  const returnLease = (state: PoolState, entry: Entry, now: number): void => {
    entry.leases--
    if (entry.leases > 0) return
    if (state._tag === "Closed" || !entry.attached) {
      signalClose(entry, entry.closeReason ?? "released")
    } else if (entry.state._tag === "Connecting") {
      // The last waiter gave up: cancel the connect rather than keep a session nobody asked for.
      retire(state, entry, "cancelled")
    } else {
      entry.idleSince = now
      state.idle.add(entry)
      if (entry.idleWake !== undefined) {
        // The idle clock starts now: wake the expiry fiber, which waited for the last lease to end.
        Deferred.doneUnsafe(entry.idleWake, Exit.void)
        entry.idleWake = undefined
      }
      trim(state, 0)
    }
  }

  const releaseLease = (entry: Entry) =>
    Effect.clockWith((clock) =>
      SynchronizedRef.update(ref, (state) => {
        returnLease(state, entry, clock.currentTimeMillisUnsafe())
        return state
      })
    )

  // --- the owner fiber ---

  /** Runs `effect` in a fiber of its own with exactly the layer's context (not merged with a caller's). */
  const forkWithOwnerContext = <A, E>(effect: Effect.Effect<A, E>, options?: { readonly uninterruptible: boolean }) =>
    Effect.runForkWith(ownerContext)(effect, options)

  /** Spawn or dial plus initialize, in the session's scope. Unbounded here: `awaitConnected` bounds it. */
  const connect = (entry: Entry, sessionScope: Scope.Scope) =>
    openSession({
      server: entry.server,
      scope: entry.scope,
      policy: entry.policy,
      clientInfo: options.clientInfo
    }).pipe(
      Scope.provide(sessionScope),
      // Its own fiber, not the owner's: it carries the owner's annotations itself.
      Effect.annotateLogs({ "mcp.server": entry.server, "mcp.scope": entry.scope }),
      Effect.withSpan("McpSession.connect", {
        attributes: { "mcp.server": entry.server, "mcp.scope": entry.scope },
        links: entry.requestedBy === undefined ? [] : [{ span: entry.requestedBy, attributes: {} }]
      })
    )

  type Connected =
    | { readonly _tag: "Connected"; readonly handle: SessionHandle }
    | { readonly _tag: "Failed"; readonly error: McpGetError }
    /** The close signal came first (last waiter gone, closeAll, …), or the owners scope closed. */
    | { readonly _tag: "Abandoned"; readonly reason: CloseReason }

  /**
   * Owner, connect phase. The connect runs in a fiber of its own (`attempt`) and the owner waits for the
   * first of: its end, the close signal, the connect timeout. Waiting is all the owner does, so user code
   * stuck in an uninterruptible step (a custom connect's `acquireRelease` whose promise never settles)
   * cannot hold the bound: the attempt is interrupted without waiting for it (`timeout` and `raceFirst`
   * would wait), and what it opened is released when the owner closes the session scope, or as soon as it
   * registers its finalizer there.
   */
  const awaitConnected = (entry: Entry, attempt: Fiber.Fiber<SessionHandle, McpGetError>): Effect.Effect<Connected> =>
    Effect.suspend(() => {
      const timeoutMillis = Duration.toMillis(entry.policy.connectTimeout)
      return Effect.raceAll([
        Effect.map(Fiber.await(attempt), (exit): Connected => {
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
        }),
        Effect.map(Deferred.await(entry.closeSignal), (reason): Connected => ({ _tag: "Abandoned", reason })),
        Effect.as(
          Effect.sleep(entry.policy.connectTimeout),
          {
            _tag: "Failed",
            error: new ConnectTimeout({ server: entry.server, scope: entry.scope, timeoutMillis })
          } satisfies Connected
        )
      ]).pipe(
        Effect.interruptible,
        Effect.catchCause((): Effect.Effect<Connected> => Effect.succeed({ _tag: "Abandoned", reason: "pool-closed" })),
        Effect.tap((outcome) =>
          Effect.sync(() => {
            if (outcome._tag !== "Connected") attempt.interruptUnsafe()
          })
        )
      )
    })

  /**
   * Retires the entry when its idle time-to-live or maximum lifetime runs out, on the `Clock` (so
   * `TestClock` drives it). Wakes at the nearest deadline and re-reads the entry: leases may have come
   * and gone meanwhile. The idle clock does not run while the entry is leased: then it waits for the last
   * lease to end (or the lifetime). Never completes by itself; retiring signals the owner's close.
   */
  const expireWhenDue = (entry: Entry): Effect.Effect<never> => {
    const { idleTimeToLive, maxLifetime } = entry.policy
    const lifetimeEnds = maxLifetime === undefined ? Infinity : entry.createdAt + Duration.toMillis(maxLifetime)
    const check = Effect.flatMap(
      Clock.currentTimeMillis,
      (now) =>
        SynchronizedRef.modify(ref, (state): readonly [Effect.Effect<void>, PoolState] => {
          if (state._tag === "Closed" || !entry.attached) return [Effect.never, state]
          const idleEnds = idleTimeToLive === undefined || entry.leases > 0
            ? Infinity
            : entry.idleSince + Duration.toMillis(idleTimeToLive)
          if (now >= lifetimeEnds || now >= idleEnds) {
            retire(state, entry, "expired")
            return [Effect.never, state]
          }
          const nearest = Math.min(lifetimeEnds, idleEnds)
          const sleep = nearest === Infinity ? Effect.never : Effect.sleep(nearest - now)
          if (idleTimeToLive === undefined || entry.leases === 0) return [sleep, state]
          const wake = entry.idleWake ??= Deferred.makeUnsafe<void>()
          return [Effect.raceFirst(Deferred.await(wake), sleep), state]
        })
    )
    return Effect.flatten(check).pipe(Effect.forever)
  }

  const describe = (entry: Entry): string => `MCP session "${entry.server}" (scope "${entry.scope}")`

  /** Closes the session's scope in a fiber of its own and stops waiting at `closeTimeout`. */
  const closeSessionScope = (
    entry: Entry,
    sessionScope: Scope.Closeable,
    terminate: Effect.Effect<void>,
    exit: Exit.Exit<unknown, unknown>
  ) =>
    Effect.gen(function*() {
      // Finalizers (and a transport's close) cannot be interrupted, so a timeout around them would wait
      // anyway. Started at once: under churn a queued close would wait behind new work and closes would
      // pile up.
      const closing = yield* Effect.forkDetach(Effect.andThen(terminate, Scope.close(sessionScope, exit)), {
        startImmediately: true
      })
      const closed = yield* Effect.timeoutOption(Fiber.await(closing), options.closeTimeout)
      if (closed._tag === "None") {
        yield* Effect.logWarning(`${describe(entry)} did not close within ${Duration.format(options.closeTimeout)}`)
      }
    })

  /**
   * Owner: runs uninterruptibly; only its waits can be interrupted (by the owners scope closing). User code
   * (connect, transport close) runs in fibers the owner forks, so the owner always reaches its end.
   */
  const runOwner = Effect.fnUntraced(function*(entry: Entry) {
    const sessionScope = yield* Scope.make()
    const connectStarted = yield* Clock.currentTimeMillis
    const attempt = forkWithOwnerContext(connect(entry, sessionScope))
    const outcome = yield* awaitConnected(entry, attempt)

    let reason: CloseReason
    if (outcome._tag === "Connected") {
      const handle = outcome.handle
      const now = yield* Clock.currentTimeMillis
      yield* Metric.update(sessionsCreated, 1)
      yield* Metric.update(connectDuration, Duration.millis(now - connectStarted))
      yield* Effect.logDebug("MCP session ready")
      yield* SynchronizedRef.update(ref, (state) => {
        entry.state = { _tag: "Ready", handle }
        entryOfSession.set(handle.session, entry)
        // A connect that beat closeAll by a hair must not hand out a session of a closed pool.
        Deferred.doneUnsafe(
          entry.ready,
          state._tag === "Closed"
            ? Exit.fail(new PoolClosed({ server: entry.server, scope: entry.scope }))
            : Exit.succeed(handle.session)
        )
        if (state._tag === "Open" && entry.attached && entry.leases === 0) {
          entry.idleSince = now
          state.idle.add(entry)
        }
        // Several keys may finish at once while others sit idle: trim after each.
        if (state._tag === "Open") trim(state, 0)
        return state
      })
      const closeOrDeath = Effect.raceFirst(
        Deferred.await(entry.closeSignal),
        Effect.as(Deferred.await(handle.lost), "lost" as const)
      )
      const expires = entry.policy.idleTimeToLive !== undefined || entry.policy.maxLifetime !== undefined
      const ended = yield* Effect.exit(Effect.interruptible(
        expires ? Effect.raceFirst(closeOrDeath, expireWhenDue(entry)) : closeOrDeath
      ))
      reason = Exit.isSuccess(ended) ? ended.value : "pool-closed"
      if (reason === "lost") {
        yield* Effect.logWarning("MCP session lost: its transport closed")
        yield* SynchronizedRef.update(ref, (state) => {
          if (state._tag === "Open") detach(state, entry, "lost")
          return state
        })
      }
      yield* SynchronizedRef.update(ref, (state) => {
        entry.state = { _tag: "Closing" }
        return state
      })
      yield* closeSessionScope(
        entry,
        sessionScope,
        handle.terminate(
          reason === "pool-closed"
            ? new PoolClosed({ server: entry.server, scope: entry.scope })
            : new SessionLost({
              server: entry.server,
              scope: entry.scope,
              reason: `the session was closed (${reason})`
            })
        ),
        Exit.void
      )
    } else {
      const failure: McpGetError = outcome._tag === "Failed"
        ? outcome.error
        : new PoolClosed({ server: entry.server, scope: entry.scope })
      reason = outcome._tag === "Abandoned" ? outcome.reason : "failed"
      if (reason === "failed") {
        yield* Metric.update(connectFailures, 1)
        yield* Effect.logDebug("MCP connect failed", failure.message)
      }
      // Detached at once: the next `get` must try again, never see this failure cached.
      yield* SynchronizedRef.update(ref, (state) => {
        if (state._tag === "Open") detach(state, entry, reason)
        entry.state = { _tag: "Closing" }
        return state
      })
      // A session that never served has nothing to flush: the failure exit tells the transport to kill at
      // once. Its waiters hear of the failure once what it opened is gone (or at the close bound).
      yield* closeSessionScope(entry, sessionScope, Effect.void, Exit.fail(failure))
      Deferred.doneUnsafe(entry.ready, Exit.fail(failure))
      // The interrupted attempt may be stuck where it cannot be interrupted: say so (once, at the bound)
      // rather than hide it; whatever it opens later is released at once into the closed scope.
      const stopped = yield* Effect.timeoutOption(Fiber.await(attempt), options.closeTimeout)
      if (stopped._tag === "None") {
        yield* Effect.logWarning(
          `${describe(entry)}: its connect did not stop within ${
            Duration.format(options.closeTimeout)
          } of being abandoned (stuck in an uninterruptible step?)`
        )
      }
    }

    yield* Metric.update(Metric.withAttributes(sessionsClosed, { reason }), 1)
    yield* Effect.logDebug(`MCP session closed (${reason})`)
    yield* SynchronizedRef.update(ref, (state) => {
      if (state._tag === "Open") state.live.delete(entry)
      return state
    })
  }, (effect, entry) => Effect.annotateLogs(effect, { "mcp.server": entry.server, "mcp.scope": entry.scope }))

  // --- leases ---

  /** Takes a lease on the entry for (server, scope), creating it (and its owner) if missing. */
  const acquireLease = (server: string, scope: string) =>
    Effect.withFiber((fiber) =>
      SynchronizedRef.modifyEffect(
        ref,
        (state): Effect.Effect<readonly [Lease, PoolState], UnknownServer | PoolClosed> => {
          if (state._tag === "Closed") return Effect.fail(new PoolClosed({ server, scope }))
          const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
          const existing = state.byServer.get(server)?.get(scope)
          // A session known to be dead is never handed out, even before its owner has detached it.
          if (existing?.state._tag === "Ready" && Deferred.isDoneUnsafe(existing.state.handle.lost)) {
            retire(state, existing, "lost")
          } else if (existing !== undefined) {
            // Whoever arrives while a ping is under way waits for its verdict, however long it has been
            // idle since: one ping (and one verdict) at a time.
            const stale = existing.state._tag === "Ready" && existing.probing === undefined &&
              existing.leases === 0 && existing.policy.pingAfterIdle !== undefined &&
              now - existing.idleSince >= Duration.toMillis(existing.policy.pingAfterIdle)
            existing.leases++
            state.idle.delete(existing)
            if (!stale || existing.state._tag !== "Ready") {
              return Effect.succeed([{ entry: existing, verdict: existing.probing }, state] as const)
            }
            const verdict = Deferred.makeUnsafe<boolean>()
            existing.probing = verdict
            const session = existing.state.handle.session
            return Effect.sync(() => {
              Fiber.runIn(
                forkWithOwnerContext(probeSession(existing, session, verdict), { uninterruptible: true }),
                ownersScope
              )
              return [{ entry: existing, verdict }, state] as const
            })
          }
          const policy = serverPolicies.get(server)
          if (policy === undefined) {
            return Effect.fail(new UnknownServer({ server, scope, known: Array.from(serverPolicies.keys()) }))
          }
          trim(state, 1)
          const entry: Entry = {
            server,
            scope,
            policy,
            createdAt: now,
            state: { _tag: "Connecting" },
            leases: 1,
            attached: true,
            closeReason: undefined,
            idleSince: now,
            ready: Deferred.makeUnsafe(),
            closeSignal: Deferred.makeUnsafe(),
            owner: undefined,
            probing: undefined,
            requestedBy: Context.getOrUndefined(fiber.context, Tracer.ParentSpan),
            idleWake: undefined
          }
          let scopes = state.byServer.get(server)
          if (scopes === undefined) state.byServer.set(server, scopes = new Map())
          scopes.set(scope, entry)
          let servers = state.byScope.get(scope)
          if (servers === undefined) state.byScope.set(scope, servers = new Set())
          servers.add(entry)
          state.attachedCount++
          state.live.add(entry)
          return Effect.sync(() => {
            entry.owner = Fiber.runIn(forkWithOwnerContext(runOwner(entry), { uninterruptible: true }), ownersScope)
            return [{ entry, verdict: undefined }, state] as const
          })
        }
      )
    )

  /** No scope given: take the caller's `McpScope`; never fall back to a shared one. */
  const currentScope = (server: string): Effect.Effect<Lease, UnknownServer | PoolClosed | MissingScope> =>
    Effect.flatMap(
      Effect.serviceOption(McpScope),
      (scope): Effect.Effect<Lease, UnknownServer | PoolClosed | MissingScope> =>
        scope._tag === "Some" ? acquireLease(server, scope.value) : Effect.fail(new MissingScope({ server }))
    )

  /**
   * Lease + wait for the session. The lease bookkeeping is uninterruptible; the waits are interruptible
   * even inside `acquireUseRelease`'s acquire. On failure or interruption of the wait the lease is returned
   * at once, so the last waiter leaving a connecting entry cancels its connect.
   */
  const acquireSession = (
    server: string,
    scope: string | undefined
  ): Effect.Effect<readonly [Entry, McpSession], McpGetError> =>
    Effect.uninterruptible(Effect.flatMap(
      scope === undefined ? currentScope(server) : acquireLease(server, scope),
      ({ entry, verdict }) =>
        Effect.onExit(
          Effect.interruptible(awaitSession(entry, verdict)),
          (exit) => Exit.isSuccess(exit) ? Effect.void : releaseLease(entry)
        ).pipe(
          Effect.flatMap((session) =>
            session === undefined
              // The idle session failed its ping and was retired: connect afresh.
              ? Effect.andThen(releaseLease(entry), acquireSession(entry.server, entry.scope))
              : Effect.succeed([entry, session] as const)
          )
        )
    ))

  /** The session once ready, and once its idle ping (if any) passed; `undefined` if the ping failed. */
  const awaitSession = (entry: Entry, verdict: Deferred.Deferred<boolean> | undefined) =>
    verdict === undefined
      ? Deferred.await(entry.ready)
      : Effect.flatMap(
        Deferred.await(verdict),
        (healthy): Effect.Effect<McpSession | undefined, McpGetError> =>
          healthy ? Deferred.await(entry.ready) : Effect.succeed(undefined)
      )

  /**
   * Pings a session that sat idle too long, in a fiber of its own so that no waiter's interruption can
   * leave the others without a verdict. A failed ping retires the session.
   */
  const probeSession = (entry: Entry, session: McpSession, verdict: Deferred.Deferred<boolean>) =>
    session.ping({ timeout: entry.policy.connectTimeout }).pipe(
      Effect.as(true),
      Effect.catch((error) =>
        Effect.as(
          Effect.andThen(
            Effect.logWarning(`MCP session failed its idle ping (${error._tag}); the next use reconnects`),
            SynchronizedRef.update(ref, (state) => {
              if (state._tag === "Open") retire(state, entry, "ping-failed")
              return state
            })
          ),
          false
        )
      ),
      Effect.onExit((exit) =>
        SynchronizedRef.update(ref, (state) => {
          if (entry.probing === verdict) entry.probing = undefined
          Deferred.doneUnsafe(verdict, Exit.isSuccess(exit) ? exit : Exit.succeed(false))
          return state
        })
      ),
      Effect.annotateLogs({ "mcp.server": entry.server, "mcp.scope": entry.scope })
    )

  const get = (server: string, scope?: string) =>
    Effect.uninterruptible(
      Effect.gen(function*() {
        const [entry, session] = yield* acquireSession(server, scope)
        yield* Effect.addFinalizer(() => releaseLease(entry))
        return session
      })
    ).pipe(Effect.withSpan(
      "McpSessionPool.get",
      { attributes: { "mcp.server": server, "mcp.scope": scope ?? "" } },
      { captureStackTrace: false }
    ))

  /**
   * The hit path, taken synchronously: a ready session nobody is pinging, known alive, needing no ping.
   * Every transition is synchronous code, so this read-and-lease is atomic without taking the ref's
   * semaphore (which costs more than the rest of a pooled in-memory call); anything else takes the
   * full path through the ref.
   */
  const leaseReadyUnsafe = (server: string, scope: string): McpSession | undefined => {
    const state = SynchronizedRef.getUnsafe(ref)
    if (state._tag === "Closed") return undefined
    const entry = state.byServer.get(server)?.get(scope)
    if (
      entry === undefined || entry.state._tag !== "Ready" || entry.probing !== undefined ||
      (entry.leases === 0 && entry.policy.pingAfterIdle !== undefined) ||
      Deferred.isDoneUnsafe(entry.state.handle.lost)
    ) return undefined
    entry.leases++
    state.idle.delete(entry)
    hitEntry = entry
    return entry.state.handle.session
  }
  // Hands the entry leased by `leaseReadyUnsafe` to its caller without allocating a tuple per call.
  let hitEntry: Entry | undefined

  const use = <A, E, R>(
    server: string,
    scope: string | undefined,
    f: (session: McpSession) => Effect.Effect<A, E, R>
  ): Effect.Effect<A, E | McpGetError, R> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.withFiber((fiber) => {
        const session = scope === undefined ? undefined : leaseReadyUnsafe(server, scope)
        if (session === undefined) {
          return restore(Effect.acquireUseRelease(
            acquireSession(server, scope),
            ([, leased]) => Effect.suspend(() => f(leased)),
            ([entry]) => releaseLease(entry)
          ))
        }
        const entry = hitEntry!
        const clock = fiber.getRef(Clock.Clock)
        // Suspended: a synchronous throw in `f` must still return the lease.
        return Effect.onExit(restore(Effect.suspend(() => f(session))), () => {
          // The same transition as `releaseLease`, run at exit without the lock, as the lease was taken.
          returnLease(SynchronizedRef.getUnsafe(ref), entry, clock.currentTimeMillisUnsafe())
          return Effect.void
        })
      })
    )

  // --- closing ---

  /** Retires the chosen entries; waits for those nobody holds to finish closing. */
  const retireWhere = (select: (state: Open) => Iterable<Entry>, reason: CloseReason) =>
    Effect.uninterruptible(
      SynchronizedRef.modify(ref, (state) => {
        if (state._tag === "Closed") return [[], state]
        const closingNow: Array<Fiber.Fiber<void>> = []
        for (const entry of Array.from(select(state))) {
          retire(state, entry, reason)
          if (entry.leases === 0 && entry.owner !== undefined) closingNow.push(entry.owner)
        }
        return [closingNow, state]
      })
    ).pipe(Effect.flatMap((owners) => Fiber.awaitAll(owners)), Effect.asVoid)

  /**
   * Forced: marks the pool closed, signals every live entry, and waits for the owners, which bound their own
   * closes by `closeTimeout`; this wait stops at `closeTimeout` + 1 s whatever user code does, and names the
   * sessions that had not finished closing.
   */
  const closeAll = Effect.uninterruptible(Effect.gen(function*() {
    const entries = yield* SynchronizedRef.modify(ref, (state): readonly [Array<Entry>, PoolState] => {
      if (state._tag === "Closed") return [[], state]
      return [Array.from(state.live), { _tag: "Closed" }]
    })
    for (const entry of entries) {
      // No longer what a `get` would return (there is no `get` any more): caches beside the pool see it.
      entry.attached = false
      signalClose(entry, "pool-closed")
    }
    const owners = entries.flatMap((entry) => entry.owner === undefined ? [] : [entry.owner])
    // Then ends what is left in the owners scope (idle pings under way), in the same bound.
    const finished = yield* Effect.timeoutOption(
      Fiber.await(
        yield* Effect.forkDetach(Effect.andThen(Fiber.awaitAll(owners), Scope.close(ownersScope, Exit.void)), {
          startImmediately: true
        })
      ),
      Duration.sum(options.closeTimeout, Duration.seconds(1))
    )
    if (finished._tag === "None") {
      const stuck = entries.filter((entry) => entry.owner !== undefined && entry.owner.pollUnsafe() === undefined)
      yield* Effect.logWarning(
        `MCP pool closed with ${stuck.length} session(s) still closing after ${
          Duration.format(Duration.sum(options.closeTimeout, Duration.seconds(1)))
        }: ${stuck.map((entry) => `${entry.server} (scope "${entry.scope}")`).join(", ")}`
      )
    }
  }))

  yield* Scope.addFinalizer(layerScope, closeAll)

  const snapshot = Effect.map(SynchronizedRef.get(ref), (state): ReadonlyArray<SessionInfo> => {
    if (state._tag === "Closed") return []
    return Array.from(state.live, (entry) => ({
      server: entry.server,
      scope: entry.scope,
      state: entry.state._tag === "Connecting" ? "connecting" : entry.state._tag === "Ready" ? "ready" : "closing",
      attached: entry.attached,
      leases: entry.leases,
      createdAt: new Date(entry.createdAt),
      idleSince: entry.leases === 0 && entry.state._tag === "Ready" ? new Date(entry.idleSince) : undefined,
      pid: entry.state._tag === "Ready" ? entry.state.handle.session.pid : undefined
    }))
  })

  return {
    get,
    use,
    callTool: ({ server, scope, ...params }, requestOptions) =>
      use(server, scope, (session) => session.callTool(params, requestOptions)),
    invalidate: (server, scope) =>
      retireWhere((state) => {
        const entry = state.byServer.get(server)?.get(scope)
        return entry === undefined ? [] : [entry]
      }, "invalidated"),
    closeScope: (scope) => retireWhere((state) => state.byScope.get(scope) ?? [], "scope-closed"),
    closeServer: (server) => retireWhere((state) => state.byServer.get(server)?.values() ?? [], "server-closed"),
    closeAll,
    snapshot,
    reload: (servers) =>
      Effect.flatMap(
        resolveServers(servers, options.defaults, "McpSessionPool.reload"),
        (next) =>
          retireWhere((state) => {
            serverPolicies = next
            const stale: Array<Entry> = []
            for (const scopes of state.byServer.values()) {
              for (const entry of scopes.values()) {
                if (!samePolicy(entry.policy, next.get(entry.server))) stale.push(entry)
              }
            }
            return stale
          }, "reloaded")
      )
  } satisfies McpSessionPoolShape
})
