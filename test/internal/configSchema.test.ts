/**
 * The Schema decoders behind the pool options, config files and toolkit options: several bad fields in
 * one input are all reported, each at its (nested) path, and no secret-bearing value is echoed.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { byName, configDecoder, expected, uniqueList } from "../../src/internal/configSchema.ts"
import { resolveOptions } from "../../src/internal/options.ts"
import * as McpConfigFile from "../../src/McpConfigFile.ts"
import type { ConfigError } from "../../src/McpPoolError.ts"
import { McpSessionPool } from "../../src/McpSessionPool.ts"
import * as McpToolkit from "../../src/McpToolkit.ts"

const untyped = (value: unknown): never => value as never
const lines = (error: ConfigError) => error.issues.map((issue) => `${issue.path}: ${issue.message}`)

describe("configSchema", () => {
  it.effect("pool options: every bad field at once, nested paths, in schema order", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        resolveOptions({
          servers: {
            s: untyped({
              _tag: "Stdio",
              command: "x",
              args: ["a", 5],
              env: { "A=B": "x", OK: 1 },
              inheritEnv: true,
              stderr: "log"
            }),
            h: untyped({
              _tag: "Http",
              url: "https://x.example/mcp",
              headers: { Authorization: 7 },
              transport: "auto",
              callTimeout: Number.NaN
            })
          },
          capacity: 0,
          closeTimeout: untyped({})
        }, "test")
      )
      assert.deepStrictEqual(lines(error), [
        "servers.s.args[1]: expected a string, got 5",
        "servers.s.env: invalid variable name \"A=B\"",
        "servers.s.env.OK: expected a string or a Redacted string, got 1",
        "servers.h.headers.Authorization: expected a string or a Redacted string, got 7",
        "servers.h.callTimeout: expected a non-negative duration such as \"30 seconds\" or a number of milliseconds, got NaN",
        "capacity: expected a whole number of sessions >= 1, got 0",
        "closeTimeout: expected a non-negative duration such as \"30 seconds\" or a number of milliseconds, got an object"
      ])
    }))

  it.effect("config file: bad fields of several servers at once; no URL or header value is echoed", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(McpConfigFile.decode({
        servers: {
          a: {
            type: "http",
            url: "ftp://host/?token=url-secret-1",
            headers: { H: "Bearer ${env:TOKEN}${env:NOPE}", N: 1 }
          },
          b: { command: "x", args: ["ok", {}], env: { K: "${input:key}" }, cwd: 5 },
          "c.d": { url: "https://user:pw-secret-2@host/mcp" }
        }
      }, { source: "inline", env: { TOKEN: "env-secret-3" } }))
      assert.deepStrictEqual(error.issues.map((issue) => issue.path), [
        "servers.a.url",
        "servers.a.headers.H",
        "servers.a.headers.N",
        "servers.b.args[1]",
        "servers.b.env.K",
        "servers.b.cwd",
        "servers[\"c.d\"].url"
      ])
      for (const secret of ["url-secret-1", "pw-secret-2", "env-secret-3", "Bearer"]) {
        assert.notInclude(error.message, secret)
        assert.notInclude(JSON.stringify(error), secret)
      }
    }))

  it.effect("an absent required field reads like one given undefined, naming what it should be", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(lines(yield* Effect.flip(resolveOptions(untyped({}), "t"))), [
        "servers: expected an object of server configs, got undefined"
      ])
      const error = yield* Effect.flip(resolveOptions(
        untyped({ servers: { a: { _tag: "Stdio", command: "x" }, b: { _tag: "Http", url: "http://h" } } }),
        "t"
      ))
      assert.includeMembers(lines(error), [
        "servers.a.args: expected an array of strings or a function of the scope, got undefined",
        "servers.a.env: expected an object of strings or a function of the scope, got undefined",
        "servers.b.headers: expected an object of strings or a function of the scope, got undefined"
      ])
      assert.notInclude(error.message, "is required")
    }))

  it.effect("toolkit options: a duplicate, a bad prefix and bad fields are all reported in list order", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        McpToolkit.make(untyped({ servers: [{ server: "a", prefix: 5 }, "a", null], retryDiscoveryAfter: "soon" }))
          .pipe(
            Effect.provide(Layer.succeed(McpSessionPool, untyped({}))),
            Effect.scoped
          )
      )
      assert.deepStrictEqual(error.issues.map((issue) => issue.path), [
        "servers[0].prefix",
        "servers[1]",
        "servers[2]",
        "retryDiscoveryAfter"
      ])
      assert.include(lines(error)[1], `server "a" is listed twice`)
    }))

  it.effect("the combinators: entries by name, unique lists, a missing field, the root", () =>
    Effect.gen(function*() {
      const decode = configDecoder(
        Schema.Struct({
          name: expected((u): u is string => typeof u === "string", "a name"),
          tags: uniqueList(expected((u): u is string => typeof u === "string", "a tag"), {
            what: "a list of tags",
            empty: "expected a tag",
            nameOf: (u) => typeof u === "string" ? u : undefined,
            repeated: (tag) => `tag ${tag} twice`
          }),
          env: byName(expected((u): u is string => typeof u === "string", "a string"), {
            what: "an object",
            nameProblem: (name) => name === "" ? "an empty name" : undefined
          })
        }),
        "(test)"
      )
      const error = yield* Effect.flip(decode({ tags: ["x", 1, "x"], env: { "": "a", "b c": 2 } }, "test"))
      assert.deepStrictEqual(lines(error), [
        "name: expected a name, got undefined",
        "tags[1]: expected a tag, got 1",
        "tags[2]: tag x twice",
        "env: an empty name",
        "env[\"b c\"]: expected a string, got 2"
      ])
      const root = yield* Effect.flip(decode(null, "test"))
      assert.deepStrictEqual(root.issues.map((issue) => issue.path), ["(test)"])
    }))
})
