/**
 * Both MCP revisions over real stdio processes, with one unchanged config: servers built with the official
 * SDK v2 server (`test/fixtures/modern-server.ts`: modern-only or dual), 2025-era servers on SDK 1.32
 * (`legacy-quirks.ts`: plain, one that exits on a request before `initialize`, one that ignores it) and one
 * that speaks neither (`neither-server.ts`). Spawns are counted by the fixtures themselves (a file per
 * process), and processes are checked in `/proc`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, References } from "effect"
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { ConfigError, ConnectError, McpProtocolError } from "../src/McpPoolError.ts"
import * as McpServerConfig from "../src/McpServerConfig.ts"
import * as McpSessionPool from "../src/McpSessionPool.ts"
import type { Options } from "../src/McpSessionPool.ts"
import { firstText } from "./utils/probe.ts"
import { awaitGone, isRunning } from "./utils/proc.ts"
import { within } from "./utils/within.ts"

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))
const modernServer = fixture("modern-server.ts")
const legacyServer = fixture("legacy-quirks.ts")
const neitherServer = fixture("neither-server.ts")

/** A directory the fixtures write one file per spawned process to. */
const spawnLog = () => {
  const dir = mkdtempSync(join(tmpdir(), "mcp-spawns-"))
  return { dir, count: () => readdirSync(dir).length }
}

const node = (
  script: string,
  env: Record<string, string>,
  options: { readonly protocol?: McpServerConfig.Protocol } = {}
) => McpServerConfig.stdio({ command: process.execPath, args: [script], env, ...options })

const makePool = (servers: Options["servers"]) =>
  McpSessionPool.make({ servers, connectTimeout: "20 seconds", callTimeout: "20 seconds" }).pipe(
    Effect.provideService(References.MinimumLogLevel, "None")
  )

type Pool = McpSessionPool.McpSessionPoolShape

const call = (pool: Pool, server: string, scope: string, name: string, args: Record<string, unknown> = {}) =>
  pool.callTool({ server, scope, name, arguments: args }).pipe(
    Effect.map(firstText),
    within("20 seconds", `${name} on ${server}/${scope}`)
  )

