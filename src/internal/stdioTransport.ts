/**
 * An MCP stdio client transport over a child process in its own process group.
 *
 * The SDK's `StdioClientTransport` signals only its direct child, so a server started through a wrapper
 * (`sh -c …`, `npx …`) survives its client. Here the server is spawned detached (its own session and
 * process group on POSIX) and shutdown signals and waits for its whole tree: the group, and descendants
 * that moved to groups of their own (Playwright MCP starts Chromium that way). While the server lives it
 * is registered with the host-exit hook (`hostExit.ts`), so that it does not outlive its host either.
 *
 * It is built on `node:child_process` streams directly rather than on Effect's `ChildProcessSpawner`: a
 * tool call is one write and one read, and the spawner's stream adapters (a `PassThrough`, a fiber per
 * direction, a sink per write) cost about 20 µs per call here, more than the SDK's whole transport. The
 * process lifecycle (spawn, the stepped shutdown, the wait for the group) stays in Effect.
 *
 * @internal
 */
import { ReadBuffer, serializeMessage } from "@modelcontextprotocol/sdk/shared/stdio.js"
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { ChildProcess } from "node:child_process"
import { readdirSync, readFileSync, statSync } from "node:fs"
import type { Readable, Writable } from "node:stream"
import * as HostExit from "./hostExit.ts"
import { TransportLost } from "./transportLost.ts"

// `node:child_process` is taken at the first spawn (Node caches it): loading it costs about 3 ms, which
// importing the package root should not pay when no stdio server is ever spawned.
const childProcess = () => process.getBuiltinModule("node:child_process")

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

/** How the spawned process ended, as Node reports it: an exit code, or the signal that killed it. */
export interface ProcessExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface StdioConnection {
  /** Not started yet: the SDK's `Client.connect()` calls `start()`. */
  readonly transport: Transport
  readonly pid: number
  /** Completes when the spawned process (the group leader) has exited. */
  readonly exited: Effect.Effect<ProcessExit>
}

/** The server could not be started. The message names what was wrong, never an environment value. */
export class SpawnError extends Error {
  override readonly name = "SpawnError"
}

/** After SIGKILL nothing can delay exit but uninterruptible kernel sleep: bound the wait rather than hang. */
const killWaitMillis = 2_000
/** How often the rest of the tree is polled once the leader has exited (there is no event for it). */
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

// --- The server's process tree, as /proc shows it ---

/** What the tree needs of `/proc/<pid>/stat`. */
interface ProcessStat {
  readonly pid: number
  readonly state: string
  readonly ppid: number
  readonly pgrp: number
  /** Clock ticks from boot to the process's start: with the pid, it names one process even once the pid is reused. */
  readonly startTime: string
}

const isDigit = (code: number): boolean => code >= 48 && code <= 57

const readStat = (pid: number | string): ProcessStat | undefined => {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "latin1")
  } catch {
    return undefined
  }
  // "pid (comm) state ppid pgrp … starttime(22nd) …": comm may contain spaces and parentheses, so split
  // after the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ", 20)
  return {
    pid: Number(pid),
    state: fields[0] ?? "",
    ppid: Number(fields[1]),
    pgrp: Number(fields[2]),
    startTime: fields[19] ?? ""
  }
}

/**
 * Zombies count as dead: orphans that die under a PID 1 that does not reap (a container without an init,
 * for instance) stay zombies forever, and would make every shutdown wait out its bound.
 */
const isLive = (stat: ProcessStat | undefined): stat is ProcessStat =>
  stat !== undefined && stat.state !== "Z" && stat.state !== "X"

/** Every process at one moment, indexed by parent. */
interface ProcessTable {
  readonly readAt: number
  readonly processes: ReadonlyArray<ProcessStat>
  readonly childrenOf: ReadonlyMap<number, ReadonlyArray<ProcessStat>>
}

/**
 * How long a table serves: a scan reads one file per process (about 1.5 ms for 110 processes here), so the
 * shutdowns of a `closeAll` and the polls of one moment share one.
 */
const tableMaxAgeMillis = 10
let lastTable: ProcessTable | undefined
/** What the last scan took: on a host with thousands of processes, one takes tens of milliseconds. */
let lastScanMillis = 0

/** `undefined` if /proc cannot be listed. */
const readProcessTable = (): ProcessTable | undefined => {
  const now = performance.now()
  if (lastTable !== undefined && now - lastTable.readAt < tableMaxAgeMillis) return lastTable
  let entries: Array<string>
  try {
    entries = readdirSync("/proc")
  } catch {
    return undefined
  }
  const processes: Array<ProcessStat> = []
  const childrenOf = new Map<number, Array<ProcessStat>>()
  for (const entry of entries) {
    if (!isDigit(entry.charCodeAt(0))) continue
    const stat = readStat(entry)
    if (stat === undefined) continue
    processes.push(stat)
    const siblings = childrenOf.get(stat.ppid)
    if (siblings === undefined) childrenOf.set(stat.ppid, [stat])
    else siblings.push(stat)
  }
  lastTable = { readAt: now, processes, childrenOf }
  lastScanMillis = performance.now() - now
  return lastTable
}

