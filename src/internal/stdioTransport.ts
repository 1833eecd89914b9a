/**
 * An MCP stdio client transport over a child process in its own process group.
 *
 * The SDK's `StdioClientTransport` signals only its direct child, so a server started through a wrapper
 * (`sh -c …`, `npx …`) survives its client. Here the server is spawned detached (its own session and
 * process group on POSIX) and shutdown signals and waits for the whole group.
 *
 * It is built on `node:child_process` streams directly rather than on Effect's `ChildProcessSpawner`: a
 * tool call is one write and one read, and the spawner's stream adapters (a `PassThrough`, a fiber per
 * direction, a sink per write) cost about 20 µs per call here, more than the SDK's whole transport. The
 * process lifecycle (spawn, the stepped shutdown, the wait for the group) stays in Effect.
 *
 * @internal
 */
import { getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js"
import { ReadBuffer, serializeMessage } from "@modelcontextprotocol/sdk/shared/stdio.js"
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { type ChildProcess, spawn } from "node:child_process"
import { readdirSync, readFileSync, statSync } from "node:fs"
import type { Readable, Writable } from "node:stream"
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

/** The server could not be started. The message names what was wrong, never an environment value. */
export class SpawnError extends Error {
  override readonly name = "SpawnError"
}

/** After SIGKILL nothing can delay exit but uninterruptible kernel sleep: bound the wait rather than hang. */
const killWaitMillis = 2_000
/** How often the rest of the group is polled once the leader has exited (there is no event for it). */
const pollMillis = 10
/**
 * Once the leader has exited, its last output is already in the pipe and takes a few event loop turns to
 * read. Stdout ending later than this means another group member holds it open; the connection is treated
 * as closed anyway, since the process we spawned is gone (the scope's finalizer still kills the group).
 */
const exitDrainMillis = 100

/**
 * Shutdown waits on native timers: processes run in real time, so a `TestClock` in the caller's context
 * must not stall (or skip) the grace periods.
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

const toError = (cause: unknown): Error => cause instanceof Error ? cause : new Error(String(cause))

const errorCode = (error: unknown): unknown => (error as NodeJS.ErrnoException | undefined)?.code

/** Errors writing stdin that only mean the other end went away (the server exited or closed its stdin). */
const isPipeGone = (error: unknown): boolean => {
  const code = errorCode(error)
  return code === "EPIPE" || code === "ECONNRESET" || code === "EOF" || code === "ERR_STREAM_DESTROYED" ||
    code === "ERR_STREAM_PREMATURE_CLOSE" || code === "ERR_STREAM_WRITE_AFTER_END"
}

/** The child's environment, secrets unwrapped: only the child ever sees their values. */
const childEnvironment = (options: StdioProcessOptions): Record<string, string> => {
  const env: Record<string, string> = {}
  const base = options.inheritEnv ? process.env : getDefaultEnvironment()
  for (const [name, value] of Object.entries(base)) {
    if (value !== undefined) env[name] = value
  }
  for (const [name, value] of Object.entries(options.env)) {
    env[name] = Redacted.isRedacted(value) ? Redacted.value(value) : value
  }
  return env
}

/**
 * What no process can be given, checked before spawning: Node's own error for it quotes the value, and an
 * environment value may be a secret.
 */
const invalidInput = (options: StdioProcessOptions, env: Record<string, string>): string | undefined => {
  const show = (text: string) => JSON.stringify(text)
  if (options.command.includes("\0")) return "the command contains a NUL character"
  const badArg = options.args.findIndex((arg) => arg.includes("\0"))
  if (badArg >= 0) return `argument ${badArg + 1} contains a NUL character`
  if (options.cwd?.includes("\0")) return "the working directory contains a NUL character"
  for (const [name, value] of Object.entries(env)) {
    if (name.includes("\0")) return `an environment variable name contains a NUL character: ${show(name)}`
    if (value.includes("\0")) return `the value of environment variable ${show(name)} contains a NUL character`
  }
  return undefined
}

/** Node says "spawn <command> ENOENT" for a missing command and for a missing working directory alike. */
const describeSpawnError = (error: Error, options: StdioProcessOptions): string => {
  const code = errorCode(error)
  if (code === "ENOENT" && options.cwd !== undefined && !isDirectory(options.cwd)) {
    return `the working directory ${JSON.stringify(options.cwd)} does not exist or is not a directory`
  }
  if (code === "ENOENT") return `command not found (${error.message})`
  if (code === "EACCES") return `permission denied (${error.message})`
  return error.message
}

const isDirectory = (path: string): boolean => {
  try {
    return statSync(path).isDirectory()
  } catch {
    return false
  }
}

const resolved = Promise.resolve()

/**
 * The SDK-facing half. Plain fields and synchronous methods, like the SDK's own transport: a send is one
 * `write`, a receive one buffer scan, with no fiber or promise chain of our own per message.
 */
class ProcessTransport implements Transport {
  onclose: Transport["onclose"] = undefined
  onerror: Transport["onerror"] = undefined
  onmessage: Transport["onmessage"] = undefined

  private readonly readBuffer = new ReadBuffer()
  private readonly stdin: Writable
  private readonly stdout: Readable
  private started = false
  private closed = false
  private drained: Promise<void> | undefined = undefined

  constructor(stdin: Writable, stdout: Readable) {
    this.stdin = stdin
    this.stdout = stdout
  }

  start(): Promise<void> {
    if (this.started) {
      return Promise.reject(new Error("Stdio transport already started (Client.connect() calls start() itself)"))
    }
    this.started = true
    // Stdout is only read from here on, so no message arrives before the client has set `onmessage`.
    this.stdout.on("data", this.receive)
    return resolved
  }

  send(message: JSONRPCMessage): Promise<void> {
    if (this.closed) return Promise.reject(new Error("Not connected"))
    if (this.stdin.write(serializeMessage(message))) return resolved
    // Queued above the pipe's high-water mark: hold the sender until it drains, as the SDK does. One
    // shared wait, however many senders, so that a burst adds two listeners rather than two per message.
    return this.drained ??= new Promise((resolve) => {
      const done = () => {
        this.stdin.off("drain", done)
        this.stdin.off("close", done)
        this.drained = undefined
        resolve()
      }
      this.stdin.on("drain", done)
      this.stdin.on("close", done)
    })
  }

  close(): Promise<void> {
    this.markClosed()
    return resolved
  }

  /** Fires `onclose` once, whatever closed first: `close()`, stdout ending, the process exiting, an I/O error. */
  markClosed(): void {
    if (this.closed) return
    this.closed = true
    // Ending stdin asks a well-behaved server to exit; what was written before still reaches it.
    if (!this.stdin.writableEnded && !this.stdin.destroyed) this.stdin.end()
    this.readBuffer.clear()
    this.onclose?.()
  }

  fail(cause: unknown): void {
    if (this.closed) return
    this.onerror?.(new TransportLost(`the server's stdio failed: ${toError(cause).message}`, { cause }))
    this.markClosed()
  }

  /** A listener, hence an arrow: stdout stays read after close so that the server never blocks on it. */
  private readonly receive = (chunk: Buffer): void => {
    if (this.closed) return
    try {
      this.readBuffer.append(chunk)
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
      if (message === null) return
      this.onmessage?.(message)
      if (this.closed) return
    }
  }
}

/**
 * Spawns `command` in its own process group and returns an unstarted MCP transport over its stdio.
 *
 * Closing the scope shuts the server down in steps and waits for it: end stdin, wait up to `stdinGrace`,
 * SIGTERM the group, wait up to `terminateGrace`, SIGKILL the group, wait. "Exited" means the leader has
 * exited and no live process is left in its group, so wrapper shells and their children go too. Then the
 * pipes are released, even if a process that left the group still holds their other ends.
 */
export const spawnStdio = (options: StdioProcessOptions): Effect.Effect<StdioConnection, SpawnError, Scope.Scope> =>
  // Uninterruptible so that nothing runs between the spawn and the registration of its finalizer.
  Effect.uninterruptible(Effect.gen(function*() {
    const scope = yield* Effect.scope
    const env = childEnvironment(options)
    const invalid = invalidInput(options, env)
    if (invalid !== undefined) return yield* Effect.fail(new SpawnError(invalid))

    let child: ChildProcess
    try {
      child = spawn(options.command, options.args, {
        cwd: options.cwd,
        env,
        // Its own process group, which everything below relies on. Windows has no process groups, and
        // there `detached` would open a console window.
        detached: process.platform !== "win32",
        stdio: ["pipe", "pipe", options.stderr],
        windowsHide: true
      })
    } catch (error) {
      return yield* Effect.fail(new SpawnError(toError(error).message, { cause: error }))
    }
    // Every listener is attached before the first yield: Node emits on later ticks.
    const stdin = child.stdin!
    const stdout = child.stdout!
    const transport = new ProcessTransport(stdin, stdout)
    const spawnFailed = Deferred.makeUnsafe<Error>()
    const exited = Deferred.makeUnsafe<void>()
    const stdoutDone = Deferred.makeUnsafe<void>()
    let exitDrain: ReturnType<typeof setTimeout> | undefined

    child.on("error", (error) => {
      // Before a pid, the spawn failed; after one, only signalling through `child.kill` (unused) emits here.
      if (child.pid === undefined) Deferred.doneUnsafe(spawnFailed, Exit.succeed(error))
      else transport.fail(error)
    })
    stdin.on("error", (error) => isPipeGone(error) ? transport.markClosed() : transport.fail(error))
    stdout.on("error", (error) => transport.fail(error))
    stdout.on("close", () => {
      clearTimeout(exitDrain)
      Deferred.doneUnsafe(stdoutDone, Exit.void)
      transport.markClosed()
    })
    // A dead leader also closes the connection, even if a surviving group member holds stdout open.
    child.on("exit", () => {
      Deferred.doneUnsafe(exited, Exit.void)
      if (!Deferred.isDoneUnsafe(stdoutDone)) exitDrain = setTimeout(() => transport.markClosed(), exitDrainMillis)
    })

    const pid = child.pid
    if (pid === undefined) {
      const error = yield* Deferred.await(spawnFailed)
      stdin.destroy()
      stdout.destroy()
      child.stderr?.destroy()
      return yield* Effect.fail(new SpawnError(describeSpawnError(error, options), { cause: error }))
    }

    // Fibers of ours live in a scope that the finalizer closes last, so they keep serving (reading the final
    // output) while it waits, whatever the caller's scope finalizer strategy is.
    const fibers = yield* Scope.make()
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
        // Closed first: pending requests fail now rather than when the process is gone, and stdin ends.
        transport.markClosed()
        // Output nobody will read any more is discarded, so that a server blocked writing it can exit and
        // the pipe can reach its end.
        stdout.resume()
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
        // The last output is read before our ends of the pipes are released,
        // which they are even if a process that left the group still holds the other ends.
        yield* Effect.raceFirst(Deferred.await(stdoutDone), sleepNative(killWaitMillis))
        clearTimeout(exitDrain)
        yield* Scope.close(fibers, Exit.void)
        stdin.destroy()
        stdout.destroy()
        child.stderr?.destroy()
      })
    )

    const stderr = child.stderr
    if (options.stderr === "pipe" && stderr !== null) {
      // Always drained: an unread stderr pipe would block the server once full.
      yield* Stream.fromAsyncIterable(stderr as AsyncIterable<Uint8Array>, toError).pipe(
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
