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
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type { PlatformError } from "effect/PlatformError"
import * as ChildProcess from "effect/process/ChildProcess"
import { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import type * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { readdirSync, readFileSync } from "node:fs"
import { TransportLost } from "./transportLost.ts"

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

/** State and process group of `/proc/<pid>/stat`, if it still exists. */
const readStat = (pid: string): { readonly state: string; readonly pgrp: string } | undefined => {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "latin1")
  } catch {
    return undefined
  }
  // "pid (comm) state ppid pgrp …": comm may contain spaces and parentheses, so split after the last ")".
  const [state = "", , pgrp = ""] = stat.slice(stat.lastIndexOf(")") + 2).split(" ", 3)
  return { state, pgrp }
}

/**
 * Makes a check for whether a process of group `pgid` other than a zombie still exists. `kill(-pgid, 0)`
 * alone is not enough: it succeeds on zombies, and orphaned members that die under a PID 1 that does not
 * reap (a container without an init, for instance) stay zombies forever, which would make every shutdown
 * wait out its bound. Only used once the leader has exited.
 */
const makeGroupProbe = (pgid: number): () => boolean => {
  const group = String(pgid)
  const isLiveMember = (pid: string): boolean => {
    const stat = readStat(pid)
    return stat !== undefined && stat.pgrp === group && stat.state !== "Z" && stat.state !== "X"
  }
  // The member found alive last time: while it lives, polling costs one read instead of a scan of /proc.
  let lastLive: string | undefined
  return () => {
    if (process.platform === "win32") return false // no process groups: the leader's exit is all there is
    try {
      process.kill(-pgid, 0)
    } catch {
      // ESRCH: the group is empty. EPERM: its members are not ours to signal, so waiting on them is pointless.
      return false
    }
    if (process.platform !== "linux") return true
    if (lastLive !== undefined && isLiveMember(lastLive)) return true
    lastLive = undefined
    let entries: Array<string>
    try {
      entries = readdirSync("/proc")
    } catch {
      return true
    }
    for (const entry of entries) {
      if (isDigit(entry.charCodeAt(0)) && isLiveMember(entry)) {
        lastLive = entry
        return true
      }
    }
    return false
  }
}

const signalGroup = (pgid: number, signal: NodeJS.Signals): void => {
  try {
    process.kill(process.platform === "win32" ? pgid : -pgid, signal)
  } catch {
    // ESRCH: already gone; EPERM: nothing this process can do about it.
  }
}

const isPrematureClose = (error: PlatformError): boolean =>
  (error.cause as NodeJS.ErrnoException | undefined)?.code === "ERR_STREAM_PREMATURE_CLOSE"

const toError = (cause: unknown): Error => cause instanceof Error ? cause : new Error(String(cause))

const resolved = Promise.resolve()

/**
 * The writes waiting for stdin, pulled in batches by the writer fiber. Not a `Queue`: a queue wakes its
 * taker through the scheduler (a `setImmediate` hop per message, ~10 µs per call measured here), whereas
 * resuming the parked pull runs the writer fiber at once, so a message is written inside `send()` as the
 * SDK's own transport does.
 */
class Outbox {
  private pending: Array<Uint8Array> = []
  private ended = false
  private wake: ((next: Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, Cause.Done>) => void) | undefined = undefined

  /** Everything offered, in order; ends after `end()` once flushed. */
  readonly pull: Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, Cause.Done> = Effect.callback((resume) => {
    if (this.pending.length > 0) {
      const batch = this.pending as unknown as NonEmptyReadonlyArray<Uint8Array>
      this.pending = []
      resume(Effect.succeed(batch))
    } else if (this.ended) {
      resume(Cause.done())
    } else {
      this.wake = resume
      return Effect.sync(() => {
        this.wake = undefined
      })
    }
  })

  offer(bytes: Uint8Array): void {
    const wake = this.wake
    if (wake === undefined) {
      this.pending.push(bytes) // the writer is busy and takes these with its next pull
    } else {
      this.wake = undefined
      wake(Effect.succeed([bytes]))
    }
  }

  end(): void {
    this.ended = true
    const wake = this.wake
    if (wake !== undefined) {
      this.wake = undefined
      wake(Cause.done())
    }
  }
}

/**
 * The SDK-facing half. Plain fields and synchronous methods so that a send and a receive cost a write and a
 * buffer scan, with no fiber fork or promise chain of our own per message.
 */
