/**
 * Server configurations from the files people already have:
 *
 * - Claude Desktop, Claude Code (`.mcp.json`), Cursor (`.cursor/mcp.json`) and most other clients:
 *   `{ "mcpServers": { "<name>": { "command", "args", "env", "cwd" } | { "url", "headers", "type" } } }`
 * - VS Code (`.vscode/mcp.json`): `{ "servers": { "<name>": { "type": "stdio" | "http" | "sse", … } } }`,
 *   and the same under `"mcp"` in VS Code's settings (`{ "mcp": { "servers": … } }`).
 *
 * Rules:
 *
 * - A server with `command` (or `type: "stdio"`) is a child process: {@link McpServerConfig.stdio} with
 *   `args`, `env`, `cwd`. A server with `url` is remote: `type: "sse"` is legacy SSE; `"http"` (also
 *   `"streamable-http"`, `"streamableHttp"`) is streamable HTTP; no `type` tries streamable HTTP and falls
 *   back to SSE, as Cursor does for a bare `url` (it costs nothing with a streamable server: the fallback
 *   only follows a 4xx answer to `initialize`).
 * - `${env:NAME}` and `${NAME}` are replaced by environment variables (`${NAME}` also by the `variables`
 *   option, e.g. `${workspaceFolder}`), `${NAME:-default}` gives a default; in `command`, `args`, `env`,
 *   `cwd`, `url` and `headers`. A variable that is not set is an error, not an empty string.
 * - Every `env` value and every header value becomes `Redacted`, whether interpolated or literal: these
 *   are where tokens live, so they never reach errors, logs or spans. Put secrets there, not in `args`
 *   or `url` (which stay plain strings). A `url` with a user name or password (`https://user:pass@…`) is
 *   an error (never quoted): send credentials in a header. No `url` is quoted in any error.
 * - `protocol` picks the MCP revision: `"auto"` (also when absent), `"2025-11-25"` or `"2026-07-28"` (see
 *   {@link McpServerConfig.Protocol}).
 * - `disabled: true` skips a server (and its variables are not needed).
 * - Fields of other clients (`alwaysAllow`, `autoApprove`, `description`, …) are ignored. VS Code's
 *   prompted `${input:…}` variables are reported as unsupported rather than silently dropped.
 * - VS Code's `envFile` (dotenv lines, `KEY=value`) is read by {@link load}, relative to the config file;
 *   its variables join `env` (which wins) and become `Redacted` too. `decode` and `decodeText`, which read
 *   no files, report it.
 * - Comments and trailing commas are accepted (VS Code writes JSONC).
 *
 * Every problem is reported at once in one {@link ConfigError}, `source` naming the file and each issue's
 * `path` the field, e.g. `mcpServers.browser.command`.
 *
 * ```ts
 * import { NodeServices } from "@effect/platform-node"
 * import { Effect, Layer } from "effect"
 * import { McpConfigFile, McpSessionPool } from "effect-mcp-pool"
 *
 * const PoolLive = Layer.unwrap(
 *   Effect.map(McpConfigFile.loadServers(".mcp.json"), (servers) => McpSessionPool.layer({ servers }))
 * ).pipe(Layer.provide(NodeServices.layer))
 * ```
 *
 * @since 0.1.0
 */
import {
  Config,
  ConfigProvider,
  Context,
  Effect,
  FileSystem,
  Option,
  Predicate,
  Redacted,
  Schema,
  SchemaIssue,
  SchemaTransformation
} from "effect"
import * as NodePath from "node:path"
import {
  byName,
  child,
  configDecoder,
  expected,
  guarded,
  isRecord,
  optionalField,
  reject,
  select,
  show
} from "./internal/configSchema.ts"
import { ProtocolInput, urlProblem } from "./internal/options.ts"
import { ConfigError, ConfigIssue } from "./McpPoolError.ts"
import * as McpServerConfig from "./McpServerConfig.ts"

/**
 * Which of the two shapes a file has: `mcpServers` (Claude Desktop, Cursor, …) or `servers` (VS Code).
 *
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export type Format = "mcpServers" | "servers"

/**
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export interface Variables {
  /**
   * The environment for `${env:NAME}` and `${NAME}`. Default: read through Effect's `ConfigProvider` (the
   * process environment unless the app provides another).
   */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
  /** Named values for `${NAME}`, looked up before the environment (e.g. `workspaceFolder`). */
  readonly variables?: Readonly<Record<string, string>> | undefined
}

