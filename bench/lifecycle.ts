/**
 * The pool's own machinery under load: a cold burst on one key, `get` latency at scale, churn through a
 * small capacity, and the shutdown of many stubborn stdio servers.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { Effect } from "effect"
import { fileURLToPath } from "node:url"
import { GCProfiler } from "node:v8"
import { makeNotebookServer } from "../examples/notebook-server.ts"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import type * as McpSession from "../src/McpSession.ts"
import { isRunning } from "../test/utils/proc.ts"
import * as L from "./lib.ts"
import type { Section } from "./report.ts"

const range = (n: number) => Array.from({ length: n }, (_, i) => i)

/** `n` gets of `key`, all concurrent; each waiter's latency from its own start to holding the session. */
const burstOnce = async (pool: L.Pool, server: string, key: string, n: number) => {
  const latencies = new Float64Array(n)
  const sessions = new Set<unknown>()
  const start = performance.now()
  const cpuStart = L.cpuMillis()
  let firstServed = Number.POSITIVE_INFINITY
  await Effect.runPromise(Effect.forEach(range(n), (i) =>
    Effect.suspend(() => {
      const asked = performance.now()
      return Effect.scoped(Effect.map(pool.get({ server, scope: key }), (session) => {
        const now = performance.now()
        latencies[i] = now - asked
        firstServed = Math.min(firstServed, now - start)
        sessions.add(session)
      }))
    }), { concurrency: "unbounded", discard: true }))
  return {
    latencies: [...latencies],
    firstServed,
    wall: performance.now() - start,
    cpu: L.cpuMillis() - cpuStart,
    distinct: sessions.size
  }
}

/**
 * One timed burst: wall, this process's CPU and the main thread's GC time in it (V8's `GCProfiler`), in
 * milliseconds.
 */
const timed = async (run: () => Promise<unknown>) => {
  await L.gcSettled()
  const gcs = new GCProfiler()
  gcs.start()
  const [wall, cpu] = [performance.now(), L.cpuMillis()]
  await run()
  const [wallEnd, cpuEnd] = [performance.now(), L.cpuMillis()]
  const gcMicros = (gcs.stop()?.statistics ?? []).reduce((sum, gc) => sum + gc.cost, 0)
  return { wall: wallEnd - wall, cpu: cpuEnd - cpu, gc: gcMicros / 1000 }
}

/**
 * A raw SDK client connected to an echo transport of its own (`held`: see `makeEchoTransport`). `lazy`: with
 * the lazy JSON-schema validator the pool's sessions use, instead of the SDK's default (Ajv, built per client).
 */
const rawEchoClient = async (lazy: boolean, held?: Array<() => void>) => {
  const client = lazy ? new Client(L.clientInfo, { jsonSchemaValidator: L.lazyValidator() }) : new Client(L.clientInfo)
  await client.connect(L.makeEchoTransport(held))
  return client
}

/** `n` raw SDK clients connected at once (`rawEchoClient`); closed after timing. */
const rawConnects = (n: number, wrap: boolean, lazy = false) => {
  let clients: Array<Client> = []
  const connect = () => rawEchoClient(lazy)
  return {
    // The Effect floor: what any Effect API pays for a burst of gets at least, a fiber and a Scope each.
    run: wrap
      ? async () => {
        clients = await Effect.runPromise(
          Effect.forEach(range(n), () => Effect.scoped(Effect.tryPromise(connect)), { concurrency: "unbounded" })
        )
      }
      : async () => {
        clients = await Promise.all(range(n).map(connect))
      },
    close: async () => {
      await Promise.all(clients.map((client) => client.close()))
      clients = []
    }
  }
}

/** `n` gets of distinct missing keys at once on a fresh pool of capacity `n` (nothing is evicted). */
const poolDistinct = (n: number, negotiating: boolean) => {
  let open: L.OpenPool | undefined
  let made = 0
  return {
    prepare: async () => {
      open = await L.openPool({ servers: { echo: negotiating ? L.echoConfig : L.echoConfigPinned }, capacity: n })
    },
    run: async () => {
      const pool = open!.pool
      await Effect.runPromise(
        Effect.forEach(range(n), (i) => Effect.scoped(pool.get({ server: "echo", scope: `key-${i}` })), {
          concurrency: "unbounded",
          discard: true
        })
      )
      made = (await Effect.runPromise(pool.snapshot)).length
    },
    close: async () => {
      const start = performance.now()
      await open!.close()
      open = undefined
      return performance.now() - start
    },
    made: () => made
  }
}

/**
 * What one connect holds while it waits for its `initialize` answer, and what it holds once connected and
 * idle: heap after forced GCs with `n` connects all waiting (the echo transport keeps their answers), then
 * once every answer was sent. A pool get beside a raw SDK connect with the lazy validator the pool's sessions
 * use, so that the difference is the pool's own.
 */
