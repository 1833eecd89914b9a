/**
 * The interruption fuzz model on in-memory servers: a plan is a set of operations, each started after a
 * random number of scheduler turns and perhaps interrupted some turns later, plus connect faults, session
 * kills, clock jumps (TestClock; idle TTL, max lifetime and ping after idle are on in some plans) and perhaps
 * a `closeAll` in the middle. `runPlan` runs one plan on a fresh pool and returns every invariant it saw broken
 * (empty when all held):
 *
 * - every acquire has exactly one release, both run under the session's owner (its log annotations name the
 *   session's key) and never in a caller's fiber;
 * - no session is closed while a test holds a lease on it, unless a fault killed it or a forced close ran;
 * - no scope ever receives another scope's session (checked on the session and by asking the server), nor a
 *   session whose death the pool had already heard of;
 * - once every operation is over, the pool holds no lease, and live sessions are within capacity;
 * - operations fail only with the typed errors their faults explain, never with a defect;
 * - after the pool closes, nothing is open and no fiber is left running.
 *
 * Hangs are caught by the caller, which bounds each run in real time.
 */
import { Cause, Effect, Exit, Fiber, References, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import type { McpGetError, McpSessionError } from "../../src/McpPoolError.ts"
import * as McpServerConfig from "../../src/McpServerConfig.ts"
import type { McpSession } from "../../src/McpSession.ts"
import * as McpSessionPool from "../../src/McpSessionPool.ts"
import { makeFiberCounter } from "../utils/leaks.ts"
import { firstText } from "../utils/probe.ts"
import { type ConnectFault, makeTracker, type SessionRecord } from "../utils/tracked.ts"

const servers = ["a", "b"] as const
/** Odd keys on purpose: empty, unicode, long. */
const scopes = ["t1", "t2", "", "🧵 thread ü", "x".repeat(300)] as const

type Tool = "whoami" | "block" | "die"

export type Op =
  | {
    readonly kind: "get"
    readonly server: string
    readonly scope: string
    readonly tool: Tool
    readonly hold: number
  }
  | { readonly kind: "use" | "callTool"; readonly server: string; readonly scope: string; readonly tool: Tool }
  | { readonly kind: "invalidate" | "kill"; readonly server: string; readonly scope: string }
  | { readonly kind: "closeScope"; readonly scope: string }
  | { readonly kind: "closeServer"; readonly server: string }
  /** 0: the original configs; 1: server "a" changed; 2: server "b" removed. */
  | { readonly kind: "reload"; readonly variant: 0 | 1 | 2 }
  | { readonly kind: "tick"; readonly seconds: number }

export interface Step {
  readonly op: Op
  /** Scheduler turns before it starts. */
  readonly start: number
  /** Scheduler turns after its start at which it is interrupted, if any. */
  readonly interruptAfter: number | null
}

export interface Plan {
  readonly capacity: number
  /** Idle TTL 1 minute and max lifetime 3 minutes. */
  readonly expiry: boolean
  /** Ping sessions idle for a minute before reuse. */
  readonly ping: boolean
  readonly faults: ReadonlyArray<ConnectFault>
  readonly steps: ReadonlyArray<Step>
  /** Scheduler turns after which `closeAll` runs, if any. */
  readonly closeAllAt: number | null
}

const server = fc.constantFrom(...servers)
const scope = fc.constantFrom(...scopes)
const tool = fc.constantFrom<Tool>("whoami", "whoami", "whoami", "block", "die")

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("get" as const), server, scope, tool, hold: fc.nat(8) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("use" as const), server, scope, tool }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("callTool" as const), server, scope, tool }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("invalidate" as const), server, scope }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("kill" as const), server, scope }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("closeScope" as const), scope }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("closeServer" as const), server }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("reload" as const), variant: fc.constantFrom(0, 1, 2) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("tick" as const), seconds: fc.constantFrom(1, 31, 61, 200) }) }
)

