import { assert, describe, it } from "@effect/vitest"
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import * as Redacted from "effect/Redacted"
import * as References from "effect/References"
import * as Scope from "effect/Scope"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { spawnStdio, type StdioConnection, type StdioProcessOptions } from "../../src/internal/stdioTransport.ts"
import { isRunning, procStat } from "../utils/proc.ts"

const fixture = fileURLToPath(new URL("../fixtures/stdio-server.ts", import.meta.url))

const options = (overrides: Partial<StdioProcessOptions> = {}): StdioProcessOptions => ({
  command: process.execPath,
  args: [fixture],
  env: {},
  inheritEnv: false,
  cwd: undefined,
  stderr: "ignore",
  stdinGrace: Duration.millis(200),
  terminateGrace: Duration.millis(200),
  ...overrides
})

/** The fixture behind `sh -c`, as a grandchild: the trailing `exit` stops the shell from exec-ing node. */
const behindShell = (overrides: Partial<StdioProcessOptions> = {}): StdioProcessOptions =>
  options({ command: "sh", args: ["-c", "\"$0\" \"$1\"; exit $?", process.execPath, fixture], ...overrides })

// --- OS state, read from /proc (kill(pid, 0) succeeds on zombies) ---

const isGone = (pid: number): boolean => !isRunning(pid)