const heldMemory = async (n: number) => {
  const measure = async (
    start: (held: Array<() => void>) => { done: Promise<unknown>; close: () => Promise<void> }
  ) => {
    const held: Array<() => void> = []
    const before = L.heapUsed()
    const { close, done } = start(held)
    for (let turn = 0; held.length < n && turn < 100_000; turn++) {
      await new Promise((resolve) => setImmediate(resolve))
    }
    if (held.length < n) throw new Error(`only ${held.length} of ${n} connects reached initialize`)
    const inFlight = (L.heapUsed() - before) / n
    for (const answer of held) answer()
    await done
    const idle = (L.heapUsed() - before) / n
    await close()
    return { inFlight, idle }
  }
  const pool = await measure((held) => {
    const opening = L.openPool({
      servers: { echo: L.echoConfigPinnedHolding(held) },
      capacity: n
    })
    const done = opening.then(({ pool }) =>
      Effect.runPromise(
        Effect.forEach(range(n), (i) => Effect.scoped(pool.get({ server: "echo", scope: `key-${i}` })), {
          concurrency: "unbounded",
          discard: true
        })
      )
    )
    return { done, close: () => opening.then((open) => open.close()) }
  })
  const raw = await measure((held) => {
    const connecting = Promise.all(range(n).map(() => rawEchoClient(true, held)))
    return {
      done: connecting,
      close: () => connecting.then((clients) => Promise.all(clients.map((client) => client.close()))).then(() => {})
    }
  })
  return { pool, raw }
}

const distinctVariants = [
  "raw SDK connects (Promise.all)",
  "raw SDK connects, each in an Effect fiber",
  "raw SDK connects, lazy validator (Promise.all)",
  "pool.get",
  "pool.get, negotiating"
] as const
type DistinctVariant = (typeof distinctVariants)[number]

/**
 * Bursts of distinct missing keys, 1,000 and 10,000 gets at once, beside the same number of raw SDK
 * `Client` connects on the same echo transport. Each round runs the variants in a rotating order, each at
 * both sizes back to back (alternating which first), each burst after a forced GC; the first round is a
 * warm-up.
 */
const distinctBursts = async () => {
  const sizes = [1_000, 10_000] as const
  const rounds = 5
  const wall = new Map<string, Array<number>>()
  const cpu = new Map<string, Array<number>>()
  const gc = new Map<string, Array<number>>()
  const closes: Array<number> = []
  let allMade = true
  const key = (v: DistinctVariant, n: number) => `${v}@${n}`
  for (let round = -1; round < rounds; round++) {
    for (let i = 0; i < distinctVariants.length; i++) {
      const variant = distinctVariants[(Math.max(round, 0) + i) % distinctVariants.length]!
      // A variant's two sizes back to back, in alternating order: the scaling ratio then compares bursts that
      // follow the same other variants (whose garbage, Ajv's above all, changes how the next burst collects).
      for (const n of round < 0 ? [1_000] : round % 2 === 0 ? sizes : [...sizes].reverse()) {
        let time: { wall: number; cpu: number; gc: number }
        if (variant === "pool.get" || variant === "pool.get, negotiating") {
          const p = poolDistinct(n, variant === "pool.get, negotiating")
          await p.prepare()
          time = await timed(p.run)
          if (p.made() !== n) allMade = false
          const closeMillis = await p.close()
          if (n === 10_000 && round >= 0 && variant === "pool.get") closes.push(closeMillis)
        } else {
          const r = rawConnects(
            n,
            variant === "raw SDK connects, each in an Effect fiber",
            variant === "raw SDK connects, lazy validator (Promise.all)"
          )
          time = await timed(r.run)
          await r.close()
        }
        if (round < 0) continue
        const k = key(variant, n)
        wall.set(k, [...(wall.get(k) ?? []), time.wall / n])
        cpu.set(k, [...(cpu.get(k) ?? []), time.cpu / n])
        gc.set(k, [...(gc.get(k) ?? []), time.gc / n])
      }
    }
    if (round >= 0) process.stdout.write(".")
  }
  process.stdout.write("\n")
  const raw = (n: number) => key("raw SDK connects (Promise.all)", n)
  const rows = sizes.flatMap((n) =>
    distinctVariants.map((v) => {
      const k = key(v, n)
      return [
        `${n.toLocaleString("en-US")} × ${v}`,
        `${L.fmt(L.median(wall.get(k)!) * n, 0)} ms`,
        `${L.fmt(L.median(wall.get(k)!) * 1000, 0)} µs`,
        L.pairText(L.pairRatio(wall.get(k)!, wall.get(raw(n))!)),
        `${L.fmt(L.median(cpu.get(k)!) * 1000, 0)} µs`,
        L.pairText(L.pairRatio(cpu.get(k)!, cpu.get(raw(n))!))
      ]
    })
  )
  const on = (clock: Map<string, Array<number>>) => {
    const ratio = (a: string, b: string) => L.pairRatio(clock.get(a)!, clock.get(b)!)
    const fiber = (n: number) => key("raw SDK connects, each in an Effect fiber", n)
    const pooled = (n: number) => key("pool.get", n)
    return {
      vsRaw: ratio(pooled(10_000), raw(10_000)),
      floorVsRaw: ratio(fiber(10_000), raw(10_000)),
      scaling: ratio(pooled(10_000), pooled(1_000)),
      rawScaling: ratio(raw(10_000), raw(1_000)),
      floorScaling: ratio(fiber(10_000), fiber(1_000)),
      perGet: (v: DistinctVariant, n: number) => L.median(clock.get(key(v, n))!) * 1000
    }
  }
  return { rows, allMade, closeMillis: L.median(closes), cpu: on(cpu), wall: on(wall), gc: on(gc) }
}

