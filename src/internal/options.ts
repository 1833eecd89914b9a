/**
 * Validates and normalises the pool options once, reporting every problem at once with the path of each
 * bad field. Configs may come from untyped sources (JSON, JavaScript callers), so nothing is assumed.
 */
import type { Implementation } from "@modelcontextprotocol/sdk/types.js"
import { Duration, Effect, Option, Predicate, Redacted } from "effect"
import { ConfigError, ConfigIssue } from "../McpPoolError.ts"
import type { McpServerConfig, Protocol, ServerOptions } from "../McpServerConfig.ts"

export interface PoolOptions extends ServerOptions {
  readonly servers: Readonly<Record<string, McpServerConfig>>
  readonly capacity?: number | undefined
  readonly closeTimeout?: Duration.Input | undefined
  readonly clientInfo?: { readonly name: string; readonly version: string } | undefined
  /** A span per `pool.callTool` (OpenTelemetry's MCP conventions); default false. */
  readonly traceToolCalls?: boolean | undefined
}

/** One server's config with every lifecycle setting decided (server's own, else the pool's default). */
export interface ServerPolicy {
  readonly config: McpServerConfig
  readonly connectTimeout: Duration.Duration
  readonly callTimeout: Duration.Duration
  readonly idleTimeToLive: Duration.Duration | undefined
  readonly maxLifetime: Duration.Duration | undefined
  readonly pingAfterIdle: Duration.Duration | undefined
  readonly maxConcurrentCalls: number | undefined
  readonly protocol: Protocol
}

/** Options after validation, durations parsed once. */
export interface ResolvedOptions {
  readonly servers: ReadonlyMap<string, ServerPolicy>
  readonly capacity: number
  readonly closeTimeout: Duration.Duration
  readonly clientInfo: Implementation
  readonly traceToolCalls: boolean
  /** The pool-level defaults, kept to resolve the servers given to `reload`. */
  readonly defaults: PolicyDefaults
}

export const defaultSettings = {
  capacity: 256,
  connectTimeout: "30 seconds",
  callTimeout: "60 seconds",
  closeTimeout: "10 seconds",
  clientInfo: { name: "effect-mcp-pool", version: "0.1.0" }
} as const

/** The longest delay a Node timer honours; past it, it fires after 1 ms. */
export const maxTimerMillis = 2_147_483_647

const protocols: ReadonlyArray<unknown> = ["auto", "2025-11-25", "2026-07-28"] satisfies ReadonlyArray<Protocol>

export const isProtocol = (value: unknown): value is Protocol => protocols.includes(value)

/** What is wrong with a `protocol` value that is not one. */
export const protocolProblem = (value: unknown): string =>
  `expected "auto", "2025-11-25" or "2026-07-28", got ${show(value)}`

class Issues {
  readonly list: Array<ConfigIssue> = []
  add(path: string, message: string): void {
    this.list.push(new ConfigIssue({ path, message }))
  }
  duration(path: string, value: unknown, fallback: Duration.Input): Duration.Duration {
    if (value === undefined) return Duration.fromInputUnsafe(fallback)
    const parsed = decodeDuration(value)
    if (parsed === undefined) {
      this.add(
        path,
        `expected a non-negative duration such as "30 seconds" or a number of milliseconds, got ${show(value)}`
      )
      return Duration.fromInputUnsafe(fallback)
    }
    return parsed
  }
  /**
   * A grace before a signal: it must end, within what a Node timer can wait (a longer delay fires at
   * once). Unset is left to the config's constructor.
   */
  grace(path: string, value: unknown): void {
    const parsed = value === undefined ? undefined : decodeDuration(value)
    if (parsed === undefined) {
      this.duration(path, value, 0) // reports the invalid input, if any
    } else if (!(Duration.toMillis(parsed) <= maxTimerMillis)) {
      this.add(path, `expected a finite duration of at most 24 days, got ${show(value)}`)
    }
  }
  optionalDuration(path: string, value: unknown): Duration.Duration | undefined {
    return value === undefined ? undefined : this.duration(path, value, 0)
  }
  protocol(path: string, value: unknown, fallback: Protocol): Protocol {
    if (value === undefined) return fallback
    if (!isProtocol(value)) {
      this.add(path, protocolProblem(value))
      return fallback
    }
    return value
  }
  optionalPositiveInteger(path: string, value: unknown): number | undefined {
    if (value === undefined) return undefined
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
      this.add(path, `expected a whole number >= 1, got ${show(value)}`)
    }
    return value as number
  }
}

/**
 * A short rendering of a bad value for an error message. Strings are quoted (cut at 40 characters): never
 * pass one that may hold a secret (a URL, a header or env value).
 */
