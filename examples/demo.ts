/**
 * `npm start`: the pool in one page, against the bundled notebook server run as real processes.
 *
 *   1. Two chat threads keep separate state across calls (each has its own server process).
 *   2. A burst of concurrent calls on a new thread creates exactly one session.
 *   3. Closing a thread frees its process.
 *   4. Shutting the pool down leaves no process behind.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect } from "effect"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { McpServerConfig, McpSessionPool } from "../src/index.ts"

const notebookServer = McpServerConfig.stdio({
  command: process.execPath,
  args: [fileURLToPath(new URL("./notebook-server.ts", import.meta.url))]
})

const PoolLive = McpSessionPool.layer({ servers: { notebook: notebookServer }, capacity: 16 })

/** A process is gone when /proc has no entry for it, or only a zombie awaiting its parent. */
const isRunning = (pid: number): boolean => {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0] !== "Z"
  } catch {
    return false
  }
}

const text = (result: { readonly content: ReadonlyArray<unknown> }) =>
  (result.content[0] as { readonly text?: string } | undefined)?.text ?? ""

const call = (thread: string, name: string, args: Record<string, unknown> = {}) =>
  Effect.gen(function*() {
    const pool = yield* McpSessionPool.McpSessionPool
    return text(yield* pool.callTool({ server: "notebook", scope: thread, name, arguments: args }))
  })

const pidOf = (thread: string) =>
  Effect.gen(function*() {
    const pool = yield* McpSessionPool.McpSessionPool
    return yield* pool.use({ server: "notebook", scope: thread }, (session) => Effect.succeed(session.pid ?? -1))
  })

const demo = Effect.gen(function*() {
  const pool = yield* McpSessionPool.McpSessionPool

  yield* Console.log("1. Two threads, each with its own notebook server process")
  yield* call("alice", "note_write", { key: "todo", text: "book flights" })
  yield* call("bob", "note_write", { key: "todo", text: "renew passport" })
  yield* call("alice", "counter_increment")
  yield* call("alice", "counter_increment")
  yield* call("bob", "counter_increment")
  const [alicePid, bobPid] = [yield* pidOf("alice"), yield* pidOf("bob")]
  yield* Console.log(`   alice's note: "${yield* call("alice", "note_read", { key: "todo" })}"   (pid ${alicePid})`)
  yield* Console.log(`   bob's note:   "${yield* call("bob", "note_read", { key: "todo" })}"   (pid ${bobPid})`)
  yield* Console.log(
    `   counters after one more call each: alice ${yield* call("alice", "counter_increment")}, bob ${yield* call(
      "bob",
      "counter_increment"
    )}  (each process kept its own count)`
  )

  yield* Console.log("\n2. A burst of 25 concurrent calls on a new thread")
  const results = yield* Effect.forEach(
    Array.from({ length: 25 }),
    () => call("carol", "counter_increment"),
    { concurrency: "unbounded" }
  )
  const carolSessions = (yield* pool.snapshot).filter((row) => row.scope === "carol")
  yield* Console.log(
    `   sessions created for carol: ${carolSessions.length} (pid ${carolSessions[0]?.pid}); ` +
      `her counter reached ${Math.max(...results.map(Number))}`
  )

  yield* Console.log("\n3. Deleting a thread frees its process")
  yield* pool.closeScope("alice")
  yield* Console.log(`   closeScope("alice"): pid ${alicePid} ${isRunning(alicePid) ? "STILL RUNNING" : "has exited"}`)
  yield* Console.log(
    `   alice starts over on a fresh session: note is "${yield* call("alice", "note_read", { key: "todo" })}"`
  )

  const rows = yield* pool.snapshot
  yield* Console.log(
    `\n4. Shutting the pool down (${rows.length} live sessions: ${rows.map((r) => r.scope).join(", ")})`
  )
  return rows.flatMap((row) => row.pid === undefined ? [] : [row.pid])
})

const main = Effect.gen(function*() {
  // The layer is released when `demo` ends: that is the pool's shutdown.
  const pids = yield* Effect.provide(demo, PoolLive)
  const left = pids.filter(isRunning)
  yield* Console.log(
    left.length === 0
      ? `   all ${pids.length} server processes have exited; nothing left behind`
      : `   LEAK: still running: ${left.join(", ")}`
  )
  if (left.length > 0) return yield* Effect.die(new Error("server processes left behind"))
})

NodeRuntime.runMain(main)
