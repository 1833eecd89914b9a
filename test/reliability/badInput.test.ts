/**
 * Bad input: unknown servers, invalid configs (every field), configs that are valid but cannot connect,
 * invalid tool arguments, huge results, odd scope keys. Every case is a clear typed error (or a result),
 * nothing crashes, and the pool keeps serving afterwards.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Layer, References } from "effect"
import { fileURLToPath } from "node:url"
import { checkArgs, decodeDuration } from "../../src/internal/options.ts"
import { ConfigError } from "../../src/McpPoolError.ts"
import * as McpServerConfig from "../../src/McpServerConfig.ts"
import * as McpSessionPool from "../../src/McpSessionPool.ts"
import type { Options } from "../../src/McpSessionPool.ts"
import { firstText } from "../utils/probe.ts"
import { makeTracker } from "../utils/tracked.ts"

const fixture = fileURLToPath(new URL("../fixtures/fault-server.ts", import.meta.url))

const makePool = (options: Options) =>
  McpSessionPool.make(options).pipe(
    Effect.provideService(References.MinimumLogLevel, "None")
  )

/** Input as it may arrive from JSON or JavaScript: anything at all, past the type checker. */
const untyped = (value: unknown): never => value as never

const errorOf = <A, E extends { readonly _tag: string }, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.exit(effect), (exit) => {
    assert.isTrue(Exit.isFailure(exit), "expected a failure")
    const error = Exit.findErrorOption(exit)
    assert.strictEqual(error._tag, "Some", `expected a typed error, got ${String(exit)}`)
    return (error as { readonly value: E }).value
  })

