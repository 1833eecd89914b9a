/**
 * `mcp-pool` in-process: the commands through `runCli` (effect's cli parsing the arguments, output captured
 * through `Console`), and the exported logic (`doctor`, `callTool`, `repl`, `renderResult`) against real stdio
 * servers: the bundled notebook server, a 2026-07-28 server, and a command that does not exist.
 */
import * as NodeServices from "@effect/platform-node/NodeServices"
import { assert, describe, it } from "@effect/vitest"
import { Console, Effect, Layer, Option, Terminal } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { callTool, doctor, renderResult, repl, resolveConfigPath, runCli, type ServerReport } from "../src/cli/main.ts"
import * as McpConfigFile from "../src/McpConfigFile.ts"
import * as McpSessionPool from "../src/McpSessionPool.ts"
import { isRunning } from "./utils/proc.ts"
import { within } from "./utils/within.ts"

const projectRoot = fileURLToPath(new URL("..", import.meta.url))
const notebook = { command: process.execPath, args: [Path.join(projectRoot, "examples/notebook-server.ts")] }
const modern = { command: process.execPath, args: [Path.join(projectRoot, "test/fixtures/modern-server.ts")] }
const missing = { command: "mcp-pool-test-no-such-command" }

/** What was printed: stdout (`Console.log`) and stderr (`Console.error`), each as one string. */
interface Captured {
  readonly out: () => string
  readonly err: () => string
  readonly console: Console.Console
}

const capture = (): Captured => {
  const out: Array<string> = []
  const err: Array<string> = []
  const console: Console.Console = Object.assign(Object.create(globalThis.console) as Console.Console, {
    log: (...args: ReadonlyArray<unknown>) => out.push(args.map(String).join(" ")),
    error: (...args: ReadonlyArray<unknown>) => err.push(args.map(String).join(" "))
  })
  return { out: () => out.join("\n"), err: () => err.join("\n"), console }
}

/** Runs `mcp-pool <args>` in this process: its exit code and what it printed. */
const cli = (args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const captured = capture()
    const code = yield* runCli(args).pipe(
      Effect.provide(NodeServices.layer),
      Effect.provideService(Console.Console, captured.console),
      within("60 seconds", `mcp-pool ${args.join(" ")}`)
    )
    return { code, out: captured.out(), err: captured.err() }
  })

/** A temp folder, removed with the test's scope. */
const tempDir = Effect.acquireRelease(
  Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "mcp-cli-"))),
  (dir) => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true }))
)

const writeConfig = (dir: string, name: string, config: unknown) =>
  Effect.promise(async () => {
    const file = Path.join(dir, name)
    await Fs.mkdir(Path.dirname(file), { recursive: true })
    await Fs.writeFile(file, typeof config === "string" ? config : JSON.stringify(config, null, 2))
    return file
  })

/** Live (non-zombie) children of this process: every server a command started must be gone when it returns. */
const liveChildren = () =>
  Effect.promise(async () => {
    const pids: Array<number> = []
    for (const entry of await Fs.readdir("/proc")) {
      if (!/^\d+$/.test(entry)) continue
      const stat = await Fs.readFile(`/proc/${entry}/stat`, "latin1").catch(() => "")
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
      if (ppid === process.pid && isRunning(Number(entry))) pids.push(Number(entry))
    }
    return pids
  })

const loadServers = (file: string) => McpConfigFile.loadServers(file).pipe(Effect.provide(NodeServices.layer))

