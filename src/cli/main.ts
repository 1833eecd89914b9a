/**
 * `mcp-pool`: the command line, built with effect's `cli` module.
 *
 * - `mcp-pool doctor [file] [--timeout 30 seconds]`: connects to every server of a config file at once and
 *   reports, per server, whether it is reachable, the revision agreed on, its tool count and the connect
 *   time. Exit code 0 when every server is reachable, 1 otherwise.
 * - `mcp-pool call <server> <tool> [json] [--scope cli] [--config file]`: one tool call; prints the result.
 *   Exit code 0, or 1 for a typed error or an `isError` result.
 * - `mcp-pool repl [--scope cli] [--config file]`: a shell over one pool, so a scope's sessions (a browser
 *   page, a notebook's notes) stay between commands.
 *
 * Without a file, the config is `.mcp.json`, else `.cursor/mcp.json`, else `.vscode/mcp.json` in the working
 * directory. A bad config file (or none) prints the `ConfigError` and exits 2; so does a bad invocation.
 *
 * The logic is exported (`doctor`, `callTool`, `repl`, `renderResult`, `runCli`) so it runs in-process,
 * with any `Console` and `Terminal`. The package root does not load this module.
 *
 * @since 0.2.0
 */
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js"
import { Clock, Console, Data, Duration, Effect, FileSystem, Option, Path, Terminal } from "effect"
import { Argument, CliConfig, CliError, Command, Flag, GlobalFlag } from "effect/cli"
import { readFileSync } from "node:fs"
import * as McpConfigFile from "../McpConfigFile.ts"
import { ConfigError, ConfigIssue } from "../McpPoolError.ts"
import type { McpServerConfig } from "../McpServerConfig.ts"
import type { McpSession, Revision } from "../McpSession.ts"
import * as McpSessionPool from "../McpSessionPool.ts"
import type { McpSessionPoolShape } from "../McpSessionPool.ts"

// --- exit codes ---

/**
 * How a command ends when it does not succeed: the process exit code (1: a server or a call failed; 2: a bad
 * config file or a bad invocation). What went wrong has already been printed.
 *
 * @since 0.2.0
 * @category models
 */
export class CliExit extends Data.TaggedError("CliExit")<{ readonly code: number }> {}

const exitWith = (code: number) => Effect.fail(new CliExit({ code }))

// --- config files ---

/**
 * The files looked for, in order, when no file is given.
 *
 * @since 0.2.0
 * @category config
 */
export const defaultConfigFiles: ReadonlyArray<string> = [".mcp.json", ".cursor/mcp.json", ".vscode/mcp.json"]

/**
 * The config file to read: `file` when given, else the first of {@link defaultConfigFiles} that exists in
 * `cwd` (default: the working directory, and the path stays relative: `.mcp.json`). None found is a
 * `ConfigError` naming the files looked for.
 *
 * @since 0.2.0
 * @category config
 */
export const resolveConfigPath = (
  file: Option.Option<string>,
  cwd: string = "."
): Effect.Effect<string, ConfigError, FileSystem.FileSystem | Path.Path> =>
  Option.match(file, {
    onSome: Effect.succeed,
    onNone: () =>
      Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        const path = yield* Path.Path
        for (const candidate of defaultConfigFiles) {
          const full = path.join(cwd, candidate)
          if (yield* Effect.orElseSucceed(fs.exists(full), () => false)) return full
        }
        return yield* new ConfigError({
          source: path.resolve(cwd),
          issues: [
            new ConfigIssue({
              path: "(file)",
              message: `no config file: looked for ${defaultConfigFiles.join(", ")}; pass one (--config <file>)`
            })
          ]
        })
      })
  })

/** Reads the config file, printing a `ConfigError` (every bad field) and ending with exit code 2. */
const loadConfig = (file: Option.Option<string>) =>
  Effect.gen(function*() {
    const path = yield* resolveConfigPath(file)
    const servers = yield* McpConfigFile.loadServers(path)
    return { path, servers }
  }).pipe(
    Effect.catchTag("ConfigError", (error) => Effect.andThen(Console.error(error.message), exitWith(2)))
  )