const poll = <A>(what: string, timeoutMs: number, check: () => A | undefined): Effect.Effect<A> =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const value = check()
      if (value !== undefined) return value
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out after ${timeoutMs} ms: ${what}`))
      yield* Effect.sleep(10)
    }
  })

const waitUntilGone = (pid: number, timeoutMs: number) =>
  poll(`pid ${pid} gone`, timeoutMs, () => isGone(pid) ? true : undefined)

// --- MCP helpers ---

const connect = (connection: StdioConnection, setup: (client: Client) => void = () => {}) =>
  Effect.promise(async () => {
    const client = new Client({ name: "stdio-transport-test", version: "0.0.0" })
    setup(client)
    await client.connect(connection.transport)
    return client
  })

const callText = (client: Client, name: string, args: Record<string, unknown> = {}) =>
  Effect.promise(async () => {
    const result = await client.callTool({ name, arguments: args })
    const content = result.content as ReadonlyArray<{ readonly type: string; readonly text?: string }>
    return content[0]?.text ?? ""
  })

/** Spawns into a scope of the test's own, so the test can time its close and check the OS afterwards. */
const spawnIn = (opts: StdioProcessOptions) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const connection = yield* spawnStdio(opts).pipe(Scope.provide(scope))
    const close = Effect.gen(function*() {
      const start = Date.now()
      yield* Scope.close(scope, Exit.void)
      return Date.now() - start
    })
    return { connection, close } as const
  })

describe("spawnStdio", () => {
  it.live("serves an SDK client; closing the scope ends the process", () =>
    Effect.gen(function*() {
      // Long graces: the server must exit on stdin end, without any signal.
      const { close, connection } = yield* spawnIn(options({ stdinGrace: Duration.seconds(5) }))
      const errors: Array<Error> = []
      const client = yield* connect(connection, (client) => {
        client.onerror = (error) => errors.push(error)
      })
      assert.strictEqual(yield* callText(client, "pid"), String(connection.pid))
      // Concurrent calls: every answer matches its request.
      const texts = Array.from({ length: 50 }, (_, i) => `message ${i}`)
      const echoed = yield* Effect.forEach(texts, (text) => callText(client, "echo", { text }), {
        concurrency: "unbounded"
      })
      assert.deepStrictEqual(echoed, texts)

      const elapsed = yield* close
      assert.isTrue(isGone(connection.pid), "server process gone when the scope has closed")
      assert.isBelow(elapsed, 1_000)
      yield* connection.exited
      assert.deepStrictEqual(errors, [])
    }))

  it.live("kills the real server behind `sh -c` (a grandchild)", () =>
    Effect.gen(function*() {
      const { close, connection } = yield* spawnIn(behindShell({ stdinGrace: Duration.seconds(5) }))
      const client = yield* connect(connection)
      const serverPid = Number(yield* callText(client, "pid"))
      assert.notStrictEqual(serverPid, connection.pid)
      assert.strictEqual(procStat(serverPid)?.ppid, connection.pid, "the server is the shell's child")
      assert.strictEqual(procStat(serverPid)?.pgrp, connection.pid, "and in the shell's process group")

      const elapsed = yield* close
      assert.isTrue(isGone(connection.pid), "shell gone")
      assert.isTrue(isGone(serverPid), "server gone")
      assert.isBelow(elapsed, 1_000, "the server exits on stdin end and the shell follows")
    }))

  it.live("kills group members that outlive the leader", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "stdio-transport-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const pidFile = join(dir, "pid")
      // The shell starts the server in the background and exits at once; the server keeps stdout open.
      const { close, connection } = yield* spawnIn(options({
        command: "sh",
        args: ["-c", "\"$0\" \"$1\" & exit 0", process.execPath, fixture],
        env: { STDIO_FIXTURE_IGNORE_STDIN_END: "1", STDIO_FIXTURE_PID_FILE: pidFile },
        terminateGrace: Duration.seconds(5)
      }))
      const closed = yield* Deferred.make<void>()
      connection.transport.onclose = () => Deferred.doneUnsafe(closed, Exit.void)
      yield* Effect.promise(() => connection.transport.start())

      const serverPid = yield* poll("pid file", 5_000, () => {
        try {
          const text = readFileSync(pidFile, "utf8")
          return text === "" ? undefined : Number(text)
        } catch {
          return undefined
        }
      })
      yield* connection.exited
      // The leader is gone, so the connection is closed although the orphan holds stdout open.
      yield* Deferred.await(closed)
      assert.isFalse(isGone(serverPid), "the orphaned server still runs")

      const elapsed = yield* close
      assert.isTrue(isGone(serverPid), "orphaned server gone")
      // It dies on SIGTERM, long before terminateGrace runs out.
      assert.isBelow(elapsed, 1_500)
    }))

  it.live("SIGTERMs a server that ignores stdin end after stdinGrace", () =>
    Effect.gen(function*() {
      const { close, connection } = yield* spawnIn(options({
        env: { STDIO_FIXTURE_IGNORE_STDIN_END: "1" },
        terminateGrace: Duration.seconds(5)
      }))
      const client = yield* connect(connection)
      assert.strictEqual(yield* callText(client, "echo", { text: "hi" }), "hi")

      const elapsed = yield* close
      assert.isTrue(isGone(connection.pid))
      assert.isAtLeast(elapsed, 190)
      assert.isBelow(elapsed, 1_500)
    }))

  it.live("SIGKILLs a server behind `sh -c` that ignores stdin end and SIGTERM", () =>
    Effect.gen(function*() {
      const { close, connection } = yield* spawnIn(behindShell({
        env: { STDIO_FIXTURE_IGNORE_STDIN_END: "1", STDIO_FIXTURE_IGNORE_SIGTERM: "1" }
      }))
      const client = yield* connect(connection)
      const serverPid = Number(yield* callText(client, "pid"))
      assert.notStrictEqual(serverPid, connection.pid)

      const elapsed = yield* close
      assert.isTrue(isGone(connection.pid), "shell gone")
      assert.isTrue(isGone(serverPid), "server gone")
      // stdinGrace + terminateGrace, then SIGKILL.
      assert.isAtLeast(elapsed, 390)
      assert.isBelow(elapsed, 1_400)
    }))

  it.live("a server killed mid-call fails the pending call promptly and fires onclose", () =>
    Effect.gen(function*() {
      const { close, connection } = yield* spawnIn(options())
      const closed = yield* Deferred.make<void>()
      const errors: Array<Error> = []
      const client = yield* connect(connection, (client) => {
        client.onclose = () => Deferred.doneUnsafe(closed, Exit.void)
        client.onerror = (error) => errors.push(error)
      })
      const progressed = yield* Deferred.make<void>()
      const outcome = client.callTool({ name: "hang", arguments: {} }, undefined, {
        onprogress: () => Deferred.doneUnsafe(progressed, Exit.void)
      }).then(() => undefined, (error: unknown) => error)
      // The server has the request in hand.
      yield* Deferred.await(progressed)

      process.kill(connection.pid, "SIGKILL")
      const error = yield* Effect.promise(() => outcome)
      assert.instanceOf(error, Error)
      // Failed by the close, not by the SDK's 60 s request timeout ("Request timed out").
      assert.match((error as Error).message, /Connection closed/)
      yield* Deferred.await(closed)
      yield* connection.exited
      yield* waitUntilGone(connection.pid, 1_000)
      yield* Effect.flip(Effect.tryPromise(() => client.callTool({ name: "echo", arguments: { text: "x" } })))
      assert.deepStrictEqual(errors, [], "a dead server is a close, not an error")
      yield* close
    }))

  it.live("environment: default environment plus configured variables, or everything with inheritEnv", () =>
    Effect.gen(function*() {
      const previous = process.env.STDIO_TEST_PARENT_ONLY
      process.env.STDIO_TEST_PARENT_ONLY = "parent"
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          if (previous === undefined) delete process.env.STDIO_TEST_PARENT_ONLY
          else process.env.STDIO_TEST_PARENT_ONLY = previous
        })
      )
      const env = { STDIO_TEST_CONFIGURED: Redacted.make("configured"), STDIO_TEST_PLAIN: "plain" }
      const read = (inheritEnv: boolean) =>
        Effect.gen(function*() {
          const { close, connection } = yield* spawnIn(options({ env, inheritEnv }))
          const client = yield* connect(connection)
          const values = yield* Effect.forEach(
            ["STDIO_TEST_PARENT_ONLY", "STDIO_TEST_CONFIGURED", "STDIO_TEST_PLAIN", "PATH"],
            (name) => callText(client, "env", { name })
          )
          yield* close
          return values
        })

      const [parentOnly, configured, plain, path] = yield* read(false)
      assert.strictEqual(parentOnly, "(unset)")
      assert.strictEqual(configured, "configured")
      assert.strictEqual(plain, "plain")
      assert.strictEqual(path, process.env.PATH)

      const inherited = yield* read(true)
      assert.deepStrictEqual(inherited, ["parent", "configured", "plain", process.env.PATH])
    }))

  it.live("a non-JSON line calls onerror and reading goes on", () =>
    Effect.gen(function*() {
      const { close, connection } = yield* spawnIn(options({ env: { STDIO_FIXTURE_GARBAGE: "1" } }))
      const errors: Array<Error> = []
      const client = yield* connect(connection, (client) => {
        client.onerror = (error) => errors.push(error)
      })
      assert.strictEqual(yield* callText(client, "echo", { text: "still here" }), "still here")
      assert.strictEqual(errors.length, 1)
      yield* close
    }))

  it.live("Client.close() closes the transport once, without waiting for the process", () =>
    Effect.gen(function*() {
      const { close, connection } = yield* spawnIn(options({ env: { STDIO_FIXTURE_IGNORE_STDIN_END: "1" } }))
      let closes = 0
      const client = yield* connect(connection, (client) => {
        client.onclose = () => closes++
      })
      yield* callText(client, "pid")
      yield* Effect.promise(() => client.close())
      // This server ignores the end of stdin: only the scope's close stops it, so close() did not wait.
      assert.isTrue(isRunning(connection.pid), "close() returned while the server still runs")
      assert.strictEqual(closes, 1)
      yield* Effect.flip(Effect.tryPromise(() => connection.transport.send({ jsonrpc: "2.0", method: "x" })))

      yield* close
      assert.strictEqual(closes, 1)
      assert.isTrue(isGone(connection.pid))
    }))

  it.live("stderr: \"pipe\" logs each line at Debug", () =>
    Effect.gen(function*() {
      const logged = yield* Deferred.make<string>()
      const logger = Logger.make(({ logLevel, message }) => {
        const text = (Array.isArray(message) ? message : [message]).map(String).join(" ")
        if (logLevel === "Debug" && text.includes("hello from stderr")) Deferred.doneUnsafe(logged, Exit.succeed(text))
      })
      const { close, connection } = yield* spawnIn(options({
        stderr: "pipe",
        env: { STDIO_FIXTURE_STDERR: "hello from stderr" }
      })).pipe(
        Effect.provideService(Logger.CurrentLoggers, new Set([logger])),
        Effect.provideService(References.MinimumLogLevel, "Debug")
      )
      assert.strictEqual(yield* Deferred.await(logged), "hello from stderr")
      yield* close
      assert.isTrue(isGone(connection.pid))
    }))

  it.live("a burst of large messages over the pipe's buffer: every answer, no listener pile-up", () =>
    Effect.gen(function*() {
      const warnings: Array<Error> = []
      const onWarning = (warning: Error) => warnings.push(warning)
      process.on("warning", onWarning)
      yield* Effect.addFinalizer(() => Effect.sync(() => process.off("warning", onWarning)))
      const { close, connection } = yield* spawnIn(options())
      const client = yield* connect(connection)
      // 100 × 200 KB: far over the 16 KiB high-water mark, so most sends wait for "drain".
      const texts = Array.from({ length: 100 }, (_, i) => `${i}:`.padEnd(200_000, String.fromCharCode(97 + (i % 26))))
      const echoed = yield* Effect.forEach(texts, (text) => callText(client, "echo", { text }), {
        concurrency: "unbounded"
      })
      assert.deepStrictEqual(echoed, texts)
      assert.deepStrictEqual(warnings.map((w) => w.name), [])
      yield* close
    }))

  it.effect("spawn failures say what was wrong and never quote an environment value", () =>
    Effect.gen(function*() {
      const failure = (opts: StdioProcessOptions) =>
        Effect.flip(Effect.scoped(spawnStdio(opts))).pipe(Effect.map((error) => error.message))
      assert.include(yield* failure(options({ command: "/nonexistent/mcp-server" })), "command not found")
      assert.include(
        yield* failure(options({ cwd: "/nonexistent/dir" })),
        "the working directory \"/nonexistent/dir\" does not exist"
      )
      const secret = yield* failure(options({ env: { TOKEN: Redacted.make("s3cr3t\u0000tail") } }))
      assert.include(secret, "environment variable \"TOKEN\" contains a NUL character")
      assert.notInclude(secret, "s3cr3t")
      assert.include(yield* failure(options({ args: [fixture, "a\u0000b"] })), "argument 2 contains a NUL")
    }))
})