describe("mcp-pool (in-process)", () => {
  it.live("doctor: reachable with revision and tool count, or unreachable with the error; exit code 1", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = yield* writeConfig(dir, "mcp.json", { mcpServers: { notebook, missing, modern } })

      // The exported check: one report per server, in the file's order.
      const finished: Array<string> = []
      const reports = yield* doctor(yield* loadServers(file), {
        timeout: "20 seconds",
        onReport: (report, done, total) => Effect.sync(() => finished.push(`${done}/${total} ${report.server}`))
      }).pipe(within("30 seconds", "doctor's reports"))
      const byName = Object.fromEntries(reports.map((report) => [report.server, report])) as Record<
        string,
        ServerReport
      >
      assert.deepStrictEqual(reports.map((report) => report.server), ["notebook", "missing", "modern"])
      assert.deepInclude(byName.notebook, {
        reachable: true,
        revision: "2025-11-25",
        protocolVersion: "2025-11-25",
        tools: 8,
        error: undefined
      })
      assert.deepInclude(byName.modern, {
        reachable: true,
        revision: "2026-07-28",
        protocolVersion: "2026-07-28",
        tools: 7,
        error: undefined
      })
      assert.deepInclude(byName.missing, { reachable: false, revision: undefined, tools: undefined })
      assert.include(byName.missing?.error, "command not found")
      assert.notInclude(byName.missing?.error, "scope") // the doctor's own scope is no concern of the user's
      for (const report of reports) assert.isAbove(report.connectMillis, 0, report.server)
      // Progress: each server as its check ends.
      assert.sameMembers(finished.map((line) => line.split(" ")[1]), ["notebook", "missing", "modern"])
      assert.deepStrictEqual(finished.map((line) => line.split(" ")[0]), ["1/3", "2/3", "3/3"])
      assert.deepStrictEqual(yield* liveChildren(), [])

      // The command: the same as a table on stdout, progress on stderr, exit code 1 (one is unreachable).
      const run = yield* cli(["doctor", file, "--timeout", "20 seconds"])
      assert.strictEqual(run.code, 1, run.out + run.err)
      assert.match(run.out, /^notebook\s+ok\s+2025-11-25\s+8\s+\d+ ms$/m)
      assert.match(run.out, /^modern\s+ok\s+2026-07-28\s+7\s+\d+ ms$/m)
      assert.match(run.out, /^missing\s+unreachable\s+-\s+-\s+\d+ ms$/m)
      assert.match(run.out, /^ {2}missing: Could not connect to MCP server "missing".*command not found/m)
      assert.include(run.out, "2 of 3 servers reachable")
      assert.include(run.err, `checking 3 servers from ${file}…`)
      assert.match(run.err, /\[3\/3\] \w+: (un)?reachable \(\d+ ms\)/)
      assert.deepStrictEqual(yield* liveChildren(), [])
    }).pipe(Effect.scoped))

  it.live("doctor: exit code 0 when every server is reachable; a timeout bounds a server that never answers", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const good = yield* writeConfig(dir, "good.json", { mcpServers: { notebook } })
      const run = yield* cli(["doctor", good])
      assert.strictEqual(run.code, 0, run.out + run.err)
      assert.include(run.out, "1 of 1 server reachable")
      // --json: the same reports, machine-readable on stdout (progress stays on stderr).
      const asJson = yield* cli(["doctor", good, "--json"])
      assert.strictEqual(asJson.code, 0, asJson.out + asJson.err)
      const [report, ...others] = JSON.parse(asJson.out) as Array<ServerReport>
      assert.deepStrictEqual(others, [])
      assert.include(report, { server: "notebook", reachable: true, revision: "2025-11-25", tools: 8 })
      assert.isAbove(report!.connectMillis, 0)
      assert.strictEqual(report!.error, null) // present, as null: every object has every field
      assert.include(asJson.err, "[1/1] notebook: reachable")

      // A process that never speaks MCP: unreachable within the bound, not after 30 seconds.
      const silent = yield* writeConfig(dir, "silent.json", {
        mcpServers: { silent: { command: process.execPath, args: ["-e", "setInterval(() => {}, 1000)"] } }
      })
      const slow = yield* cli(["doctor", silent, "--timeout", "1500 millis"])
      assert.strictEqual(slow.code, 1, slow.out + slow.err)
      assert.match(slow.out, /^silent\s+unreachable/m)
      assert.deepStrictEqual(yield* liveChildren(), [])
    }).pipe(Effect.scoped))

  it.live("a bad config file prints the ConfigError with every field path and exits 2, for every command", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const bad = yield* writeConfig(dir, "bad.json", {
        mcpServers: { a: { command: 1 }, b: { url: "https://example.com/mcp", headers: { X: "${env:MCP_CLI_UNSET}" } } }
      })
      for (
        const args of [["doctor", bad], ["call", "a", "t", "--config", bad], ["repl", "--config", bad]]
      ) {
        const run = yield* cli(args)
        assert.strictEqual(run.code, 2, args.join(" "))
        assert.include(run.err, `Invalid MCP pool configuration (${bad})`)
        assert.include(run.err, "mcpServers.a.command")
        assert.include(run.err, "mcpServers.b.headers.X: environment variable MCP_CLI_UNSET is not set")
      }
      // A file that is not there, and a bad invocation, exit 2 too.
      const absent = yield* cli(["doctor", Path.join(dir, "absent.json")])
      assert.strictEqual(absent.code, 2)
      assert.include(absent.err, "cannot read the file")
      const usage = yield* cli(["doctor", "--timeout", "soon", bad])
      assert.strictEqual(usage.code, 2)
      assert.strictEqual((yield* cli(["nonsense"])).code, 2)
      assert.strictEqual((yield* cli(["call", "only-a-server"])).code, 2)
      assert.strictEqual((yield* cli(["--help"])).code, 0)
    }).pipe(Effect.scoped))

  it.live("without a file: .mcp.json, else .cursor/mcp.json, else .vscode/mcp.json; none is a ConfigError", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const resolve = (cwd: string) => resolveConfigPath(Option.none(), cwd).pipe(Effect.provide(NodeServices.layer))
      const none = yield* Effect.flip(resolve(dir))
      assert.include(none.message, "no config file: looked for .mcp.json, .cursor/mcp.json, .vscode/mcp.json")
      const vscode = yield* writeConfig(dir, ".vscode/mcp.json", { servers: {} })
      assert.strictEqual(yield* resolve(dir), vscode)
      const cursor = yield* writeConfig(dir, ".cursor/mcp.json", { mcpServers: {} })
      assert.strictEqual(yield* resolve(dir), cursor)
      const claude = yield* writeConfig(dir, ".mcp.json", { mcpServers: {} })
      assert.strictEqual(yield* resolve(dir), claude)
      assert.strictEqual(
        yield* resolveConfigPath(Option.some("given.json"), dir).pipe(Effect.provide(NodeServices.layer)),
        "given.json"
      )
    }).pipe(Effect.scoped))

  it.live("call: prints the result and exits 0; isError, typed errors and bad arguments exit 1 or 2", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = yield* writeConfig(dir, "mcp.json", { mcpServers: { notebook, missing } })

      const write = yield* cli(["call", "notebook", "note_write", "{\"key\":\"k\",\"text\":\"v\"}", "--config", file])
      assert.deepStrictEqual(write, { code: 0, out: "saved note \"k\" (1 chars)", err: "" })
      // A fresh process per invocation: the note is gone, and the tool says so (isError → exit 1, on stderr).
      const read = yield* cli(["call", "--scope", "s", "notebook", "note_read", "{\"key\":\"k\"}", "--config", file])
      assert.deepStrictEqual(read, { code: 1, out: "", err: "no note named \"k\"" })

      const unknown = yield* cli(["call", "nope", "x", "--config", file])
      assert.strictEqual(unknown.code, 1)
      assert.match(unknown.err, /^UnknownServer: Unknown MCP server "nope"/)
      const unreachable = yield* cli(["call", "missing", "x", "--config", file])
      assert.strictEqual(unreachable.code, 1)
      assert.match(unreachable.err, /^ConnectError: .*command not found/)
      const noTool = yield* cli(["call", "notebook", "no_such_tool", "--config", file])
      assert.strictEqual(noTool.code, 1)
      assert.include(noTool.err, "no_such_tool")
      const notJson = yield* cli(["call", "notebook", "note_read", "{key}", "--config", file])
      assert.strictEqual(notJson.code, 2)
      assert.include(notJson.err, "the arguments are not JSON")
      const notObject = yield* cli(["call", "notebook", "note_read", "[1]", "--config", file])
      assert.strictEqual(notObject.code, 2)
      assert.include(notObject.err, "must be a JSON object")
      assert.deepStrictEqual(yield* liveChildren(), [])
    }).pipe(Effect.scoped))

  it.live("callTool on one pool keeps each scope's state between calls, and never shares it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = yield* writeConfig(dir, "mcp.json", { mcpServers: { notebook } })
      const servers = yield* loadServers(file)
      const captured = capture()
      const results = yield* Effect.gen(function*() {
        const pool = yield* McpSessionPool.make({ servers })
        const call = (scope: string, tool: string, json: string) =>
          callTool(pool, { server: "notebook", tool, json, scope })
        return [
          yield* call("a", "note_write", "{\"key\":\"k\",\"text\":\"from a\"}"),
          yield* call("b", "note_write", "{\"key\":\"k\",\"text\":\"from b\"}"),
          yield* call("a", "note_read", "{\"key\":\"k\"}"),
          yield* call("b", "note_read", "{\"key\":\"k\"}"),
          yield* call("c", "note_read", "{\"key\":\"k\"}"),
          (yield* pool.snapshot).length
        ]
      }).pipe(
        Effect.scoped,
        Effect.provideService(Console.Console, captured.console),
        within("30 seconds", "five calls on one pool")
      )
      assert.deepStrictEqual(results, [0, 0, 0, 0, 1, 3])
      assert.deepStrictEqual(captured.out().split("\n"), [
        "saved note \"k\" (6 chars)",
        "saved note \"k\" (6 chars)",
        "from a",
        "from b"
      ])
      assert.strictEqual(captured.err(), "no note named \"k\"")
      assert.deepStrictEqual(yield* liveChildren(), [])
    }).pipe(Effect.scoped))

  it.live("repl: one pool for the whole shell, commands read from the Terminal until exit", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = yield* writeConfig(dir, "mcp.json", { mcpServers: { notebook, modern } })
      const servers = yield* loadServers(file)
      const lines = [
        "help",
        "servers",
        "call notebook note_write {\"key\": \"k\", \"text\": \"kept\"}",
        "call notebook note_read {\"key\":\"k\"}",
        "tools modern",
        "sessions",
        "frobnicate",
        "exit",
        "never read"
      ]
      const prompts: Array<string> = []
      const terminal = Terminal.make({
        columns: Effect.succeed(80),
        rows: Effect.succeed(24),
        size: Effect.die("unused"),
        readInput: Effect.die("unused"),
        readLine: Effect.suspend(() => {
          const line = lines.shift()
          return line === undefined ? Effect.fail(new Terminal.QuitError({})) : Effect.succeed(line)
        }),
        display: (text) => Effect.sync(() => void prompts.push(text))
      })
      const captured = capture()
      yield* Effect.gen(function*() {
        const pool = yield* McpSessionPool.make({ servers })
        yield* repl({ pool, servers, scope: "t" })
      }).pipe(
        Effect.scoped,
        Effect.provide(Layer.succeed(Terminal.Terminal, terminal)),
        Effect.provideService(Console.Console, captured.console),
        within("30 seconds", "the repl")
      )
      assert.deepStrictEqual(lines, ["never read"])
      assert.strictEqual(prompts.length, 8)
      assert.isTrue(prompts.every((prompt) => prompt === "mcp> "))
      const out = captured.out()
      assert.include(out, "mcp-pool repl: scope \"t\", 2 servers (notebook, modern); type help")
      assert.include(out, "call <server> <tool> [json]")
      assert.match(out, /^notebook\s+stdio \(node\)$/m)
      assert.match(out, /^kept$/m)
      assert.match(out, /^whoami\s+Return this server process's pid\.$/m)
      assert.match(out, /^SERVER\s+SCOPE\s+STATE\s+LEASES\s+PID\s+PROTOCOL\s+THREAD STATE$/m)
      assert.match(out, /^notebook\s+t\s+ready\s+0\s+\d+\s+2025-11-25\s+process$/m)
      assert.match(out, /^modern\s+t\s+ready\s+0\s+\d+\s+2026-07-28\s+process$/m)
      assert.strictEqual(captured.err(), "unknown command \"frobnicate\": type help")
      assert.deepStrictEqual(yield* liveChildren(), [])
    }).pipe(Effect.scoped))

  it("renderResult: text blocks as text, other blocks as JSON, structured content when there is no content", () => {
    assert.strictEqual(
      renderResult({
        content: [
          { type: "text", text: "line one" },
          { type: "image", mimeType: "image/png", data: "iVBORw0KGgo=" },
          { type: "text", text: "line two" }
        ]
      }),
      "line one\n{\"type\":\"image\",\"mimeType\":\"image/png\",\"data\":\"iVBORw0KGgo=\"}\nline two"
    )
    assert.strictEqual(renderResult({ content: [], structuredContent: { n: 1 } }), "{\"n\":1}")
    assert.strictEqual(renderResult({ content: [] }), "(no content)")
  })
})