/**
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export interface DecodeOptions extends Variables {
  /** Where the input came from (usually the file path): the `source` of a `ConfigError`. */
  readonly source: string
}

/**
 * A decoded file.
 *
 * @stability stable
 * @since 0.1.0
 * @category models
 */
export interface McpConfigFile {
  readonly source: string
  readonly format: Format
  readonly servers: Record<string, McpServerConfig.McpServerConfig>
  /** Servers skipped because of `disabled: true`, in file order. */
  readonly disabled: ReadonlyArray<string>
}

// --- decoding ---

const variableName = /^[A-Za-z_][A-Za-z0-9_]*$/
const placeholder = /\$\{([^}]*)\}/g

const remoteTypes = new Set(["http", "streamable-http", "streamableHttp", "sse"])

/** A stdio server's VS Code `envFile`, read by `load` (which has a file system). */
interface EnvFile {
  readonly path: string
  readonly file: string
}

/** What decoding a document depends on beyond the document: the schema is built once, this per call. */
class Interpolation extends Context.Service<Interpolation, {
  readonly env: Readonly<Record<string, string | undefined>>
  readonly variables: Readonly<Record<string, string>>
  /** Only `load` reads env files; `decode` and `decodeText` report them, with every other problem. */
  readonly readsEnvFiles: boolean
}>()("effect-mcp-pool/McpConfigFile/Interpolation") {}

/** Replaces every `${…}`, with a problem for each variable that cannot be resolved. */
const interpolate = (
  text: string,
  { env, variables }: Interpolation["Service"]
): { readonly text: string; readonly problems: ReadonlyArray<string> } => {
  const problems: Array<string> = []
  const replaced = text.replace(placeholder, (match, inner: string) => {
    const fromEnvOnly = inner.startsWith("env:")
    const body = fromEnvOnly ? inner.slice(4) : inner
    const separator = body.indexOf(":-")
    const name = separator === -1 ? body : body.slice(0, separator)
    if (inner.startsWith("input:")) {
      problems.push(`${match}: prompted inputs are VS Code's; set an environment variable and use \${env:NAME}`)
      return ""
    }
    if (!variableName.test(name)) {
      problems.push(`${match}: expected \${env:NAME}, \${NAME} or \${NAME:-default}`)
      return ""
    }
    const value = (fromEnvOnly ? undefined : variables[name]) ?? env[name]
    if (value !== undefined) return value
    if (separator !== -1) return body.slice(separator + 2)
    problems.push(`environment variable ${name} is not set`)
    return ""
  })
  return { text: replaced, problems }
}

const interpolation = SchemaTransformation.transformEffect<string, string, Interpolation>({
  decode: (text) =>
    Effect.flatMap(Interpolation, (context) => {
      const { problems, text: replaced } = interpolate(text, context)
      const [first, ...rest] = problems.map((problem) => reject(problem))
      return first === undefined
        ? Effect.succeed(replaced)
        : Effect.fail(rest.length === 0 ? first : new SchemaIssue.Composite(Schema.String.ast, [first, ...rest]))
    }),
  encode: Effect.succeed
})

// The message for a required field that is absent (a key annotation, so it goes on the field's final schema).
const withMissing = <S extends Schema.Top>(schema: S, messageMissingKey: string): S["Rebuild"] =>
  schema.annotateKey({ messageMissingKey })

/** A string, `${…}` replaced; anything else is `expected <what>, got <the value>`. */
const interpolated = (what: string) =>
  withMissing(
    expected(Predicate.isString, what).pipe(Schema.decodeTo(Schema.String, interpolation)),
    `expected ${what}, got undefined`
  )

/** An object of strings (env, headers): every value interpolated; `toSecrets` makes them Redacted. */
const Secrets = optionalField(byName(interpolated("a string"), { what: "an object of strings" }))

const toSecrets = (
  entries: ReadonlyArray<readonly [string, string]> | undefined
): Record<string, Redacted.Redacted<string>> =>
  Object.fromEntries((entries ?? []).map(([name, text]) => [name, Redacted.make(text, { label: name })]))

const EnvFileInput = interpolated("a file path").pipe(Schema.decodeTo(
  Schema.String,
  SchemaTransformation.transformEffect<string, string, Interpolation>({
    decode: (file) =>
      Effect.flatMap(Interpolation, ({ readsEnvFiles }) =>
        readsEnvFiles
          ? Effect.succeed(file)
          : Effect.fail(reject("an envFile is read by McpConfigFile.load (from a file), not by decode"))),
    encode: Effect.succeed
  })
))

