/**
 * What importing the package root costs, checked by what it loads rather than by timing it: a fresh Node
 * process (no vitest transforms, the way users run it) records every module it loads. The root must not
 * load `effect/ai` (its barrel brings the AI, HTTP and RPC stack), `@effect/platform-node`, or the SDK's
 * HTTP/SSE client transports (with eventsource, pkce-challenge and the OAuth client), or
 * `node:child_process`; each is loaded when first used, and still works then: a toolkit lists and offers
 * tools, `layerFromFile` reads a file, an HTTP server is dialled, a stdio server is spawned. Checked on the
 * sources (Node strips their types) and on dist/ as `npm run build` writes it (rolldown.config.ts, built here
 * into a scratch folder): the bundle must keep the lazy imports lazy, and loads two of the package's files.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { Prompt } from "effect/ai"
import { execFile } from "node:child_process"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import * as Rolldown from "rolldown"
import { buildOptions } from "../rolldown.config.ts"
import { ConfigError } from "../src/McpPoolError.ts"
import * as McpSessionPool from "../src/McpSessionPool.ts"
import * as McpToolkit from "../src/McpToolkit.ts"
import { firstText } from "./utils/probe.ts"

const projectRoot = fileURLToPath(new URL("..", import.meta.url))
const rootModule = pathToFileURL(Path.join(projectRoot, "src/index.ts")).href
const notebookPath = Path.join(projectRoot, "examples/notebook-server.ts")

/** Modules the root import must leave alone, by what their URL contains. */
const lazy = {
  "effect/ai": "/node_modules/effect/dist/ai/",
  "@effect/platform-node": "/node_modules/@effect/platform-node/",
  "@effect/platform-node-shared": "/node_modules/@effect/platform-node-shared/",
  "SDK streamable HTTP client": "/@modelcontextprotocol/sdk/dist/esm/client/streamableHttp.js",
  "SDK SSE client": "/@modelcontextprotocol/sdk/dist/esm/client/sse.js",
  "SDK OAuth client": "/@modelcontextprotocol/sdk/dist/esm/client/auth.js",
  "SDK servers": "/@modelcontextprotocol/sdk/dist/esm/server/",
  "SDK stdio client": "/@modelcontextprotocol/sdk/dist/esm/client/stdio.js",
  "cross-spawn": "/node_modules/cross-spawn/",
  eventsource: "/node_modules/eventsource/",
  "pkce-challenge": "/node_modules/pkce-challenge/"
} as const

/**
 * Runs in the child: records every module loaded (a synchronous `module.registerHooks` load hook), imports
 * the root, then uses each lazy part in turn, printing what each phase loaded.
 */
