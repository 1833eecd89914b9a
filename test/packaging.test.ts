/**
 * The package as a user installs it: `npm pack` (which builds through `prepack`), then an install of the
 * tarball into a scratch project beside the app's own `effect` and MCP SDKs. The tree holds one copy of
 * Effect; the published root runs and type-checks against the app's SDK (`McpServerConfig.inMemory(() => new
 * McpServer(…))`); internal modules do not resolve; `package.json` does. The root loads two of the package's
 * files, and each subpath re-exports the same classes.
 */
import { execFileSync } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { assert, beforeAll, describe, it } from "vitest"

const root = fileURLToPath(new URL("..", import.meta.url))
const own = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  readonly devDependencies: Record<string, string>
  readonly exports: Record<string, unknown>
}
/** The package's public subpaths besides the root (`effect-mcp-pool/McpPoolError`, …). */
const subpaths = Object.keys(own.exports)
  .filter((key) => key !== "." && key !== "./package.json")
  .map((key) => `effect-mcp-pool${key.slice(1)}`)
const node = process.execPath
const appSdk = "1.32.1"
const tsc = join(root, "node_modules", "typescript", "bin", "tsc")

const npm = (args: ReadonlyArray<string>, cwd: string) =>
  execFileSync("npm", [...args], { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 240_000 })

/** Every installed copy of `name` under `dir`'s node_modules, at any depth. */
const copiesOf = (dir: string, name: string): Array<string> => {
  const found: Array<string> = []
  const walk = (modules: string) => {
    let entries: Array<string>
    try {
      entries = readdirSync(modules)
    } catch {
      return
    }
    for (const entry of entries) {
      const packages = entry.startsWith("@") ? readdirSync(join(modules, entry)).map((n) => `${entry}/${n}`) : [entry]
      for (const pkg of packages) {
        if (pkg === name) found.push(join(modules, pkg))
        walk(join(modules, pkg, "node_modules"))
      }
    }
  }
  walk(join(dir, "node_modules"))
  return found
}

const app = `
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import { Effect } from "effect"
import { McpServerConfig, McpSessionPool } from "effect-mcp-pool"
import pkg from "effect-mcp-pool/package.json" with { type: "json" }

const config = McpServerConfig.inMemory(() => {
  const server = new McpServer({ name: "scratch", version: "1.0.0" })
  server.registerTool("hello", {}, () => ({ content: [{ type: "text", text: "hello from the scratch app" }] }))
  return server
})

const program = Effect.gen(function*() {
  const pool = yield* McpSessionPool.McpSessionPool
  const result = yield* pool.callTool({ server: "s", scope: "t", name: "hello" })
  const first = result.content[0]
  console.log(first?.type === "text" ? first.text : "?", pkg.name)
}).pipe(Effect.provide(McpSessionPool.layer({ servers: { s: config } })))

await Effect.runPromise(program)
let internal = "resolved"
try {
  await import("effect-mcp-pool/internal/pool" as string)
} catch (error) {
  internal = (error as { code?: string }).code ?? String(error)
}
console.log(internal)
`

const stdioServer = `
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js"
const server = new McpServer({ name: "scratch-stdio", version: "1.0.0" })
server.registerTool("hello", {}, () => ({ content: [{ type: "text", text: "hi" }] }))
await server.connect(new StdioServerTransport())
`

/**
 * Records which of the package's own files load (a synchronous `module.registerHooks` load hook): the
 * root's, then every subpath's, and whether what a subpath exports is what the root's namespace holds.
 */
const loadProbe = `
import { registerHooks } from "node:module"
const marker = "/node_modules/effect-mcp-pool/"
const own = []
registerHooks({
  load(url, context, nextLoad) {
    if (url.includes(marker)) own.push(url.slice(url.indexOf(marker) + marker.length))
    return nextLoad(url, context)
  }
})
const root = await import("effect-mcp-pool")
const byRoot = own.splice(0)
const sameAsRoot = {}
for (const subpath of ${JSON.stringify(subpaths)}) {
  const module = await import(subpath)
  const namespace = root[subpath.slice("effect-mcp-pool/".length)]
  const names = Object.keys(module)
  sameAsRoot[subpath] = names.join() === Object.keys(namespace).join() &&
    names.every((name) => module[name] === namespace[name])
}
console.log(JSON.stringify({ byRoot, bySubpaths: own, sameAsRoot }))
`