export const burst = async (): Promise<Section> => {
  const waiters = 10_000
  let connects = 0
  const inMemory = McpServerConfig.inMemory(() => {
    connects++
    return makeNotebookServer()
  })
  const { close, pool } = await L.openPool({ servers: { inMemory, stdio: L.notebookStdio } })
  const rows: Array<Array<string>> = []
  const p99s: Record<string, number> = {}
  let allExactlyOne = true
  for (const server of ["inMemory", "stdio"] as const) {
    const reps = server === "stdio" ? 3 : 5
    console.log(
      `cold burst (${server}): ${reps} × ${waiters.toLocaleString("en-US")} concurrent gets of one missing key`
    )
    const p50 = [], p99 = [], first = [], wall = [], cpu = [], perRepConnects = []
    for (let rep = 0; rep < reps; rep++) {
      L.gc()
      const before = connects
      const result = await burstOnce(pool, server, `burst-${rep}`, waiters)
      // In-memory: the server factory counts connects. Stdio: one process per session, so count sessions.
      const made = server === "inMemory" ? connects - before : result.distinct
      const rowsForKey = (await Effect.runPromise(pool.snapshot)).filter((r) =>
        r.server === server && r.scope === `burst-${rep}`
      )
      if (made !== 1 || result.distinct !== 1 || rowsForKey.length !== 1) allExactlyOne = false
      perRepConnects.push(made)
      p50.push(L.percentile(result.latencies, 50))
      p99.push(L.percentile(result.latencies, 99))
      first.push(result.firstServed)
      wall.push(result.wall)
      cpu.push(result.cpu)
    }
    p99s[server] = L.median(p99)
    rows.push([
      server === "inMemory" ? "in-memory (notebook McpServer)" : "stdio (notebook process)",
      perRepConnects.join(", "),
      `${L.fmt(L.median(p50))} ms`,
      `${L.fmt(L.median(p99))} ms`,
      `${L.fmt(L.median(first))} ms`,
      `${L.fmt(L.median(wall))} ms`,
      `${L.fmt(L.median(cpu))} ms`
    ])
  }
  await close()
  console.log("cold bursts of distinct keys: 1,000 and 10,000 gets vs as many raw SDK connects (echo transport)")
  const d = await distinctBursts()
  const c = d.cpu
  const heldConnects = 2_000
  const held = await heldMemory(heldConnects)
  const heldText = `a pool get holds ${kib(held.pool.inFlight)} while it waits for \`initialize\` and ${
    kib(held.pool.idle)
  } once idle, a raw connect (lazy validator) ${kib(held.raw.inFlight)} and ${kib(held.raw.idle)}`
  return {
    id: "burst",
    title: "3. Cold bursts: 10,000 concurrent `get`s of one missing key; 1,000 and 10,000 of distinct keys",
    description: "All gets are forked at once (`Effect.forEach`, unbounded concurrency) on a key that does " +
      "not exist yet; each waiter's latency runs from its own call to holding the session, so it includes " +
      "the connect and the time to fork the other waiters and to return their leases. Medians over the " +
      "repetitions, a fresh key each. Client CPU is this process's over the whole burst (for stdio, the " +
      "server process's own is not in it).",
    table: {
      head: [
        "server",
        "connects per burst",
        "waiter p50",
        "waiter p99",
        "first waiter served",
        "all served (wall)",
        "client CPU (whole burst)"
      ],
      rows
    },
    tables: [{
      caption: "**Distinct keys.** N gets of N different missing keys at once on a fresh pool (capacity N, so " +
        "nothing is evicted), until the last holds its session, beside N raw SDK `Client`s connected at once " +
        "(`Promise.all`) to the same in-memory transport (bench/lib.ts `makeEchoTransport`, which answers " +
        "`initialize` itself, so that connects cost the clients, not a server), and beside those raw connects " +
        "each in an Effect fiber with a `Scope` (`Effect.forEach` + `Effect.scoped(Effect.tryPromise(...))`): " +
        "the least any Effect API pays. The pool's server is pinned to 2025-11-25 (`protocol`), the one revision " +
        "the raw client speaks, so that a pool connect does what a raw one does, one `initialize`; the row " +
        "`pool.get, negotiating` leaves the revision to negotiation, as by default: on a fresh pool the first " +
        "connect asks the server (`server/discover`) and the others wait for its answer, then go on together, " +
        "all of the burst in flight at once (the pool keeps the verdict, so this happens once per server). " +
        "A third raw variant gives the raw `Client`s the lazy JSON-schema validator " +
        "the pool's sessions use (bench/lib.ts `lazyValidator`): most of a default raw connect's CPU is the SDK " +
        "building its Ajv validator, which a pool session never pays, so that row shows the SDK's own connect " +
        "work bare and the pool's machinery per connect (fibers, scopes, entry, session wrapper) is the " +
        "difference to it. 5 variants per round in rotating order, each at both sizes back to back (which " +
        "first alternates by round, so that a variant's 1,000 and 10,000 follow the same other variants: " +
        "their garbage, Ajv's above all, changes how the next burst collects), each burst after a forced GC; " +
        "one warm-up round at 1,000, then 5 rounds; ratios are medians " +
        "over rounds of the ratio within a round. Everything runs in this process, so the targets use its CPU " +
        "time (other processes on a shared machine inflate the wall clock, not it); wall ratios are shown " +
        "beside them. Opening the pool and closing the sessions are not timed " +
        `(closing the pool of 10,000 took ${L.fmt(d.closeMillis, 0)} ms). ` +
        (d.allMade ? "Every pool burst made exactly N sessions." : "**A pool burst did NOT make exactly N sessions.**"),
      head: ["burst", "all connected (wall)", "per get", "× raw, wall (IQR)", "CPU per get", "× raw, CPU (IQR)"],
      rows: d.rows
    }, {
      caption: `**Memory held per connect.** ${heldConnects.toLocaleString("en-US")} connects at once on the ` +
        "echo transport, which keeps their `initialize` answers until all of them wait: the heap (after " +
        "forced GCs) per connect while they wait, and once every answer was sent and they are connected and " +
        "idle. The raw `Client`s use the pool's lazy validator and the pool's server is pinned to 2025-11-25 as " +
        "above, so that the difference is the pool's own. " +
        "Many connects in flight at once interleave: what each holds between its steps outlives the " +
        "young-generation collections the others' allocations trigger, and is copied (and promoted); this, " +
        "not the pool's per-connect work, is what grows from 1,000 to 10,000 at once.",
      head: ["connect", "held while waiting for initialize", "held once connected and idle"],
      rows: [
        ["pool.get", kib(held.pool.inFlight), kib(held.pool.idle)],
        ["raw SDK connect, lazy validator", kib(held.raw.inFlight), kib(held.raw.idle)]
      ]
    }],
    targets: [
      {
        name: "10,000 concurrent cold `get`s of distinct keys ÷ 10,000 raw SDK connects, same transport (CPU)",
        where: "§3",
        bound: 1.3,
        value: c.vsRaw.median,
        spread: `${L.fmt(c.vsRaw.lo, 2)}–${L.fmt(c.vsRaw.hi, 2)}; wall ${L.fmt(d.wall.vsRaw.median, 2)}×`,
        floor: `${L.fmt(c.floorVsRaw.median, 2)}× (the raw connects, each in an Effect fiber with a Scope)`,
        why:
          `CPU per get: ${L.fmt(c.perGet("pool.get", 10_000), 0)} µs vs ${
            L.fmt(c.perGet("raw SDK connects (Promise.all)", 10_000), 0)
          } µs for a raw connect; the Effect fiber and Scope account for ${
            L.fmt(
              c.perGet("raw SDK connects, each in an Effect fiber", 10_000) -
                c.perGet("raw SDK connects (Promise.all)", 10_000),
              0
            )
          } µs of the difference, the pool's own bookkeeping (entry, owner fiber, lease) for the rest. A raw ` +
          `connect with the pool's lazy validator takes ${
            L.fmt(c.perGet("raw SDK connects, lazy validator (Promise.all)", 10_000), 0)
          } µs (the SDK's own connect work, without building Ajv as a default one does): the pool's machinery ` +
          `per connect is ${
            L.fmt(
              c.perGet("pool.get", 10_000) - c.perGet("raw SDK connects, lazy validator (Promise.all)", 10_000),
              0
            )
          } µs, the default client's Ajv build ${
            L.fmt(
              c.perGet("raw SDK connects (Promise.all)", 10_000) -
                c.perGet("raw SDK connects, lazy validator (Promise.all)", 10_000),
              0
            )
          } µs.`
      },
      {
        name: "cold `get` of a distinct key: CPU per get at 10,000 at once ÷ at 1,000",
        where: "§3",
        bound: 1.2,
        value: c.scaling.median,
        spread: `${L.fmt(c.scaling.lo, 2)}–${L.fmt(c.scaling.hi, 2)}; wall ${L.fmt(d.wall.scaling.median, 2)}×`,
        floor: `${L.fmt(c.rawScaling.median, 2)}× for the raw connects, ${
          L.fmt(c.floorScaling.median, 2)
        }× for them in Effect fibers`,
        why:
          `CPU per get: ${L.fmt(c.perGet("pool.get", 1_000), 0)} µs at 1,000, ${
            L.fmt(c.perGet("pool.get", 10_000), 0)
          } µs at 10,000; a raw connect: ${L.fmt(c.perGet("raw SDK connects (Promise.all)", 1_000), 0)} → ${
            L.fmt(c.perGet("raw SDK connects (Promise.all)", 10_000), 0)
          } µs; the pool's own CPU per get over a raw connect: ${
            L.fmt(c.perGet("pool.get", 1_000) - c.perGet("raw SDK connects (Promise.all)", 1_000), 0)
          } µs at 1,000, ${
            L.fmt(c.perGet("pool.get", 10_000) - c.perGet("raw SDK connects (Promise.all)", 10_000), 0)
          } µs at 10,000. The growth is garbage collection: main-thread GC time per get ${
            L.fmt(d.gc.perGet("pool.get", 1_000), 0)
          } µs at 1,000 and ${L.fmt(d.gc.perGet("pool.get", 10_000), 0)} µs at 10,000 (raw connects: ${
            L.fmt(d.gc.perGet("raw SDK connects (Promise.all)", 1_000), 0)
          } and ${
            L.fmt(d.gc.perGet("raw SDK connects (Promise.all)", 10_000), 0)
          } µs); ${heldText}; at 10,000 at once what is held ` +
          "survives the young-generation collections and is copied. A raw connect's ratio stays low because most " +
          "of its CPU is building Ajv, the same at any size. Closing the gap means holding less per session: " +
          "the owner fiber, its connect attempt's fiber and scopes, the lease and the session wrapper."
      }
    ],
    headline: [
      {
        metric: "Cold burst: connects for 10,000 concurrent gets",
        value: allExactlyOne ? 1 : Number.NaN,
        target: 1,
        targetText: "exactly 1",
        text: allExactlyOne ? "exactly 1 (every repetition)" : "NOT exactly 1"
      },
      { metric: "Cold burst in-memory: waiter p99", value: p99s["inMemory"]!, text: `${L.fmt(p99s["inMemory"]!)} ms` },
      { metric: "Cold burst stdio: waiter p99", value: p99s["stdio"]!, text: `${L.fmt(p99s["stdio"]!)} ms` }
    ],
    bars: [
      {
        group: "cold bursts of distinct keys (CPU)",
        label: "10,000 gets ÷ 10,000 raw connects",
        value: d.cpu.vsRaw.median,
        target: 1.3
      },
      {
        group: "cold bursts of distinct keys (CPU)",
        label: "per get, 10,000 ÷ 1,000",
        value: d.cpu.scaling.median,
        target: 1.2
      }
    ]
  }
}

