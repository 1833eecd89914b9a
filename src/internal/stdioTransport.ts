/**
 * An MCP stdio client transport on top of Effect's `ChildProcessSpawner`.
 *
 * The SDK's `StdioClientTransport` signals only its direct child, so a server started through a wrapper
 * (`sh -c …`, `npx …`) survives its client. Here the server runs in its own process group (the spawner's
 * default `detached: true` on POSIX) and shutdown signals and waits for the whole group.
 *
 * @internal
 */
import { getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js"
import { ReadBuffer, serializeMessage } from "@modelcontextprotocol/sdk/shared/stdio.js"
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js"
import type * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type { PlatformError } from "effect/PlatformError"
import * as ChildProcess from "effect/process/ChildProcess"
import { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import * as Queue from "effect/Queue"
import type * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { readdirSync, readFileSync } from "node:fs"

export interface StdioProcessOptions {
  readonly command: string
  readonly args: ReadonlyArray<string>
  /** Variables added to the child's environment. */
  readonly env: Readonly<Record<string, string | Redacted.Redacted<string>>>
  /**
   * `false`: the child gets the SDK's `getDefaultEnvironment()` (HOME, PATH, …) plus `env`, like the SDK's
   * own transport. `true`: the whole `process.env` plus `env`.
   */
  readonly inheritEnv: boolean
  readonly cwd: string | undefined
  /** `"pipe"`: each stderr line is logged at Debug level. */
  readonly stderr: "inherit" | "ignore" | "pipe"
  /** After ending stdin on shutdown, how long to wait for the process group to exit before SIGTERM. */
  readonly stdinGrace: Duration.Duration
  /** After SIGTERM to the process group, how long to wait before SIGKILL. */
  readonly terminateGrace: Duration.Duration
}

export interface StdioConnection {
  /** Not started yet: the SDK's `Client.connect()` calls `start()`. */
  readonly transport: Transport
  readonly pid: number
  /** Completes when the spawned process (the group leader) has exited. */
  readonly exited: Effect.Effect<void>
}

/** After SIGKILL nothing can delay exit but uninterruptible kernel sleep: bound the wait rather than hang. */
const killWaitMillis = 2_000
/** Same cadence as the spawner's own process group polling. */
const pollMillis = 10
/**
 * Once the leader has exited, its last output is already in the pipe and takes a few event loop turns to
 * read. Stdout ending later than this means another group member holds it open; the connection is treated
 * as closed anyway, since the process we spawned is gone (the scope's finalizer still kills the group).
 */
const exitDrainMillis = 100

/**
 * Shutdown waits on native timers, as the spawner does: processes run in real time, so a `TestClock` in
 * the caller's context must not stall (or skip) the grace periods.
 */
const sleepNative = (millis: number): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), millis)
    return Effect.sync(() => clearTimeout(timer))
  })

const isDigit = (code: number): boolean => code >= 48 && code <= 57

/**
 * Whether a process of group `pgid` other than a zombie still exists. `kill(-pgid, 0)` alone is not enough:
 * it succeeds on zombies, and orphaned members that die under a PID 1 that does not reap (a container
 * without an init, for instance) stay zombies forever, which would make every shutdown wait out its bound.
 */
const hasLiveGroupMember = (pgid: number): boolean => {
  try {
    process.kill(-pgid, 0)
  } catch {
    // ESRCH: the group is empty. EPERM: its members are not ours to signal, so waiting on them is pointless.
    return false
  }
  if (process.platform !== "linux") return true
  let entries: Array<string>
  try {
    entries = readdirSync("/proc")
  } catch {
    return true
  }
  const group = String(pgid)
  for (const entry of entries) {
    if (!isDigit(entry.charCodeAt(0))) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "latin1")
    } catch {
      continue // exited meanwhile
    }
    // "pid (comm) state ppid pgrp …": comm may contain spaces and parentheses, so split after the last ")".
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ", 3)
    if (pgrp === group && state !== "Z" && state !== "X") return true
  }
  return false
}

const signalGroup = (pgid: number, signal: NodeJS.Signals): void => {
  try {
    process.kill(-pgid, signal)
  } catch {
    // ESRCH: already gone; EPERM: nothing this process can do about it.
  }
}

const toError = (cause: unknown): Error => cause instanceof Error ? cause : new Error(String(cause))

const resolved = Promise.resolve()