describe("both MCP revisions over stdio, one config", () => {
  it.live(
    "a modern-only server: per-thread state per process, one process per session, the verdict cached",
    () =>
      Effect.gen(function*() {
        const spawns = spawnLog()
        const requests = join(spawns.dir, "..", `requests-${process.pid}-${Date.now()}`)
        const pool = yield* makePool({
          modern: node(modernServer, { MODERN_FIXTURE_SPAWN_DIR: spawns.dir, MODERN_FIXTURE_REQUEST_LOG: requests })
        })
        assert.strictEqual(yield* call(pool, "modern", "a", "counter_increment"), "1")
        assert.strictEqual(yield* call(pool, "modern", "a", "counter_increment"), "2")
        const pidA = yield* call(pool, "modern", "a", "whoami")
        assert.strictEqual(yield* call(pool, "modern", "b", "counter_increment"), "1")
        const pidB = yield* call(pool, "modern", "b", "whoami")
        assert.notStrictEqual(pidA, pidB)
        assert.strictEqual(yield* call(pool, "modern", "a", "era"), "modern")
        // The probe ran on the first session's own process: no sibling, then none at all. Unless that process
        // took longer than the probe's bound to answer (a loaded machine): then its refusal of `initialize`
        // made the first session ask again, patiently, on a fresh process, and the first one is gone.
        const methodsNow = () => readFileSync(requests, "utf8").trim().split("\n")
        const slowStart = methodsNow().includes("initialize")
        const pids = readdirSync(spawns.dir)
        assert.strictEqual(pids.length, slowStart ? 3 : 2)
        assert.includeMembers(pids, [pidA, pidB])
        for (const pid of pids.filter((pid) => pid !== pidA && pid !== pidB)) yield* awaitGone(Number(pid))

        const session = yield* pool.get({ server: "modern", scope: "a" }).pipe(Effect.scoped)
        assert.strictEqual(session.revision, "2026-07-28")
        assert.strictEqual(session.protocolVersion, "2026-07-28")
        assert.strictEqual(session.threadState, "process")
        assert.strictEqual(session.sdk.revision, "2026-07-28")
        const rows = yield* pool.snapshot
        assert.deepStrictEqual(
          rows.map((row) => [row.scope, row.protocolVersion, row.threadState]).sort(),
          [["a", "2026-07-28", "process"], ["b", "2026-07-28", "process"]]
        )

        yield* pool.closeScope("a")
        yield* awaitGone(Number(pidA))
        assert.strictEqual(yield* call(pool, "modern", "a", "counter_increment"), "1")
        assert.strictEqual(spawns.count(), slowStart ? 4 : 3)
        // Asked once for the config (twice after a slow start): the two later sessions connected on the
        // verdict, without a probe.
        const methods = methodsNow()
        assert.strictEqual(methods.filter((method) => method === "server/discover").length, slowStart ? 2 : 1)
        assert.strictEqual(methods.filter((method) => method === "tools/call").length, 7)
        yield* pool.closeAll
        assert.isFalse(isRunning(Number(pidB)))
      }),
    60_000
  )

  it.live(
    "a dual server is spoken to in 2026-07-28 by default, in 2025-11-25 when pinned",
    () =>
      Effect.gen(function*() {
        const env = { MODERN_FIXTURE_LEGACY: "serve" }
        const pool = yield* makePool({
          auto: node(modernServer, env),
          pinned: node(modernServer, env, { protocol: "2025-11-25" })
        })
        assert.strictEqual(yield* call(pool, "auto", "t", "era"), "modern")
        assert.strictEqual(yield* call(pool, "pinned", "t", "era"), "legacy")
        const pinned = yield* pool.get({ server: "pinned", scope: "t" }).pipe(Effect.scoped)
        assert.strictEqual(pinned.revision, "2025-11-25")
        assert.strictEqual(pinned.protocolVersion, "2025-11-25")
        assert.strictEqual(pinned.threadState, "process")
      }),
    60_000
  )

  it.live("a 2025-era server: the probe's -32601 keeps its process, which then serves", () =>
    Effect.gen(function*() {
      const spawns = spawnLog()
      const pool = yield* makePool({
        legacy: node(legacyServer, { LEGACY_QUIRK: "none", MODERN_FIXTURE_SPAWN_DIR: spawns.dir })
      })
      assert.strictEqual(yield* call(pool, "legacy", "a", "counter_increment"), "1")
      assert.strictEqual(yield* call(pool, "legacy", "a", "counter_increment"), "2")
      assert.strictEqual(yield* call(pool, "legacy", "b", "counter_increment"), "1")
      assert.strictEqual(spawns.count(), 2)
      const session = yield* pool.get({ server: "legacy", scope: "a" }).pipe(Effect.scoped)
      assert.strictEqual(session.revision, "2025-11-25")
      assert.strictEqual(session.sdk.revision, "2025-11-25")
    }), 60_000)

  it.live(
    "a 2025-era server that exits on the probe costs one more spawn, once: the verdict is cached",
    () =>
      Effect.gen(function*() {
        const spawns = spawnLog()
        const pool = yield* makePool({
          legacy: node(legacyServer, { LEGACY_QUIRK: "exit", MODERN_FIXTURE_SPAWN_DIR: spawns.dir })
        })
        assert.strictEqual(yield* call(pool, "legacy", "a", "counter_increment"), "1")
        assert.strictEqual(spawns.count(), 2) // the probed process exited; its successor serves
        assert.strictEqual(yield* call(pool, "legacy", "b", "counter_increment"), "1")
        assert.strictEqual(yield* call(pool, "legacy", "c", "counter_increment"), "1")
        // A probe would have cost each later session a second process too.
        assert.strictEqual(spawns.count(), 4)
      }),
    60_000
  )

  it.live(
    "concurrent first sessions of one config ask once: the others take that answer on their own processes",
    () =>
      Effect.gen(function*() {
        const scopes = ["a", "b", "c", "d"]
        const modernSpawns = spawnLog()
        const requests = join(modernSpawns.dir, "..", `requests-${process.pid}-${Date.now()}-burst`)
        const exitSpawns = spawnLog()
        const pool = yield* makePool({
          modern: node(modernServer, {
            MODERN_FIXTURE_SPAWN_DIR: modernSpawns.dir,
            MODERN_FIXTURE_REQUEST_LOG: requests
          }),
          exits: node(legacyServer, { LEGACY_QUIRK: "exit", MODERN_FIXTURE_SPAWN_DIR: exitSpawns.dir })
        })
        // Every session of both servers asked for at once, before any verdict exists.
        const eras = yield* Effect.forEach(
          [...scopes.map((scope) => ["modern", scope]), ...scopes.map((scope) => ["exits", scope])],
          ([server, scope]) => Effect.map(call(pool, server!, scope!, "counter_increment"), () => server),
          { concurrency: "unbounded" }
        )
        assert.lengthOf(eras, 8)
        const rows = yield* pool.snapshot
        assert.deepStrictEqual(
          rows.map((row) => `${row.server} ${row.scope} ${row.protocolVersion}`).sort(),
          [
            ...scopes.map((scope) => `exits ${scope} 2025-11-25`),
            ...scopes.map((scope) => `modern ${scope} 2026-07-28`)
          ]
        )
        // One server/discover for the four modern sessions, each on its own process.
        const methods = readFileSync(requests, "utf8").trim().split("\n")
        assert.strictEqual(methods.filter((method) => method === "server/discover").length, 1)
        assert.strictEqual(modernSpawns.count(), 4)
        // Only the process that was asked exited: one more spawn in all, not one per session.
        assert.strictEqual(exitSpawns.count(), 5)
      }),
    60_000
  )

  it.live("a 2025-era server that ignores the probe is reached after the probe's bound", () =>
    Effect.gen(function*() {
      const spawns = spawnLog()
      const pool = yield* McpSessionPool.make({
        // The probe waits for min(5 s, connectTimeout / 2): here 1 s, once for the config.
        servers: { legacy: node(legacyServer, { LEGACY_QUIRK: "ignore", MODERN_FIXTURE_SPAWN_DIR: spawns.dir }) },
        connectTimeout: "2 seconds"
      })
      assert.strictEqual(yield* call(pool, "legacy", "a", "counter_increment"), "1")
      assert.strictEqual(yield* call(pool, "legacy", "b", "counter_increment"), "1")
      assert.strictEqual(spawns.count(), 2)
    }), 60_000)

  it.live(
    "a cached 2025-era verdict that proves stale (the server was upgraded) is corrected once",
    () =>
      Effect.gen(function*() {
        const spawns = spawnLog()
        const which = join(spawns.dir, "..", `which-${process.pid}-${Date.now()}`)
        writeFileSync(which, legacyServer)
        // The same config runs whichever server the file names: the "upgrade" happens between two sessions.
        const pool = yield* makePool({
          s: McpServerConfig.stdio({
            command: "sh",
            args: ["-c", `exec "${process.execPath}" "$(cat "${which}")"`],
            env: { LEGACY_QUIRK: "none", MODERN_FIXTURE_SPAWN_DIR: spawns.dir }
          })
        })
        assert.strictEqual(yield* call(pool, "s", "a", "counter_increment"), "1")
        assert.strictEqual(spawns.count(), 1)
        writeFileSync(which, modernServer)
        // The cached verdict says initialize; the upgraded server refuses it (-32022, naming 2026-07-28): the
        // connect asks again, on a fresh process, and the session speaks 2026-07-28.
        assert.strictEqual(yield* call(pool, "s", "b", "era"), "modern")
        assert.strictEqual(spawns.count(), 3)
        assert.strictEqual(yield* call(pool, "s", "c", "era"), "modern")
        assert.strictEqual(spawns.count(), 4)
      }),
    60_000
  )

  it.live(
    "a cached 2026-07-28 verdict that proves stale (the server was rolled back) is dropped with its session, once",
    () =>
      Effect.gen(function*() {
        const spawns = spawnLog()
        const which = join(spawns.dir, "..", `which-${process.pid}-${Date.now()}-back`)
        writeFileSync(which, modernServer)
        const pool = yield* makePool({
          s: McpServerConfig.stdio({
            command: "sh",
            args: ["-c", `exec "${process.execPath}" "$(cat "${which}")"`],
            env: { LEGACY_QUIRK: "none", MODERN_FIXTURE_SPAWN_DIR: spawns.dir }
          })
        })
        assert.strictEqual(yield* call(pool, "s", "a", "era"), "modern")
        writeFileSync(which, legacyServer)
        // Connected on the cached verdict with no round trip: the first answer, of the other era, is refused
        // and the session dropped (the call may have run: it says the session was lost).
        const stale = yield* Effect.flip(call(pool, "s", "b", "whoami"))
        assert.strictEqual(stale._tag, "SessionLost")
        assert.include(stale.message, "no longer speaks 2026-07-28")
        // The next connect asks again and speaks 2025-11-25.
        assert.match(yield* call(pool, "s", "b", "whoami"), /^\d+$/)
        const session = yield* pool.get({ server: "s", scope: "b" }).pipe(Effect.scoped)
        assert.strictEqual(session.revision, "2025-11-25")
      }),
    60_000
  )

  it.live(
    "a local server slower to start than the probe's bound: the refused initialize brings one patient probe",
    () =>
      Effect.gen(function*() {
        const spawns = spawnLog()
        const pool = yield* McpSessionPool.make({
          servers: {
            // Silent for longer than the probe's bound (min(5 s, connectTimeout / 2)), as `npx` fetching a
            // server is: the fallback initialize is refused (-32022 naming 2026-07-28), so the connect asks
            // again on a fresh process and waits for the answer.
            slow: McpServerConfig.stdio({
              command: "sh",
              args: ["-c", `sleep 5.5; exec "${process.execPath}" "${modernServer}"`],
              env: { MODERN_FIXTURE_SPAWN_DIR: spawns.dir }
            })
          },
          connectTimeout: "40 seconds"
        }).pipe(Effect.provideService(References.MinimumLogLevel, "None"))
        assert.strictEqual(
          yield* pool.callTool({ server: "slow", scope: "t", name: "era" }).pipe(
            Effect.map(firstText),
            within("40 seconds", "the slow server")
          ),
          "modern"
        )
      }),
    60_000
  )

  it.live("pinning a revision the server refuses is a ConnectError naming both", () =>
    Effect.gen(function*() {
      const pool = yield* makePool({
        modernOnly: node(modernServer, {}, { protocol: "2025-11-25" }),
        legacyOnly: node(legacyServer, { LEGACY_QUIRK: "none" }, { protocol: "2026-07-28" })
      })
      const refused = yield* Effect.flip(call(pool, "modernOnly", "t", "echo", { text: "x" }))
      assert.instanceOf(refused, ConnectError)
      assert.include(refused.message, "pinned revision 2025-11-25")
      assert.include(refused.message, "supports only 2026-07-28")
      const notOffered = yield* Effect.flip(call(pool, "legacyOnly", "t", "whoami"))
      assert.instanceOf(notOffered, ConnectError)
      assert.include(notOffered.message, "pinned revision 2026-07-28")
      assert.include(notOffered.message, "server/discover: it answered error -32601")
      assert.include(notOffered.message, `"2025-11-25"`)
    }), 60_000)

  it.live(
    "a server that speaks neither revision is a ConnectError naming what was tried",
    () =>
      Effect.gen(function*() {
        const pool = yield* makePool({ neither: node(neitherServer, {}) })
        const error = yield* Effect.flip(call(pool, "neither", "t", "whoami"))
        assert.instanceOf(error, ConnectError)
        assert.include(error.message, "speaks neither 2025-11-25 nor 2026-07-28")
        assert.include(error.message, "server/discover: it answered error -32601")
        assert.include(error.message, "initialize: MCP error -32602")
      }),
    60_000
  )

  it.live(
    "a modern server asking for input gets no answer it can misread; the call a typed error; the session stays",
    () =>
      Effect.gen(function*() {
        const pool = yield* makePool({ modern: node(modernServer, {}) })
        const pid = yield* call(pool, "modern", "t", "whoami")
        const error = yield* Effect.flip(call(pool, "modern", "t", "ask_user"))
        assert.instanceOf(error, McpProtocolError)
        // The pool declares no elicitation capability, so the server refuses to ask (-32021) rather than
        // waiting for an answer that would never come.
        assert.strictEqual(error.code, -32021)
        assert.strictEqual(yield* call(pool, "modern", "t", "whoami"), pid)
      }),
    60_000
  )

  it.live(
    "an idle 2026-07-28 session is checked with server/discover (it has no ping) and kept",
    () =>
      Effect.gen(function*() {
        const spawns = spawnLog()
        const pool = yield* makePool({
          modern: McpServerConfig.stdio({
            command: process.execPath,
            args: [modernServer],
            env: { MODERN_FIXTURE_SPAWN_DIR: spawns.dir },
            pingAfterIdle: 0
          })
        })
        const pid = yield* call(pool, "modern", "t", "whoami")
        // Every get of the idle session checks it first; a failed check (a `ping` SDK v2 refuses to send)
        // would retire it and start a new process.
        for (let i = 0; i < 3; i++) {
          const session = yield* pool.get({ server: "modern", scope: "t" }).pipe(Effect.scoped)
          yield* session.ping()
        }
        assert.strictEqual(yield* call(pool, "modern", "t", "whoami"), pid)
        assert.strictEqual(spawns.count(), 1)
      }),
    60_000
  )

  it.effect("a bad protocol value is a ConfigError naming the field", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(McpSessionPool.make({
        servers: {
          a: McpServerConfig.stdio({ command: "x", protocol: "2026" as McpServerConfig.Protocol }),
          b: McpServerConfig.inMemory(() => {
            throw new Error("never called")
          }, { protocol: "2026-07-28" }),
          c: McpServerConfig.sse({ url: "http://127.0.0.1:1/sse", protocol: "2026-07-28" })
        },
        protocol: "latest" as McpServerConfig.Protocol
      }))
      assert.instanceOf(error, ConfigError)
      assert.deepStrictEqual(error.issues.map((issue) => issue.path), [
        "protocol",
        "servers.a.protocol",
        "servers.b.protocol",
        "servers.c.protocol"
      ])
      assert.include(error.issues[0]!.message, `expected "auto", "2025-11-25" or "2026-07-28", got "latest"`)
    }))
})
