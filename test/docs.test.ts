/**
 * The documentation is part of the API: every ```ts example in README.md and in the public modules' doc
 * comments type-checks against the sources (as an app importing `effect-mcp-pool` would), and every export
 * of a public module says since when it exists and how stable it is.
 */
import { assert, describe, it } from "@effect/vitest"
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import ts from "typescript"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const publicModules = readdirSync(join(root, "src"))
  .filter((name) => name.endsWith(".ts"))
  .map((name) => join(root, "src", name))

interface Example {
  readonly origin: string
  readonly code: string
}

const fence = /^[ \t]*(?:\* ?)?```ts\n([\s\S]*?)^[ \t]*(?:\* ?)?```/gm

/** The ```ts blocks of a text; in a source file, of its comments (the leading ` * ` taken off each line). */
const examplesOf = (file: string, text: string): Array<Example> =>
  [...text.matchAll(fence)].map((match) => ({
    origin: `${file.slice(root.length + 1)}:${text.slice(0, match.index).split("\n").length}`,
    code: file.endsWith(".md") ? match[1]! : match[1]!.replace(/^[ \t]*\* ?/gm, "")
  }))

/**
 * Examples without imports are fragments of a page that has them: they get the package's modules and the
 * Effect modules they use, and nothing else (an undefined name still fails).
 */
const preamble = [
  `import { Console, Duration, Effect, Layer, Redacted, Schedule, Scope, Stream } from "effect"`,
  `import { McpClientHandlers, McpConfigFile, McpPoolError, McpScope, McpServerConfig, McpSession, McpSessionPool, McpToolkit } from "effect-mcp-pool"`
].join("\n")

const examples = [
  ...examplesOf(join(root, "README.md"), readFileSync(join(root, "README.md"), "utf8")),
  ...publicModules.flatMap((file) => examplesOf(file, readFileSync(file, "utf8")))
]

describe("documentation", () => {
  it("has examples in README.md and in the module docs", () => {
    assert.isAtLeast(examples.filter((example) => example.origin.startsWith("README.md")).length, 8)
    assert.isAtLeast(examples.filter((example) => example.origin.startsWith("src/")).length, 8)
  })

  it("every ```ts example type-checks against the sources", { timeout: 120_000 }, () => {
    // Under node_modules: imports of effect, the SDKs and @effect/vitest resolve as in an app.
    const dir = join(root, "node_modules", ".cache", "effect-mcp-pool-doc-examples")
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(dir, { recursive: true })
    const files = examples.map((example, i) => {
      const file = join(dir, `example-${i}.ts`)
      const hasImports = /^\s*import /m.test(example.code)
      // A module of its own (`export {}`): names do not clash between examples.
      writeFileSync(file, `${hasImports ? "" : preamble + "\n"}${example.code}\nexport {}\n`)
      return { file, example }
    })
    const program = ts.createProgram(files.map(({ file }) => file), {
      target: ts.ScriptTarget.ES2023,
      lib: ["lib.es2023.d.ts"],
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      types: ["node"],
      typeRoots: [join(root, "node_modules", "@types")],
      strict: true,
      exactOptionalPropertyTypes: true,
      noUncheckedIndexedAccess: true,
      allowImportingTsExtensions: true,
      skipLibCheck: true,
      noEmit: true,
      paths: {
        "effect-mcp-pool": [join(root, "src", "index.ts")],
        "effect-mcp-pool/*": [join(root, "src", "*.ts")]
      }
    })
    const problems = files.flatMap(({ example, file }) =>
      ts.getPreEmitDiagnostics(program, program.getSourceFile(file)).map((diagnostic) => {
        const line = diagnostic.file && diagnostic.start !== undefined
          ? diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start).line + 1
          : 0
        return `${example.origin} (line ${line} of ${file}): ${
          ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n")
        }`
      })
    )
    assert.deepStrictEqual(problems, [])
  })

  it("every export of a public module has @since and @stability", () => {
    const untagged = publicModules.flatMap((file) => {
      const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.ES2023, true)
      return source.statements.flatMap((statement) => {
        const exported = ts.canHaveModifiers(statement) &&
          ts.getModifiers(statement)?.some((modifier) => modifier.kind === ts.SyntaxKind.ExportKeyword)
        if (!exported && !ts.isExportDeclaration(statement)) return []
        const tags = ts.getJSDocTags(statement).map((tag) =>
          `${tag.tagName.text} ${ts.getTextOfJSDocComment(tag.comment) ?? ""}`.trim()
        )
        const stability = tags.find((tag) => tag.startsWith("stability "))
        const ok = tags.some((tag) => tag.startsWith("since ")) &&
          stability !== undefined &&
          ["stable", "unstable", "experimental"].includes(stability.slice("stability ".length))
        const name = ts.isVariableStatement(statement)
          ? statement.declarationList.declarations.map((declaration) => declaration.name.getText(source)).join(", ")
          : (statement as { name?: ts.Node }).name?.getText(source) ?? statement.getText(source).slice(0, 40)
        return ok ? [] : [`${file.slice(root.length + 1)}: ${name}`]
      })
    })
    assert.deepStrictEqual(untagged, [])
  })
})