// --- rendering ---

/**
 * A typed error as the CLI prints it: its tag and its message (secrets are already redacted by the pool).
 *
 * @since 0.2.0
 * @category rendering
 */
export const renderError = (error: { readonly _tag: string; readonly message: string }): string =>
  error._tag === "McpProtocolError" && "code" in error
    ? `McpProtocolError (${String(error.code)}): ${error.message}`
    : `${error._tag}: ${error.message}`

/**
 * A tool result as text: text blocks as their text, every other block as JSON, one per line; without content
 * the structured content as JSON.
 *
 * @since 0.2.0
 * @category rendering
 */
export const renderResult = (result: CallToolResult): string => {
  const blocks = result.content.map((block) => block.type === "text" ? block.text : JSON.stringify(block))
  if (blocks.length > 0) return blocks.join("\n")
  return result.structuredContent === undefined ? "(no content)" : JSON.stringify(result.structuredContent)
}

const describeServer = (config: McpServerConfig): string => {
  switch (config._tag) {
    case "Stdio":
      // The command only: arguments and URLs are never printed (they may carry a token).
      return `stdio (${config.command.split(/[\\/]/).pop() ?? config.command})`
    case "Http":
      return config.transport === "sse" ? "sse" : "http"
    case "InMemory":
      return "in-memory"
    case "Custom":
      return "custom"
  }
}

const revisionText = (revision: Revision | undefined, protocolVersion: string | undefined): string =>
  revision === undefined
    ? "-"
    : protocolVersion === undefined || protocolVersion === revision
    ? revision
    : `${revision} (${protocolVersion})`

const table = (rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => row[column]?.length ?? 0))) ?? []
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join("  ").trimEnd()).join("\n")
}

// --- sessions ---

/** Every tool of a session: follows `nextCursor` (a 2026-07-28 session already returns every page). */
const listAllTools = (session: McpSession) =>
  Effect.gen(function*() {
    const first = yield* session.listTools()
    const tools = [...first.tools]
    let cursor = first.nextCursor
    for (let page = 1; cursor !== undefined && page < 1000; page++) {
      const next = yield* session.listTools({ cursor })
      tools.push(...next.tools)
      cursor = next.nextCursor
    }
    return tools
  })

// --- doctor ---

/**
 * What `doctor` found for one server.
 *
 * @since 0.2.0
 * @category doctor
 */
export interface ServerReport {
  readonly server: string
  readonly reachable: boolean
  /** Time to a ready session (spawn or dial plus the handshake), or to the failure. */
  readonly connectMillis: number
  readonly revision: Revision | undefined
  readonly protocolVersion: string | undefined
  /** `tools/list`'s count; undefined when unreachable or when `tools/list` failed. */
  readonly tools: number | undefined
  /** Why it is unreachable, or why `tools/list` failed on a reachable server. */
  readonly error: string | undefined
}

/**
 * Options of {@link doctor}.
 *
 * @since 0.2.0
 * @category doctor
 */
export interface DoctorOptions {
  /** Bound on each server's check (connect, then `tools/list`); default 30 seconds. */
  readonly timeout?: Duration.Input | undefined
  /** Called as each server's check ends, in the order they end. */
  readonly onReport?: ((report: ServerReport, done: number, total: number) => Effect.Effect<void>) | undefined
}

const doctorScope = "mcp-pool-doctor"

/** An error's message without the doctor's own scope: it is no scope of the user's, so it says nothing. */
const doctorText = (message: string): string => message.replace(` for scope "${doctorScope}"`, "")

/**
 * Connects to every server at once (one pool, each check bounded by `timeout`) and reports each, in the
 * order of `servers`. Every session is closed (its process gone) when it returns.
 *
 * @since 0.2.0
 * @category doctor
 */