/**
 * The processes a server may leave behind: its process group, and every descendant found through the
 * parent-pid links, whatever its group. A link is lost once a parent dies (its children are reparented),
 * so members are remembered, by pid and start time, from scans taken while their parents lived: at the
 * start of shutdown, before each signal, and now and then while waiting.
 */
interface ProcessTree {
  /** The spawned process; its pid is also the id of its process group. */
  readonly leader: number
  /** `undefined` where there is no /proc to read it from. */
  readonly leaderStartTime: string | undefined
  /** Members seen alive, pid → start time, the leader included; dropped once seen dead. */
  members: Map<number, string>
  /** A member alive at the last look: while it lives, a look costs one read instead of a scan. */
  lastLive: number | undefined
  /** When the tree was last scanned (`performance.now()`). */
  scannedAt: number
}

/**
 * How often a tree with live members is scanned again for new descendants: every 100 ms, or less often
 * where scans are dear, so that they never take more than a tenth of the event loop.
 */
const rescanMillis = (): number => Math.max(100, 10 * lastScanMillis)

const isRescanDue = (tree: ProcessTree): boolean => performance.now() - tree.scannedAt >= rescanMillis()

const makeProcessTree = (leader: number): ProcessTree => {
  const stat = process.platform === "linux" ? readStat(leader) : undefined
  return {
    leader,
    leaderStartTime: stat?.startTime,
    members: new Map(isLive(stat) ? [[leader, stat.startTime]] : []),
    lastLive: undefined,
    scannedAt: -Infinity
  }
}

const isMember = (tree: ProcessTree, pid: number): boolean => {
  const stat = readStat(pid)
  return isLive(stat) && stat.startTime === tree.members.get(pid)
}