export const show = (value: unknown): string => {
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  if (typeof value === "function") return "a function"
  if (Array.isArray(value)) return "an array"
  if (value === null) return "null"
  return typeof value === "object" ? "an object" : String(value)
}

export const isRecord = (u: unknown): u is Record<string, unknown> => Predicate.isObject(u) && !Array.isArray(u)

const durationFields = [
  "weeks",
  "days",
  "hours",
  "minutes",
  "seconds",
  "milliseconds",
  "microseconds",
  "nanoseconds"
] as const

const knownDurationFields: ReadonlySet<string> = new Set(durationFields)

const isAmount = (u: unknown): u is number => typeof u === "number" && !Number.isNaN(u)

/**
 * Effect reads NaN, `{}`, objects of unknown fields and NaN tuples as zero, which would make every bounded
 * wait fail at once: only inputs that state an amount get through to it. Fields are read, not listed, so
 * Temporal.Duration-like objects (getters) count.
 */
const statesAmount = (value: unknown): boolean => {
  if (typeof value === "number") return !Number.isNaN(value)
  if (Array.isArray(value)) return value.length === 2 && value.every(isAmount)
  if (isRecord(value) && !Duration.isDuration(value)) {
    const fields = value as Partial<Record<typeof durationFields[number], unknown>>
    return Object.keys(value).every((key) => knownDurationFields.has(key)) &&
      durationFields.every((field) => fields[field] === undefined || isAmount(fields[field])) &&
      durationFields.some((field) => fields[field] !== undefined)
  }
  return true // strings, bigints, Durations: Effect itself rejects the invalid ones
}

/**
 * A non-negative `Duration.Input` as a Duration, else `undefined` (also for `undefined`: callers decide
 * what unset means). `Infinity` (number or `"Infinity"`) is no bound; NaN, negatives, `{}` and objects
 * with unknown fields are invalid.
 */
export const decodeDuration = (value: unknown): Duration.Duration | undefined => {
  if (value === undefined || !statesAmount(value)) return undefined
  const parsed = Duration.fromInput(value as Duration.Input)
  return Option.isSome(parsed) && !Duration.isNegative(parsed.value) ? parsed.value : undefined
}

/** Problems of a stdio `args` value, each with the index it concerns (none for the value as a whole). */
const argsIssues = (args: unknown): Array<{ readonly index?: number; readonly message: string }> =>
  Array.isArray(args)
    ? args.flatMap((arg: unknown, index) =>
      typeof arg === "string" ? [] : [{ index, message: `expected a string, got ${show(arg)}` }]
    )
    : [{ message: `expected an array of strings, got ${show(args)}` }]

/** What is wrong with a stdio server's resolved `args` (the first problem), or `undefined`. */
export const checkArgs = (args: unknown): string | undefined => {
  const [first] = argsIssues(args)
  return first === undefined
    ? undefined
    : first.index === undefined
    ? first.message
    : `args[${first.index}]: ${first.message}`
}

/**
 * What is wrong with a server URL, or `undefined`. Never quotes the URL: its query may carry a token. A
 * user name or password in it would reach every error that quotes a request URL: credentials belong in
 * a (Redacted) header.
 */
export const urlProblem = (url: string): string | undefined => {
  if (!URL.canParse(url)) return "expected an http(s) URL, got a string that is not a URL"
  const parsed = new URL(url)
  if (!/^https?:$/.test(parsed.protocol)) return `expected an http(s) URL, got a ${JSON.stringify(parsed.protocol)} URL`
  if (parsed.username !== "" || parsed.password !== "") {
    return "the URL carries a user name or password (user:password@host); send credentials in a Redacted header such as Authorization"
  }
  return undefined
}