export const doctor = (
  servers: Readonly<Record<string, McpServerConfig>>,
  options?: DoctorOptions
): Effect.Effect<ReadonlyArray<ServerReport>, ConfigError> =>
  Effect.gen(function*() {
    const timeout = Duration.fromInputUnsafe(options?.timeout ?? "30 seconds")
    const names = Object.keys(servers)
    const pool = yield* McpSessionPool.make({
      servers,
      capacity: Math.max(names.length, 1),
      connectTimeout: timeout,
      callTimeout: timeout
    })
    let done = 0
    const check = (server: string) =>
      Effect.gen(function*() {
        const start = yield* Clock.currentTimeMillis
        let connected: { readonly session: McpSession; readonly millis: number } | undefined
        const attempt = Effect.gen(function*() {
          const session = yield* pool.get({ server, scope: doctorScope })
          connected = { session, millis: (yield* Clock.currentTimeMillis) - start }
          return yield* Effect.result(listAllTools(session))
        }).pipe(Effect.scoped, Effect.result, Effect.timeoutOption(timeout))
        const outcome = yield* attempt
        const elapsed = (yield* Clock.currentTimeMillis) - start
        const session = connected?.session
        const base = {
          server,
          connectMillis: connected?.millis ?? elapsed,
          revision: session?.revision,
          protocolVersion: session?.protocolVersion
        }
        const report: ServerReport = Option.match(outcome, {
          onNone: () => ({
            ...base,
            reachable: session !== undefined,
            tools: undefined,
            error: session === undefined
              ? `no session within ${Duration.format(timeout)}`
              : `tools/list did not answer within ${Duration.format(timeout)}`
          }),
          onSome: (got) =>
            got._tag === "Failure"
              ? { ...base, reachable: false, tools: undefined, error: doctorText(got.failure.message) }
              : got.success._tag === "Failure"
              ? {
                ...base,
                reachable: true,
                tools: undefined,
                error: doctorText(`tools/list: ${renderError(got.success.failure)}`)
              }
              : { ...base, reachable: true, tools: got.success.success.length, error: undefined }
        })
        done++
        if (options?.onReport !== undefined) yield* options.onReport(report, done, names.length)
        return report
      })
    return yield* Effect.forEach(names, check, { concurrency: "unbounded" })
  }).pipe(Effect.scoped)

/**
 * The report as a table, in the given order, with each error on its own line below.
 *
 * @since 0.2.0
 * @category doctor
 */
export const renderDoctor = (reports: ReadonlyArray<ServerReport>): string => {
  const rows = [
    ["SERVER", "STATUS", "REVISION", "TOOLS", "CONNECT"],
    ...reports.map((report) => [
      report.server,
      report.reachable ? "ok" : "unreachable",
      revisionText(report.revision, report.protocolVersion),
      report.tools === undefined ? "-" : String(report.tools),
      `${Math.round(report.connectMillis)} ms`
    ])
  ]
  const errors = reports.flatMap((report) => report.error === undefined ? [] : [`  ${report.server}: ${report.error}`])
  const reachable = reports.filter((report) => report.reachable).length
  return [
    table(rows),
    ...(errors.length === 0 ? [] : ["", ...errors]),
    "",
    `${reachable} of ${reports.length} server${reports.length === 1 ? "" : "s"} reachable`
  ].join("\n")
}

const progressLine = (report: ServerReport, done: number, total: number): string =>
  `  [${done}/${total}] ${report.server}: ${report.reachable ? "reachable" : "unreachable"} (${
    Math.round(report.connectMillis)
  } ms)`

// --- call ---

/**
 * A call's `[json]` argument: a JSON object, or nothing.
 *
 * @since 0.2.0
 * @category call
 */
export const parseArguments = (json: string | undefined): Record<string, unknown> | string => {
  if (json === undefined || json.trim() === "") return {}
  let value: unknown
  try {
    value = JSON.parse(json)
  } catch (error) {
    return `the arguments are not JSON: ${error instanceof Error ? error.message : String(error)}`
  }
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? value as Record<string, unknown>
    : "the arguments must be a JSON object, e.g. {\"key\":\"k\"}"
}

