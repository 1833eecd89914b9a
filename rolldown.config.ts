/**
 * How `npm run build` writes dist/'s JavaScript (tsc writes only the declarations beside it).
 *
 * Every public module is an entry (the exports map has one per module), and all the library's code goes
 * into one shared chunk that each entry re-exports. Importing the root loads two of the package's files
 * instead of its two dozen modules one by one: Node resolves, reads and compiles each file it loads, about
 * a millisecond apiece here, which is most of what the package's own code adds to an app's start-up
 * (bench §9). All entries share that one chunk, so the root and a subpath export the same classes and
 * services. The price: a subpath (`effect-mcp-pool/McpPoolError`) loads the whole library and what it
 * imports (the SDK client), as the root does, and a bundler building an app takes the chunk whole. The
 * CLI's code stays in the `mcp-pool` executable, which only the bin loads.
 *
 * Imports of other packages and of Node's built-ins stay imports: `effect`, the SDKs and
 * `@effect/platform-node` are peers the app installs once, and the lazy `import()`s of the heavy ones
 * (SDK v2, the HTTP transports, the platform) stay lazy.
 */
import { readFileSync } from "node:fs"
import { isAbsolute } from "node:path"
import { fileURLToPath } from "node:url"
import { defineConfig } from "rolldown"
import type { InputOptions, OutputOptions } from "rolldown"

/** An absolute path in the repository (in the platform's form), wherever the build runs from. */
const inRepository = (path: string) => fileURLToPath(new URL(path, import.meta.url))

interface Manifest {
  readonly exports: Record<string, string | { readonly default?: string }>
  readonly bin: Record<string, string>
}

/**
 * The entries, read from package.json so that the two cannot drift: for each JavaScript file that its
 * exports map and its bin name (`./dist/McpSession.js`), the module of the same path in src/
 * (`src/McpSession.ts`). A target of another shape is an error here, not a declaration without JavaScript.
 */
const entries = (): Record<string, string> => {
  const manifest = JSON.parse(readFileSync(inRepository("package.json"), "utf8")) as Manifest
  const targets = [
    ...Object.entries(manifest.exports).flatMap(([subpath, target]) =>
      subpath === "./package.json" ? [] : [typeof target === "string" ? target : target.default]
    ),
    ...Object.values(manifest.bin)
  ]
  return Object.fromEntries(targets.map((target) => {
    const name = target?.match(/^\.\/dist\/(.+)\.js$/)?.[1]
    if (name === undefined) throw new Error(`package.json: ${String(target)} is not a ./dist/….js file to build`)
    return [name, inRepository(`src/${name}.ts`)]
  }))
}

const srcDir = inRepository("src/")
const cliDirs = [inRepository("src/cli/"), inRepository("src/bin/")]

/** Bare specifiers (packages) and `node:` built-ins: not a path, and not one of rolldown's virtual modules. */
const isExternal = (id: string) => !id.startsWith(".") && !isAbsolute(id) && !id.startsWith("\0")

/**
 * What the shared chunk holds: the library's modules (src/, but not the CLI's src/cli and src/bin) and
 * rolldown's runtime helpers, which would otherwise become a third file whenever two chunks need them.
 */
const isSharedModule = (id: string) =>
  id.startsWith("\0rolldown/runtime") ||
  (id.startsWith(srcDir) && !cliDirs.some((dir) => id.startsWith(dir)))

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
    codeSplitting: { groups: [{ name: "effect-mcp-pool", test: isSharedModule }] }
  }
})

export default defineConfig(buildOptions(inRepository("dist")))