/** Fields every entry may have; `disabled: true` entries are not decoded further. */
const entryFields = { disabled: optionalField(expected(Predicate.isBoolean, "true or false")) }

const stdioEntry = (missingCommand: string) =>
  Schema.Struct({
    ...entryFields,
    command: withMissing(
      interpolated("a command (a non-empty string)").check(
        Schema.makeFilter((command) => command.trim() === "" ? "expected a non-empty command" : undefined)
      ),
      missingCommand
    ),
    args: optionalField(guarded(Schema.Array(interpolated("a string")), Array.isArray, "an array of strings")),
    env: Secrets,
    cwd: optionalField(interpolated("a directory path")),
    envFile: optionalField(EnvFileInput),
    protocol: optionalField(ProtocolInput)
  })

const RemoteEntry = Schema.Struct({
  ...entryFields,
  type: Schema.optionalKey(Schema.String),
  // Never quoted, as written or interpolated: a URL may carry a token.
  url: interpolated("an http(s) URL").check(Schema.makeFilter((url) => urlProblem(url))),
  headers: Secrets,
  protocol: optionalField(ProtocolInput)
}).check(Schema.makeFilter((entry) =>
  entry.type === "sse" && entry.protocol === "2026-07-28"
    ? { path: ["protocol"], issue: "2026-07-28 has no SSE transport: use type \"http\"" }
    : undefined
))

const Entry = select({
  disabled: Schema.Struct({}),
  stdio: stdioEntry("expected a command (a non-empty string), got undefined"),
  // Without a type, a missing command may as well be a missing url: say both.
  local: stdioEntry("expected `command` (a local server) or `url` (a remote server)"),
  remote: RemoteEntry
}, (entry) => {
  if (!isRecord(entry)) return reject(`expected a server (an object with \`command\` or \`url\`), got ${show(entry)}`)
  if (entry.disabled === true) return "disabled"
  const type = entry.type
  if (type !== undefined && (typeof type !== "string" || (type !== "stdio" && !remoteTypes.has(type)))) {
    return reject(`expected "stdio", "http" or "sse", got ${show(type)}`, ["type"])
  }
  if (type === undefined && entry.command !== undefined && entry.url !== undefined) {
    return reject("has both `command` and `url`: keep one, or say which with `type`")
  }
  return type === "stdio" ? "stdio" : type === undefined && entry.url === undefined ? "local" : "remote"
})

const Servers = byName(Entry, {
  what: "an object of servers by name",
  nameProblem: (name) => name.trim() === "" ? "a server name is empty" : undefined
})

const rootExpected = "expected an object with `mcpServers` (Claude Desktop, Cursor, …) or `servers` (VS Code)"

const Document = select({
  mcpServers: Schema.Struct({ mcpServers: Servers }),
  servers: Schema.Struct({ servers: Servers }),
  // VS Code's settings.json keeps the same shape under "mcp".
  settings: Schema.Struct({ mcp: Schema.Struct({ servers: Servers }) })
}, (input) => {
  if (!isRecord(input)) return reject(`${rootExpected}, got ${show(input)}`)
  if (input.mcpServers !== undefined && input.servers !== undefined) {
    return reject("has both `mcpServers` and `servers`: keep one")
  }
  if (input.mcpServers !== undefined) return "mcpServers"
  if (input.servers !== undefined) return "servers"
  return isRecord(input.mcp) && input.mcp.servers !== undefined ? "settings" : reject(rootExpected)
})

const decodeWithSchema = configDecoder(Document, "(root)")

/** A decoded document, with the env files its stdio servers name (by server name), for `load` to read. */
interface Decoded {
  readonly file: McpConfigFile
  readonly envFiles: ReadonlyMap<string, EnvFile>
}

const toServer = (entry: typeof Entry.Type): McpServerConfig.McpServerConfig | undefined => {
  switch (entry.kind) {
    case "disabled":
      return undefined
    case "stdio":
    case "local": {
      const { args, command, cwd, env, protocol } = entry.value
      return McpServerConfig.stdio({
        command,
        args: args ?? [],
        env: toSecrets(env),
        cwd,
        protocol: protocol ?? "auto"
      })
    }
    case "remote": {
      const { headers, protocol = "auto", type, url } = entry.value
      return type === "sse"
        ? McpServerConfig.sse({ url, headers: toSecrets(headers), protocol })
        : McpServerConfig.http({ url, headers: toSecrets(headers), fallbackToSse: type === undefined, protocol })
    }
  }
}