/**
 * One tool call on the pool's (server, scope) session: prints the result (an `isError` result to stderr)
 * or the typed error, and returns the exit code (0, 1, or 2 for arguments that are not a JSON object).
 *
 * @since 0.2.0
 * @category call
 */
export const callTool = (
  pool: McpSessionPoolShape,
  request: {
    readonly server: string
    readonly tool: string
    readonly json?: string | undefined
    readonly scope: string
  }
): Effect.Effect<number> =>
  Effect.gen(function*() {
    const args = parseArguments(request.json)
    if (typeof args === "string") {
      yield* Console.error(args)
      return 2
    }
    const outcome = yield* Effect.result(
      pool.callTool({ server: request.server, scope: request.scope, name: request.tool, arguments: args })
    )
    if (outcome._tag === "Failure") {
      yield* Console.error(renderError(outcome.failure))
      return 1
    }
    if (outcome.success.isError === true) {
      yield* Console.error(renderResult(outcome.success))
      return 1
    }
    yield* Console.log(renderResult(outcome.success))
    return 0
  })

// --- repl ---

/**
 * What the shell works on: one pool for the whole shell, the configured servers and the scope.
 *
 * @since 0.2.0
 * @category repl
 */
export interface ReplOptions {
  readonly pool: McpSessionPoolShape
  readonly servers: Readonly<Record<string, McpServerConfig>>
  readonly scope: string
  /** Default `"mcp> "`. */
  readonly prompt?: string | undefined
}

const replHelp = [
  "commands:",
  "  servers                      the configured servers (and whether this scope has a session)",
  "  tools <server>               the server's tools",
  "  call <server> <tool> [json]  one tool call; json is an object of arguments",
  "  sessions                     the pool's live sessions (pool.snapshot)",
  "  help                         this text",
  "  exit                         close every session and leave (also end of input)"
].join("\n")

/** `<word> <word> <rest>`: the rest (JSON, spaces allowed) as written. */
const splitCommand = (line: string): ReadonlyArray<string> => {
  const words: Array<string> = []
  let rest = line.trim()
  while (rest.length > 0 && words.length < 3) {
    const match = /^(\S+)\s*/.exec(rest)
    if (match === null || match[1] === undefined) break
    words.push(match[1])
    rest = rest.slice(match[0].length)
  }
  return rest.length > 0 ? [...words, rest] : words
}

/**
 * Runs one shell line. Returns false for `exit`.
 *
 * @since 0.2.0
 * @category repl
 */
export const replCommand = (options: ReplOptions, line: string): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    const { pool, scope, servers } = options
    const [command, ...args] = splitCommand(line)
    switch (command) {
      case undefined:
        return true
      case "exit":
      case "quit":
        return false
      case "help":
        yield* Console.log(replHelp)
        return true
      case "servers": {
        const live = new Set((yield* pool.snapshot).filter((row) => row.scope === scope).map((row) => row.server))
        const rows = Object.entries(servers).map(([name, config]) => [
          name,
          describeServer(config),
          live.has(name) ? "session open" : ""
        ])
        yield* Console.log(rows.length === 0 ? "(no servers)" : table(rows))
        return true
      }
      case "tools": {
        const server = args[0]
        if (server === undefined) {
          yield* Console.error("usage: tools <server>")
          return true
        }
        const outcome = yield* Effect.result(pool.use({ server, scope }, listAllTools))
        if (outcome._tag === "Failure") {
          yield* Console.error(renderError(outcome.failure))
        } else {
          const rows = outcome.success.map((tool) => [tool.name, tool.description?.split("\n")[0] ?? ""])
          yield* Console.log(rows.length === 0 ? "(no tools)" : table(rows))
        }
        return true
      }
      case "call": {
        const [server, tool, json] = args
        if (server === undefined || tool === undefined) {
          yield* Console.error("usage: call <server> <tool> [json]")
          return true
        }
        yield* callTool(pool, { server, tool, json, scope })
        return true
      }
      case "sessions": {
        const rows = (yield* pool.snapshot).map((row) => [
          row.server,
          row.scope,
          row.attached ? row.state : `${row.state} (detached)`,
          String(row.leases),
          row.pid === undefined ? "-" : String(row.pid),
          row.protocolVersion ?? "-",
          row.threadState ?? "-"
        ])
        yield* Console.log(
          rows.length === 0
            ? "(no sessions)"
            : table([["SERVER", "SCOPE", "STATE", "LEASES", "PID", "PROTOCOL", "THREAD STATE"], ...rows])
        )
        return true
      }
      default:
        yield* Console.error(`unknown command "${command}": type help`)
        return true
    }
  })

