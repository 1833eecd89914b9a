import { assert } from "vitest"

/** What `promise` rejected with; a test failure if it resolved. */
export const rejection = async (promise: Promise<unknown>): Promise<unknown> => {
  try {
    await promise
  } catch (error) {
    return error
  }
  return assert.fail("expected a rejection")
}