class ProcessTransport implements Transport {
  onclose: Transport["onclose"] = undefined
  onerror: Transport["onerror"] = undefined
  onmessage: Transport["onmessage"] = undefined

  readonly outbox = new Outbox()
  private readonly readBuffer = new ReadBuffer()
  private readonly startSignal: Deferred.Deferred<void>
  private started = false
  private closed = false

  constructor(startSignal: Deferred.Deferred<void>) {
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
    this.outbox.offer(Buffer.from(serializeMessage(message), "utf8"))
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
    this.outbox.end()
    this.readBuffer.clear()
    this.onclose?.()
  }

  fail(cause: unknown): void {
    if (this.closed) return
    this.onerror?.(new TransportLost(`the server's stdio failed: ${toError(cause).message}`, { cause }))
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
  // Uninterruptible so that nothing runs between the spawn and the registration of its finalizer.
  Effect.uninterruptible(Effect.gen(function*() {
    const scope = yield* Effect.scope
    const spawner = yield* ChildProcessSpawner

    const command = ChildProcess.make(options.command, [...options.args], {
      cwd: options.cwd,
      env: options.inheritEnv ? { ...options.env } : { ...getDefaultEnvironment(), ...options.env },
      extendEnv: options.inheritEnv,
      // Its own process group (the spawner's POSIX default, spelled out because everything below relies
      // on it). Windows has no process groups, and there `detached` would open a console window.
      detached: process.platform !== "win32",
      stdin: "pipe",
      stdout: "pipe",
      stderr: options.stderr
    })

    // The spawner ties a release to the scope it spawns in: signal the group, then poll it with
    // kill(-pgid, 0) until it is empty. Run after our shutdown it would signal a pgid we have already seen
    // emptied (which could by then belong to someone else), and, because kill(2) also reaches zombies,
    // wait out its bounds (a second or more) whenever an orphaned member is left unreaped. So the spawn gets
    // a scope of its own that is never closed: the finalizer below does the whole shutdown instead.
    const handle = yield* spawner.spawn(command).pipe(Scope.provide(Scope.makeUnsafe()))
    const pid = handle.pid

    // Our fibers live in a scope that the finalizer closes last, so they keep serving (flushing stdin,
    // reading the final output) while it waits, whatever the caller's scope finalizer strategy is.
    const fibers = yield* Scope.make()
    const startSignal = Deferred.makeUnsafe<void>()
    const stdoutDone = Deferred.makeUnsafe<void>()
    const exited = Deferred.makeUnsafe<void>()
    const transport = new ProcessTransport(startSignal)

    const hasLiveGroupMember = makeGroupProbe(pid)
    const isGone = (): boolean => Deferred.isDoneUnsafe(exited) && !hasLiveGroupMember()

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

    yield* Scope.addFinalizer(
      scope,
      Effect.gen(function*() {
        // Closed first: pending requests fail now rather than when the process is gone, and stdin ends
        // after the writes already queued.
        transport.markClosed()
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
        // Let the reader reach the end of stdout before it is stopped: stopping it earlier leaves the child's
        // stdout socket paused with unread data, never ended, never closed (a leaked descriptor).
        yield* Effect.raceFirst(Deferred.await(stdoutDone), sleepNative(killWaitMillis))
        yield* Scope.close(fibers, Exit.void)
      })
    )

    // Exit watcher, which the finalizer relies on. A dead leader also closes the connection, even if a
    // surviving group member holds stdout open.
    yield* handle.exitCode.pipe(
      Effect.exit, // fails when killed by a signal: the process has exited either way
      Effect.andThen(() => {
        Deferred.doneUnsafe(exited, Exit.void)
        return Effect.raceFirst(Deferred.await(stdoutDone), sleepNative(exitDrainMillis))
      }),
      Effect.andThen(Effect.sync(() => transport.markClosed())),
      Effect.forkIn(fibers)
    )

    // Writer: ends stdin once the outbox ends (close, or shutdown).
    yield* Stream.run(Stream.fromPull(Effect.succeed(transport.outbox.pull)), handle.stdin).pipe(
      Effect.catch((error) =>
        Effect.sync(() =>
          // The other end of stdin went away (the server exited or closed it): nothing can reach the server
          // any more, which is a close rather than an error (the SDK's transport does not report it either).
          isPrematureClose(error) ? transport.markClosed() : transport.fail(error)
        )
      ),
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

    return { transport, pid, exited: Deferred.await(exited) } satisfies StdioConnection
  }))
