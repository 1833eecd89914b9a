/**
 * How our transports say why they died: a `TransportLost` reported through `onerror` just before `onclose`.
 * The session turns it into the `SessionLost` reason, so the caller reads "HTTP 404 …" or "output over the
 * 10 MiB limit" rather than only "the connection closed". Other `onerror` reports (a garbage line the
 * transport skipped) are not fatal and are not used.
 */
export class TransportLost extends Error {
  override readonly name: string = "TransportLost"
}

export const isTransportLost = (u: unknown): u is TransportLost => u instanceof TransportLost