const validateServer = (issues: Issues, path: string, config: unknown): void => {
  if (!isRecord(config)) {
    issues.add(path, `expected a server config (McpServerConfig.stdio/http/sse/inMemory/custom), got ${show(config)}`)
    return
  }
  switch (config._tag) {
    case "Stdio": {
      if (typeof config.command !== "string" || config.command.trim() === "") {
        issues.add(`${path}.command`, `expected a non-empty command, got ${show(config.command)}`)
      }
      if (typeof config.args === "function") {
        // checked when it is called, at connect time
      } else if (Array.isArray(config.args)) {
        for (const { index, message } of argsIssues(config.args)) issues.add(`${path}.args[${index}]`, message)
      } else {
        issues.add(`${path}.args`, `expected an array of strings or a function of the scope, got ${show(config.args)}`)
      }
      if (isRecord(config.env)) {
        for (const [name, value] of Object.entries(config.env)) {
          if (name === "" || name.includes("=")) issues.add(`${path}.env`, `invalid variable name ${show(name)}`)
          if (typeof value !== "string" && !Redacted.isRedacted(value)) {
            issues.add(`${path}.env.${name}`, `expected a string or a Redacted string, got ${show(value)}`)
          }
        }
      } else if (typeof config.env !== "function") {
        issues.add(`${path}.env`, `expected an object of strings or a function of the scope, got ${show(config.env)}`)
      }
      if (config.cwd !== undefined && typeof config.cwd !== "string" && typeof config.cwd !== "function") {
        issues.add(`${path}.cwd`, `expected a directory path or a function of the scope, got ${show(config.cwd)}`)
      }
      if (typeof config.inheritEnv !== "boolean") {
        issues.add(`${path}.inheritEnv`, `expected true or false, got ${show(config.inheritEnv)}`)
      }
      if (!["ignore", "inherit", "log"].includes(config.stderr as string)) {
        issues.add(`${path}.stderr`, `expected "ignore", "inherit" or "log", got ${show(config.stderr)}`)
      }
      issues.grace(`${path}.stdinGrace`, config.stdinGrace)
      issues.grace(`${path}.terminateGrace`, config.terminateGrace)
      return
    }
    case "InMemory":
      if (typeof config.makeServer !== "function") {
        issues.add(`${path}.makeServer`, `expected a function returning an McpServer, got ${show(config.makeServer)}`)
      }
      if (config.protocol === "2026-07-28") {
        issues.add(
          `${path}.protocol`,
          "an in-memory server is an SDK 1.32 server, which speaks 2025-11-25 only; serve a 2026-07-28 server over stdio or HTTP"
        )
      }
      return
    case "Http": {
      if (typeof config.url === "string") {
        const problem = urlProblem(config.url)
        if (problem !== undefined) issues.add(`${path}.url`, problem)
      } else if (typeof config.url !== "function") {
        issues.add(`${path}.url`, `expected a URL or a function of the scope, got ${show(config.url)}`)
      }
      if (isRecord(config.headers)) {
        for (const [name, value] of Object.entries(config.headers)) {
          if (typeof value !== "string" && !Redacted.isRedacted(value)) {
            issues.add(`${path}.headers.${name}`, `expected a string or a Redacted string, got ${show(value)}`)
          }
        }
      } else if (typeof config.headers !== "function") {
        issues.add(
          `${path}.headers`,
          `expected an object of strings or a function of the scope, got ${show(config.headers)}`
        )
      }
      if (!["streamable-http", "sse", "auto"].includes(config.transport as string)) {
        issues.add(`${path}.transport`, `expected "streamable-http", "sse" or "auto", got ${show(config.transport)}`)
      }
      if (
        config.authProvider !== undefined && typeof config.authProvider !== "function" &&
        !Predicate.isObject(config.authProvider)
      ) {
        issues.add(
          `${path}.authProvider`,
          `expected an OAuthClientProvider or a function of the scope giving one, got ${show(config.authProvider)}`
        )
      }
      if (config.transport === "sse" && config.protocol === "2026-07-28") {
        issues.add(`${path}.protocol`, "2026-07-28 has no SSE transport: use McpServerConfig.http")
      }
      return
    }
    case "Custom":
      if (typeof config.connect !== "function") {
        issues.add(
          `${path}.connect`,
          `expected a function returning an Effect of a Transport, got ${show(config.connect)}`
        )
      }
      return
    default:
      issues.add(`${path}._tag`, `unknown server kind ${show(config._tag)}; build configs with McpServerConfig.*`)
  }
}

/** The pool-wide lifecycle settings: every server's default. */
export type PolicyDefaults = Omit<ServerPolicy, "config">

const resolvePolicy = (
  issues: Issues,
  path: string,
  config: McpServerConfig,
  defaults: PolicyDefaults
): ServerPolicy => {
  const duration = (key: "connectTimeout" | "callTimeout") =>
    config[key] === undefined ? defaults[key] : issues.duration(`${path}.${key}`, config[key], defaults[key])
  const optional = (key: "idleTimeToLive" | "maxLifetime" | "pingAfterIdle") =>
    config[key] === undefined ? defaults[key] : issues.optionalDuration(`${path}.${key}`, config[key])
  return {
    config,
    connectTimeout: duration("connectTimeout"),
    callTimeout: duration("callTimeout"),
    idleTimeToLive: optional("idleTimeToLive"),
    maxLifetime: optional("maxLifetime"),
    pingAfterIdle: optional("pingAfterIdle"),
    maxConcurrentCalls: config.maxConcurrentCalls === undefined
      ? defaults.maxConcurrentCalls
      : issues.optionalPositiveInteger(`${path}.maxConcurrentCalls`, config.maxConcurrentCalls),
    protocol: issues.protocol(`${path}.protocol`, config.protocol, defaults.protocol)
  }
}

