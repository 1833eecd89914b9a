import { Predicate } from "effect"

/**
 * The HTTP status a failed exchange carries: the pool's remote transport's (`RemoteTransportError`), SDK
 * v2's `SdkHttpError` (in `data`), the 1.32 SDK's `StreamableHTTPError` / `SseError` (in `code`), or the
 * SSE transport's plain "Error POSTing to endpoint (HTTP 404): …". Read by shape: a custom transport's
 * errors come from classes this process may never have loaded.
 */
export const httpStatus = (error: unknown): number | undefined => {
  if (!(error instanceof Error)) return undefined
  if (error.name === "RemoteTransportError" && Predicate.hasProperty(error, "status")) {
    return typeof error.status === "number" ? error.status : undefined
  }
  if (Predicate.hasProperty(error, "data") && Predicate.hasProperty(error.data, "status")) {
    return typeof error.data.status === "number" ? error.data.status : undefined
  }
  // The 1.32 SDK's classes set no `name`; their messages say which they are.
  if (/^(Streamable HTTP|SSE) error: /.test(error.message) && Predicate.hasProperty(error, "code")) {
    return typeof error.code === "number" && error.code > 0 ? error.code : undefined
  }
  const match = /^Error POSTing to endpoint \(HTTP (\d{3})\)/.exec(error.message)
  return match === null ? undefined : Number(match[1])
}
