/**
 * How `npm run build` writes dist/'s JavaScript (tsc writes only the declarations beside it).
 *
 * Every public module is an entry (the exports map has one per module), and all the library's code goes
 * into one shared chunk that each entry re-exports. Importing the root loads two of the package's files
 * instead of its two dozen modules one by one: Node resolves, reads and compiles each file it loads, about
 * about a millisecond apiece here, which is most of what the package's own code adds to an app's start-up
 * (bench §9). All entries share that one chunk, so the root and a subpath export the same classes and
 * services. The CLI's code stays in the `mcp-pool` executable, which only the bin loads.
 *
 * Imports of other packages and of Node's built-ins stay imports: `effect`, the SDKs and
 * `@effect/platform-node` are peers the app installs once, and the lazy `import()`s of the heavy ones
 * (SDK v2, the HTTP transports, the platform) stay lazy.
 */
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { defineConfig } from "rolldown"
import type { InputOptions, OutputOptions } from "rolldown"

/** A path in the repository, wherever the build runs from. */
const inRepository = (path: string) => fileURLToPath(new URL(path, import.meta.url))

interface Manifest {
  readonly exports: Record<string, string | { readonly default?: string }>
  readonly bin: Record<string, string>
}

/**
 * The entries, read from package.json so that the two cannot drift: each JavaScript file its exports map
 * and its bin name (`./dist/McpSession.js`), built from the module of the same path in src/ (`McpSession`).
 */
const entries = (): Record<string, string> => {
  const manifest = JSON.parse(readFileSync(inRepository("package.json"), "utf8")) as Manifest
  const files = [
    ...Object.values(manifest.exports).map((target) => typeof target === "string" ? target : target.default),
    ...Object.values(manifest.bin)
  ]
  const names = files.flatMap((file) => file?.match(/^\.\/dist\/(.+)\.js$/)?.slice(1) ?? [])
  return Object.fromEntries(names.map((name) => [name, inRepository(`src/${name}.ts`)]))
}

/** Bare specifiers (packages) and `node:` built-ins: everything that is not a path into src/. */
const isExternal = (id: string) => !id.startsWith(".") && !id.startsWith("/") && !/^[A-Za-z]:[\\/]/.test(id)

/** The library's modules, where the shared chunk takes them from; not the CLI's (src/cli, src/bin). */
const isLibraryModule = (id: string) => /[\\/]src[\\/]/.test(id) && !/[\\/]src[\\/](cli|bin)[\\/]/.test(id)

/** The build writing into `outDir`: dist/ for the package; the bench builds the same into a scratch folder. */
export const buildOptions = (outDir: string): InputOptions & { readonly output: OutputOptions } => ({
  input: entries(),
  external: isExternal,
  platform: "node",
  output: {
    dir: outDir,
    format: "esm",
    entryFileNames: "[name].js",
    chunkFileNames: "internal/[name].js",
    // Maps point into src/, which the package ships, so they need not carry the sources again.
    sourcemap: true,
    sourcemapExcludeSources: true,
    // Readable names across chunks (`export { McpSessionPool }`, not `export { f as McpSessionPool }`).
    minifyInternalExports: false,
    cleanDir: true,
    // The JSDoc is in the declarations (and the shipped src/); annotations such as `#__PURE__` are kept.
    comments: { legal: true, annotation: true, jsdoc: false },
    codeSplitting: { groups: [{ name: "effect-mcp-pool", test: isLibraryModule }] }
  }
})

export default defineConfig(buildOptions(inRepository("dist")))