/** ESRCH: the group is empty. EPERM: its members are not ours to signal, so waiting on them is pointless. */
const groupExists = (pgid: number): boolean => {
  try {
    process.kill(-pgid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * Whether the leader's group id still names the leader's group. A group id is never reused while the group
 * has a member, and the leader holds it until it is reaped: the group is ours while the leader (alive or a
 * zombie) or a member we know is in it. Once it is not, a group with that id is a stranger's.
 */
const ownsGroup = (tree: ProcessTree, stats: Iterable<ProcessStat | undefined>): boolean => {
  if (tree.leaderStartTime === undefined) return true // no /proc: nothing to tell them apart by
  for (const stat of stats) {
    if (stat === undefined || stat.pgrp !== tree.leader) continue
    const known = stat.pid === tree.leader ? tree.leaderStartTime : tree.members.get(stat.pid)
    if (stat.startTime === known) return true
  }
  return false
}

/**
 * Looks at every process: remembers the tree's live members, new ones included. Whether any lives.
 * `groupIsOurs`: known to be, whatever `ownsGroup` can tell.
 */
const scanProcessTree = (tree: ProcessTree, groupIsOurs = false): boolean => {
  const table = readProcessTable()
  // /proc unreadable: assume the worst, so that shutdown waits out its bound rather than leave a process.
  if (table === undefined) return groupExists(tree.leader)
  tree.scannedAt = table.readAt
  groupIsOurs ||= ownsGroup(tree, table.processes)
  const live = new Map<number, string>()
  const queue: Array<ProcessStat> = []
  for (const stat of table.processes) {
    if (!isLive(stat)) continue // a zombie has no children left: they were reparented when it died
    if ((groupIsOurs && stat.pgrp === tree.leader) || tree.members.get(stat.pid) === stat.startTime) queue.push(stat)
  }
  for (let i = 0; i < queue.length; i++) {
    const stat = queue[i]!
    if (live.has(stat.pid)) continue
    live.set(stat.pid, stat.startTime)
    for (const child of table.childrenOf.get(stat.pid) ?? []) if (isLive(child)) queue.push(child)
  }
  tree.members = live
  tree.lastLive = live.keys().next().value
  return live.size > 0
}

/**
 * Called as soon as the leader has been reaped, while its group id is certainly still its group's: members
 * left in the group are remembered, so that `ownsGroup` can still tell the group from a stranger's later.
 * A group that went with its leader (the usual case) costs one `kill`.
 */
const rememberGroupOfReapedLeader = (tree: ProcessTree): void => {
  if (process.platform === "linux" && groupExists(tree.leader)) scanProcessTree(tree, true)
}

/**
 * Whether no process of the tree runs. Cheap while it is decided by what is remembered: one read while the
 * last live member lives, and a gone group with every remembered member dead means nothing is left that
 * could have started another. A full scan otherwise, and every `rescanMillis` for new descendants.
 */
const isProcessTreeGone = (tree: ProcessTree): boolean => {
  if (process.platform === "win32") return !processExists(tree.leader) // no process groups
  if (process.platform !== "linux") return !groupExists(tree.leader) // no /proc: the group is all we can see
  if (!isRescanDue(tree)) {
    if (tree.lastLive !== undefined && isMember(tree, tree.lastLive)) return false
    for (const pid of tree.members.keys()) {
      if (isMember(tree, pid)) {
        tree.lastLive = pid
        return false
      }
      tree.members.delete(pid)
    }
    tree.lastLive = undefined
    if (!groupExists(tree.leader)) return true
  }
  // Members unknown to us remain in the group (or only zombies do), or it is time to look for new ones.
  return !scanProcessTree(tree)
}

const processExists = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const kill = (target: number, signal: NodeJS.Signals): void => {
  try {
    process.kill(target, signal)
  } catch {
    // ESRCH: already gone; EPERM: nothing this process can do about it.
  }
}

/**
 * Signals the leader's group and every remembered descendant outside it: the group of one that leads a
 * group of its own (Chromium and its helpers), else the process alone. Scans first, so that descendants
 * are remembered before the signal can orphan them, and checks each one's start time just before
 * signalling it, so that a reused pid is never signalled.
 */
const signalProcessTree = (tree: ProcessTree, signal: "SIGTERM" | "SIGKILL"): void => {
  if (process.platform === "win32") return kill(tree.leader, signal) // no groups: the leader is all there is
  if (process.platform !== "linux") return kill(-tree.leader, signal)
  scanProcessTree(tree)
  const stats: Array<ProcessStat> = []
  for (const [pid, startTime] of tree.members) {
    const stat = readStat(pid)
    if (isLive(stat) && stat.startTime === startTime) stats.push(stat)
  }
  const groups = new Set<number>()
  if (ownsGroup(tree, [readStat(tree.leader), ...stats])) groups.add(tree.leader)
  for (const stat of stats) if (stat.pgrp === stat.pid) groups.add(stat.pid)
  for (const pgid of groups) kill(-pgid, signal)
  for (const stat of stats) if (!groups.has(stat.pgrp)) kill(stat.pid, signal)
}

const toError = (cause: unknown): Error => cause instanceof Error ? cause : new Error(String(cause))

const errorCode = (error: unknown): unknown => (error as NodeJS.ErrnoException | undefined)?.code

/** Errors writing stdin that only mean the other end went away (the server exited or closed its stdin). */
const isPipeGone = (error: unknown): boolean => {
  const code = errorCode(error)
  return code === "EPIPE" || code === "ECONNRESET" || code === "EOF" || code === "ERR_STREAM_DESTROYED" ||
    code === "ERR_STREAM_PREMATURE_CLOSE" || code === "ERR_STREAM_WRITE_AFTER_END"
}

/**
 * The SDK's stdio client module, for its `getDefaultEnvironment`: imported at the first spawn, as it brings
 * `cross-spawn` and its dependencies, which the package root (and an app without stdio servers) need not load.
 */
let sdkStdio: Promise<typeof import("@modelcontextprotocol/sdk/client/stdio.js")> | undefined
const loadSdkStdio = () => sdkStdio ??= import("@modelcontextprotocol/sdk/client/stdio.js")

/** The child's environment, secrets unwrapped: only the child ever sees their values. */
const childEnvironment = (
  options: StdioProcessOptions,
  defaultEnvironment: () => Record<string, string>
): Record<string, string> => {
  const env: Record<string, string> = {}
  const base = options.inheritEnv ? process.env : defaultEnvironment()
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
 * SIGTERM the tree, wait up to `terminateGrace`, SIGKILL the tree, wait. "Gone" means the leader has
 * exited and no live process is left in its group or among the descendants found outside it, so wrapper
 * shells, their children and browsers in groups of their own go too. A scope closed by a failure (not an
 * interruption) held a session that never served, a failed connect: there is nothing to flush, so the tree
 * is SIGKILLed at once. Then the pipes are released, even if a process that left the tree still holds their
 * other ends.
 */
export const spawnStdio = (options: StdioProcessOptions): Effect.Effect<StdioConnection, SpawnError, Scope.Scope> =>
  Effect.flatMap(Effect.promise(loadSdkStdio), ({ getDefaultEnvironment }) => spawnWith(options, getDefaultEnvironment))

/** `spawnStdio`, once the SDK's stdio module is loaded. */
const spawnWith = (
  options: StdioProcessOptions,
  getDefaultEnvironment: () => Record<string, string>
): Effect.Effect<StdioConnection, SpawnError, Scope.Scope> =>
  // Uninterruptible so that nothing runs between the spawn and the registration of its finalizer.
  Effect.uninterruptible(Effect.gen(function*() {
    const scope = yield* Effect.scope
    const env = childEnvironment(options, getDefaultEnvironment)
    const invalid = invalidInput(options, env)
    if (invalid !== undefined) return yield* Effect.fail(new SpawnError(invalid))

    let child: ChildProcess
    try {
      child = childProcess().spawn(options.command, options.args, {
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
    const exited = Deferred.makeUnsafe<ProcessExit>()
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

    const pid = child.pid
    if (pid === undefined) {
      const error = yield* Deferred.await(spawnFailed)
      stdin.destroy()
      stdout.destroy()
      child.stderr?.destroy()
      return yield* Effect.fail(new SpawnError(describeSpawnError(error, options), { cause: error }))
    }

    // Still no yield since the spawn on this path, so no event can have been missed.
    const tree = makeProcessTree(pid)
    // A dead leader also closes the connection, even if a surviving group member holds stdout open.
    child.on("exit", (code, signal) => {
      rememberGroupOfReapedLeader(tree)
      Deferred.doneUnsafe(exited, Exit.succeed({ code, signal }))
      if (!Deferred.isDoneUnsafe(stdoutDone)) exitDrain = setTimeout(() => transport.markClosed(), exitDrainMillis)
    })
    const hostExitEntry: HostExit.Tree = {
      signal: (signal) => signalProcessTree(tree, signal),
      isGone: () => isProcessTreeGone(tree)
    }
    HostExit.register(hostExitEntry)

    // Fibers of ours live in a scope that the finalizer closes last, so they keep serving (reading the final
    // output) while it waits, whatever the caller's scope finalizer strategy is.
    const fibers = yield* Scope.make()

    const awaitGone = (millis: number): Effect.Effect<boolean> =>
      Effect.suspend(() => {
        const deadline = Date.now() + millis
        // The leader's exit is an event; the rest of the tree can only be polled, and new descendants only
        // found by scanning while their parents live.
        const poll: Effect.Effect<boolean> = Effect.suspend(() => {
          const leaderExited = Deferred.isDoneUnsafe(exited)
          if (leaderExited && isProcessTreeGone(tree)) return Effect.succeed(true)
          // Descendants the leader starts meanwhile are remembered before its exit can orphan them.
          if (!leaderExited && isRescanDue(tree)) scanProcessTree(tree)
          const left = deadline - Date.now()
          if (left <= 0) return Effect.succeed(false)
          const wait = sleepNative(Math.min(leaderExited ? pollMillis : rescanMillis(), left))
          return Effect.andThen(leaderExited ? wait : Effect.raceFirst(Deferred.await(exited), wait), poll)
        })
        return poll
      })

    yield* Scope.addFinalizerExit(scope, (exit) =>
      Effect.gen(function*() {
        // Taken before anything can make the leader exit: its children are reparented when it does.
        scanProcessTree(tree)
        // Closed first: pending requests fail now rather than when the process is gone, and stdin ends.
        transport.markClosed()
        // Output nobody will read any more is discarded, so that a server blocked writing it can exit and
        // the pipe can reach its end.
        stdout.resume()
        let gone: boolean
        if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) {
          // A session that never served has nothing to flush. An interruption is not one of these: Ctrl-C
          // under `runMain` interrupts the main fiber, and that shutdown deserves the graceful steps.
          signalProcessTree(tree, "SIGKILL")
          gone = yield* awaitGone(killWaitMillis)
        } else {
          gone = yield* awaitGone(Duration.toMillis(options.stdinGrace))
          if (!gone) {
            signalProcessTree(tree, "SIGTERM")
            gone = yield* awaitGone(Duration.toMillis(options.terminateGrace))
          }
          if (!gone) {
            signalProcessTree(tree, "SIGKILL")
            gone = yield* awaitGone(killWaitMillis)
          }
        }
        if (!gone) {
          yield* Effect.logWarning("MCP stdio server processes still alive after SIGKILL; giving up").pipe(
            Effect.annotateLogs({ "mcp.stdio.command": options.command, "mcp.stdio.pid": pid })
          )
        }
        // Given up on or gone, it is no longer the host's to kill at exit.
        HostExit.unregister(hostExitEntry)
        // The last output is read before our ends of the pipes are released,
        // which they are even if a process that left the tree still holds the other ends.
        yield* Effect.raceFirst(Deferred.await(stdoutDone), sleepNative(killWaitMillis))
        clearTimeout(exitDrain)
        yield* Scope.close(fibers, Exit.void)
        stdin.destroy()
        stdout.destroy()
        child.stderr?.destroy()
      }))

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
