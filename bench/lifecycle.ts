/**
 * The pool's own machinery under load: a cold burst on one key, `get` latency at scale, churn through a
 * small capacity, and the shutdown of many stubborn stdio servers.
 */
import { Effect } from "effect"
import { fileURLToPath } from "node:url"
import { makeNotebookServer } from "../examples/notebook-server.ts"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import { isRunning } from "../test/utils/proc.ts"
import * as L from "./lib.ts"
import type { Section } from "./report.ts"

const range = (n: number) => Array.from({ length: n }, (_, i) => i)

/** `n` gets of `key`, all concurrent; each waiter's latency from its own start to holding the session. */
const burstOnce = async (pool: L.Pool, server: string, key: string, n: number) => {
  const latencies = new Float64Array(n)
  const sessions = new Set<unknown>()
  const start = performance.now()
  let firstServed = Number.POSITIVE_INFINITY
  await Effect.runPromise(Effect.forEach(range(n), (i) =>
    Effect.suspend(() => {
      const asked = performance.now()
      return Effect.scoped(Effect.map(pool.get(server, key), (session) => {
        const now = performance.now()
        latencies[i] = now - asked
        firstServed = Math.min(firstServed, now - start)
        sessions.add(session)
      }))
    }), { concurrency: "unbounded", discard: true }))
  return { latencies: [...latencies], firstServed, wall: performance.now() - start, distinct: sessions.size }
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
    const p50 = [], p99 = [], first = [], wall = [], perRepConnects = []
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
    }
    p99s[server] = L.median(p99)
    rows.push([
      server === "inMemory" ? "in-memory (notebook McpServer)" : "stdio (notebook process)",
      perRepConnects.join(", "),
      `${L.fmt(L.median(p50))} ms`,
      `${L.fmt(L.median(p99))} ms`,
      `${L.fmt(L.median(first))} ms`,
      `${L.fmt(L.median(wall))} ms`
    ])
  }
  await close()
  return {
    id: "burst",
    title: "3. Cold burst: 10,000 concurrent `get`s of one missing key",
    description: "All gets are forked at once (`Effect.forEach`, unbounded concurrency) on a key that does " +
      "not exist yet; each waiter's latency runs from its own call to holding the session, so it includes " +
      "the connect and the time to fork the other waiters and to return their leases. Medians over the " +
      "repetitions, a fresh key each.",
    table: {
      head: ["server", "connects per burst", "waiter p50", "waiter p99", "first waiter served", "all served (wall)"],
      rows
    },
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
    bars: []
  }
}