/** Opens `size` idle sessions in a pool of exactly that capacity and reports the heap they took. */
const fill = async (config: McpServerConfig.McpServerConfig, size: number) => {
  const heapBefore = L.heapUsed()
  const { close, pool } = await L.openPool({ servers: { s: config }, capacity: size })
  const start = performance.now()
  await Effect.runPromise(
    Effect.forEach(range(size), (i) => Effect.scoped(pool.get({ server: "s", scope: `thread-${i}` })), {
      concurrency: 64,
      discard: true
    })
  )
  const seconds = (performance.now() - start) / 1000
  const live = (await Effect.runPromise(pool.snapshot)).length
  return {
    pool,
    close,
    live,
    seconds,
    heapPerSession: (L.heapUsed() - heapBefore) / size
  }
}

const kib = (bytes: number) => `${L.fmt(bytes / 1024)} KiB`

/**
 * Random existing keys of `size` (`thread-0` … `thread-<size - 1>`), from a table of random numbers made
 * up front: drawing one costs the same in every variant and nothing from `Math.random` in the timed loop.
 */
const randomKeys = (size: number) => {
  const random = Float64Array.from({ length: 1 << 16 }, () => Math.random())
  let next = 0
  return () => `thread-${Math.floor(random[next++ & 0xffff]! * size)}`
}

