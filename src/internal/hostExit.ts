/**
 * One process-level hook, shared by every pool, that keeps stdio servers from outliving their host.
 *
 * Servers run in process groups of their own, so a signal from the terminal reaches only the host, and a
 * host that dies by it never runs the pool's finalizers: a server that ignores the end of its stdin would
 * run on forever. So while any server is registered, this module listens for SIGINT, SIGTERM, SIGHUP and
 * `exit`:
 *
 * - a signal nothing else listens for, by which the host would have died: every registered tree is
 *   terminated (SIGTERM, a short synchronous wait, SIGKILL for the rest), then the listeners are removed
 *   and the signal is raised again, so that the host dies by it exactly as it would have;
 * - a signal the app listens for itself (`NodeRuntime.runMain` interrupts its main fiber, and the pool then
 *   closes its sessions gracefully): nothing, the app decides, and `exit` stays the backstop;
 * - `exit` (a normal exit, `process.exit`, an uncaught exception): SIGKILL for whatever is still
 *   registered, since only synchronous work can run there.
 *
 * The listeners exist only while something is registered: one per event, however many pools and sessions.
 *
 * @internal
 */

/**
 * What the hook needs of a server's processes. Synchronous: neither an `exit` listener nor a host about to
 * die by a signal can wait on the event loop.
 */
export interface Tree {
  /** Sends `signal` to every process of the tree that still runs. */
  readonly signal: (signal: "SIGTERM" | "SIGKILL") => void
  /** Whether no process of the tree runs any more (zombies count as gone: nothing can reap them here). */
  readonly isGone: () => boolean
}

/**
 * None as PID 1 (a container's init): the kernel does not deliver a signal whose action is the default to
 * it, so the host would not have died by one, and the servers die with it when it does exit.
 */
const signals: ReadonlyArray<NodeJS.Signals> = process.pid === 1 ? [] : ["SIGINT", "SIGTERM", "SIGHUP"]

/** How long a host dying by a signal waits for SIGTERMed trees before SIGKILL: its death waits meanwhile. */
const terminateWaitMillis = 500
const pollMillis = 10

const registered = new Set<Tree>()
let listening = false

/**
 * Marks our listeners, under a global symbol so that a second copy of this module (two installed versions,
 * or `src` and `dist` loaded side by side) counts as ours too rather than as the app's own handler.
 */
const ownListener = Symbol.for("effect-mcp-pool/hostExit")

const isOwn = (listener: unknown): boolean => typeof listener === "function" && ownListener in listener

const sleeper = new Int32Array(new SharedArrayBuffer(4))
const sleepSync = (millis: number): void => {
  Atomics.wait(sleeper, 0, 0, millis)
}

const terminate = (trees: ReadonlyArray<Tree>): void => {
  for (const tree of trees) tree.signal("SIGTERM")
  const deadline = Date.now() + terminateWaitMillis
  let running = trees.filter((tree) => !tree.isGone())
  while (running.length > 0 && Date.now() < deadline) {
    sleepSync(Math.min(pollMillis, deadline - Date.now()))
    running = running.filter((tree) => !tree.isGone())
  }
  for (const tree of running) tree.signal("SIGKILL")
}

const onSignal = Object.assign((signal: NodeJS.Signals): void => {
  // A listener of the app's own replaced the default action, which was to die: the app decides.
  if (process.listeners(signal).some((listener) => !isOwn(listener))) return
  terminate([...registered])
  stopListening()
  // With no listener left the default action is back: the host dies by the signal, as it would have.
  process.kill(process.pid, signal)
}, { [ownListener]: true })

const onExit = Object.assign((): void => {
  for (const tree of registered) tree.signal("SIGKILL")
}, { [ownListener]: true })

const startListening = (): void => {
  listening = true
  process.on("exit", onExit)
  for (const signal of signals) process.on(signal, onSignal)
}

const stopListening = (): void => {
  listening = false
  process.off("exit", onExit)
  for (const signal of signals) process.off(signal, onSignal)
}

/** From spawn on: the tree is terminated if the host goes before it does. */
export const register = (tree: Tree): void => {
  registered.add(tree)
  if (!listening) startListening()
}

/** Once the tree is gone (or given up on): the last one out removes the listeners. */
export const unregister = (tree: Tree): void => {
  registered.delete(tree)
  if (registered.size === 0 && listening) stopListening()
}