/** Opens `size` idle sessions in a pool of exactly that capacity and reports the heap they took. */
const fill = async (config: McpServerConfig.McpServerConfig, size: number) => {
  const heapBefore = L.heapUsed()
  const { close, pool } = await L.openPool({ servers: { s: config }, capacity: size })
  const start = performance.now()
  await Effect.runPromise(
    Effect.forEach(range(size), (i) => Effect.scoped(pool.get("s", `thread-${i}`)), { concurrency: 64, discard: true })
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

/** `n` gets of random existing keys of a pool of `size` sessions, in one Effect program. */
const randomHits = (pool: L.Pool, size: number) => {
  const random = Float64Array.from({ length: 1 << 16 }, () => Math.random())
  let next = 0
  return (n: number) =>
    Effect.runPromise(Effect.gen(function*() {
      for (let i = 0; i < n; i++) {
        yield* Effect.scoped(pool.get("s", `thread-${Math.floor(random[next++ & 0xffff]! * size)}`))
      }
    }))
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

  const sizes = L.quick ? [256, 1_000, 10_000] : [256, 10_000, 100_000]
  const filled = []
  let smallHeapHit = Number.NaN
  for (const size of sizes) {
    process.stdout.write(`scale: opening ${size.toLocaleString("en-US")} in-memory sessions (echo transport)... `)
    const result = await fill(L.echoConfig, size)
    console.log(`${L.fmt(result.seconds)} s, ${kib(result.heapPerSession)} heap per session`)
    filled.push({ size, ...result })
    if (size === 256) {
      // Reference: the same hits before the big pools exist, on a small heap.
      const hits = randomHits(result.pool, size)
      await hits(5000)
      const times = []
      for (let i = 0; i < 20; i++) {
        const start = performance.now()
        await hits(1000)
        times.push(performance.now() - start)
      }
      smallHeapHit = L.median(times) // ms per 1,000 gets = µs per get
    }
  }
  console.log("scale: get hit latency, pools of 256 / 10,000 / 100,000 interleaved")
  const { cpu: result } = await L.compare(
    filled.map(({ pool, size }) => ({ name: size.toLocaleString("en-US"), run: randomHits(pool, size) })),
    { rounds: 30, batch: 2000, warmup: 5000 }
  )
  const closeStart = performance.now()
  await filled[1]!.close()
  const close10k = performance.now() - closeStart
  await filled[0]!.close()
  const largest = filled[2]!
  const ratio = result.ratio[largest.size.toLocaleString("en-US")]!
  return {
    id: "scale",
    title: "4. Scale: `get` hit latency with 256, 10,000 and 100,000 live sessions",
    description: "Three pools alive at once in one process (capacity = size, so nothing is evicted), filled " +
      "with idle in-memory sessions; then `Effect.scoped(pool.get(server, randomKey))` (take and return a " +
      "lease on an existing session, `get`'s span included) timed (CPU time) in interleaved batches of 2,000. The " +
      "sessions use a minimal in-memory server: a transport that answers `initialize` and `tools/call` " +
      "itself (bench/lib.ts `makeEchoTransport`), because 100,000 SDK server objects would mostly measure " +
      "the servers; the memory per session in the first three rows is the pool's own plus the SDK " +
      "`Client`'s. The last two rows show what a real SDK server in the same process adds. Heap is " +
      "`heapUsed` after forced GCs, before and after opening the sessions.",
    table: {
      head: [
        "live sessions",
        "get hit (median)",
        "× 256 (interquartile range)",
        "heap per idle session",
        "connect (fill) per session"
      ],
      rows: [
        ...filled.map((f) => {
          const name = f.size.toLocaleString("en-US")
          return [
            name,
            `${L.fmt(result.micros[name]!, 1)} µs`,
            L.ratioText(result, name),
            kib(f.heapPerSession),
            `${L.fmt((f.seconds * 1e6) / f.size, 0)} µs`
          ]
        }),
        ...servers
      ]
    },
    notes: [
      `All ${filled.map((f) => f.live.toLocaleString("en-US")).join(" / ")} sessions were live while measured.`,
      `The three pools share one heap of ${L.fmt(process.memoryUsage().heapUsed / 2 ** 30)} GiB, which makes ` +
      "every get slower (allocation and GC on a large heap) but equally so for all three: the ratio isolates " +
      `the pool's own scaling. Before the big pools existed, the same get on the 256-session pool took ` +
      `${L.fmt(smallHeapHit, 1)} µs.`,
      `Closing the 10,000 idle sessions (forced, in parallel) took ${
        L.fmt(close10k, 0)
      } ms. The 100,000-session pool is not closed: the process exits.`
    ],
    headline: [
      { metric: "Scale: get hit latency, 100,000 ÷ 256 live sessions", value: ratio, target: 1.5 },
      {
        metric: "Scale: heap per idle session (pool + SDK Client, minimal server)",
        value: largest.heapPerSession,
        text: kib(largest.heapPerSession)
      }
    ],
    bars: [{ group: "scale (× 256 sessions)", label: "get hit, 100,000 sessions", value: ratio, target: 1.5 }]
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
        () => Effect.scoped(pool.get("echo", `thread-${Math.floor(Math.random() * scopes)}`)),
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
    Effect.forEach(range(n), (i) => Effect.scoped(pool.get("stubborn", `thread-${i}`)), { concurrency: 8 })
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