/**
 * The SDK-facing half. Plain fields and synchronous methods so that a send and a receive cost a queue
 * offer and a buffer scan, with no fiber fork or promise chain of our own per message.
 */
class ProcessTransport implements Transport {
  onclose: Transport["onclose"] = undefined
  onerror: Transport["onerror"] = undefined
  onmessage: Transport["onmessage"] = undefined

  private readonly readBuffer = new ReadBuffer()
  private readonly input: Queue.Queue<Uint8Array, Cause.Done>
  private readonly startSignal: Deferred.Deferred<void>
  private started = false
  private closed = false

  constructor(input: Queue.Queue<Uint8Array, Cause.Done>, startSignal: Deferred.Deferred<void>) {
    this.input = input
    this.startSignal = startSignal
  }

  start(): Promise<void> {
    if (this.started) {
      return Promise.reject(new Error("Stdio transport already started (Client.connect() calls start() itself)"))
    }
    this.started = true
    // Stdout is only read from here on, so no message arrives before the client has set `onmessage`.
    Deferred.doneUnsafe(this.startSignal, Exit.void)
    return resolved
  }

  send(message: JSONRPCMessage): Promise<void> {
    if (this.closed) return Promise.reject(new Error("Not connected"))
    // One queue keeps writes in order; the writer fiber batches whatever has accumulated.
    Queue.offerUnsafe(this.input, Buffer.from(serializeMessage(message), "utf8"))
    return resolved
  }

  close(): Promise<void> {
    this.markClosed()
    return resolved
  }

  /** Fires `onclose` once, whatever closed first: `close()`, stdout ending, the process exiting, an I/O error. */
  markClosed(): void {
    if (this.closed) return
    this.closed = true
    // Ending stdin asks a well-behaved server to exit; the writer still flushes what was queued before.
    Queue.endUnsafe(this.input)
    this.readBuffer.clear()
    this.onclose?.()
  }

  fail(cause: unknown): void {
    if (this.closed) return
    this.onerror?.(toError(cause))
    this.markClosed()
  }

  receive(chunks: ReadonlyArray<Uint8Array>): void {
    for (const chunk of chunks) {
      if (this.closed) return // keep draining stdout so the server never blocks, but deliver nothing more
      try {
        this.readBuffer.append(
          Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length)
        )
      } catch (error) {
        // Over the buffer limit: the stream cannot be resynchronised, so give up on it (as the SDK does).
        this.fail(error)
        return
      }
      for (;;) {
        let message: JSONRPCMessage | null
        try {
          message = this.readBuffer.readMessage()
        } catch (error) {
          // A bad line is skipped (the buffer has already moved past it) and reading goes on, as in the SDK.
          this.onerror?.(toError(error))
          continue
        }
        if (message === null) break
        this.onmessage?.(message)
        if (this.closed) return
      }
    }
  }
}

/**
 * Spawns `command` in its own process group and returns an unstarted MCP transport over its stdio.
 *
 * Closing the scope shuts the server down in steps and waits for it: end stdin, wait up to `stdinGrace`,
 * SIGTERM the group, wait up to `terminateGrace`, SIGKILL the group, wait. "Exited" means the leader has
 * exited and no live process is left in its group, so wrapper shells and their children go too.
 */
