import { assert, describe, it } from "@effect/vitest"
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
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
import { within } from "../utils/within.ts"

const fixture = fileURLToPath(new URL("../fixtures/stdio-server.ts", import.meta.url))
const spawnerFixture = fileURLToPath(new URL("../fixtures/spawner-server.ts", import.meta.url))

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

/** Graces a test must never wait out: a close bounded well below them shows that they were skipped. */
const neverWaitedOut = { stdinGrace: Duration.minutes(1), terminateGrace: Duration.minutes(1) }

// --- Bounds: every wait in these tests has one, and says what did not happen ---

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
  }).pipe(within(10_000, "the MCP handshake"))

const callText = (client: Client, name: string, args: Record<string, unknown> = {}) =>
  Effect.promise(async () => {
    const result = await client.callTool({ name, arguments: args })
    const content = result.content as ReadonlyArray<{ readonly type: string; readonly text?: string }>
    return content[0]?.text ?? ""
  }).pipe(within(10_000, `the answer to tools/call ${name}`))

/** How the spawned process ended. */
const exitOf = (connection: StdioConnection) => connection.exited.pipe(within(10_000, "the server's exit"))

/**
 * Spawns into a scope of the test's own, so the test can close it with the exit it wants and check the OS
 * afterwards. The close runs in a fiber of its own: a scope's finalizers cannot be interrupted, and a bound
 * around them would wait for them anyway.
 */
