/**
 * No stdio server outlives its host: real host processes (test/fixtures/host-app.ts) with real servers
 * that ignore the end of their stdin, signalled as a terminal would, checked in /proc.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Queue, Scope } from "effect"
import { type ChildProcessByStdio, spawn } from "node:child_process"
import { createInterface } from "node:readline"
import type { Readable, Writable } from "node:stream"
import { fileURLToPath } from "node:url"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import * as McpSessionPool from "../src/McpSessionPool.ts"
import { awaitGone, isRunning } from "./utils/proc.ts"
import { within } from "./utils/within.ts"

const hostApp = fileURLToPath(new URL("./fixtures/host-app.ts", import.meta.url))
const faultServer = fileURLToPath(new URL("./fixtures/fault-server.ts", import.meta.url))

type Runner = "runPromise" | "managedRuntime" | "runMain" | "exit" | "ownSigint"

interface HostExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/**
 * Starts the host app. Whatever happens to the test, the host and every process it reported are SIGKILLed
 * when the test's scope closes, so that a failure leaks nothing.
 */
const startHost = (runner: Runner) =>
  Effect.gen(function*() {
    const reported: Array<number> = []
    const host = yield* Effect.acquireRelease(
      Effect.sync((): ChildProcessByStdio<Writable, Readable, null> =>
        spawn(process.execPath, [hostApp, runner], { stdio: ["pipe", "pipe", "inherit"] })
      ),
      (host) =>
        Effect.sync(() => {
          for (const pid of [host.pid!, ...reported]) {
            try {
              process.kill(pid, "SIGKILL")
            } catch {
              // gone already
            }
          }
        })
    )
    const exited = yield* Deferred.make<HostExit>()
    host.on("exit", (code, signal) => Deferred.doneUnsafe(exited, Exit.succeed({ code, signal })))
    const lines = yield* Queue.unbounded<string>()
    createInterface({ input: host.stdout }).on("line", (line) => Queue.offerUnsafe(lines, line))
    const nextLine = (what: string) => Queue.take(lines).pipe(within(20_000, `the host printing ${what}`))

    const report = JSON.parse(yield* nextLine("its servers' pids")) as {
      readonly servers: ReadonlyArray<number>
      readonly descendants: ReadonlyArray<number>
    }
    reported.push(...report.servers, ...report.descendants)
    for (const pid of reported) assert.isTrue(isRunning(pid), `pid ${pid} runs while the host serves`)
    return {
      host,
      nextLine,
      processes: reported,
      ended: Deferred.await(exited).pipe(within(20_000, `the host (${runner}) ending`)),
      isRunning: () => !Deferred.isDoneUnsafe(exited)
    } as const
  })

const allGone = (pids: ReadonlyArray<number>) => Effect.forEach(pids, (pid) => awaitGone(pid, 5_000), { discard: true })

describe("host exit: no stdio server outlives its host", () => {
  describe("a host without a signal handler of its own dies by the signal, and so do its servers", () => {
    for (const runner of ["runPromise", "managedRuntime"] as const) {
      for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
        it.live(`${runner}, ${signal}`, () =>
          Effect.gen(function*() {
            const app = yield* startHost(runner)
            app.host.kill(signal)
            assert.deepStrictEqual(yield* app.ended, { code: null, signal }, "the host died by the signal")
            yield* allGone(app.processes)
          }))
      }
    }
  })

  describe("runMain handles SIGINT and SIGTERM itself: the pool closes its servers, then runMain exits with 130", () => {
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      it.live(signal, () =>
        Effect.gen(function*() {
          const app = yield* startHost("runMain")
          app.host.kill(signal)
          assert.deepStrictEqual(yield* app.ended, { code: 130, signal: null }, "runMain's own exit code")
          yield* allGone(app.processes)
        }))
    }
  })

  it.live("runMain has no SIGHUP handler: the host dies by SIGHUP, and so do its servers", () =>
    Effect.gen(function*() {
      const app = yield* startHost("runMain")
      app.host.kill("SIGHUP")
      assert.deepStrictEqual(yield* app.ended, { code: null, signal: "SIGHUP" })
      yield* allGone(app.processes)
    }))

  it.live("process.exit(0) while sessions live: the exit backstop SIGKILLs the servers", () =>
    Effect.gen(function*() {
      const app = yield* startHost("exit")
      app.host.stdin.end() // the go-ahead, once every server was seen running
      assert.deepStrictEqual(yield* app.ended, { code: 0, signal: null })
      yield* allGone(app.processes)
    }))

  it.live("an app with a SIGINT handler of its own is left alone: the servers live until it closes the pool", () =>
    Effect.gen(function*() {
      const app = yield* startHost("ownSigint")
      app.host.kill("SIGINT")
      assert.strictEqual(yield* app.nextLine("that its handler ran"), "handled SIGINT")
      assert.isTrue(app.isRunning(), "the host lives on")
      for (const pid of app.processes) assert.isTrue(isRunning(pid), `pid ${pid} still runs after the SIGINT`)

      app.host.stdin.end()
      assert.strictEqual(yield* app.nextLine("that the pool closed"), "pool closed")
      assert.deepStrictEqual(yield* app.ended, { code: 0, signal: null }, "the event loop drained")
      yield* allGone(app.processes)
    }))

  it.live("one listener per event, however many pools and sessions, and none once they are closed", () =>
    Effect.gen(function*() {
      const events = ["SIGINT", "SIGTERM", "SIGHUP", "exit"] as const
      const listenerCounts = () => events.map((event) => process.listenerCount(event))
      const warnings: Array<Error> = []
      const onWarning = (warning: Error) => warnings.push(warning)
      process.on("warning", onWarning)
      yield* Effect.addFinalizer(() => Effect.sync(() => process.off("warning", onWarning)))
      const baseline = listenerCounts()

      const scope = yield* Scope.make()
      const server = McpServerConfig.stdio({ command: process.execPath, args: [faultServer] })
      const sessions = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        (i) =>
          Effect.flatMap(
            McpSessionPool.make({ servers: { fault: server } }),
            (pool) => Effect.forEach(["a", "b"], (thread) => pool.get({ server: "fault", scope: `${i}-${thread}` }))
          ),
        { concurrency: 4 }
      ).pipe(Scope.provide(scope), within(60_000, "40 sessions in 20 pools"))
      const pids = sessions.flat().map((session) => session.pid!)
      assert.strictEqual(new Set(pids).size, 40)
      assert.deepStrictEqual(listenerCounts(), baseline.map((count) => count + 1), "one more listener per event")

      yield* Effect.forkDetach(Scope.close(scope, Exit.void)).pipe(
        Effect.flatMap(Fiber.join),
        within(20_000, "the pools closing")
      )
      assert.deepStrictEqual(listenerCounts(), baseline, "back to the baseline")
      assert.deepStrictEqual(warnings.map((warning) => warning.name), [])
      for (const pid of pids) assert.isFalse(isRunning(pid), `pid ${pid} gone`)
    }))
})
