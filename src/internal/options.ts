/**
 * Decodes and normalises the pool options once with effect's Schema, reporting every problem at once with
 * the path of each bad field. Configs may come from untyped sources (JSON, JavaScript callers), so nothing
 * is assumed.
 */
import type { Implementation } from "@modelcontextprotocol/sdk/types.js"
import { Duration, Effect, Option, Predicate, Redacted, Result, Schema, SchemaParser } from "effect"
import type { ConfigError } from "../McpPoolError.ts"
import type { McpServerConfig, Protocol, ServerOptions } from "../McpServerConfig.ts"
import {
  AnyFunction,
  byName,
  configDecoder,
  expected,
  guarded,
  isFunction,
  isRecord,
  objectOf,
  optionalField,
  parsed,
  reject,
  select,
  show,
  toConfigIssues
} from "./configSchema.ts"

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

const isProtocol = (value: unknown): value is Protocol => protocols.includes(value)

/** `protocol`: the MCP revision (see `McpServerConfig.Protocol`). */
export const ProtocolInput = expected(isProtocol, `"auto", "2025-11-25" or "2026-07-28"`)

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

/** A `Duration.Input` field, parsed once into a Duration; `problem` says what is wrong with a bad value. */
export const durationInput = (problem: (value: unknown) => string) =>
  parsed((u) => {
    const duration = decodeDuration(u)
    return duration === undefined ? Result.fail(problem(u)) : Result.succeed(duration)
  })

const DurationInput = durationInput((value) =>
  `expected a non-negative duration such as "30 seconds" or a number of milliseconds, got ${show(value)}`
)

/**
 * A grace before a signal: it must end, within what a Node timer can wait (a longer delay fires at
 * once). Unset is left to the config's constructor.
 */
const Grace = parsed((u) => {
  const duration = decodeDuration(u)
  if (duration === undefined) {
    return Result.fail(
      `expected a non-negative duration such as "30 seconds" or a number of milliseconds, got ${show(u)}`
    )
  }
  return Duration.toMillis(duration) <= maxTimerMillis
    ? Result.succeed(duration)
    : Result.fail(`expected a finite duration of at most 24 days, got ${show(u)}`)
})

const isWholeNumber = (u: unknown): u is number => typeof u === "number" && Number.isSafeInteger(u) && u >= 1

const StringArray = Schema.Array(expected(Predicate.isString, "a string"))

// Wrapped in a struct so that an element's issue reads `args[1]`.
const decodeArgs = SchemaParser.decodeUnknownResult(
  Schema.Struct({ args: guarded(StringArray, Array.isArray, "an array of strings") })
)

