/**
 * `npm run example:elicitation` as a user runs it: a real process with its own stdio notebook servers. The
 * server's confirmation request of each thread reaches that thread's user: alice's notes are deleted,
 * bob's are kept.
 */
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "vitest"

const example = fileURLToPath(new URL("../../examples/elicitation.ts", import.meta.url))

const run = () =>
  new Promise<string>((resolve, reject) => {
    execFile(process.execPath, [example], { timeout: 60_000 }, (error, stdout, stderr) =>
      error === null ? resolve(stdout) : reject(new Error(`${error.message}\n${stderr}`)))
  })

describe("examples/elicitation", () => {
  it("asks each thread's own user; the answers decide what the tool did", async () => {
    const out = await run()
    assert.match(out, /\[alice\] notebook asks the user: "Delete all 1 notes \(colour\)\?" → accept/)
    assert.match(out, /\[bob\] notebook asks the user: "Delete all 1 notes \(colour\)\?" → decline/)
    assert.include(out, "[alice] agent: The notebook tool says: deleted 1 notes")
    assert.include(out, `[bob] agent: Sorry, that did not work: nothing deleted: the user answered "decline"`)
    assert.include(out, `[alice] agent: Sorry, that did not work: no note named "colour"`)
    assert.include(out, "[bob] agent: green")
  }, 90_000)
})