/**
 * The shell: reads lines from the `Terminal` after a prompt until `exit` or the end of input.
 *
 * @since 0.2.0
 * @category repl
 */
export const repl = (options: ReplOptions): Effect.Effect<void, never, Terminal.Terminal> =>
  Effect.gen(function*() {
    const terminal = yield* Terminal.Terminal
    const prompt = options.prompt ?? "mcp> "
    const names = Object.keys(options.servers)
    yield* Console.log(
      `mcp-pool repl: scope "${options.scope}", ${names.length} server${names.length === 1 ? "" : "s"} (${
        names.join(", ")
      }); type help`
    )
    while (true) {
      yield* Effect.ignore(terminal.display(prompt))
      const line = yield* Effect.option(terminal.readLine)
      if (Option.isNone(line)) {
        yield* Console.log("")
        return
      }
      if (!(yield* replCommand(options, line.value))) return
    }
  })

// --- commands ---

const configFlag = Flag.String("config").pipe(
  Flag.withAlias("c"),
  Flag.withDescription("The config file (default: .mcp.json, else .cursor/mcp.json, else .vscode/mcp.json)"),
  Flag.optional
)

const scopeFlag = Flag.String("scope").pipe(
  Flag.withDescription("The scope (e.g. a chat thread id) whose sessions to use (default: cli)"),
  Flag.withDefault("cli")
)

/** `"30 seconds"`, `"500 millis"`, `"Infinity"`, or a number of milliseconds. */
const parseDuration = (text: string): Option.Option<Duration.Duration> => {
  const input: Duration.Input = /^\d+(?:\.\d+)?$/.test(text.trim()) ? Number(text) : text.trim() as Duration.Input
  return Option.filter(Duration.fromInput(input), (duration) => !Duration.isNegative(duration))
}

const timeoutFlag = Flag.String("timeout").pipe(
  Flag.withDescription("Bound on each server's check: \"10 seconds\", 500 (milliseconds), … (default: 30 seconds)"),
  Flag.withDefault("30 seconds"),
  Flag.filterMap(parseDuration, () => "a duration such as \"30 seconds\" or 500 (milliseconds)")
)

const doctorCommand = Command.make("doctor", {
  file: Argument.String("file").pipe(
    Argument.withDescription("The config file (default: .mcp.json, else .cursor/mcp.json, else .vscode/mcp.json)"),
    Argument.optional
  ),
  timeout: timeoutFlag,
  json: Flag.Boolean("json").pipe(
    Flag.withDescription("Print the reports as a JSON array (one object per server) instead of a table"),
    Flag.withDefault(false)
  )
}, ({ file, json, timeout }) =>
  Effect.gen(function*() {
    const { path, servers } = yield* loadConfig(file)
    const total = Object.keys(servers).length
    yield* Console.error(`checking ${total} server${total === 1 ? "" : "s"} from ${path}…`)
    const reports = yield* doctor(servers, {
      timeout,
      onReport: (report, done, all) => Console.error(progressLine(report, done, all))
    }).pipe(Effect.catchTag("ConfigError", (error) => Effect.andThen(Console.error(error.message), exitWith(2))))
    // Every field in every object (null when unknown), so consumers need no "absent" case.
    yield* Console.log(
      json ? JSON.stringify(reports, (_key, value) => value === undefined ? null : value, 2) : renderDoctor(reports)
    )
    if (reports.some((report) => !report.reachable)) return yield* exitWith(1)
  })).pipe(
    Command.withShortDescription("Check every server of a config file"),
    Command.withDescription(
      "Connect to every server of a config file and report, per server: reachable or not, protocol revision, " +
        "tool count, connect time (--json: as JSON). Exit code 0 when all are reachable, 1 otherwise, 2 for a bad " +
        "config file."
    )
  )