const collectServers = (
  issues: Issues,
  servers: unknown,
  defaults: PolicyDefaults
): Map<string, ServerPolicy> => {
  const resolved = new Map<string, ServerPolicy>()
  if (!isRecord(servers)) {
    issues.add("servers", `expected an object of server configs, got ${show(servers)}`)
    return resolved
  }
  for (const [name, config] of Object.entries(servers)) {
    const path = `servers.${name}`
    if (name.trim() === "") issues.add("servers", "a server name is empty")
    validateServer(issues, path, config)
    if (isRecord(config)) {
      resolved.set(name, resolvePolicy(issues, path, config as unknown as McpServerConfig, defaults))
    }
  }
  return resolved
}

const fail = (source: string, issues: Issues) => Effect.fail(new ConfigError({ source, issues: issues.list }))

export const resolveOptions = (options: PoolOptions, source: string): Effect.Effect<ResolvedOptions, ConfigError> =>
  Effect.suspend(() => {
    const issues = new Issues()
    if (!isRecord(options)) {
      issues.add("(options)", `expected an object with \`servers\`, got ${show(options)}`)
      return fail(source, issues)
    }
    const defaults: PolicyDefaults = {
      connectTimeout: issues.duration("connectTimeout", options.connectTimeout, defaultSettings.connectTimeout),
      callTimeout: issues.duration("callTimeout", options.callTimeout, defaultSettings.callTimeout),
      idleTimeToLive: issues.optionalDuration("idleTimeToLive", options.idleTimeToLive),
      maxLifetime: issues.optionalDuration("maxLifetime", options.maxLifetime),
      pingAfterIdle: issues.optionalDuration("pingAfterIdle", options.pingAfterIdle),
      maxConcurrentCalls: issues.optionalPositiveInteger("maxConcurrentCalls", options.maxConcurrentCalls),
      protocol: issues.protocol("protocol", options.protocol, "auto")
    }
    const servers = collectServers(issues, options.servers, defaults)
    const capacity = options.capacity ?? defaultSettings.capacity
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      issues.add("capacity", `expected a whole number of sessions >= 1, got ${show(capacity)}`)
    }
    if (options.traceToolCalls !== undefined && typeof options.traceToolCalls !== "boolean") {
      issues.add("traceToolCalls", `expected true or false, got ${show(options.traceToolCalls)}`)
    }
    if (
      options.clientInfo !== undefined &&
      (typeof options.clientInfo.name !== "string" || options.clientInfo.name === "")
    ) {
      issues.add("clientInfo.name", `expected a non-empty string, got ${show(options.clientInfo.name)}`)
    }
    const resolved: ResolvedOptions = {
      servers,
      capacity,
      closeTimeout: issues.duration("closeTimeout", options.closeTimeout, defaultSettings.closeTimeout),
      clientInfo: options.clientInfo ?? defaultSettings.clientInfo,
      traceToolCalls: options.traceToolCalls === true,
      defaults
    }
    return issues.list.length === 0 ? Effect.succeed(resolved) : fail(source, issues)
  })

/** The servers given to `reload`, resolved with the pool's defaults. */
export const resolveServers = (
  servers: Readonly<Record<string, McpServerConfig>>,
  defaults: PolicyDefaults,
  source: string
): Effect.Effect<ReadonlyMap<string, ServerPolicy>, ConfigError> =>
  Effect.suspend(() => {
    const issues = new Issues()
    const resolved = collectServers(issues, servers, defaults)
    return issues.list.length === 0 ? Effect.succeed(resolved) : fail(source, issues)
  })

const isPlainRecord = (u: unknown): u is Record<string, unknown> =>
  isRecord(u) && (Object.getPrototypeOf(u) === Object.prototype || Object.getPrototypeOf(u) === null)

/**
 * Structural equality for configs: what `reload` uses to keep sessions whose config did not change.
 * Functions and effects compare by reference (their behaviour cannot be compared), secrets by value.
 */
const sameValue = (a: unknown, b: unknown): boolean => {
  if (a === b) return true
  if (Redacted.isRedacted(a) && Redacted.isRedacted(b)) return Redacted.value(a) === Redacted.value(b)
  if (Duration.isDuration(a) && Duration.isDuration(b)) return Duration.equals(a, b)
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameValue(x, b[i]))
  if (isPlainRecord(a) && isPlainRecord(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)])
    for (const key of keys) if (!sameValue(a[key], b[key])) return false
    return true
  }
  return false
}

export const samePolicy = (a: ServerPolicy, b: ServerPolicy | undefined): boolean => b !== undefined && sameValue(a, b)