/** What is wrong with a stdio server's resolved `args` (the first problem), or `undefined`. */
export const checkArgs = (args: unknown): string | undefined => {
  const result = decodeArgs({ args })
  if (Result.isSuccess(result)) return undefined
  const [first] = toConfigIssues(result.failure, "args")
  return first === undefined ? undefined : first.path === "args" ? first.message : `${first.path}: ${first.message}`
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

// --- the schemas ---

/** The lifecycle fields every server config has; unset ones take the pool's defaults. */
const policyFields = {
  connectTimeout: optionalField(DurationInput),
  callTimeout: optionalField(DurationInput),
  idleTimeToLive: optionalField(DurationInput),
  maxLifetime: optionalField(DurationInput),
  pingAfterIdle: optionalField(DurationInput),
  maxConcurrentCalls: optionalField(expected(isWholeNumber, "a whole number >= 1")),
  protocol: optionalField(ProtocolInput)
}

const StringOrRedacted = expected(
  (u): u is string | Redacted.Redacted<string> => typeof u === "string" || Redacted.isRedacted(u),
  "a string or a Redacted string"
)

/** `entries` (an object), or a function of the scope that gives them at connect time. */
const entriesOrFunction = <S extends Schema.Constraint>(entries: S, what: string) =>
  select({ function: AnyFunction, entries }, (u) => isFunction(u) ? "function" : "entries", what)

const stringsOrFunction = "an array of strings or a function of the scope"
const entriesOfStringsOrFunction = "an object of strings or a function of the scope"

const Stdio = Schema.Struct({
  command: expected(
    (u): u is string => typeof u === "string" && u.trim() !== "",
    "a non-empty command"
  ),
  args: entriesOrFunction(guarded(StringArray, Array.isArray, stringsOrFunction), stringsOrFunction),
  env: entriesOrFunction(
    byName(StringOrRedacted, {
      what: entriesOfStringsOrFunction,
      nameProblem: (name) => name === "" || name.includes("=") ? `invalid variable name ${show(name)}` : undefined
    }),
    entriesOfStringsOrFunction
  ),
  cwd: optionalField(expected(
    (u): u is string | ((scope: string) => string) => typeof u === "string" || isFunction(u),
    "a directory path or a function of the scope"
  )),
  inheritEnv: expected(Predicate.isBoolean, "true or false"),
  stderr: expected(
    (u): u is "ignore" | "inherit" | "log" => u === "ignore" || u === "inherit" || u === "log",
    `"ignore", "inherit" or "log"`
  ),
  stdinGrace: optionalField(Grace),
  terminateGrace: optionalField(Grace),
  ...policyFields
})

const InMemory = Schema.Struct({
  makeServer: expected(isFunction, "a function returning an McpServer"),
  ...policyFields,
  protocol: optionalField(parsed((u) =>
    u === "2026-07-28"
      ? Result.fail(
        "an in-memory server is an SDK 1.32 server, which speaks 2025-11-25 only; serve a 2026-07-28 server over stdio or HTTP"
      )
      : isProtocol(u)
      ? Result.succeed(u)
      : Result.fail(`expected "auto", "2025-11-25" or "2026-07-28", got ${show(u)}`)
  ))
})

const Http = Schema.Struct({
  // Never quoted: a URL may carry a token.
  url: parsed<string | ((scope: string) => unknown)>(
    (u) => {
      if (isFunction(u)) return Result.succeed(u as (scope: string) => unknown)
      if (typeof u !== "string") return Result.fail(`expected a URL or a function of the scope, got ${show(u)}`)
      const problem = urlProblem(u)
      return problem === undefined ? Result.succeed(u) : Result.fail(problem)
    },
    "expected a URL or a function of the scope, got undefined"
  ),
  headers: entriesOrFunction(
    byName(StringOrRedacted, { what: entriesOfStringsOrFunction }),
    entriesOfStringsOrFunction
  ),
  transport: expected(
    (u): u is "streamable-http" | "sse" | "auto" => u === "streamable-http" || u === "sse" || u === "auto",
    `"streamable-http", "sse" or "auto"`
  ),
  authProvider: optionalField(expected(
    (u): u is object => isFunction(u) || Predicate.isObject(u),
    "an OAuthClientProvider or a function of the scope giving one"
  )),
  ...policyFields
}).check(Schema.makeFilter((config) =>
  config.transport === "sse" && config.protocol === "2026-07-28"
    ? { path: ["protocol"], issue: "2026-07-28 has no SSE transport: use McpServerConfig.http" }
    : undefined
))

const Custom = Schema.Struct({
  connect: expected(isFunction, "a function returning an Effect of a Transport"),
  ...policyFields
})

const serverKinds = { Stdio, InMemory, Http, Custom }

const Server = select(serverKinds, (u) => {
  if (!isRecord(u)) {
    return reject(`expected a server config (McpServerConfig.stdio/http/sse/inMemory/custom), got ${show(u)}`)
  }
  return typeof u._tag === "string" && Object.hasOwn(serverKinds, u._tag)
    ? u._tag as keyof typeof serverKinds
    : reject(`unknown server kind ${show(u._tag)}; build configs with McpServerConfig.*`, ["_tag"])
})

const Servers = byName(Server, {
  what: "an object of server configs",
  nameProblem: (name) => name.trim() === "" ? "a server name is empty" : undefined
})

const Options = objectOf(
  Schema.Struct({
    // The pool's own lifecycle settings are every server's defaults.
    ...policyFields,
    servers: Servers,
    capacity: optionalField(expected(isWholeNumber, "a whole number of sessions >= 1")),
    traceToolCalls: optionalField(expected(Predicate.isBoolean, "true or false")),
    clientInfo: optionalField(objectOf(
      Schema.Struct({ name: expected((u): u is string => typeof u === "string" && u !== "", "a non-empty string") }),
      "an object with a `name` and a `version`"
    )),
    closeTimeout: optionalField(DurationInput)
  }),
  "an object with `servers`"
)

const decodeOptions = configDecoder(Options, "(options)")

// `reload` gives the servers alone; wrapped, their paths read as in the pool's options.
const decodeServers = configDecoder(Schema.Struct({ servers: Servers }), "(servers)")

/** The pool-wide lifecycle settings: every server's default. */
export type PolicyDefaults = Omit<ServerPolicy, "config">

const defaultDurations = {
  connectTimeout: Duration.fromInputUnsafe(defaultSettings.connectTimeout),
  callTimeout: Duration.fromInputUnsafe(defaultSettings.callTimeout),
  closeTimeout: Duration.fromInputUnsafe(defaultSettings.closeTimeout)
}

/** Each server's policy: its own settings, else the pool's defaults. */
const resolvePolicies = (
  servers: typeof Servers.Type,
  defaults: PolicyDefaults
): Map<string, ServerPolicy> =>
  new Map(servers.map(([name, { input, value }]) => [name, {
    // The config as given: its functions, effects and Redacted values are the caller's.
    config: input as McpServerConfig,
    connectTimeout: value.connectTimeout ?? defaults.connectTimeout,
    callTimeout: value.callTimeout ?? defaults.callTimeout,
    idleTimeToLive: value.idleTimeToLive ?? defaults.idleTimeToLive,
    maxLifetime: value.maxLifetime ?? defaults.maxLifetime,
    pingAfterIdle: value.pingAfterIdle ?? defaults.pingAfterIdle,
    maxConcurrentCalls: value.maxConcurrentCalls ?? defaults.maxConcurrentCalls,
    protocol: value.protocol ?? defaults.protocol
  }]))

export const resolveOptions = (options: PoolOptions, source: string): Effect.Effect<ResolvedOptions, ConfigError> =>
  Effect.map(decodeOptions(options, source), (decoded) => {
    const defaults: PolicyDefaults = {
      connectTimeout: decoded.connectTimeout ?? defaultDurations.connectTimeout,
      callTimeout: decoded.callTimeout ?? defaultDurations.callTimeout,
      idleTimeToLive: decoded.idleTimeToLive,
      maxLifetime: decoded.maxLifetime,
      pingAfterIdle: decoded.pingAfterIdle,
      maxConcurrentCalls: decoded.maxConcurrentCalls,
      protocol: decoded.protocol ?? "auto"
    }
    return {
      servers: resolvePolicies(decoded.servers, defaults),
      capacity: decoded.capacity ?? defaultSettings.capacity,
      closeTimeout: decoded.closeTimeout ?? defaultDurations.closeTimeout,
      clientInfo: options.clientInfo ?? defaultSettings.clientInfo,
      traceToolCalls: decoded.traceToolCalls === true,
      defaults
    }
  })

/** The servers given to `reload`, resolved with the pool's defaults. */
export const resolveServers = (
  servers: Readonly<Record<string, McpServerConfig>>,
  defaults: PolicyDefaults,
  source: string
): Effect.Effect<ReadonlyMap<string, ServerPolicy>, ConfigError> =>
  Effect.map(decodeServers({ servers }, source), (decoded) => resolvePolicies(decoded.servers, defaults))

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