export const spawnStdio = (
  options: StdioProcessOptions
): Effect.Effect<StdioConnection, PlatformError, Scope.Scope | ChildProcessSpawner> =>
  // Uninterruptible from spawn until the shutdown finalizer is registered, so no process escapes it.
  Effect.uninterruptible(Effect.gen(function*() {
    const scope = yield* Effect.scope
    const spawner = yield* ChildProcessSpawner

    const command = ChildProcess.make(options.command, [...options.args], {
      cwd: options.cwd,
      env: options.inheritEnv ? { ...options.env } : { ...getDefaultEnvironment(), ...options.env },
      extendEnv: options.inheritEnv,
      detached: true,
      stdin: "pipe",
      stdout: "pipe",
      stderr: options.stderr,
      // Only used by the spawner's own release, which runs only if spawning fails half-way (see below).
      killSignal: "SIGTERM",
      forceKillAfter: options.terminateGrace
    })

    // The spawner's release signals the group and polls it with kill(-pgid, 0), which counts zombies as
    // alive (up to a second of waiting per bound) and re-signals a pgid we have already seen emptied. Our
    // finalizer does the whole job, so the spawner gets a scope of its own that is closed only on failure.
    const processScope = yield* Scope.make()
    const handle = yield* spawner.spawn(command).pipe(
      Scope.provide(processScope),
      Effect.onError(() => Scope.close(processScope, Exit.void))
    )
    const pid = handle.pid

    // Our fibers live in a scope that the finalizer closes last, so they keep serving (flushing stdin,
    // reading the final output) while it waits, whatever the caller's scope finalizer strategy is.
    const fibers = yield* Scope.make()
    const input = yield* Queue.unbounded<Uint8Array, Cause.Done>()
    const startSignal = Deferred.makeUnsafe<void>()
    const stdoutDone = Deferred.makeUnsafe<void>()
    const exited = Deferred.makeUnsafe<void>()
    const transport = new ProcessTransport(input, startSignal)

    // Writer: ends stdin once the queue ends (close, or shutdown).
    yield* Stream.run(Stream.fromQueue(input), handle.stdin).pipe(
      Effect.catch((error) => Effect.sync(() => transport.fail(error))),
      Effect.forkIn(fibers)
    )

    // Reader: one pass over stdout per chunk batch, no per-message effects.
    yield* Deferred.await(startSignal).pipe(
      Effect.andThen(Stream.runForEachArray(handle.stdout, (chunks) => Effect.sync(() => transport.receive(chunks)))),
      Effect.catch((error) => Effect.sync(() => transport.fail(error))),
      Effect.ensuring(Effect.sync(() => {
        Deferred.doneUnsafe(stdoutDone, Exit.void)
        transport.markClosed()
      })),
      Effect.forkIn(fibers)
    )

    // Exit watcher: a dead leader closes the connection even if a surviving group member holds stdout open.
    yield* handle.exitCode.pipe(
      Effect.exit, // fails when killed by a signal: the process has exited either way
      Effect.andThen(() => {
        Deferred.doneUnsafe(exited, Exit.void)
        return Effect.raceFirst(Deferred.await(stdoutDone), sleepNative(exitDrainMillis))
      }),
      Effect.andThen(Effect.sync(() => transport.markClosed())),
      Effect.forkIn(fibers)
    )

    if (options.stderr === "pipe") {
      // Always drained: an unread stderr pipe would block the server once full.
      yield* handle.stderr.pipe(
        Stream.decodeText(),
        Stream.splitLines,
        Stream.runForEach((line) => Effect.logDebug(line)),
        Effect.annotateLogs({ "mcp.stdio.command": options.command, "mcp.stdio.pid": pid }),
        Effect.ignore,
        Effect.forkIn(fibers)
      )
    }

    const isGone = (): boolean => Deferred.isDoneUnsafe(exited) && !hasLiveGroupMember(pid)

    const awaitGone = (millis: number): Effect.Effect<boolean> =>
      Effect.suspend(() => {
        const deadline = Date.now() + millis
        // The leader's exit is an event; the rest of the group can only be polled.
        const poll: Effect.Effect<boolean> = Effect.suspend(() => {
          if (isGone()) return Effect.succeed(true)
          const left = deadline - Date.now()
          return left <= 0 ? Effect.succeed(false) : Effect.andThen(sleepNative(Math.min(pollMillis, left)), poll)
        })
        return Effect.andThen(Effect.raceFirst(Deferred.await(exited), sleepNative(millis)), poll)
      })

    const shutdown = Effect.gen(function*() {
      transport.markClosed() // ends stdin after the queued writes
      let gone = yield* awaitGone(Duration.toMillis(options.stdinGrace))
      if (!gone) {
        signalGroup(pid, "SIGTERM")
        gone = yield* awaitGone(Duration.toMillis(options.terminateGrace))
      }
      if (!gone) {
        signalGroup(pid, "SIGKILL")
        gone = yield* awaitGone(killWaitMillis)
      }
      if (!gone) {
        yield* Effect.logWarning("MCP stdio server process group still alive after SIGKILL; giving up").pipe(
          Effect.annotateLogs({ "mcp.stdio.command": options.command, "mcp.stdio.pid": pid })
        )
      }
      yield* Scope.close(fibers, Exit.void)
    })
    yield* Scope.addFinalizer(scope, shutdown)

    return { transport, pid, exited: Deferred.await(exited) } satisfies StdioConnection
  }))
