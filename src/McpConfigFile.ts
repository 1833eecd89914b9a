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
import { Config, ConfigProvider, Effect, FileSystem, Option, Redacted } from "effect"
import * as NodePath from "node:path"
import { isProtocol, isRecord, protocolProblem, show, urlProblem } from "./internal/options.ts"
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

/** `a.b` for plain keys, `a["my.key"]` otherwise, so every path reads back unambiguously. */
const child = (path: string, key: string | number): string =>
  typeof key === "number"
    ? `${path}[${key}]`
    : /^[A-Za-z_$][\w$-]*$/.test(key)
    ? `${path}.${key}`
    : `${path}[${JSON.stringify(key)}]`

const variableName = /^[A-Za-z_][A-Za-z0-9_]*$/
const placeholder = /\$\{([^}]*)\}/g

const remoteTypes = new Set(["http", "streamable-http", "streamableHttp", "sse"])

/** A stdio server's VS Code `envFile`, read by `load` (which has a file system). */
interface EnvFile {
  readonly path: string
  readonly file: string
}

class Decoder {
  readonly issues: Array<ConfigIssue> = []
  readonly envFiles = new Map<string, EnvFile>()
  readonly env: Readonly<Record<string, string | undefined>>
  readonly variables: Readonly<Record<string, string>>

  /** Only `load` reads env files; `decode` and `decodeText` report them, with every other problem. */
  readonly readsEnvFiles: boolean

  constructor(options: Variables, readsEnvFiles: boolean) {
    this.env = options.env ?? process.env
    this.variables = options.variables ?? {}
    this.readsEnvFiles = readsEnvFiles
  }

  add(path: string, message: string): void {
    this.issues.push(new ConfigIssue({ path, message }))
  }

  /** Replaces every `${…}`, reporting each variable that cannot be resolved. */
  interpolate(path: string, text: string): string {
    return text.replace(placeholder, (match, inner: string) => {
      const fromEnvOnly = inner.startsWith("env:")
      const body = fromEnvOnly ? inner.slice(4) : inner
      const separator = body.indexOf(":-")
      const name = separator === -1 ? body : body.slice(0, separator)
      if (inner.startsWith("input:")) {
        this.add(path, `${match}: prompted inputs are VS Code's; set an environment variable and use \${env:NAME}`)
        return ""
      }
      if (!variableName.test(name)) {
        this.add(path, `${match}: expected \${env:NAME}, \${NAME} or \${NAME:-default}`)
        return ""
      }
      const value = (fromEnvOnly ? undefined : this.variables[name]) ?? this.env[name]
      if (value !== undefined) return value
      if (separator !== -1) return body.slice(separator + 2)
      this.add(path, `environment variable ${name} is not set`)
      return ""
    })
  }

  string(path: string, value: unknown, what: string): string | undefined {
    if (typeof value === "string") return this.interpolate(path, value)
    this.add(path, `expected ${what}, got ${show(value)}`)
    return undefined
  }

  /** An object of strings (env, headers): every value interpolated, then Redacted. */
  secrets(path: string, value: unknown): Record<string, Redacted.Redacted<string>> {
    const out: Record<string, Redacted.Redacted<string>> = {}
    if (value === undefined) return out
    if (!isRecord(value)) {
      this.add(path, `expected an object of strings, got ${show(value)}`)
      return out
    }
    for (const [name, raw] of Object.entries(value)) {
      const text = this.string(child(path, name), raw, "a string")
      if (text !== undefined) out[name] = Redacted.make(text, { label: name })
    }
    return out
  }

  stdio(path: string, entry: Record<string, unknown>): McpServerConfig.Stdio | undefined {
    const command = entry.command === undefined && entry.type === undefined
      ? undefined // reported by the caller, naming `url` too
      : this.string(child(path, "command"), entry.command, "a command (a non-empty string)")
    if (command !== undefined && command.trim() === "") this.add(child(path, "command"), "expected a non-empty command")
    const args: Array<string> = []
    if (Array.isArray(entry.args)) {
      entry.args.forEach((arg: unknown, i) => {
        const text = this.string(child(child(path, "args"), i), arg, "a string")
        if (text !== undefined) args.push(text)
      })
    } else if (entry.args !== undefined) {
      this.add(child(path, "args"), `expected an array of strings, got ${show(entry.args)}`)
    }
    const env = this.secrets(child(path, "env"), entry.env)
    const cwd = entry.cwd === undefined ? undefined : this.string(child(path, "cwd"), entry.cwd, "a directory path")
    if (entry.envFile !== undefined) {
      const file = this.string(child(path, "envFile"), entry.envFile, "a file path")
      if (!this.readsEnvFiles) {
        this.add(child(path, "envFile"), "an envFile is read by McpConfigFile.load (from a file), not by decode")
      } else if (file !== undefined) {
        this.envFiles.set(path, { path: child(path, "envFile"), file })
      }
    }
    const protocol = this.protocol(path, entry.protocol)
    if (command === undefined || command.trim() === "") return undefined
    return McpServerConfig.stdio({ command, args, env, cwd, protocol })
  }