const decodeDocument = (
  input: unknown,
  options: DecodeOptions,
  readsEnvFiles: boolean
): Effect.Effect<Decoded, ConfigError> =>
  decodeWithSchema(input, options.source).pipe(
    Effect.provideService(Interpolation, {
      env: options.env ?? process.env,
      variables: options.variables ?? {},
      readsEnvFiles
    }),
    Effect.map((document) => {
      const [format, path, entries] = document.kind === "mcpServers"
        ? ["mcpServers", "mcpServers", document.value.mcpServers] as const
        : document.kind === "servers"
        ? ["servers", "servers", document.value.servers] as const
        : ["servers", "mcp.servers", document.value.mcp.servers] as const
      const servers: Record<string, McpServerConfig.McpServerConfig> = {}
      const envFiles = new Map<string, EnvFile>()
      const disabled: Array<string> = []
      for (const [name, entry] of entries) {
        const server = toServer(entry)
        if (server === undefined) {
          disabled.push(name)
          continue
        }
        servers[name] = server
        if ((entry.kind === "stdio" || entry.kind === "local") && entry.value.envFile !== undefined) {
          envFiles.set(name, { path: child(child(path, name), "envFile"), file: entry.value.envFile })
        }
      }
      return { file: { source: options.source, format, servers, disabled }, envFiles }
    })
  )

/**
 * Decodes a parsed file (either format) into server configs by name, skipping disabled servers.
 *
 * ```ts
 * declare const text: string // the file's contents
 *
 * const servers = McpConfigFile.decode(JSON.parse(text), { source: "mcp.json" })
 * ```
 *
 * @stability stable
 * @since 0.1.0
 * @category decoding
 */
export const decode = (
  input: unknown,
  options: DecodeOptions
): Effect.Effect<Record<string, McpServerConfig.McpServerConfig>, ConfigError> =>
  Effect.map(
    options.env !== undefined
      ? decodeDocument(input, options, false)
      : Effect.flatMap(environmentFor(input), (env) => decodeDocument(input, { ...options, env }, false)),
    (decoded) => decoded.file.servers
  )

// --- JSON with comments ---

/** Line and column (1-based) of an offset, for a parse error: never the text around it (it may hold a token). */
const lineColumn = (text: string, offset: number): string => {
  const before = text.slice(0, offset)
  const line = before.split("\n").length
  return `line ${line}, column ${offset - before.lastIndexOf("\n")}`
}

/**
 * JSONC (comments, trailing commas) with VS Code's own parser, loaded on first use. Every syntax error is
 * reported, each with its position; an unterminated comment is one of them.
 */
const parseJsonc = (text: string): Effect.Effect<{ readonly value: unknown } | { readonly errors: Array<string> }> =>
  Effect.map(
    Effect.promise(() => import("jsonc-parser")),
    (jsonc) => {
      const errors: Array<import("jsonc-parser").ParseError> = []
      const source = text.replace(/^\uFEFF/, "")
      const value: unknown = jsonc.parse(source, errors, { allowTrailingComma: true, disallowComments: false })
      return errors.length === 0
        ? { value }
        : {
          errors: errors.map((error) =>
            `invalid JSON: ${jsonc.printParseErrorCode(error.error)} at ${lineColumn(source, error.offset)}`
          )
        }
    }
  )

/**
 * The environment for `${env:NAME}` and `${NAME}` when the caller gives none: read through Effect's
 * `ConfigProvider` (the process environment by default), so tests and apps can supply it. Only the names
 * the document uses are looked up.
 */
const environmentFor = (input: unknown): Effect.Effect<Record<string, string | undefined>> =>
  Effect.gen(function*() {
    const names = new Set<string>()
    const collect = (value: unknown): void => {
      if (typeof value === "string") {
        for (const [, inner] of value.matchAll(placeholder)) {
          const body = inner!.startsWith("env:") ? inner!.slice(4) : inner!
          const name = body.split(":-")[0]!
          if (variableName.test(name)) names.add(name)
        }
      } else if (Array.isArray(value)) value.forEach(collect)
      else if (isRecord(value)) Object.values(value).forEach(collect)
    }
    collect(input)
    const provider = yield* ConfigProvider.ConfigProvider
    const env: Record<string, string | undefined> = {}
    for (const name of names) {
      const found = yield* Effect.orElseSucceed(
        Config.option(Config.String(name)).parse(provider),
        () => Option.none<string>()
      )
      env[name] = Option.getOrUndefined(found)
    }
    return env
  })

