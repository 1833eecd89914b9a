/**
 * Validates and normalises the pool options once, reporting every problem at once with the path of each
 * bad field. Configs may come from untyped sources (JSON, JavaScript callers), so nothing is assumed.
 */
import { Duration, Effect, Option, Predicate, Redacted } from "effect"
import { ConfigError, ConfigIssue } from "../McpPoolError.ts"
import type { McpServerConfig } from "../McpServerConfig.ts"
import type { ResolvedOptions } from "./pool.ts"

export interface PoolOptions {
  readonly servers: Readonly<Record<string, McpServerConfig>>
  readonly capacity?: number | undefined
  readonly connectTimeout?: Duration.Input | undefined
  readonly callTimeout?: Duration.Input | undefined
  readonly closeTimeout?: Duration.Input | undefined
  readonly clientInfo?: { readonly name: string; readonly version: string } | undefined
}

export const defaults = {
  capacity: 256,
  connectTimeout: "30 seconds",
  callTimeout: "60 seconds",
  closeTimeout: "10 seconds",
  clientInfo: { name: "effect-mcp-pool", version: "0.1.0" }
} as const

class Issues {
  readonly list: Array<ConfigIssue> = []
  add(path: string, message: string): void {
    this.list.push(new ConfigIssue({ path, message }))
  }
  duration(path: string, value: unknown, fallback: Duration.Input): Duration.Duration {
    if (value === undefined) return Duration.fromInputUnsafe(fallback)
    const parsed = Duration.fromInput(value as Duration.Input)
    if (Option.isNone(parsed) || Duration.isNegative(parsed.value)) {
      this.add(
        path,
        `expected a non-negative duration such as "30 seconds" or a number of milliseconds, got ${show(value)}`
      )
      return Duration.fromInputUnsafe(fallback)
    }
    return parsed.value
  }
  optionalDuration(path: string, value: unknown): void {
    if (value !== undefined) this.duration(path, value, 0)
  }
}

const show = (value: unknown): string => {
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  if (typeof value === "function") return "a function"
  if (Array.isArray(value)) return "an array"
  if (value === null) return "null"
  return typeof value === "object" ? "an object" : String(value)
}

const isRecord = (u: unknown): u is Record<string, unknown> => Predicate.isObject(u) && !Array.isArray(u)

const validateServer = (issues: Issues, path: string, config: unknown): void => {
  if (!isRecord(config)) {
    issues.add(path, `expected a server config (McpServerConfig.stdio/http/sse/inMemory/custom), got ${show(config)}`)
    return
  }
  issues.optionalDuration(`${path}.connectTimeout`, config.connectTimeout)
  issues.optionalDuration(`${path}.callTimeout`, config.callTimeout)
  switch (config._tag) {
    case "Stdio": {
      if (typeof config.command !== "string" || config.command.trim() === "") {
        issues.add(`${path}.command`, `expected a non-empty command, got ${show(config.command)}`)
      }
      if (!Array.isArray(config.args)) {
        issues.add(`${path}.args`, `expected an array of strings, got ${show(config.args)}`)
      } else {
        config.args.forEach((arg, i) => {
          if (typeof arg !== "string") issues.add(`${path}.args[${i}]`, `expected a string, got ${show(arg)}`)
        })
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
      if (!["ignore", "inherit", "log"].includes(config.stderr as string)) {
        issues.add(`${path}.stderr`, `expected "ignore", "inherit" or "log", got ${show(config.stderr)}`)
      }
      issues.duration(`${path}.stdinGrace`, config.stdinGrace, 0)
      issues.duration(`${path}.terminateGrace`, config.terminateGrace, 0)
      return
    }
    case "InMemory":
      if (typeof config.makeServer !== "function") {
        issues.add(`${path}.makeServer`, `expected a function returning an McpServer, got ${show(config.makeServer)}`)
      }
      return
    case "Http": {
      if (typeof config.url === "string") {
        if (!URL.canParse(config.url) || !/^https?:$/.test(new URL(config.url).protocol)) {
          issues.add(`${path}.url`, `expected an http(s) URL, got ${show(config.url)}`)
        }
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

export const resolveOptions = (options: PoolOptions, source: string): Effect.Effect<ResolvedOptions, ConfigError> =>
  Effect.suspend(() => {
    const issues = new Issues()
    const servers = new Map<string, McpServerConfig>()
    if (!isRecord(options.servers)) {
      issues.add("servers", `expected an object of server configs, got ${show(options.servers)}`)
    } else {
      for (const [name, config] of Object.entries(options.servers)) {
        if (name.trim() === "") issues.add("servers", "a server name is empty")
        validateServer(issues, `servers.${name}`, config)
        servers.set(name, config)
      }
    }
    const capacity = options.capacity ?? defaults.capacity
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      issues.add("capacity", `expected a whole number of sessions >= 1, got ${show(capacity)}`)
    }
    const resolved: ResolvedOptions = {
      servers,
      capacity,
      connectTimeout: issues.duration("connectTimeout", options.connectTimeout, defaults.connectTimeout),
      callTimeout: issues.duration("callTimeout", options.callTimeout, defaults.callTimeout),
      closeTimeout: issues.duration("closeTimeout", options.closeTimeout, defaults.closeTimeout),
      clientInfo: options.clientInfo ?? defaults.clientInfo
    }
    if (
      options.clientInfo !== undefined &&
      (typeof options.clientInfo.name !== "string" || options.clientInfo.name === "")
    ) {
      issues.add("clientInfo.name", `expected a non-empty string, got ${show(options.clientInfo.name)}`)
    }
    return issues.list.length === 0
      ? Effect.succeed(resolved)
      : Effect.fail(new ConfigError({ source, issues: issues.list }))
  })