const spawnIn = (opts: StdioProcessOptions) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    // A test that fails before its close leaves no process behind: a failure exit kills at once. Bounded, so
    // that a close that hangs cannot hide the test's own failure.
    yield* Effect.addFinalizer(() =>
      Effect.forkDetach(Scope.close(scope, Exit.fail(new Error("the test ended before its close")))).pipe(
        Effect.flatMap(Fiber.await),
        Effect.timeoutOption(3_000)
      )
    )
    const connection = yield* spawnStdio(opts).pipe(Scope.provide(scope))
    const close = (exit: Exit.Exit<unknown, unknown> = Exit.void) =>
      Effect.forkDetach(Scope.close(scope, exit)).pipe(
        Effect.flatMap(Fiber.join),
        within(10_000, "the scope's close (no grace here is waited out)")
      )
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

      yield* close()
      assert.isTrue(isGone(connection.pid), "server process gone when the scope has closed")
      // Exited by itself at the end of stdin, well within the 5 s grace: no signal was needed.
      assert.deepStrictEqual(yield* exitOf(connection), { code: 0, signal: null })
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

      yield* close()
      assert.isTrue(isGone(connection.pid), "shell gone")
      assert.isTrue(isGone(serverPid), "server gone")
      // The server exits on stdin end and the shell follows, with its status: no signal was needed.
      assert.deepStrictEqual(yield* exitOf(connection), { code: 0, signal: null })
    }))

  it.live("kills group members that outlive the leader", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "stdio-transport-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const pidFile = join(dir, "pid")
      const statusFile = join(dir, "status")
      // The shell starts the server in the background and exits at once; the server keeps stdout open. A
      // subshell waits for it and records its status; it survives SIGTERM (a trap, which the server does not
      // inherit) long enough to do so.
      const { close, connection } = yield* spawnIn(options({
        command: "sh",
        args: [
          "-c",
          "( trap : TERM; \"$0\" \"$1\"; echo $? > \"$2\" ) & exit 0",
          process.execPath,
          fixture,
          statusFile
        ],
        env: { STDIO_FIXTURE_IGNORE_STDIN_END: "1", STDIO_FIXTURE_PID_FILE: pidFile },
        terminateGrace: neverWaitedOut.terminateGrace
      }))
      const closed = yield* Deferred.make<void>()
      connection.transport.onclose = () => Deferred.doneUnsafe(closed, Exit.void)
      yield* Effect.promise(() => connection.transport.start()).pipe(within(10_000, "the transport starting"))

      const serverPid = yield* poll("pid file", 5_000, () => {
        try {
          const text = readFileSync(pidFile, "utf8")
          return text === "" ? undefined : Number(text)
        } catch {
          return undefined
        }
      })
      assert.deepStrictEqual(yield* exitOf(connection), { code: 0, signal: null }, "the shell exited at once")
      // The leader is gone, so the connection is closed although the orphan holds stdout open.
      yield* Deferred.await(closed).pipe(within(10_000, "onclose after the leader exited"))
      assert.isFalse(isGone(serverPid), "the orphaned server still runs")

      yield* close()
      assert.isTrue(isGone(serverPid), "orphaned server gone")
      // It died of the SIGTERM (128 + 15), and its end was seen without waiting for SIGKILL.
      assert.strictEqual(readFileSync(statusFile, "utf8").trim(), "143")
    }))

  it.live("SIGTERMs a server that ignores stdin end after stdinGrace", () =>
    Effect.gen(function*() {
      const { close, connection } = yield* spawnIn(options({
        env: { STDIO_FIXTURE_IGNORE_STDIN_END: "1" },
        terminateGrace: neverWaitedOut.terminateGrace
      }))
      const client = yield* connect(connection)
      assert.strictEqual(yield* callText(client, "echo", { text: "hi" }), "hi")

      yield* close()
      assert.isTrue(isGone(connection.pid))
      assert.deepStrictEqual(yield* exitOf(connection), { code: null, signal: "SIGTERM" })
    }))

  it.live("SIGKILLs a server behind `sh -c` that ignores stdin end and SIGTERM", () =>
    Effect.gen(function*() {
      const { close, connection } = yield* spawnIn(behindShell({
        env: { STDIO_FIXTURE_IGNORE_STDIN_END: "1", STDIO_FIXTURE_IGNORE_SIGTERM: "1" }
      }))
      const client = yield* connect(connection)
      const serverPid = Number(yield* callText(client, "pid"))
      assert.notStrictEqual(serverPid, connection.pid)

      yield* close()
      assert.isTrue(isGone(connection.pid), "shell gone")
      assert.isTrue(isGone(serverPid), "server gone")
      // The shell died at the SIGTERM step; the server, which ignores SIGTERM, only SIGKILL could end.
      assert.deepStrictEqual(yield* exitOf(connection), { code: null, signal: "SIGTERM" })
    }))

  it.live("kills a descendant in a process group of its own (Chromium under Playwright MCP) that ignores SIGTERM", () =>
    Effect.gen(function*() {
      const { close, connection } = yield* spawnIn(options({
        command: process.execPath,
        args: [spawnerFixture],
        env: { SPAWNER_CHILD_IGNORES_SIGTERM: "1" }
      }))
      const client = yield* connect(connection)
      const childPid = Number(yield* callText(client, "child_pid"))
      assert.strictEqual(procStat(childPid)?.ppid, connection.pid, "the server's child")
      assert.strictEqual(procStat(childPid)?.pgrp, childPid, "in a process group of its own")

      yield* close()
      assert.isTrue(isGone(childPid), "the detached child is gone when the scope has closed")
      // The server died at the SIGTERM step, which orphaned its child; the close still waited for the child
      // and SIGKILLed it, the only signal it does not ignore.
      assert.deepStrictEqual(yield* exitOf(connection), { code: null, signal: "SIGTERM" })
    }))

  it.live("a descendant orphaned the moment the server exits on stdin end is found and ended too", () =>
    Effect.gen(function*() {
      const { close, connection } = yield* spawnIn(options({
        command: process.execPath,
        args: [spawnerFixture],
        env: { SPAWNER_EXIT_ON_STDIN_END: "1" },
        terminateGrace: neverWaitedOut.terminateGrace
      }))
      const client = yield* connect(connection)
      const childPid = Number(yield* callText(client, "child_pid"))
      assert.strictEqual(procStat(childPid)?.pgrp, childPid, "in a process group of its own")

      yield* close()
      // Known from the snapshot taken at the start of the close, while the server still lived.
      assert.isTrue(isGone(childPid), "the child it left behind is gone when the scope has closed")
      assert.deepStrictEqual(yield* exitOf(connection), { code: 0, signal: null }, "the server exited by itself")
    }))

  it.live("a scope closed by a failure (a connect that failed) SIGKILLs the whole tree at once", () =>
    Effect.gen(function*() {
      const failed = Exit.fail(new Error("connect timed out"))
      // Dies on SIGTERM: ending by SIGKILL shows that no SIGTERM came first.
      const stubborn = yield* spawnIn(options({ env: { STDIO_FIXTURE_IGNORE_STDIN_END: "1" }, ...neverWaitedOut }))
      const immortal = yield* spawnIn(options({
        env: { STDIO_FIXTURE_IGNORE_STDIN_END: "1", STDIO_FIXTURE_IGNORE_SIGTERM: "1" },
        ...neverWaitedOut
      }))
      const spawner = yield* spawnIn(options({
        command: process.execPath,
        args: [spawnerFixture],
        env: { SPAWNER_CHILD_IGNORES_SIGTERM: "1" },
        ...neverWaitedOut
      }))
      const childPid = Number(yield* callText(yield* connect(spawner.connection), "child_pid"))
      yield* connect(stubborn.connection)
      yield* connect(immortal.connection)

      for (const { close, connection } of [stubborn, immortal, spawner]) {
        yield* close(failed)
        assert.deepStrictEqual(yield* exitOf(connection), { code: null, signal: "SIGKILL" })
      }
      assert.isTrue(isGone(childPid), "the spawner's detached child is gone too")
    }))

  it.live("an interrupted scope (Ctrl-C under runMain) still shuts down gracefully", () =>
    Effect.gen(function*() {
      const { close, connection } = yield* spawnIn(options({
        env: { STDIO_FIXTURE_IGNORE_STDIN_END: "1" },
        terminateGrace: neverWaitedOut.terminateGrace
      }))
      yield* connect(connection)
      yield* close(Exit.interrupt())
      assert.deepStrictEqual(yield* exitOf(connection), { code: null, signal: "SIGTERM" })
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
      yield* Deferred.await(progressed).pipe(within(10_000, "progress from the hanging call"))

      process.kill(connection.pid, "SIGKILL")
      // Failed by the close, well before the SDK's 60 s request timeout ("Request timed out").
      const error = yield* Effect.promise(() => outcome).pipe(within(10_000, "the pending call failing"))
      assert.instanceOf(error, Error)
      assert.match((error as Error).message, /Connection closed/)
      yield* Deferred.await(closed).pipe(within(10_000, "onclose"))
      assert.deepStrictEqual(yield* exitOf(connection), { code: null, signal: "SIGKILL" })
      yield* waitUntilGone(connection.pid, 1_000)
      yield* Effect.flip(Effect.tryPromise(() => client.callTool({ name: "echo", arguments: { text: "x" } }))).pipe(
        within(10_000, "a call after the close failing")
      )
      assert.deepStrictEqual(errors, [], "a dead server is a close, not an error")
      yield* close()
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
          yield* close()
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
      yield* close()
    }))

  it.live("Client.close() closes the transport once, without waiting for the process", () =>
    Effect.gen(function*() {
      const { close, connection } = yield* spawnIn(options({ env: { STDIO_FIXTURE_IGNORE_STDIN_END: "1" } }))
      let closes = 0
      const client = yield* connect(connection, (client) => {
        client.onclose = () => closes++
      })
      yield* callText(client, "pid")
      yield* Effect.promise(() => client.close()).pipe(within(10_000, "Client.close()"))
      // This server ignores the end of stdin: only the scope's close stops it, so close() did not wait.
      assert.isTrue(isRunning(connection.pid), "close() returned while the server still runs")
      assert.strictEqual(closes, 1)
      yield* Effect.flip(Effect.tryPromise(() => connection.transport.send({ jsonrpc: "2.0", method: "x" }))).pipe(
        within(10_000, "a send after the close failing")
      )

      yield* close()
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
      assert.strictEqual(
        yield* Deferred.await(logged).pipe(within(10_000, "the stderr line logged")),
        "hello from stderr"
      )
      yield* close()
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
      yield* close()
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