/** `n` gets of random existing keys of a pool of `size` sessions, in one Effect program. */
const randomHits = (pool: L.Pool, size: number) => {
  const key = randomKeys(size)
  return (n: number) =>
    Effect.runPromise(Effect.gen(function*() {
      for (let i = 0; i < n; i++) yield* Effect.scoped(pool.get({ server: "s", scope: key() }))
    }))
}

/** `n` `Map.get`s of random existing keys of a map of `size` entries, each in `Effect.scoped`: a floor. */
const randomLookups = (size: number) => {
  const map = new Map(range(size).map((i) => [`thread-${i}`, { i }]))
  const key = randomKeys(size)
  return (n: number) =>
    Effect.runPromise(Effect.gen(function*() {
      for (let i = 0; i < n; i++) yield* Effect.scoped(Effect.sync(() => map.get(key())))
    }))
}

/**
 * `n` `Map.get`s of random keys of a map of the pool's own `size` sessions, each followed by one read of the
 * session it finds, in `Effect.scoped`: a floor closer to a hit, which must follow its lookup to records of
 * the session's own (the plain floor never reads the value it finds). The session object stands in for the
 * entry and state a hit reads, which the bench cannot reach: all were allocated when the session connected,
 * among its other objects. Collecting the sessions is one `get` of each (before any timing).
 */
const randomSessionReads = async (pool: L.Pool, size: number) => {
  const sessions = new Map<string, McpSession.McpSession>()
  await Effect.runPromise(
    Effect.forEach(
      range(size),
      (i) =>
        Effect.scoped(Effect.map(pool.get({ server: "s", scope: `thread-${i}` }), (session) => {
          sessions.set(`thread-${i}`, session)
        })),
      { discard: true }
    )
  )
  const key = randomKeys(size)
  let found = 0
  const run = (n: number) =>
    Effect.runPromise(Effect.gen(function*() {
      for (let i = 0; i < n; i++) {
        yield* Effect.scoped(Effect.sync(() => {
          const session = sessions.get(key())
          if (session?.server === "s") found++
        }))
      }
    }))
  return { run, found: () => found }
}

/** Heap per idle raw SDK `Client` connected to an echo transport (the pool's sessions beside a bare client). */
const rawClientHeap = async (n: number) => {
  const before = L.heapUsed()
  const clients = await Promise.all(range(n).map(() => rawEchoClient(false)))
  const perClient = (L.heapUsed() - before) / n
  await Promise.all(clients.map((client) => client.close()))
  return perClient
}