const callCommand = Command.make("call", {
  server: Argument.String("server").pipe(Argument.withDescription("The server's name in the config file")),
  tool: Argument.String("tool").pipe(Argument.withDescription("The tool's name")),
  json: Argument.String("json").pipe(
    Argument.withDescription("The arguments, a JSON object, e.g. '{\"key\":\"k\"}'"),
    Argument.optional
  ),
  scope: scopeFlag,
  config: configFlag
}, ({ config, json, scope, server, tool }) =>
  Effect.gen(function*() {
    const { servers } = yield* loadConfig(config)
    const pool = yield* McpSessionPool.make({ servers }).pipe(
      Effect.catchTag("ConfigError", (error) => Effect.andThen(Console.error(error.message), exitWith(2)))
    )
    const code = yield* callTool(pool, { server, tool, json: Option.getOrUndefined(json), scope })
    if (code !== 0) return yield* exitWith(code)
  }).pipe(Effect.scoped)).pipe(
    Command.withShortDescription("Call one tool and print its result"),
    Command.withDescription(
      "Call one tool and print its result (text blocks as text, other blocks as JSON). Exit code 0, or 1 for an " +
        "error (a typed error, or a result with isError)."
    )
  )

const replCommandDefinition = Command.make(
  "repl",
  { scope: scopeFlag, config: configFlag },
  ({ config, scope }) =>
    Effect.gen(function*() {
      const { servers } = yield* loadConfig(config)
      const pool = yield* McpSessionPool.make({ servers }).pipe(
        Effect.catchTag("ConfigError", (error) => Effect.andThen(Console.error(error.message), exitWith(2)))
      )
      yield* repl({ pool, servers, scope })
    }).pipe(Effect.scoped)
).pipe(
  Command.withShortDescription("An interactive shell whose sessions stay between commands"),
  Command.withDescription(
    "An interactive shell over one pool: the scope's sessions stay between commands (type help inside)."
  )
)

/**
 * The `mcp-pool` command and its subcommands.
 *
 * @since 0.2.0
 * @category commands
 */
export const command = Command.make("mcp-pool").pipe(
  Command.withDescription("Check, call and explore the MCP servers of a Claude, Cursor or VS Code config file."),
  Command.withSubcommands([doctorCommand, callCommand, replCommandDefinition])
)

const packageVersion = (): string => {
  try {
    // src/cli/main.ts and the built dist/bin/mcp-pool.js (which holds this module) both sit two folders
    // below the package root.
    const manifest: unknown = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"))
    const version = typeof manifest === "object" && manifest !== null && "version" in manifest
      ? manifest.version
      : undefined
    return typeof version === "string" ? version : "0.0.0"
  } catch {
    return "0.0.0"
  }
}

/**
 * Runs `mcp-pool` with these arguments (without the program name) and returns the exit code: 0, 1 (a server
 * or a call failed), 2 (a bad config file or a bad invocation; effect's cli has printed the help and the
 * errors). Output goes through `Console`; the shell reads the `Terminal`.
 *
 * @since 0.2.0
 * @category running
 */
export const runCli = (args: ReadonlyArray<string>): Effect.Effect<number, never, Command.Environment> =>
  Command.runWith(command, { version: packageVersion() })(args).pipe(
    Effect.as(0),
    // effect's built-in global flags, but the wizard (a command line of three words needs none).
    Effect.provide(
      CliConfig.layer({ builtIns: [GlobalFlag.Help, GlobalFlag.Version, GlobalFlag.Completions, GlobalFlag.LogLevel] })
    ),
    Effect.catch((error) =>
      error instanceof CliExit
        ? Effect.succeed(error.code)
        : CliError.isCliError(error)
        ? Effect.succeed(2)
        : Effect.die(error)
    )
  )
