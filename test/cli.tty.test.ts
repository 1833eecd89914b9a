/**
 * The real `mcp-pool repl` through a real terminal: the executable (`src/bin/mcp-pool.ts`, on this Node) runs
 * under util-linux `script`, which gives it a pty, and the test types commands into it and reads the screen.
 * The notebook server's note survives between commands (one pool, one session for the shell's scope), and
 * `exit` ends the shell with code 0 and its server process gone.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from "node:child_process"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { awaitGone, isRunning, procStat } from "./utils/proc.ts"
import { within } from "./utils/within.ts"

const projectRoot = fileURLToPath(new URL("..", import.meta.url))
const bin = Path.join(projectRoot, "src/bin/mcp-pool.ts")
const notebookServer = Path.join(projectRoot, "examples/notebook-server.ts")

const hasScript = (() => {
  try {
    return execFileSync("script", ["--version"], { encoding: "utf8" }).includes("util-linux")
  } catch {
    return false
  }
})()

const quote = (word: string) => `'${word.replaceAll("'", "'\\''")}'`
const prompt = "mcp> "

interface Shell {
  readonly child: ChildProcessWithoutNullStreams
  /** Everything the terminal showed so far (the pty echoes what is typed). */
  readonly screen: () => string
  /** Types a line. */
  readonly type: (line: string) => Effect.Effect<void>
  /** Waits until the screen satisfies `done`. */
  readonly waitFor: (what: string, done: (screen: string) => boolean) => Effect.Effect<void>
  /** The exit code of `script` (-e: the shell's own), once it exits. */
  readonly exited: Effect.Effect<number | null>
}

/** `script -q -e -c "<node> src/bin/mcp-pool.ts repl …" /dev/null`, killed (its whole group) if still running at the end. */
const openShell = (args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.sync((): Shell => {
      const command = [process.execPath, bin, ...args].map(quote).join(" ")
      const child = spawn("script", ["-q", "-e", "-c", command, "/dev/null"], {
        cwd: projectRoot,
        detached: true,
        stdio: ["pipe", "pipe", "pipe"]
      })
      let screen = ""
      const watchers = new Set<() => void>()
      const onData = (data: Buffer) => {
        screen += data.toString("utf8")
        for (const watcher of watchers) watcher()
      }
      child.stdout.on("data", onData)
      child.stderr.on("data", onData)
      const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
      return {
        child,
        screen: () => screen,
        type: (line) =>
          Effect.callback<void>((resume) => {
            child.stdin.write(`${line}\n`, () => resume(Effect.void))
          }),
        waitFor: (what, done) =>
          Effect.callback<void>((resume) => {
            const check = () => {
              if (!done(screen)) return
              watchers.delete(check)
              resume(Effect.void)
            }
            watchers.add(check)
            check()
            return Effect.sync(() => watchers.delete(check))
          }).pipe(
            within("20 seconds", what),
            Effect.tapDefect(() => Effect.logError(`the screen so far:\n${screen}`))
          ),
        exited: Effect.promise(() => exit)
      }
    }),
    (shell) =>
      Effect.sync(() => {
        if (shell.child.exitCode === null && shell.child.signalCode === null && shell.child.pid !== undefined) {
          try {
            process.kill(-shell.child.pid, "SIGKILL")
          } catch {
            // already gone
          }
        }
        shell.child.stdin.destroy()
      })
  )

const count = (text: string, part: string) => text.split(part).length - 1

describe("mcp-pool repl in a terminal (util-linux script)", () => {
  it.live("keeps the scope's session between commands; exit ends it with code 0 and no server left", () =>
    Effect.gen(function*() {
      // Debian's bsdutils (essential) ships it; failing beats skipping silently.
      assert.isTrue(hasScript, "util-linux `script` is needed to give the shell a terminal")
      const dir = yield* Effect.acquireRelease(
        Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "mcp-cli-tty-"))),
        (dir) => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true }))
      )
      const config = Path.join(dir, "mcp.json")
      yield* Effect.promise(() =>
        Fs.writeFile(
          config,
          JSON.stringify({ mcpServers: { notebook: { command: process.execPath, args: [notebookServer] } } })
        )
      )
      const shell = yield* openShell(["repl", "--config", config, "--scope", "t"])
      // Each command is typed once the shell prompts for it: the n-th prompt follows the (n-1)-th command.
      const prompted = (n: number) => (screen: string) => count(screen, prompt) >= n
      yield* shell.waitFor("the first prompt", prompted(1))
      assert.include(shell.screen(), "mcp-pool repl: scope \"t\", 1 server (notebook); type help")

      yield* shell.type("call notebook note_write {\"key\":\"k\",\"text\":\"v\"}")
      yield* shell.waitFor("note_write's result", prompted(2))
      assert.include(shell.screen(), "saved note \"k\" (1 chars)")

      yield* shell.type("call notebook note_read {\"key\":\"k\"}")
      yield* shell.waitFor("note_read's result", prompted(3))
      const afterRead = shell.screen().slice(shell.screen().lastIndexOf("note_read"))
      assert.include(afterRead.split(/\r?\n/), "v", afterRead)

      yield* shell.type("sessions")
      yield* shell.waitFor("the sessions", prompted(4))
      const afterSessions = shell.screen().slice(shell.screen().lastIndexOf("sessions"))
      const rows = afterSessions.split(/\r?\n/).filter((line) => /^notebook\s/.test(line))
      assert.lengthOf(rows, 1, afterSessions)
      const match = /^notebook\s+t\s+ready\s+0\s+(\d+)\s+2025-11-25\s+process$/.exec(rows[0] ?? "")
      assert.isNotNull(match, rows[0])
      const pid = Number(match?.[1])
      assert.isTrue(isRunning(pid), `the server process ${pid} runs while the shell does`)
      // Its parent is the shell, whose stdin is the pty `script` opened.
      const shellPid = procStat(pid)?.ppid ?? 0
      assert.match(yield* Effect.promise(() => Fs.readlink(`/proc/${shellPid}/fd/0`)), /^\/dev\/pts\/\d+$/)

      yield* shell.type("exit")
      const code = yield* shell.exited.pipe(within("20 seconds", "the shell to exit"))
      assert.strictEqual(code, 0, shell.screen())
      // The pool closed the session as the shell ended: its process is gone (not even a zombie).
      yield* awaitGone(pid, 5_000)
      yield* awaitGone(shellPid, 5_000)
    }).pipe(Effect.scoped))
})
