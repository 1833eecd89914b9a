#!/usr/bin/env node
/**
 * The `mcp-pool` executable: `npx mcp-pool doctor`, `npx mcp-pool call <server> <tool> [json]`,
 * `npx mcp-pool repl` (see `src/cli/main.ts`). Runs on `@effect/platform-node` (an optional peer dependency
 * of the package: without it, this says so and exits 2).
 *
 * @since 0.2.0
 */
import { Effect, Exit, Runtime, Stdio } from "effect"
import { runCli } from "../cli/main.ts"

const isMissing = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "code" in error && error.code === "ERR_MODULE_NOT_FOUND" &&
  String((error as { readonly message?: unknown }).message).includes("@effect/platform-node")

const platform = await Promise.all([
  import("@effect/platform-node/NodeRuntime"),
  import("@effect/platform-node/NodeServices")
]).catch((error: unknown) => {
  if (!isMissing(error)) throw error
  return undefined
})

if (platform === undefined) {
  process.stderr.write("mcp-pool runs on @effect/platform-node: npm install @effect/platform-node\n")
  process.exitCode = 2
} else {
  const [NodeRuntime, NodeServices] = platform
  const main = Stdio.Stdio.use(({ args }) => Effect.flatMap(args, runCli))
  NodeRuntime.runMain(main.pipe(Effect.provide(NodeServices.layer)), {
    // The exit code is the command's: 0, 1 (a server or a call failed), 2 (a bad config file or invocation).
    teardown: (exit, onExit) =>
      Exit.isSuccess(exit) && typeof exit.value === "number"
        ? onExit(exit.value)
        : Runtime.defaultTeardown(exit, onExit)
  })
}