const decodeTextDocument = (
  text: string,
  options: DecodeOptions,
  readsEnvFiles: boolean
): Effect.Effect<Decoded, ConfigError> =>
  Effect.flatMap(parseJsonc(text), (parsed) => {
    if ("errors" in parsed) {
      return Effect.fail(
        new ConfigError({
          source: options.source,
          issues: parsed.errors.map((message) => new ConfigIssue({ path: "(file)", message }))
        })
      )
    }
    return options.env !== undefined
      ? decodeDocument(parsed.value, options, readsEnvFiles)
      : Effect.flatMap(
        environmentFor(parsed.value),
        (env) => decodeDocument(parsed.value, { ...options, env }, readsEnvFiles)
      )
  })

/**
 * Parses (JSON, comments allowed) and decodes a file's text.
 *
 * @stability stable
 * @since 0.1.0
 * @category decoding
 */
export const decodeText = (
  text: string,
  options: DecodeOptions
): Effect.Effect<Record<string, McpServerConfig.McpServerConfig>, ConfigError> =>
  Effect.map(decodeTextDocument(text, options, false), (decoded) => decoded.file.servers)

// --- files ---

/** dotenv lines: `KEY=value`, `export KEY=value`, quoted values (`"…"` with `\n` escapes, `'…'` as is), `#` comments. */
const parseDotEnv = (text: string): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const line of text.split(/\r?\n/)) {
    const match = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*?)\s*$/.exec(line)
    if (match === null) continue
    const [, key, raw] = match as unknown as [string, string, string]
    const quote = raw[0]
    if ((quote === "\"" || quote === "'") && raw.length >= 2 && raw.endsWith(quote)) {
      const inner = raw.slice(1, -1)
      out[key] = quote === "\"" ? inner.replace(/\\n/g, "\n").replace(/\\"/g, "\"") : inner
    } else {
      out[key] = raw.replace(/\s+#.*$/, "")
    }
  }
  return out
}

/**
 * `${workspaceFolder}` for a file: the folder holding `.vscode/mcp.json`, else the file's own folder.
 */
const workspaceFolderOf = (path: string): string => {
  const folder = NodePath.dirname(NodePath.resolve(path))
  return NodePath.basename(folder) === ".vscode" ? NodePath.dirname(folder) : folder
}

/**
 * Reads and decodes a config file with effect's `FileSystem`. `${workspaceFolder}` defaults to the folder
 * holding `.vscode/` (or the file's folder). A file that cannot be read or parsed is a `ConfigError`
 * naming it.
 *
 * @stability stable
 * @since 0.1.0
 * @category loading
 */
export const load = (
  path: string,
  options?: Variables
): Effect.Effect<McpConfigFile, ConfigError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(path).pipe(
      Effect.mapError((error) =>
        new ConfigError({
          source: path,
          issues: [new ConfigIssue({ path: "(file)", message: `cannot read the file: ${error.message}` })]
        })
      )
    )
    const decoded = yield* decodeTextDocument(text, {
      source: path,
      env: options?.env,
      variables: { workspaceFolder: workspaceFolderOf(path), ...options?.variables }
    }, true)
    const servers = { ...decoded.file.servers }
    const issues: Array<ConfigIssue> = []
    for (const [name, envFile] of decoded.envFiles) {
      const server = servers[name]
      if (server?._tag !== "Stdio" || typeof server.env === "function") continue
      const read = yield* Effect.result(fs.readFileString(NodePath.resolve(NodePath.dirname(path), envFile.file)))
      if (read._tag === "Failure") {
        issues.push(
          new ConfigIssue({ path: envFile.path, message: `cannot read the env file: ${read.failure.message}` })
        )
        continue
      }
      const fromFile = Object.fromEntries(
        Object.entries(parseDotEnv(read.success)).map(([key, value]) => [key, Redacted.make(value, { label: key })])
      )
      servers[name] = { ...server, env: { ...fromFile, ...server.env } }
    }
    if (issues.length > 0) return yield* Effect.fail(new ConfigError({ source: path, issues }))
    return { ...decoded.file, servers }
  })

/**
 * {@link load}, keeping only the servers: what `McpSessionPool.layer`'s `servers` takes.
 *
 * @stability stable
 * @since 0.1.0
 * @category loading
 */
export const loadServers = (
  path: string,
  options?: Variables
): Effect.Effect<Record<string, McpServerConfig.McpServerConfig>, ConfigError, FileSystem.FileSystem> =>
  Effect.map(load(path, options), (file) => file.servers)