export const scale = async (): Promise<Section> => {
  // Real SDK servers in this process first, on a small heap (fewer sessions: each is heavier).
  const servers: Array<Array<string>> = []
  for (
    const [label, config] of [
      ["SDK `Server`, one tool (in-memory)", McpServerConfig.inMemory(L.makeTinyServer)],
      ["notebook `McpServer`, 7 tools (in-memory)", L.notebookInMemory]
    ] as const
  ) {
    process.stdout.write(`scale: 2,000 sessions of ${label}... `)
    const r = await fill(config, 2000)
    console.log(`${kib(r.heapPerSession)} heap per session`)
    servers.push([`2,000 (${label})`, "–", "–", kib(r.heapPerSession), `${L.fmt((r.seconds * 1e6) / 2000, 0)} µs`])
    await r.close()
  }
  const rawClients = L.quick ? 1_000 : 10_000
  const rawHeap = await rawClientHeap(rawClients)
  console.log(`scale: ${kib(rawHeap)} heap per idle raw SDK Client (echo transport)`)

  const sizes = L.quick ? [1, 1_000, 10_000] : [1, 10_000, 100_000]
  const largestSize = sizes[sizes.length - 1]!
  const label = (size: number) => `${size.toLocaleString("en-US")} live`
  const filled = []
  let smallHeapHit = Number.NaN
  for (const size of sizes) {
    process.stdout.write(`scale: opening ${size.toLocaleString("en-US")} in-memory sessions (echo transport)... `)
    const result = await fill(L.echoConfig, size)
    console.log(`${L.fmt(result.seconds)} s, ${kib(result.heapPerSession)} heap per session`)
    filled.push({ size, ...result })
    if (size === 1) {
      // Reference: the same hits before the big pools exist, on a small heap (same clock and method).
      const { cpu } = await L.compare([{ name: "small heap", run: randomHits(result.pool, size) }], {
        rounds: 10,
        batch: 2000,
        warmup: 5000
      })
      smallHeapHit = cpu.micros["small heap"]!
    }
  }
  const mapSmall = "floor: Map.get, 1 entry"
  const mapLarge = `floor: Map.get, ${largestSize.toLocaleString("en-US")} entries`
  const readSmall = "floor: Map.get + a read of the session it finds, 1 session"
  const readLarge = `floor: Map.get + a read of the session it finds, ${largestSize.toLocaleString("en-US")} sessions`
  const hitRounds = { rounds: 30, batch: 2000, warmup: 5000 }
  const smallReads = await randomSessionReads(filled[0]!.pool, 1)
  const largeReads = await randomSessionReads(filled[filled.length - 1]!.pool, largestSize)
  console.log(`scale: get hit latency, pools of ${sizes.map((n) => n.toLocaleString("en-US")).join(" / ")} interleaved`)
  const { cpu: result } = await L.compare(
    [
      ...filled.map(({ pool, size }) => ({ name: label(size), run: randomHits(pool, size) })),
      { name: mapSmall, run: randomLookups(1) },
      { name: mapLarge, run: randomLookups(largestSize) },
      { name: readSmall, run: smallReads.run },
      { name: readLarge, run: largeReads.run }
    ],
    hitRounds
  )
  // Every read found its session: the floor did the work it claims.
  if (smallReads.found() + largeReads.found() !== 2 * (hitRounds.warmup + hitRounds.rounds * hitRounds.batch)) {
    throw new Error("scale: a session-read floor missed its sessions")
  }
  const closeStart = performance.now()
  await filled[1]!.close()
  const closeMiddle = performance.now() - closeStart
  await filled[0]!.close()
  const largest = filled[2]!
  const target = L.pairRatio(result.samples[label(largestSize)]!, result.samples[label(1)]!)
  const mapGrowth = L.pairRatio(result.samples[mapLarge]!, result.samples[mapSmall]!)
  // The floors: the 1-session pool's hit plus what a lookup alone, and a lookup with a read of the session
  // it finds, gain from 1 to `largestSize` entries (same rounds).
  const one = result.samples[label(1)]!
  const floorOf = (small: string, large: string) =>
    L.pairRatio(one.map((x, i) => x + result.samples[large]![i]! - result.samples[small]![i]!), one)
  const floor = floorOf(mapSmall, mapLarge)
  const readFloor = floorOf(readSmall, readLarge)
  const readGrowth = L.pairRatio(result.samples[readLarge]!, result.samples[readSmall]!)
  const micros = (name: string) => result.micros[name]!
  const hitBound = 1.5
  return {
    id: "scale",
    title: `4. Scale: \`get\` hit latency with 1, ${sizes[1]!.toLocaleString("en-US")} and ${
      largestSize.toLocaleString("en-US")
    } live sessions`,
    description: "Three pools alive at once in one process (capacity = size, so nothing is evicted), filled " +
      "with idle in-memory sessions; then `Effect.scoped(pool.get(server, randomKey))` (take and return a " +
      "lease on an existing session, `get`'s span included) timed (CPU time) in interleaved batches of 2,000, " +
      "each pool compared round by round with the 1-session pool (same heap, same rounds). The floor rows do " +
      "the same with a plain `Map.get` of a random key inside `Effect.scoped`: what a lookup costs by itself " +
      "in a map of that size, in the same heap; and with a `Map.get` of a random key in a map of the pools' own " +
      "sessions (1 and the largest pool's), followed by one read of a field of the session it finds: what a " +
      "lookup that reaches one record of the session's own costs, a record allocated when the session " +
      "connected among its other objects, as the entry and state a hit reads were (the session stands in for " +
      "them; collecting the sessions takes one `get` of each, before timing). The sessions use a minimal " +
      "in-memory server: a transport that answers `initialize` and `tools/call` itself (bench/lib.ts " +
      "`makeEchoTransport`), because 100,000 SDK server objects would mostly measure the servers; the memory " +
      "per session in the pool rows is the pool's own plus the SDK `Client`'s. The last rows show a bare SDK " +
      "`Client` and what a real SDK server in the same process adds. Heap is `heapUsed` after forced GCs, " +
      "before and after opening the sessions.",
    table: {
      head: [
        "live sessions",
        "get hit (median, CPU)",
        "× 1 live session (IQR)",
        "heap per idle session",
        "connect (fill) per session"
      ],
      rows: [
        ...filled.map((f) => [
          f.size.toLocaleString("en-US"),
          `${L.fmt(result.micros[label(f.size)]!, 1)} µs`,
          L.ratioText(result, label(f.size)),
          f.size === 1 ? "–" : kib(f.heapPerSession),
          `${L.fmt((f.seconds * 1e6) / f.size, 0)} µs`
        ]),
        [mapSmall, `${L.fmt(result.micros[mapSmall]!, 1)} µs`, "–", "–", "–"],
        [
          mapLarge,
          `${L.fmt(result.micros[mapLarge]!, 1)} µs`,
          `${L.pairText(mapGrowth)} × the 1-entry Map`,
          "–",
          "–"
        ],
        [readSmall, `${L.fmt(result.micros[readSmall]!, 1)} µs`, "–", "–", "–"],
        [
          readLarge,
          `${L.fmt(result.micros[readLarge]!, 1)} µs`,
          `${L.pairText(readGrowth)} × with 1 session`,
          "–",
          "–"
        ],
        [
          `${rawClients.toLocaleString("en-US")} bare SDK \`Client\`s on the echo transport (no pool)`,
          "–",
          "–",
          kib(rawHeap),
          "–"
        ],
        ...servers
      ]
    },
    notes: [
      `All ${filled.map((f) => f.live.toLocaleString("en-US")).join(" / ")} sessions were live while measured.`,
      `The pools share one heap of ${L.fmt(process.memoryUsage().heapUsed / 2 ** 30)} GiB, which makes ` +
      "every get slower (allocation and GC on a large heap) but equally so for all of them, compared in the " +
      `same rounds: the ratio isolates the pool's own scaling. Measured alone, before the big pools existed ` +
      `(same method, earlier in the process), the 1-session pool's hit took ${L.fmt(smallHeapHit, 1)} µs; ` +
      `interleaved with the others, ${L.fmt(result.micros[label(1)]!, 1)} µs. Figures taken at different ` +
      "moments of one process do not compare; the target uses only rounds measured together, against the " +
      "1-session pool.",
      `Closing the ${sizes[1]!.toLocaleString("en-US")} idle sessions (forced, in parallel) took ${
        L.fmt(closeMiddle, 0)
      } ms. The ${largestSize.toLocaleString("en-US")}-session pool is not closed: the process exits.`
    ],
    targets: [{
      name: `\`get\` hit with ${
        largestSize.toLocaleString("en-US")
      } live sessions ÷ with 1 (same process, round by round, CPU)`,
      where: "§4",
      bound: hitBound,
      value: target.median,
      spread: `${L.fmt(target.lo, 2)}–${L.fmt(target.hi, 2)}`,
      floor: `${L.pairText(readFloor)} (the 1-session hit plus what a \`Map.get\` and one read of the session ` +
        `it finds gain from 1 to ${largestSize.toLocaleString("en-US")}, same rounds); ${
          L.pairText(floor)
        } with a plain \`Map.get\` alone`,
      why:
        `${L.fmt(micros(label(largestSize)), 1)} vs ${L.fmt(micros(label(1)), 1)} µs per hit (+${
          L.fmt(micros(label(largestSize)) - micros(label(1)), 1)
        } µs). Beside it, a lookup alone gains +${L.fmt(micros(mapLarge) - micros(mapSmall), 1)} µs from 1 to ${
          largestSize.toLocaleString("en-US")
        }, and a lookup that also reads the session it finds +${L.fmt(micros(readLarge) - micros(readSmall), 1)} µs` +
        (Math.max(floor.median, readFloor.median) > hitBound
          ? ": the floor is over the bound before the pool does anything of its own. "
          : ". ") +
        "None of the hit's steps does more with more sessions (two map lookups, of which only the scope's " +
        "grows; the idle queue appends, and is compacted once per about as many hits as there are idle " +
        "sessions): what it adds beyond the floor is the same steps on more memory, reading and writing the " +
        "session's entry and state (lease count, idle time) among all the sessions' objects, records the " +
        "floors do not touch."
    }],
    headline: [
      {
        metric: "Scale: heap per idle session (pool + SDK Client, minimal server)",
        value: largest.heapPerSession,
        text: `${kib(largest.heapPerSession)} (a bare SDK Client: ${kib(rawHeap)})`
      }
    ],
    bars: [{
      group: "scale (× 1 live session, CPU)",
      label: `get hit, ${largestSize.toLocaleString("en-US")} sessions`,
      value: target.median,
      target: hitBound
    }]
  }
}