describe("reliability: bad input", () => {
  it.effect("unknown servers, including names on Object.prototype, are UnknownServer naming the known ones", () =>
    Effect.gen(function*() {
      const tracker = makeTracker()
      const pool = yield* makePool({ servers: Object.fromEntries([["__proto__", tracker.config("__proto__")]]) })
      for (const server of ["nope", "", "toString", "constructor", "hasOwnProperty"]) {
        const error = yield* errorOf(pool.callTool({ server, scope: "t", name: "whoami" }))
        assert.strictEqual(error._tag, "UnknownServer")
        assert.include(error.message, `"__proto__"`)
        assert.strictEqual(
          yield* errorOf(Effect.scoped(pool.get({ server, scope: "t" }))).pipe(Effect.map((e) => e._tag)),
          "UnknownServer"
        )
      }
      // A server literally named "__proto__" is just a name.
      const result = yield* pool.callTool({ server: "__proto__", scope: "t", name: "whoami" })
      assert.strictEqual(tracker.byId(firstText(result))?.server, "__proto__")
    }))

  it.effect("every invalid field is reported at once, with its path", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(makePool({
        servers: {
          s: untyped({
            _tag: "Stdio",
            command: "",
            args: "x",
            env: 5,
            cwd: 5,
            inheritEnv: false,
            stderr: "loud",
            stdinGrace: "soon",
            terminateGrace: -1,
            connectTimeout: "x",
            callTimeout: -5,
            idleTimeToLive: "never",
            maxLifetime: "x",
            pingAfterIdle: "x",
            maxConcurrentCalls: 0
          }),
          s2: untyped({
            _tag: "Stdio",
            command: 5,
            args: [1],
            env: { "": "x", "A=B": "y", OK: 5 },
            inheritEnv: false,
            stderr: "ignore",
            stdinGrace: 0,
            terminateGrace: 0,
            maxConcurrentCalls: 1.5
          }),
          m: untyped({ _tag: "InMemory", makeServer: "nope" }),
          h: untyped({ _tag: "Http", url: "ftp://x", headers: { A: 5 }, transport: "carrier-pigeon" }),
          h2: untyped({ _tag: "Http", url: "not a url", headers: 5, transport: "sse" }),
          h3: untyped({ _tag: "Http", url: 5, headers: {}, transport: "sse" }),
          c: untyped({ _tag: "Custom", connect: "nope" }),
          u: untyped({ _tag: "Carrier" }),
          n: untyped(null),
          str: untyped("npx server"),
          "  ": McpServerConfig.stdio({ command: "x" })
        },
        capacity: 0,
        connectTimeout: untyped("forever"),
        callTimeout: -1,
        idleTimeToLive: untyped("x"),
        maxLifetime: untyped("x"),
        pingAfterIdle: untyped("x"),
        maxConcurrentCalls: -1,
        closeTimeout: untyped("x"),
        clientInfo: { name: "", version: "1" }
      }))
      assert.instanceOf(error, ConfigError)
      assert.deepStrictEqual([...new Set(error.issues.map((issue) => issue.path))].sort(), [
        "callTimeout",
        "capacity",
        "clientInfo.name",
        "closeTimeout",
        "connectTimeout",
        "idleTimeToLive",
        "maxConcurrentCalls",
        "maxLifetime",
        "pingAfterIdle",
        "servers",
        "servers.c.connect",
        "servers.h.headers.A",
        "servers.h.transport",
        "servers.h.url",
        "servers.h2.headers",
        "servers.h2.url",
        "servers.h3.url",
        "servers.m.makeServer",
        "servers.n",
        "servers.s.args",
        "servers.s.callTimeout",
        "servers.s.command",
        "servers.s.connectTimeout",
        "servers.s.cwd",
        "servers.s.env",
        "servers.s.idleTimeToLive",
        "servers.s.maxConcurrentCalls",
        "servers.s.maxLifetime",
        "servers.s.pingAfterIdle",
        "servers.s.stderr",
        "servers.s.stdinGrace",
        "servers.s.terminateGrace",
        "servers.s2.args[0]",
        "servers.s2.command",
        "servers.s2.env",
        "servers.s2.env.OK",
        "servers.s2.maxConcurrentCalls",
        "servers.str",
        "servers.u._tag"
      ])
      // Each line names the field and shows the bad value.
      assert.include(error.message, `servers.s.stderr: expected "ignore", "inherit" or "log", got "loud"`)
    }))

  it.effect("durations Effect would read as zero (NaN, {}, unknown fields, NaN tuples) are ConfigErrors naming each field", () =>
    Effect.gen(function*() {
      const durationFields = ["connectTimeout", "callTimeout", "idleTimeToLive", "maxLifetime", "pingAfterIdle"]
      const bad = [
        Number.NaN, // Number(process.env.UNSET)
        Number.NEGATIVE_INFINITY,
        {},
        { secs: 5 },
        { seconds: 5, label: "x" },
        { seconds: Number.NaN },
        { seconds: "5" },
        { seconds: undefined },
        [Number.NaN, 0],
        [5],
        "infinity", // Effect spells it "Infinity"
        "5 secs",
        true,
        null
      ]
      for (const value of bad) {
        const fields = Object.fromEntries(durationFields.map((key) => [key, value]))
        const error = yield* Effect.flip(makePool({
          servers: {
            s: untyped({
              ...McpServerConfig.stdio({ command: "x" }),
              ...fields,
              stdinGrace: value,
              terminateGrace: value
            }),
            h: untyped({ ...McpServerConfig.http({ url: "http://127.0.0.1/mcp" }), ...fields })
          },
          ...fields,
          closeTimeout: untyped(value)
        }))
        assert.instanceOf(error, ConfigError)
        assert.deepStrictEqual(
          error.issues.map((issue) => issue.path).sort(),
          [
            ...durationFields,
            "closeTimeout",
            ...durationFields.map((key) => `servers.h.${key}`),
            ...durationFields.map((key) => `servers.s.${key}`),
            "servers.s.stdinGrace",
            "servers.s.terminateGrace"
          ].sort(),
          String(value)
        )
      }
    }))

  it.effect("a stdio grace must end: an infinite one, or one longer than a Node timer can wait, is a ConfigError", () =>
    Effect.gen(function*() {
      for (const grace of ["Infinity", Number.POSITIVE_INFINITY, "25 days"]) {
        const error = yield* Effect.flip(makePool({
          servers: {
            s: McpServerConfig.stdio({ command: "x", stdinGrace: untyped(grace), terminateGrace: untyped(grace) })
          }
        }))
        assert.deepStrictEqual(error.issues.map((issue) => issue.path), [
          "servers.s.stdinGrace",
          "servers.s.terminateGrace"
        ])
      }
      assert.isDefined(
        yield* makePool({
          servers: { s: McpServerConfig.stdio({ command: "x", stdinGrace: "24 days", terminateGrace: 0 }) }
        })
      )
    }))

  it.effect("every valid Duration.Input is accepted, Infinity (number or string) meaning no bound", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [unknown, Duration.Duration]> = [
        [0, Duration.zero],
        [1500, Duration.millis(1500)],
        [0.5, Duration.micros(500n)],
        [Number.POSITIVE_INFINITY, Duration.infinity],
        ["Infinity", Duration.infinity],
        [5_000_000_000n, Duration.seconds(5)],
        ["5 seconds", Duration.seconds(5)],
        ["1.5 minutes", Duration.seconds(90)],
        [Duration.seconds(5), Duration.seconds(5)],
        [[1, 500_000_000], Duration.millis(1500)],
        [{ seconds: 5 }, Duration.seconds(5)],
        [{ minutes: 1, milliseconds: 500, hours: undefined }, Duration.millis(60_500)],
        [{ seconds: 0 }, Duration.zero]
      ]
      for (const [input, expected] of cases) {
        const parsed = decodeDuration(input)
        assert.isTrue(parsed !== undefined && Duration.equals(parsed, expected), `${String(input)} → ${String(parsed)}`)
        const pool = yield* makePool({
          servers: {
            s: untyped({ ...McpServerConfig.stdio({ command: "x" }), idleTimeToLive: input, callTimeout: input })
          },
          callTimeout: untyped(input),
          closeTimeout: untyped(input)
        })
        assert.isDefined(pool)
      }
      for (const input of [Number.NaN, -1, "-5 seconds", {}, [Number.NaN, 0], undefined, "Infinity seconds"]) {
        assert.isUndefined(decodeDuration(input), String(input))
      }
    }))

  it.effect("stdio args: an array of strings or a function of the scope; anything else is a ConfigError", () =>
    Effect.gen(function*() {
      const perScope = McpServerConfig.stdio({ command: "x", args: (scope) => ["--user-data-dir", `/tmp/${scope}`] })
      assert.isDefined(yield* makePool({ servers: { s: perScope } }))
      const error = yield* Effect.flip(makePool({
        servers: {
          notArray: untyped({ ...McpServerConfig.stdio({ command: "x" }), args: 5 }),
          badItem: untyped({ ...McpServerConfig.stdio({ command: "x" }), args: ["ok", null] })
        }
      }))
      assert.deepStrictEqual(error.issues.map((issue) => issue.path), [
        "servers.notArray.args",
        "servers.badItem.args[1]"
      ])
      // What session.ts checks a function's result with, at connect time.
      assert.isUndefined(checkArgs(["a", "b"]))
      assert.isUndefined(checkArgs([]))
      assert.strictEqual(checkArgs("--headless"), `expected an array of strings, got "--headless"`)
      assert.strictEqual(checkArgs(["a", 5]), "args[1]: expected a string, got 5")
    }))

  it.effect("capacity and `servers` of the wrong shape are ConfigErrors", () =>
    Effect.gen(function*() {
      for (const capacity of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, untyped("3")] as Array<number>) {
        const error = yield* Effect.flip(makePool({ servers: {}, capacity }))
        assert.deepStrictEqual(error.issues.map((issue) => issue.path), ["capacity"])
      }
      for (const servers of [null, [], "x", undefined]) {
        const error = yield* Effect.flip(makePool({ servers: untyped(servers) }))
        assert.deepStrictEqual(error.issues.map((issue) => issue.path), ["servers"])
      }
    }))

  it.effect("an invalid layer fails to build with the ConfigError; a rejected reload keeps the old configs", () =>
    Effect.gen(function*() {
      const built = yield* Effect.exit(Layer.build(McpSessionPool.layer({ servers: {}, capacity: -3 })))
      assert.strictEqual(Exit.findErrorOption(built).pipe((e) => e._tag === "Some" && e.value._tag), "ConfigError")
      const tracker = makeTracker()
      const pool = yield* makePool({ servers: { a: tracker.config("a") } })
      yield* pool.callTool({ server: "a", scope: "t", name: "whoami" })
      const error = yield* Effect.flip(pool.reload({ a: untyped({ _tag: "Stdio", command: "" }) }))
      assert.instanceOf(error, ConfigError)
      assert.strictEqual(firstText(yield* pool.callTool({ server: "a", scope: "t", name: "whoami" })), "1")
      assert.strictEqual(tracker.records.length, 1)
    }))

  it.effect("valid configs that cannot connect are ConnectErrors saying why", () =>
    Effect.gen(function*() {
      const pool = yield* makePool({
        servers: {
          noCommand: McpServerConfig.stdio({ command: "/nonexistent/mcp-server" }),
          noCwd: McpServerConfig.stdio({ command: process.execPath, args: [fixture], cwd: "/nonexistent/dir" }),
          envThrows: McpServerConfig.stdio({
            command: process.execPath,
            env: () => {
              throw new Error("env boom")
            }
          }),
          factoryThrows: McpServerConfig.inMemory(() => {
            throw new Error("factory boom")
          }),
          connectThrows: McpServerConfig.custom(() => {
            throw new Error("connect boom")
          }),
          connectNotEffect: McpServerConfig.custom(untyped(() => null))
        }
      })
      const cases = {
        noCommand: "could not start",
        noCwd: "could not start",
        envThrows: "function threw: env boom",
        factoryThrows: "factory threw",
        connectThrows: "connect threw: connect boom",
        connectNotEffect: "connect must return an Effect"
      }
      for (const [server, reason] of Object.entries(cases)) {
        const error = yield* errorOf(pool.callTool({ server, scope: "t", name: "whoami" }))
        assert.strictEqual(error._tag, "ConnectError", server)
        assert.include(error.message, reason)
        assert.include(error.message, `"${server}"`)
      }
    }))

  it.effect("invalid tool arguments are tool errors or protocol errors; the session stays", () =>
    Effect.gen(function*() {
      const tracker = makeTracker()
      const pool = yield* makePool({
        servers: {
          mem: tracker.config("mem"),
          stdio: McpServerConfig.stdio({ command: process.execPath, args: [fixture] })
        }
      })
      const call = (server: string, name: string, args: unknown) =>
        Effect.exit(pool.callTool({ server, scope: "t", name: untyped(name), arguments: args as never }))
      const identity = (server: string) =>
        Effect.map(pool.callTool({ server, scope: "t", name: "whoami" }), (result) => firstText(result))
      const circular: Record<string, unknown> = { text: "x" }
      circular.self = circular
      for (const server of ["mem", "stdio"]) {
        const before = yield* identity(server)
        const outcomes = yield* Effect.forEach([
          call(server, "echo", { text: 5 }),
          call(server, "no_such_tool", {}),
          call(server, "echo", [1, 2]),
          call(server, "echo", "hello"),
          call(server, "echo", { text: 10n }),
          call(server, "echo", circular),
          call(server, untyped(5), {})
        ], (effect) => effect)
        for (const exit of outcomes) {
          if (Exit.isSuccess(exit)) continue // the SDK's servers answer bad arguments with an `isError` result
          const error = Exit.findErrorOption(exit)
          assert.strictEqual(error._tag === "Some" && error.value._tag, "McpProtocolError", String(exit))
        }
        const badArgs = outcomes[0]!
        if (Exit.isSuccess(badArgs)) assert.isTrue(badArgs.value.isError)
        assert.strictEqual(yield* identity(server), before, "the session survived the bad calls")
      }
    }))

  it.effect("a 10 MB in-memory result arrives whole", () =>
    Effect.gen(function*() {
      const tracker = makeTracker()
      const pool = yield* makePool({ servers: { mem: tracker.config("mem") } })
      const result = yield* pool.callTool({ server: "mem", scope: "t", name: "big", arguments: { bytes: 10_000_000 } })
      assert.strictEqual(firstText(result).length, 10_000_000)
    }))

  it.effect("odd scope keys (empty, NUL, newline, unicode, 100 KB, prototype names) are keys like any other", () =>
    Effect.gen(function*() {
      const tracker = makeTracker()
      const pool = yield* makePool({ servers: { mem: tracker.config("mem") }, capacity: 64 })
      const scopes = [
        "",
        "\u0000",
        "a\nb",
        "🧵👩‍👩‍👧",
        "\u202Eright-to-left",
        "x".repeat(100_000),
        "__proto__",
        "constructor"
      ]
      const whoami = (scope: string) =>
        Effect.map(
          pool.callTool({ server: "mem", scope, name: "whoami" }),
          (result) => tracker.byId(firstText(result))!
        )
      const first = yield* Effect.forEach(scopes, whoami)
      assert.deepStrictEqual(first.map((record) => record.scope), scopes)
      assert.strictEqual(new Set(first.map((record) => record.id)).size, scopes.length)
      assert.deepStrictEqual((yield* Effect.forEach(scopes, whoami)).map((record) => record.id), first.map((r) => r.id))
      yield* pool.closeScope("")
      assert.deepStrictEqual((yield* pool.snapshot).map((row) => row.scope).sort(), scopes.slice(1).sort())
    }))

  it.live(
    "odd scope keys reach a stdio server's environment; one it cannot carry (NUL) is a ConnectError",
    () =>
      Effect.gen(function*() {
        const pool = yield* makePool({
          servers: {
            stdio: McpServerConfig.stdio({
              command: process.execPath,
              args: [fixture],
              env: (scope) => ({ SCOPE: scope })
            })
          }
        })
        for (const scope of ["", "a\nb", "🧵 ü", "x".repeat(50_000)]) {
          const text = firstText(yield* pool.callTool({ server: "stdio", scope, name: "whoami" }))
          assert.strictEqual(text.slice(text.indexOf(" ") + 1), scope)
        }
        const error = yield* errorOf(pool.callTool({ server: "stdio", scope: "bad\u0000scope", name: "whoami" }))
        assert.strictEqual(error._tag, "ConnectError")
        assert.include(error.message, "NUL")
      }),
    20_000
  )
})
