/**
 * The leak audit itself (test/utils/leaks.ts) sees each kind of leak it claims to: an orphaned grandchild,
 * an open descriptor, a fiber left running, a `process` listener added, a MaxListenersExceeded warning.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { spawn } from "node:child_process"
import { EventEmitter } from "node:events"
import { closeSync, openSync } from "node:fs"
import { formatLeaks, leakCount, makeLeakAudit } from "../utils/leaks.ts"
import { awaitGone } from "../utils/proc.ts"

describe("reliability: the leak audit", () => {
  it.live("reports nothing for nothing, and each kind of leak when there is one", () =>
    Effect.gen(function*() {
      const clean = yield* makeLeakAudit
      assert.strictEqual(leakCount(yield* clean.report({ withinMillis: 0 })), 0)

      const audit = yield* makeLeakAudit
      // A grandchild orphaned by its shell: no longer our descendant, found by its environment marker.
      const shell = spawn("/bin/sh", ["-c", "sleep 30 & echo $!"], {
        env: { ...audit.env, PATH: process.env.PATH },
        stdio: ["ignore", "pipe", "ignore"]
      })
      const orphan = yield* Effect.promise(() =>
        new Promise<number>((resolve) =>
          shell.stdout.once("data", (data: Buffer) => resolve(Number(String(data).trim())))
        )
      )
      yield* awaitGone(shell.pid!, 5_000)
      const fd = openSync("/dev/null", "r")
      const stray = yield* audit.track(Effect.forkDetach(Effect.never))
      const listener = () => {}
      process.on("SIGUSR2", listener)
      const emitter = new EventEmitter()
      for (let i = 0; i <= EventEmitter.defaultMaxListeners; i++) emitter.on("event", listener)

      const report = yield* audit.report({ withinMillis: 200 })
      const text = formatLeaks(report)
      assert.deepStrictEqual(report.processes.map((p) => p.pid), [orphan], text)
      assert.isAtLeast(report.fds.after, report.fds.before + 1, text)
      assert.strictEqual(report.fibers.running, 1, text)
      assert.include(report.listeners.join(), "SIGUSR2", text)
      assert.strictEqual(report.warnings.length, 1, text)

      process.kill(orphan, "SIGKILL")
      closeSync(fd)
      yield* Fiber.interrupt(stray)
      process.off("SIGUSR2", listener)
      yield* awaitGone(orphan, 5_000)
    }))
})