const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))

export const churn = async (): Promise<Section> => {
  const capacity = 256
  const scopes = 5_000
  const gets = L.quick ? 10_000 : 100_000
  const chunk = L.quick ? 500 : 5_000
  const concurrency = 16
  console.log(
    `churn: ${gets.toLocaleString("en-US")} gets over ${scopes.toLocaleString("en-US")} scopes, capacity ${capacity}`
  )
  const heapBefore = L.heapUsed()
  const opened = L.echoCounts.opened
  const closed = L.echoCounts.closed
  // The pool lives only inside this function, so that the heap can be compared once it is gone.
  const run = async () => {
    const { close, pool } = await L.openPool({ servers: { echo: L.echoConfig }, capacity })
    let maxAttached = 0
    let maxLive = 0
    const start = performance.now()
    for (let done = 0; done < gets; done += chunk) {
      await Effect.runPromise(Effect.forEach(
        range(chunk),
        () => Effect.scoped(pool.get({ server: "echo", scope: `thread-${Math.floor(Math.random() * scopes)}` })),
        { concurrency, discard: true }
      ))
      // Quiescent point: no lease is held, so capacity must hold.
      const rows = await Effect.runPromise(pool.snapshot)
      maxAttached = Math.max(maxAttached, rows.filter((r) => r.attached).length)
      maxLive = Math.max(maxLive, rows.length)
      if ((done / chunk) % 4 === 3) process.stdout.write(".")
    }
    const seconds = (performance.now() - start) / 1000
    process.stdout.write("\n")
    await close()
    return { seconds, maxAttached, maxLive, afterClose: (await Effect.runPromise(pool.snapshot)).length }
  }
  const { afterClose, maxAttached, maxLive, seconds } = await run()
  const connects = L.echoCounts.opened - opened
  const leaked = connects - (L.echoCounts.closed - closed)
  // Let the scheduler drain what the closes queued before weighing the heap.
  await sleep(1000)
  const heapGrowth = L.heapUsed() - heapBefore
  return {
    id: "churn",
    title: "5. Churn: 100,000 gets over 5,000 scopes, capacity 256",
    description: `Uniformly random scopes, ${concurrency} gets in flight, each \`Effect.scoped(pool.get(...))\`, ` +
      "on the minimal echo server of section 4 (so connects cost the pool and the SDK `Client`, not a " +
      "server). After every 5,000 gets (no lease held) the snapshot is checked against the capacity. " +
      "Leaks: transports opened vs closed once the pool is closed, and the heap once it is gone.",
    table: {
      head: ["measure", "value"],
      rows: [
        ["throughput", `${L.int(gets / seconds)} gets/s (${L.fmt(seconds)} s)`],
        [
          "connects (misses)",
          `${connects.toLocaleString("en-US")} (hit rate ${L.fmt((100 * (gets - connects)) / gets)} %)`
        ],
        ["max attached sessions at the idle checkpoints", `${maxAttached} (capacity ${capacity})`],
        ["max live sessions at the idle checkpoints, including ones still closing", maxLive.toLocaleString("en-US")],
        ["transports opened − closed after close", String(leaked)],
        ["sessions in the snapshot after close", String(afterClose)],
        ["heap after the pool is gone − before it was made", kib(heapGrowth)]
      ]
    },
    headline: [
      {
        metric: `Churn: throughput (${L.fmt((100 * connects) / gets, 0)} % misses)`,
        value: gets / seconds,
        text: `${L.int(gets / seconds)} gets/s`
      },
      {
        metric: "Churn: max attached sessions at idle checkpoints",
        value: maxAttached,
        target: capacity,
        text: String(maxAttached)
      },
      {
        metric: "Churn: max sessions still open at idle checkpoints (attached + closing)",
        value: maxLive,
        // The last gets of a chunk may have just evicted sessions whose close is still running.
        target: capacity + concurrency,
        targetText: `≤ ${capacity + concurrency} (capacity + gets in flight)`,
        text: maxLive.toLocaleString("en-US")
      },
      {
        metric: "Churn: leaked sessions",
        value: leaked + afterClose,
        target: 0,
        targetText: "0",
        text: String(leaked + afterClose)
      }
    ],
    bars: []
  }
}