  /** `protocol`: the MCP revision (see `McpServerConfig.Protocol`); absent means "auto". */
  protocol(path: string, value: unknown): McpServerConfig.Protocol {
    if (value === undefined) return "auto"
    if (isProtocol(value)) return value
    this.add(child(path, "protocol"), protocolProblem(value))
    return "auto"
  }

  remote(path: string, entry: Record<string, unknown>, type: string | undefined): McpServerConfig.Http | undefined {
    const url = this.string(child(path, "url"), entry.url, "an http(s) URL")
    // Never quoted, as written or interpolated: a URL may carry a token.
    const problem = url === undefined ? undefined : urlProblem(url)
    if (problem !== undefined) this.add(child(path, "url"), problem)
    const headers = this.secrets(child(path, "headers"), entry.headers)
    const protocol = this.protocol(path, entry.protocol)
    if (type === "sse" && protocol === "2026-07-28") {
      this.add(child(path, "protocol"), "2026-07-28 has no SSE transport: use type \"http\"")
    }
    if (url === undefined || problem !== undefined) return undefined
    return type === "sse"
      ? McpServerConfig.sse({ url, headers, protocol })
      : McpServerConfig.http({ url, headers, fallbackToSse: type === undefined, protocol })
  }

  server(path: string, entry: unknown): McpServerConfig.McpServerConfig | "disabled" | undefined {
    if (!isRecord(entry)) {
      this.add(path, `expected a server (an object with \`command\` or \`url\`), got ${show(entry)}`)
      return undefined
    }
    if (entry.disabled !== undefined && typeof entry.disabled !== "boolean") {
      this.add(child(path, "disabled"), `expected true or false, got ${show(entry.disabled)}`)
    }
    if (entry.disabled === true) return "disabled"
    const type = entry.type
    if (type !== undefined && (typeof type !== "string" || (type !== "stdio" && !remoteTypes.has(type)))) {
      this.add(child(path, "type"), `expected "stdio", "http" or "sse", got ${show(type)}`)
      return undefined
    }
    if (type === undefined && entry.command !== undefined && entry.url !== undefined) {
      this.add(path, "has both `command` and `url`: keep one, or say which with `type`")
      return undefined
    }
    if (type === "stdio" || (type === undefined && entry.url === undefined)) {
      // Without a type, a missing command may as well be a missing url: say both.
      if (type === undefined && entry.command === undefined) {
        this.add(child(path, "command"), "expected `command` (a local server) or `url` (a remote server)")
      }
      return this.stdio(path, entry)
    }
    return this.remote(path, entry, type)
  }
}

interface Located {
  readonly format: Format
  readonly path: string
  readonly servers: unknown
}

const locate = (decoder: Decoder, input: unknown): Located | undefined => {
  const expected = "expected an object with `mcpServers` (Claude Desktop, Cursor, …) or `servers` (VS Code)"
  if (!isRecord(input)) {
    decoder.add("(root)", `${expected}, got ${show(input)}`)
    return undefined
  }
  if (input.mcpServers !== undefined && input.servers !== undefined) {
    decoder.add("(root)", "has both `mcpServers` and `servers`: keep one")
    return undefined
  }
  if (input.mcpServers !== undefined) return { format: "mcpServers", path: "mcpServers", servers: input.mcpServers }
  if (input.servers !== undefined) return { format: "servers", path: "servers", servers: input.servers }
  // VS Code's settings.json keeps the same shape under "mcp".
  if (isRecord(input.mcp) && input.mcp.servers !== undefined) {
    return { format: "servers", path: "mcp.servers", servers: input.mcp.servers }
  }
  decoder.add("(root)", expected)
  return undefined
}

/** A decoded document, with the env files its stdio servers name (by server name), for `load` to read. */
interface Decoded {
  readonly file: McpConfigFile
  readonly envFiles: ReadonlyMap<string, EnvFile>
}

const decodeDocument = (
  input: unknown,
  options: DecodeOptions,
  readsEnvFiles: boolean
): Effect.Effect<Decoded, ConfigError> =>
  Effect.suspend(() => {
    const decoder = new Decoder(options, readsEnvFiles)
    const servers: Record<string, McpServerConfig.McpServerConfig> = {}
    const envFiles = new Map<string, EnvFile>()
    const disabled: Array<string> = []
    const located = locate(decoder, input)
    if (located !== undefined) {
      if (!isRecord(located.servers)) {
        decoder.add(located.path, `expected an object of servers by name, got ${show(located.servers)}`)
      } else {
        for (const [name, entry] of Object.entries(located.servers)) {
          if (name.trim() === "") decoder.add(located.path, "a server name is empty")
          const path = child(located.path, name)
          const server = decoder.server(path, entry)
          if (server === "disabled") disabled.push(name)
          else if (server !== undefined) servers[name] = server
          const envFile = decoder.envFiles.get(path)
          if (envFile !== undefined && server !== "disabled") envFiles.set(name, envFile)
        }
      }
    }
    return decoder.issues.length > 0 || located === undefined
      ? Effect.fail(new ConfigError({ source: options.source, issues: decoder.issues }))
      : Effect.succeed({ file: { source: options.source, format: located.format, servers, disabled }, envFiles })
  })

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