const child = String.raw`
import { registerHooks } from "node:module"
const loaded = []
registerHooks({ load(url, context, nextLoad) { loaded.push(url); return nextLoad(url, context) } })
// Built-ins taken with process.getBuiltinModule skip the hooks; Node lists every built-in it has loaded.
const childProcessLoaded = () => process.moduleLoadList.includes("NativeModule child_process")
const phases = {}
let mark = 0
const phase = (name) => { phases[name] = loaded.slice(mark); mark = loaded.length }

// What the root is measured against: effect and the SDK client, which it cannot do without.
const { Effect } = await import("effect")
await import("@modelcontextprotocol/sdk/client/index.js")
phase("baseline")
const root = await import(process.argv[1])
phase("root")
const builtinsByRoot = { child_process: childProcessLoaded() }
const { McpScope, McpServerConfig, McpSessionPool, McpToolkit } = root
const results = { exported: Object.keys(root).sort() }

// An HTTP server that refuses the connection: the transports load, then connecting fails.
const http = McpSessionPool.layer({
  servers: { remote: McpServerConfig.http({ url: "http://127.0.0.1:1/mcp", connectTimeout: "5 seconds" }) }
})
const connect = Effect.gen(function*() {
  const pool = yield* McpSessionPool.McpSessionPool
  return yield* pool.callTool({ server: "remote", scope: "s", name: "x" })
})
results.remote = await Effect.runPromise(connect.pipe(Effect.provide(http), Effect.flip, Effect.map((error) => error._tag)))
phase("remote")

const fromFile = McpSessionPool.layerFromFile(process.argv[2])
const snapshot = Effect.gen(function*() {
  const pool = yield* McpSessionPool.McpSessionPool
  return (yield* pool.snapshot).length
})
results.fromFile = await Effect.runPromise(snapshot.pipe(Effect.provide(fromFile)))
phase("fromFile")

// A stdio server: the SDK's stdio client module loads at the first spawn.
const stdio = McpSessionPool.layer({
  servers: { notebook: McpServerConfig.stdio({ command: process.execPath, args: [process.argv[3]] }) }
})
results.stdio = await Effect.runPromise(
  Effect.gen(function*() {
    const pool = yield* McpSessionPool.McpSessionPool
    const result = yield* pool.callTool({ server: "notebook", scope: "s", name: "counter_increment" })
    return result.content[0].text
  }).pipe(Effect.provide(stdio))
)
phase("stdio")
const builtinsByStdio = { child_process: childProcessLoaded() }

const { McpServer } = await import("@modelcontextprotocol/sdk/server/mcp.js")
phase("server")
const makeServer = () => {
  const server = new McpServer({ name: "probe", version: "1.0.0" })
  server.registerTool("ping", { description: "answers pong" }, async () => ({ content: [{ type: "text", text: "pong" }] }))
  return server
}
const pool = McpSessionPool.layer({ servers: { probe: McpServerConfig.inMemory(makeServer) } })
results.toolkit = await Effect.runPromise(
  Effect.gen(function*() {
    const mcp = yield* McpToolkit.make({ servers: ["probe"] })
    const discovery = yield* McpScope.provide(mcp.discover, "t")
    const toolkit = yield* McpScope.provide(mcp.toolkit, "t")
    return { tools: discovery.tools.map((tool) => tool.name), offered: Object.keys(toolkit.tools) }
  }).pipe(Effect.scoped, Effect.provide(pool))
)
phase("toolkit")
process.stdout.write(JSON.stringify({ phases, results, builtins: { root: builtinsByRoot, stdio: builtinsByStdio } }))
`

interface ChildReport {
  readonly phases: Record<
    "baseline" | "root" | "remote" | "fromFile" | "stdio" | "server" | "toolkit",
    ReadonlyArray<string>
  >
  readonly results: {
    readonly exported: ReadonlyArray<string>
    readonly remote: string
    readonly fromFile: number
    readonly stdio: string
    readonly toolkit: { readonly tools: ReadonlyArray<string>; readonly offered: ReadonlyArray<string> }
  }
  /** Whether Node had loaded `node:child_process` after the root import and after the first spawn. */
  readonly builtins: Record<"root" | "stdio", { readonly child_process: boolean }>
}

const runChild = (rootUrl: string, configPath: string) =>
  Effect.callback<ChildReport, Error>((resume) => {
    const proc = execFile(
      process.execPath,
      ["--input-type=module", "--no-warnings", "-e", child, rootUrl, configPath, notebookPath],
      { cwd: projectRoot, timeout: 60_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error !== null) resume(Effect.fail(new Error(`the probe failed: ${error.message}\n${stderr}`)))
        else resume(Effect.succeed(JSON.parse(stdout) as ChildReport))
      }
    )
    return Effect.sync(() => proc.kill("SIGKILL"))
  })

const matching = (urls: ReadonlyArray<string>, fragment: string) => urls.filter((url) => url.includes(fragment))

/**
 * dist/ as `npm run build` writes it, into a scratch folder inside the repository (so that its imports of
 * other packages resolve to this repository's node_modules) beside a package.json saying `"type": "module"`,
 * as the published package has. Returns the root's URL.
 */
const buildAsPublished = Effect.gen(function*() {
  const scratch = Path.join(projectRoot, "node_modules", ".effect-mcp-pool-test")
  yield* Effect.promise(() => Fs.mkdir(scratch, { recursive: true }))
  const dir = yield* Effect.promise(() => Fs.mkdtemp(Path.join(scratch, "dist-")))
  yield* Effect.addFinalizer(() => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true })))
  yield* Effect.promise(() => Fs.writeFile(Path.join(dir, "package.json"), JSON.stringify({ type: "module" })))
  yield* Effect.promise(() => Rolldown.build(buildOptions(Path.join(dir, "dist"))))
  return { rootUrl: pathToFileURL(Path.join(dir, "dist", "index.js")).href, dir }
})