/** Opens `n` sessions of the stubborn server, then times closing the pool. */
const closeStubborn = async (config: McpServerConfig.McpServerConfig, n: number) => {
  const { close, pool } = await L.openPool({ servers: { stubborn: config }, capacity: n })
  await Effect.runPromise(
    Effect.forEach(range(n), (i) => Effect.scoped(pool.get({ server: "stubborn", scope: `thread-${i}` })), {
      concurrency: 8
    })
  )
  const pids = (await Effect.runPromise(pool.snapshot)).flatMap((r) => r.pid === undefined ? [] : [r.pid])
  const start = performance.now()
  await close()
  const millis = performance.now() - start
  return { millis, processes: pids.length, left: pids.filter(isRunning).length }
}

export const shutdown = async (): Promise<Section> => {
  const servers = 50
  const graceMillis = 1000
  const stubborn = McpServerConfig.stdio({
    command: process.execPath,
    args: [fileURLToPath(new URL("./fixtures/stubborn-server.ts", import.meta.url))],
    stdinGrace: graceMillis,
    terminateGrace: 500
  })
  console.log(`shutdown: 1, then ${servers} stdio servers that ignore the end of stdin (stdinGrace 1 s)`)
  const one = await closeStubborn(stubborn, 1)
  const many = await closeStubborn(stubborn, servers)
  return {
    id: "shutdown",
    title: "7. Shutdown: closing a pool of 50 stdio servers that ignore stdin",
    description: "Each server (bench/fixtures/stubborn-server.ts) keeps running after its stdin ends, so " +
      "every session waits out `stdinGrace` (1 s), then gets SIGTERM (which ends it; `terminateGrace` 0.5 s " +
      "is not needed). Closing the pool's scope closes all sessions in parallel. A pool of one such server " +
      "is the reference.",
    table: {
      head: ["pool", "server processes", "close time", "÷ one stdinGrace", "alive after close"],
      rows: [one, many].map((r) => [
        r.processes === 1 ? "1 server" : `${r.processes} servers`,
        String(r.processes),
        `${L.int(r.millis)} ms`,
        L.fmt(r.millis / graceMillis, 2),
        String(r.left)
      ])
    },
    notes: [`Closed one after another, ${servers} servers would take at least ${servers * (graceMillis / 1000)} s.`],
    headline: [
      {
        metric: "Shutdown: 50 stubborn stdio servers, close time ÷ one grace period",
        value: many.millis / graceMillis,
        text: `${L.fmt(many.millis / graceMillis, 2)} (${L.int(many.millis)} ms vs ${
          L.int(one.millis)
        } ms for one; ${many.left} left alive)`
      }
    ],
    bars: [
      { group: "shutdown (close time ÷ one grace period)", label: "pool of 1 server", value: one.millis / graceMillis },
      {
        group: "shutdown (close time ÷ one grace period)",
        label: "pool of 50 servers",
        value: many.millis / graceMillis
      }
    ]
  }
}