describe("the packed package in a user's project", () => {
  let scratch = ""
  beforeAll(() => {
    const packs = mkdtempSync(join(tmpdir(), "mcp-pool-pack-"))
    const tarball = npm(["pack", "--silent", "--pack-destination", packs], root).trim().split("\n").at(-1)!
    scratch = mkdtempSync(join(tmpdir(), "mcp-pool-scratch-"))
    writeFileSync(
      join(scratch, "package.json"),
      JSON.stringify({
        name: "scratch-app",
        private: true,
        type: "module",
        dependencies: {
          "effect-mcp-pool": `file:${join(packs, tarball)}`,
          // The app's own copies: Effect as this repository develops against, the 1.32 SDK one patch older
          // (an exact pin of ours would install a second SDK, whose McpServer type the app's is not).
          effect: own.devDependencies["effect"],
          "@modelcontextprotocol/sdk": appSdk,
          "@modelcontextprotocol/client": own.devDependencies["@modelcontextprotocol/client"],
          "@types/node": own.devDependencies["@types/node"],
          "@effect/platform-node": own.devDependencies["@effect/platform-node"]
        }
      })
    )
    writeFileSync(join(scratch, "app.ts"), app)
    writeFileSync(join(scratch, "server.ts"), stdioServer)
    writeFileSync(join(scratch, "load-probe.mjs"), loadProbe)
    writeFileSync(
      join(scratch, ".mcp.json"),
      JSON.stringify({ mcpServers: { hello: { command: node, args: ["server.ts"] } } })
    )
    writeFileSync(
      join(scratch, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2023",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          exactOptionalPropertyTypes: true,
          noEmit: true,
          allowImportingTsExtensions: true,
          resolveJsonModule: true,
          types: ["node"],
          skipLibCheck: false
        },
        files: ["app.ts"]
      })
    )
    npm(["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], scratch)
  }, 300_000)

  it("installs one copy of Effect and of each MCP SDK beside the app's", () => {
    assert.deepStrictEqual(copiesOf(scratch, "effect"), [join(scratch, "node_modules", "effect")])
    const sdks = copiesOf(scratch, "@modelcontextprotocol/sdk")
    assert.strictEqual(sdks.length, 1)
    assert.strictEqual(JSON.parse(readFileSync(join(sdks[0]!, "package.json"), "utf8")).version, appSdk)
    assert.strictEqual(copiesOf(scratch, "@modelcontextprotocol/client").length, 1)
    const listed = JSON.parse(npm(["ls", "effect", "--all", "--json"], scratch)) as unknown
    const versions = new Set<string>()
    const collect = (tree: unknown) => {
      const deps = (tree as { dependencies?: Record<string, { version?: string }> }).dependencies ?? {}
      for (const [name, dep] of Object.entries(deps)) {
        if (name === "effect" && dep.version !== undefined) versions.add(dep.version)
        collect(dep)
      }
    }
    collect(listed)
    assert.deepStrictEqual([...versions], [own.devDependencies["effect"]])
  })

  it("runs and type-checks against the app's SDK; internal modules stay private", () => {
    execFileSync(node, [tsc, "-p", "tsconfig.json"], { cwd: scratch, encoding: "utf8", timeout: 120_000 })
    const out = execFileSync(node, ["app.ts"], { cwd: scratch, encoding: "utf8", timeout: 60_000 })
    assert.deepStrictEqual(out.trim().split("\n"), [
      "hello from the scratch app effect-mcp-pool",
      "ERR_PACKAGE_PATH_NOT_EXPORTED"
    ])
  }, 180_000)

  it("loads two of its files for the root, and a subpath shares the root's classes and services", () => {
    const out = execFileSync(node, ["load-probe.mjs"], { cwd: scratch, encoding: "utf8", timeout: 60_000 })
    assert.deepStrictEqual(JSON.parse(out), {
      // The build puts the library into one shared chunk (rolldown.config.ts): Node reads and compiles two
      // files for the root, not one per module.
      byRoot: ["dist/index.js", "dist/internal/effect-mcp-pool.js"],
      bySubpaths: subpaths.map((subpath) => `dist/${subpath.slice("effect-mcp-pool/".length)}.js`),
      sameAsRoot: Object.fromEntries(subpaths.map((subpath) => [subpath, true]))
    })
  }, 120_000)

  it("installs the mcp-pool command: npx mcp-pool doctor reads the app's .mcp.json", () => {
    // npx runs the package's bin with the `node` on PATH: this suite's own.
    const path = `${join(node, "..")}:${process.env.PATH ?? ""}`
    const out = execFileSync("npx", ["--no-install", "mcp-pool", "doctor"], {
      cwd: scratch,
      encoding: "utf8",
      timeout: 120_000,
      env: { ...process.env, PATH: path },
      stdio: ["ignore", "pipe", "pipe"]
    })
    assert.match(out, /hello\s+ok\s+2025-11-25\s+1\s/)
  }, 180_000)
})