export const planArbitrary: fc.Arbitrary<Plan> = fc.record({
  capacity: fc.integer({ min: 1, max: 4 }),
  expiry: fc.boolean(),
  ping: fc.boolean(),
  faults: fc.array(fc.constantFrom<ConnectFault>("ok", "ok", "fail", "hang", "defect"), { maxLength: 8 }),
  steps: fc.array(
    fc.record({
      op,
      start: fc.nat(30),
      interruptAfter: fc.oneof(fc.constant(null), fc.nat(16))
    }),
    { minLength: 1, maxLength: 14 }
  ),
  closeAllAt: fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat(60) })
})

const yieldTimes = (n: number) => Effect.repeat(Effect.yieldNow, { times: Math.max(0, n - 1) })

const show = (key: { readonly server: string; readonly scope: string }) =>
  `${key.server}/${JSON.stringify(key.scope.length > 20 ? `${key.scope.slice(0, 20)}…` : key.scope)}`

export interface RunReport {
  readonly violations: ReadonlyArray<string>
  readonly sessions: number
  readonly interrupted: number
  readonly failures: Readonly<Record<string, number>>
}

/** Runs one plan on a fresh pool (TestClock, in-memory servers). */
export const runPlan = (plan: Plan): Effect.Effect<RunReport> => {
  const tracker = makeTracker()
  tracker.faults.push(...plan.faults)
  const fibers = makeFiberCounter()
  const violations: Array<string> = []
  const callerFibers = new Set<number>()
  const failures: Record<string, number> = {}
  let interrupted = 0

  const configs = { a: tracker.config("a"), b: tracker.config("b") }
  const variants: ReadonlyArray<Record<string, McpServerConfig.McpServerConfig>> = [
    configs,
    { a: McpServerConfig.custom(configs.a.connect, { callTimeout: "5 seconds" }), b: configs.b },
    { a: configs.a }
  ]
  const hasFault = (fault: ConnectFault) => plan.faults.includes(fault)
  const kills = plan.steps.some(({ op }) => op.kind === "kill" || ("tool" in op && op.tool === "die"))
  const reloadsRemove = plan.steps.some(({ op }) => op.kind === "reload" && op.variant === 2)

  /** The typed errors a get/use/callTool may legitimately end with in this plan. */
  const explained = (error: McpGetError | McpSessionError, called: Tool | undefined): boolean => {
    switch (error._tag) {
      case "ConnectError":
        return hasFault("fail") || hasFault("defect")
      case "ConnectTimeout":
        return true // a hung connect, or a clock jump while connecting
      case "PoolClosed":
        return tracker.forced
      case "UnknownServer":
        return reloadsRemove
      case "CallTimeout":
        return called === "block"
      case "SessionLost":
        return kills || tracker.forced
      default:
        return false
    }
  }

  const checkIdentity = (key: { server: string; scope: string }, id: string, session?: McpSession) => {
    const record = tracker.byId(id)
    if (record === undefined || record.server !== key.server || record.scope !== key.scope) {
      violations.push(`${show(key)} was served by session ${id} of ${record ? show(record) : "nobody"}`)
    }
    if (session !== undefined && (session.server !== key.server || session.scope !== key.scope)) {
      violations.push(`${show(key)} received a session for ${show(session)}`)
    }
  }

  const call = (session: McpSession, name: Tool) =>
    Effect.map(
      session.callTool({ name }, name === "block" ? { timeout: 5 } : undefined),
      (result) => name === "whoami" ? checkIdentity(session, firstText(result), session) : undefined
    )

  /** A call on a leased session: SessionLost there must come from a fault or a forced close. */
  const callLeased = (session: McpSession, record: SessionRecord, name: Tool) =>
    call(session, name).pipe(Effect.tapError((error) =>
      Effect.sync(() => {
        if (error._tag === "SessionLost" && !record.died && !tracker.forced) {
          violations.push(`leased session ${record.id} of ${show(record)} was lost with no fault: ${error.reason}`)
        }
      })
    ))

  /** Marks the lease; `deadBefore`: sessions whose close the client had seen before the get was asked. */
  const lease = (session: McpSession, deadBefore: ReadonlySet<SessionRecord>) =>
    Effect.suspend(() => {
      const record = tracker.byId(session.serverInfo.version)
      if (record === undefined) {
        return Effect.die(new Error(`session with unknown record ${session.serverInfo.version}`))
      }
      checkIdentity(session, String(record.id), session)
      if (deadBefore.has(record)) violations.push(`session ${record.id} of ${show(record)} was handed out dead`)
      return Effect.as(tracker.markLease(record), record)
    })
  const deadNow = Effect.sync(() => new Set(tracker.records.filter((record) => record.closeSeen)))

  return Effect.gen(function*() {
    const poolScope = yield* Scope.make()
    const pool = yield* McpSessionPool.make({
      servers: configs,
      capacity: plan.capacity,
      connectTimeout: "30 seconds",
      // Out of reach of the clock jumps: a jump while a real (promise-based) close is in flight would make the
      // owner give up waiting for it, by design, and the check below would see a release that is still to come.
      closeTimeout: "1 day",
      ...(plan.expiry ? { idleTimeToLive: "1 minute", maxLifetime: "3 minutes" } : {}),
      ...(plan.ping ? { pingAfterIdle: "1 minute" } : {})
    }).pipe(Scope.provide(poolScope), Effect.orDie)

    const run = (op: Op): Effect.Effect<unknown, McpGetError | McpSessionError> => {
      switch (op.kind) {
        case "get":
          return Effect.scoped(Effect.gen(function*() {
            const dead = yield* deadNow
            const session = yield* pool.get({ server: op.server, scope: op.scope })
            const record = yield* lease(session, dead)
            yield* callLeased(session, record, op.tool)
            yield* yieldTimes(op.hold)
            yield* callLeased(session, record, "whoami")
          }))
        case "use":
          return Effect.flatMap(
            deadNow,
            (dead) =>
              pool.use({ server: op.server, scope: op.scope }, (session) =>
                Effect.scoped(
                  Effect.flatMap(lease(session, dead), (record) => callLeased(session, record, op.tool))
                ))
          )
        case "callTool":
          return pool.callTool(
            { server: op.server, scope: op.scope, name: op.tool },
            op.tool === "block" ? { timeout: 5 } : undefined
          ).pipe(Effect.map((result) => op.tool === "whoami" && checkIdentity(op, firstText(result))))
        case "invalidate":
          return pool.invalidate({ server: op.server, scope: op.scope })
        case "kill":
          return Effect.sync(() => {
            const victim = tracker.open().filter((r) =>
              r.server === op.server && r.scope === op.scope && r.connected && !r.died
            ).pop()
            victim?.kill()
          })
        case "closeScope":
          return pool.closeScope(op.scope)
        case "closeServer":
          return pool.closeServer(op.server)
        case "reload":
          return Effect.orDie(pool.reload(variants[op.variant]!))
        case "tick":
          return TestClock.adjust(`${op.seconds} seconds`)
      }
    }

    const opFibers: Array<Fiber.Fiber<unknown, unknown>> = []
    for (const step of plan.steps) {
      const fiber = yield* Effect.forkChild(
        yieldTimes(step.start).pipe(
          Effect.andThen(Effect.flatMap(Effect.fiberId, (id) => Effect.sync(() => callerFibers.add(id)))),
          Effect.andThen(run(step.op))
        )
      )
      opFibers.push(fiber)
      if (step.interruptAfter !== null) {
        yield* Effect.forkChild(Effect.andThen(yieldTimes(step.start + step.interruptAfter), Fiber.interrupt(fiber)))
      }
    }
    const closer = plan.closeAllAt === null ? undefined : yield* Effect.forkChild(
      Effect.andThen(
        yieldTimes(plan.closeAllAt),
        Effect.andThen(Effect.sync(() => (tracker.forced = true)), pool.closeAll)
      )
    )
    // Drive the clock while waiting, so hung connects run into their timeout instead of waiting forever.
    const exits = yield* Effect.raceFirst(
      Fiber.awaitAll(opFibers),
      Effect.forever(Effect.andThen(yieldTimes(25), TestClock.adjust("31 seconds")))
    )
    if (closer !== undefined) yield* Fiber.await(closer)

    exits.forEach((exit, i) => {
      if (Exit.isSuccess(exit)) return
      const step = plan.steps[i]!
      const where = `op ${i} (${step.op.kind})`
      if (Cause.hasDies(exit.cause)) {
        violations.push(`${where} died: ${Cause.pretty(exit.cause)}`)
      } else if (Cause.hasInterruptsOnly(exit.cause)) {
        interrupted++
        if (step.interruptAfter === null) violations.push(`${where} was interrupted, yet nobody interrupted it`)
      } else {
        const error = Cause.findErrorOption(exit.cause)
        if (error._tag === "Some") {
          const typed = error.value as McpGetError | McpSessionError
          failures[typed._tag] = (failures[typed._tag] ?? 0) + 1
          if (!explained(typed, "tool" in step.op ? step.op.tool : undefined)) {
            violations.push(`${where} failed with ${typed._tag} that no fault explains: ${typed.message}`)
          }
        }
      }
    })

    // Every operation is over: nothing may be leased, and the kept sessions fit in capacity.
    if (!tracker.forced) {
      let settled = false
      for (let turn = 0; turn < 1_000 && !settled; turn++) {
        const rows = yield* pool.snapshot
        settled = rows.length <= plan.capacity && tracker.open().length <= plan.capacity
        if (!settled) yield* Effect.yieldNow
      }
      const rows = yield* pool.snapshot
      if (!settled) {
        violations.push(
          `all idle, yet ${rows.length} sessions in the pool and ${tracker.open().length} open (capacity ${plan.capacity})`
        )
      }
      for (const row of rows) {
        if (row.leases !== 0) violations.push(`${show(row)} still has ${row.leases} leases after every op ended`)
      }
    }

    tracker.forced = true
    yield* Scope.close(poolScope, Exit.void)
    if ((yield* pool.snapshot).length !== 0) violations.push("the closed pool still lists sessions")
    for (const record of tracker.records) {
      const who = `session ${record.id} of ${show(record)}`
      if (record.releasedIn.length !== 1) violations.push(`${who} was released ${record.releasedIn.length} times`)
      if (record.closedWhileLeased) violations.push(`${who} was closed while leased`)
      for (const where of [record.acquiredIn, ...record.releasedIn]) {
        if (callerFibers.has(where.fiberId)) violations.push(`${who}: acquire or release ran in caller fiber`)
        if (where.server !== record.server || where.scope !== record.scope) {
          violations.push(
            `${who}: acquire or release ran outside its owner (annotations ${where.server}/${where.scope})`
          )
        }
      }
    }
  }).pipe(
    fibers.track,
    Effect.provideService(References.MinimumLogLevel, "None"),
    Effect.provide(TestClock.layer()),
    Effect.andThen(Effect.suspend(() => {
      // Losers of races end a few turns after the race: give them a bounded moment.
      const settle = (turns: number): Effect.Effect<void> =>
        fibers.running() === 0 || turns === 0 ? Effect.void : Effect.andThen(Effect.yieldNow, settle(turns - 1))
      return settle(100)
    })),
    Effect.map(() => {
      if (fibers.running() !== 0) violations.push(`${fibers.running()} fibers still running after the pool closed`)
      return { violations, sessions: tracker.records.length, interrupted, failures }
    })
  )
}
