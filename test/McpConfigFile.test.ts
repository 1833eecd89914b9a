/**
 * Decoding the config files people already have: Claude Desktop / Cursor (`mcpServers`) and VS Code
 * (`servers`), with interpolation, disabled servers, and every problem reported at once.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, FileSystem, Redacted } from "effect"
import * as McpConfigFile from "../src/McpConfigFile.ts"
import { ConfigError } from "../src/McpPoolError.ts"
import type * as McpServerConfig from "../src/McpServerConfig.ts"

const env = { HOME_DIR: "/home/ada", API_TOKEN: "tok-123", REGION: "eu" }

const decode = (input: unknown) => McpConfigFile.decode(input, { source: "test.json", env })

const asStdio = (config: McpServerConfig.McpServerConfig | undefined): McpServerConfig.Stdio => {
  assert.strictEqual(config?._tag, "Stdio")
  return config as McpServerConfig.Stdio
}

const asHttp = (config: McpServerConfig.McpServerConfig | undefined): McpServerConfig.Http => {
  assert.strictEqual(config?._tag, "Http")
  return config as McpServerConfig.Http
}

/** Plain values of a Redacted record (env or headers), asserting that each one is Redacted. */
const revealAll = (record: unknown): Record<string, string> =>
  Object.fromEntries(
    Object.entries(record as Record<string, unknown>).map(([name, value]) => {
      assert.isTrue(Redacted.isRedacted(value), `${name} is not Redacted`)
      return [name, Redacted.value(value as Redacted.Redacted<string>)]
    })
  )