/** The package's own files a root loads, as the load hook saw them, relative to `dir`. */
const ownFiles = (urls: ReadonlyArray<string>, dir: string) => {
  const prefix = pathToFileURL(dir).href + "/"
  return urls.filter((url) => url.startsWith(prefix)).map((url) => url.slice(prefix.length))
}

describe("import cost", () => {
  const roots = {
    "the sources": Effect.succeed({ rootUrl: rootModule, dir: Path.join(projectRoot, "src") }),
    "dist/ as built": buildAsPublished
  }
  for (const [name, root] of Object.entries(roots)) {
    it.live(`the root (${name}) loads none of the lazy parts, and each loads and works when first used`, () =>
      Effect.gen(function*() {
        const { dir: rootDir, rootUrl } = yield* root
        const dir = yield* Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "mcp-import-")))
        yield* Effect.addFinalizer(() => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true })))
        const configPath = Path.join(dir, "mcp.json")
        yield* Effect.promise(() =>
          Fs.writeFile(configPath, JSON.stringify({ mcpServers: { notebook: { command: "node", args: ["x.js"] } } }))
        )
        const { builtins, phases, results } = yield* runChild(rootUrl, configPath)

        // The hook saw the root's own files, so an empty match below means "not loaded".
        const own = ownFiles(phases.root, rootDir)
        if (rootUrl === rootModule) {
          for (const file of ["index.ts", "McpToolkit.ts", "McpSessionPool.ts", "internal/remote.ts"]) {
            assert.include(own, file, `${file} is loaded by the root`)
          }
        } else {
          // One entry and the shared chunk (rolldown.config.ts), not a file per module.
          assert.deepStrictEqual(own, ["dist/index.js", "dist/internal/effect-mcp-pool.js"])
        }
        // Every lazy part at once, so a failure names all that the root loaded.
        const loadedByRoot = (fragments: Record<string, string>) =>
          Object.fromEntries(
            Object.entries(fragments).map(([name, fragment]) => [name, matching(phases.root, fragment)])
          )
        assert.deepStrictEqual(loadedByRoot(lazy), Object.fromEntries(Object.keys(lazy).map((name) => [name, []])))
        // Nor `node:child_process`, taken at the first spawn.
        assert.deepStrictEqual(builtins, { root: { child_process: false }, stdio: { child_process: true } })
        // Nor anything of effect beyond its root barrel.
        assert.isAbove(matching(phases.baseline, "/node_modules/effect/dist/").length, 50)
        assert.deepStrictEqual(matching(phases.root, "/node_modules/effect/dist/"), [])
        // Every module as a namespace, nothing else.
        assert.deepStrictEqual(results.exported, [
          "McpClientHandlers",
          "McpConfigFile",
          "McpPoolError",
          "McpScope",
          "McpServerConfig",
          "McpSession",
          "McpSessionPool",
          "McpToolkit"
        ])

        // Dialling an HTTP server loads its transports (and nothing of the toolkit or the file system).
        assert.strictEqual(results.remote, "ConnectError")
        assert.lengthOf(matching(phases.remote, lazy["SDK streamable HTTP client"]), 1)
        assert.lengthOf(matching(phases.remote, lazy["SDK SSE client"]), 1)
        assert.deepStrictEqual(matching(phases.remote, lazy["effect/ai"]), [])
        assert.deepStrictEqual(matching(phases.remote, lazy["@effect/platform-node"]), [])

        // `layerFromFile` loads Node's FileSystem and builds the pool from the file.
        assert.strictEqual(results.fromFile, 0)
        assert.lengthOf(matching(phases.fromFile, "/@effect/platform-node/dist/NodeFileSystem.js"), 1)
        assert.deepStrictEqual(matching(phases.fromFile, lazy["effect/ai"]), [])

        // The first spawn loads the SDK's stdio client (and cross-spawn) for its default environment.
        assert.strictEqual(results.stdio, "1")
        assert.lengthOf(matching(phases.stdio, lazy["SDK stdio client"]), 1)
        assert.isNotEmpty(matching(phases.stdio, lazy["cross-spawn"]))

        // `McpToolkit.make` loads `effect/ai` (the SDK server before it did not), and the toolkit works.
        assert.deepStrictEqual(matching(phases.server, lazy["effect/ai"]), [])
        assert.lengthOf(matching(phases.toolkit, "/node_modules/effect/dist/ai/index.js"), 1)
        assert.deepStrictEqual(results.toolkit, { tools: ["ping"], offered: ["ping"] })
      }).pipe(Effect.scoped))
  }

  it("toModelOutput makes the parts effect/ai's own constructors make", () => {
    const content: McpToolkit.ToolResult["content"] = [
      { type: "text", text: "hello" },
      { type: "image", mimeType: "image/png", data: "iVBORw0KGgo=" },
      { type: "audio", mimeType: "audio/wav", data: "UklGRg==" },
      { type: "resource_link", uri: "file:///a.txt", name: "a", description: "the a file" },
      { type: "resource", resource: { uri: "file:///b.txt", text: "b's text" } },
      { type: "resource", resource: { uri: "file:///c.bin", blob: "AAEC", mimeType: "application/x-c" } },
      { type: "resource", resource: { uri: "file:///d.bin", blob: "AAEC" } }
    ]
    const parts = McpToolkit.toModelOutput({ content })
    assert.deepStrictEqual(parts, [
      Prompt.textPart({ text: "hello" }),
      Prompt.filePart({ mediaType: "image/png", data: "iVBORw0KGgo=" }),
      Prompt.filePart({ mediaType: "audio/wav", data: "UklGRg==" }),
      Prompt.textPart({ text: "a: file:///a.txt\nthe a file" }),
      Prompt.textPart({ text: "b's text" }),
      Prompt.filePart({ mediaType: "application/x-c", data: "AAEC", fileName: "file:///c.bin" }),
      Prompt.filePart({ mediaType: "application/octet-stream", data: "AAEC", fileName: "file:///d.bin" })
    ])
    assert.isTrue(parts.every(Prompt.isPart))
    // They are valid parts to effect's schema: they encode and decode back to themselves.
    const schema = Schema.Array(Prompt.ToolModelOutputPart)
    assert.deepStrictEqual(Schema.decodeUnknownSync(schema)(Schema.encodeSync(schema)(parts)), parts)
    assert.deepStrictEqual(
      McpToolkit.toModelOutput({ content: [], structuredContent: { n: 1 } }),
      [Prompt.textPart({ text: "{\"n\":1}" })]
    )
    assert.deepStrictEqual(McpToolkit.toModelOutput({ content: [] }), [Prompt.textPart({ text: "(no content)" })])
  })

  it.live("layerFromFile builds the pool from the file's servers, and names the file when it is bad", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "mcp-layer-")))
      yield* Effect.addFinalizer(() => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true })))
      const good = Path.join(dir, "mcp.json")
      const bad = Path.join(dir, "bad.json")
      // JSONC, as VS Code writes it; `${workspaceFolder}` is the file's folder.
      const config = `{
        // the notebook example, as a real child process
        "servers": {
          "notebook": { "command": ${JSON.stringify(process.execPath)}, "args": [${JSON.stringify(notebookPath)}] },
          "remote": { "url": "https://mcp.example/\${workspaceFolder}" },
        }
      }`
      yield* Effect.promise(() =>
        Promise.all([
          Fs.writeFile(good, config),
          Fs.writeFile(bad, JSON.stringify({ mcpServers: { a: { command: 1 } } }))
        ])
      )
      const text = yield* Effect.gen(function*() {
        const pool = yield* McpSessionPool.McpSessionPool
        yield* pool.callTool({ server: "notebook", scope: "s", name: "note_write", arguments: { key: "k", text: "v" } })
        return firstText(
          yield* pool.callTool({ server: "notebook", scope: "s", name: "note_read", arguments: { key: "k" } })
        )
      }).pipe(Effect.provide(McpSessionPool.layerFromFile(good)))
      assert.strictEqual(text, "v")
      const error = yield* Effect.flip(Layer.build(McpSessionPool.layerFromFile(bad)))
      assert.instanceOf(error, ConfigError)
      assert.strictEqual(error.source, bad)
      assert.deepStrictEqual(error.issues.map((issue) => issue.path), ["mcpServers.a.command"])
    }).pipe(Effect.scoped))
})