describe("McpConfigFile", () => {
  it.effect("JSONC by VS Code's parser: comments and trailing commas pass; an unterminated comment is an error", () =>
    Effect.gen(function*() {
      const servers = yield* McpConfigFile.decodeText(
        `// VS Code writes these\n{ "servers": { /* one */ "a": { "command": "x", "args": ["1",], }, }, }`,
        { source: "mcp.json", env: {} }
      )
      assert.deepStrictEqual(asStdio(servers.a).args, ["1"])
      const error = yield* Effect.flip(
        McpConfigFile.decodeText(`{ "servers": { "a": { "command": "x" } } } /* never closed`, {
          source: "mcp.json",
          env: {}
        })
      )
      assert.instanceOf(error, ConfigError)
      assert.strictEqual(error.issues[0]?.message, "invalid JSON: UnexpectedEndOfComment at line 1, column 44")
    }))

  it.effect("${env:NAME} is read through Effect's ConfigProvider when no env is given", () =>
    Effect.gen(function*() {
      const servers = yield* McpConfigFile.decodeText(
        `{ "mcpServers": { "docs": { "url": "https://docs.example.com/mcp", "headers": { "Authorization": "Bearer \${env:DOCS_TOKEN}" } } } }`,
        { source: "mcp.json" }
      ).pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ DOCS_TOKEN: "from-provider" }))))
      assert.deepStrictEqual(revealAll(asHttp(servers.docs).headers), { Authorization: "Bearer from-provider" })
      const missing = yield* Effect.flip(
        McpConfigFile.decode({ mcpServers: { a: { command: "x", env: { T: "${env:NOPE_NOT_SET}" } } } }, {
          source: "mcp.json"
        }).pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({}))))
      )
      assert.include(missing.message, "environment variable NOPE_NOT_SET is not set")
    }))

  it.effect("VS Code's envFile: read by load beside the config file, Redacted, env winning; decode reports it", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* fs.makeTempDirectoryScoped()
      yield* fs.writeFileString(`${dir}/.env`, `# secrets\nAPI_KEY=from-file-123\nexport SHARED="file"\nQUOTED='a b'\n`)
      yield* fs.writeFileString(
        `${dir}/mcp.json`,
        JSON.stringify({
          servers: { s: { type: "stdio", command: "x", envFile: "${workspaceFolder}/.env", env: { SHARED: "env" } } }
        })
      )
      const servers = yield* McpConfigFile.loadServers(`${dir}/mcp.json`, { env: {} })
      assert.deepStrictEqual(revealAll(asStdio(servers.s).env), {
        API_KEY: "from-file-123",
        SHARED: "env",
        QUOTED: "a b"
      })
      yield* fs.writeFileString(
        `${dir}/missing.json`,
        JSON.stringify({ servers: { s: { command: "x", envFile: "nope.env" } } })
      )
      const unreadable = yield* Effect.flip(McpConfigFile.load(`${dir}/missing.json`, { env: {} }))
      assert.deepStrictEqual(unreadable.issues.map((issue) => issue.path), ["servers.s.envFile"])
      const decoded = yield* Effect.flip(McpConfigFile.decode({ servers: { s: { command: "x", envFile: ".env" } } }, {
        source: "inline",
        env: {}
      }))
      assert.deepStrictEqual(decoded.issues.map((issue) => issue.path), ["servers.s.envFile"])
    }).pipe(Effect.scoped, Effect.provide(NodeFileSystem.layer)))

  it.effect("protocol: per server, absent means auto; a bad value or 2026-07-28 over SSE is named", () =>
    Effect.gen(function*() {
      const servers = yield* decode({
        mcpServers: {
          plain: { command: "x" },
          modern: { command: "x", protocol: "2026-07-28" },
          legacy: { url: "https://old.example.com/mcp", type: "http", protocol: "2025-11-25" }
        }
      })
      assert.strictEqual(asStdio(servers.plain).protocol, "auto")
      assert.strictEqual(asStdio(servers.modern).protocol, "2026-07-28")
      assert.strictEqual(asHttp(servers.legacy).protocol, "2025-11-25")
      const error = yield* Effect.flip(decode({
        mcpServers: {
          a: { command: "x", protocol: "latest" },
          b: { url: "https://old.example.com/sse", type: "sse", protocol: "2026-07-28" }
        }
      }))
      assert.deepStrictEqual(error.issues.map((issue) => issue.path), [
        "mcpServers.a.protocol",
        "mcpServers.b.protocol"
      ])
    }))

  it.effect("Claude Desktop / Cursor format: stdio and remote servers", () =>
    Effect.gen(function*() {
      const servers = yield* decode({
        mcpServers: {
          browser: { command: "npx", args: ["@playwright/mcp", "--headless"], env: { DISPLAY: ":1" } },
          repl: { command: "python3", args: ["repl.py"], cwd: "/srv/repl" },
          docs: { url: "https://docs.example.com/mcp", headers: { "X-Team": "core" } },
          legacy: { url: "https://old.example.com/sse", type: "sse" },
          pinned: { url: "https://new.example.com/mcp", type: "http" },
          other: { command: "x", alwaysAllow: ["read"], autoApprove: [], description: "ignored fields" }
        }
      })
      assert.deepStrictEqual(Object.keys(servers), ["browser", "repl", "docs", "legacy", "pinned", "other"])
      const browser = asStdio(servers.browser)
      assert.strictEqual(browser.command, "npx")
      assert.deepStrictEqual(browser.args, ["@playwright/mcp", "--headless"])
      assert.deepStrictEqual(revealAll(browser.env), { DISPLAY: ":1" })
      assert.strictEqual(asStdio(servers.repl).cwd, "/srv/repl")

      const docs = asHttp(servers.docs)
      assert.strictEqual(docs.url, "https://docs.example.com/mcp")
      assert.deepStrictEqual(revealAll(docs.headers), { "X-Team": "core" })
      // A bare url tries streamable HTTP and falls back to SSE, as Cursor does.
      assert.strictEqual(docs.transport, "auto")
      assert.strictEqual(asHttp(servers.legacy).transport, "sse")
      assert.strictEqual(asHttp(servers.pinned).transport, "streamable-http")
    }))

  it.effect("VS Code format: type stdio / http / sse, and the same under \"mcp\" in settings.json", () =>
    Effect.gen(function*() {
      const vscode = {
        servers: {
          fs: { type: "stdio", command: "npx", args: ["-y", "@modelcontextprotocol/server-filesystem", "."] },
          github: { type: "http", url: "https://api.githubcopilot.com/mcp/", headers: { Authorization: "Bearer x" } },
          old: { type: "sse", url: "http://127.0.0.1:3001/sse" }
        },
        inputs: []
      }
      const servers = yield* decode(vscode)
      assert.strictEqual(asStdio(servers.fs).command, "npx")
      assert.strictEqual(asHttp(servers.github).transport, "streamable-http")
      assert.strictEqual(asHttp(servers.old).transport, "sse")
      const settings = yield* decode({ "editor.fontSize": 12, mcp: { servers: vscode.servers } })
      assert.deepStrictEqual(Object.keys(settings), ["fs", "github", "old"])
    }))

  it.effect("interpolates ${env:NAME}, ${NAME} and ${NAME:-default}; env and header values become Redacted", () =>
    Effect.gen(function*() {
      const servers = yield* decode({
        mcpServers: {
          local: {
            command: "${HOME_DIR}/bin/server",
            args: ["--region=${env:REGION}", "--tier=${TIER:-free}"],
            env: { TOKEN: "${env:API_TOKEN}", MODE: "literal" },
            cwd: "${HOME_DIR}/work"
          },
          remote: { url: "https://${REGION}.example.com/mcp", headers: { Authorization: "Bearer ${API_TOKEN}" } }
        }
      })
      const local = asStdio(servers.local)
      assert.strictEqual(local.command, "/home/ada/bin/server")
      assert.deepStrictEqual(local.args, ["--region=eu", "--tier=free"])
      assert.strictEqual(local.cwd, "/home/ada/work")
      assert.deepStrictEqual(revealAll(local.env), { TOKEN: "tok-123", MODE: "literal" })
      const remote = asHttp(servers.remote)
      assert.strictEqual(remote.url, "https://eu.example.com/mcp")
      assert.deepStrictEqual(revealAll(remote.headers), { Authorization: "Bearer tok-123" })
      // Never printed: not in the config's own rendering either.
      assert.notInclude(String((remote.headers as Record<string, unknown>).Authorization), "tok-123")
    }))

  it.effect("disabled: true skips a server, even one whose variables are missing", () =>
    Effect.gen(function*() {
      const servers = yield* decode({
        mcpServers: {
          on: { command: "a" },
          off: { command: "${NOT_SET}", disabled: true },
          explicit: { command: "b", disabled: false }
        }
      })
      assert.deepStrictEqual(Object.keys(servers), ["on", "explicit"])
    }))

  it.effect("every problem at once, each with its path, the source naming the file", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(decode({
        mcpServers: {
          browser: { args: "--headless" },
          blank: { command: " " },
          api: { url: "ftp://example.com", headers: { Authorization: "Bearer ${MISSING_TOKEN}", Retries: 3 } },
          shell: { command: "sh", args: ["-c", 1], env: { A: "${env:ALSO_MISSING}" }, envFile: ".env" },
          weird: { type: "websocket", url: "ws://x" },
          both: { command: "x", url: "http://x" },
          dots: "not an object",
          "my.server": { command: "x", disabled: "yes" },
          prompted: { command: "x", env: { KEY: "${input:api-key}" } }
        }
      }))
      assert.instanceOf(error, ConfigError)
      assert.strictEqual(error.source, "test.json")
      assert.deepStrictEqual(error.issues.map((issue) => issue.path), [
        "mcpServers.browser.command",
        "mcpServers.browser.args",
        "mcpServers.blank.command",
        "mcpServers.api.url",
        "mcpServers.api.headers.Authorization",
        "mcpServers.api.headers.Retries",
        "mcpServers.shell.args[1]",
        "mcpServers.shell.env.A",
        "mcpServers.shell.envFile",
        "mcpServers.weird.type",
        "mcpServers.both",
        "mcpServers.dots",
        "mcpServers[\"my.server\"].disabled",
        "mcpServers.prompted.env.KEY"
      ])
      const messages = error.issues.map((issue) => issue.message).join("\n")
      assert.include(messages, "environment variable MISSING_TOKEN is not set")
      assert.include(messages, "environment variable ALSO_MISSING is not set")
      assert.include(error.message, "test.json")
      assert.include(error.message, "mcpServers.api.url")
    }))

  it.effect("a url with a user name or password is a ConfigError; no url (as written or interpolated) is quoted", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(McpConfigFile.decode({
        mcpServers: {
          interpolated: { url: "https://ada:${API_TOKEN}@example.com/mcp" },
          literal: { url: "https://ada:literal-url-password@example.com/mcp", type: "sse" },
          scheme: { url: "ftp://example.com/mcp?token=${API_TOKEN}&key=literal-query-key" },
          garbage: { url: "not a url?token=literal-garbage-token" }
        }
      }, { source: "test.json", env: { API_TOKEN: "tok-from-env-123" } }))
      assert.instanceOf(error, ConfigError)
      assert.deepStrictEqual(error.issues.map((issue) => issue.path), [
        "mcpServers.interpolated.url",
        "mcpServers.literal.url",
        "mcpServers.scheme.url",
        "mcpServers.garbage.url"
      ])
      assert.include(error.issues[0]!.message, "user name or password")
      for (const secret of ["tok-from-env-123", "literal-url-password", "literal-query-key", "literal-garbage-token"]) {
        assert.notInclude(error.message, secret)
        assert.notInclude(JSON.stringify(error), secret)
      }
    }))

  it.effect("a file without mcpServers or servers, or with both, is a ConfigError", () =>
    Effect.gen(function*() {
      for (const input of [{}, [], { mcpServers: {}, servers: {} }, { servers: [] }]) {
        const error = yield* Effect.flip(decode(input))
        assert.instanceOf(error, ConfigError)
        assert.lengthOf(error.issues, 1)
      }
      // An empty list of servers is valid: nothing configured yet.
      assert.deepStrictEqual(yield* decode({ mcpServers: {} }), {})
    }))

  it.effect("decodeText accepts comments and trailing commas (VS Code writes JSONC)", () =>
    Effect.gen(function*() {
      const servers = yield* McpConfigFile.decodeText(
        `{
          // the team's servers
          "servers": {
            "fs": { "type": "stdio", "command": "npx", "args": ["a // not a comment", "b /* nor this */",], },
            /* later: "db": {} */
          },
        }`,
        { source: ".vscode/mcp.json", env }
      )
      assert.deepStrictEqual(asStdio(servers.fs).args, ["a // not a comment", "b /* nor this */"])
    }))

  it.effect("load reads a file; bad JSON and a missing file are ConfigErrors naming the file", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* fs.makeTempDirectoryScoped()
      yield* fs.makeDirectory(`${dir}/.vscode`)
      const good = `${dir}/.vscode/mcp.json`
      yield* fs.writeFileString(
        good,
        JSON.stringify({
          servers: { fs: { command: "npx", args: ["${workspaceFolder}/data"] }, off: { disabled: true } }
        })
      )
      const file = yield* McpConfigFile.load(good, { env: {} })
      assert.strictEqual(file.format, "servers")
      assert.strictEqual(file.source, good)
      assert.deepStrictEqual(file.disabled, ["off"])
      // ${workspaceFolder} is the folder holding .vscode/.
      assert.deepStrictEqual(asStdio(file.servers.fs).args, [`${dir}/data`])
      assert.deepStrictEqual(Object.keys(yield* McpConfigFile.loadServers(good, { env: {} })), ["fs"])

      const bad = `${dir}/bad.json`
      yield* fs.writeFileString(bad, `{ "mcpServers": { "a": { "command": "x", "env": { "TOKEN": "s3cret" } } `)
      const parseError = yield* Effect.flip(McpConfigFile.load(bad))
      assert.instanceOf(parseError, ConfigError)
      assert.strictEqual(parseError.source, bad)
      assert.strictEqual(parseError.issues[0]?.path, "(file)")
      assert.match(parseError.issues[0]?.message ?? "", /^invalid JSON/)
      assert.notInclude(parseError.message, "s3cret")
      // V8 quotes the text around an unexpected token: not in our message.
      const tokenError = yield* Effect.flip(
        McpConfigFile.decodeText(`{ "mcpServers": { "a": { "env": { "T": "s3cret" }, "command": x } } }`, {
          source: "inline.json"
        })
      )
      assert.include(tokenError.message, "InvalidSymbol at line 1, column 63")
      assert.notInclude(tokenError.message, "s3cret")

      const missing = yield* Effect.flip(McpConfigFile.load(`${dir}/nope.json`))
      assert.instanceOf(missing, ConfigError)
      assert.strictEqual(missing.source, `${dir}/nope.json`)
      assert.match(missing.issues[0]?.message ?? "", /^cannot read the file/)
    }).pipe(Effect.provide(NodeFileSystem.layer)))
})
