/**
 * How a request's client is watched: `listener` is called once the client goes away or the call is cancelled (at
 * once if it already did), with the reason, which says which; the function returned stops it.
 */
export type WatchClient = (listener: (reason: unknown) => void) => () => void;

/**
 * Where a stream goes, without the domain knowing it is HTTP. `write` hands the frame to the socket and returns
 * undefined, or, when the socket is full, a promise that resolves once it drained: a slow reader slows the
 * upstream read instead of growing a buffer, and the common case costs no promise.
 */
export interface StreamSink {
  /** Commits the response (status 200 and SSE headers); idempotent. */
  open(headers?: Record<string, string>): void;
  readonly opened: boolean;
  write(frame: string): Promise<void> | undefined;
  end(): void;
  /** Watches the reader (see WatchClient): the relay aborts its upstream request when it is gone. */
  onAbort: WatchClient;
  /** Nothing can be written any more (the client went away). */
  readonly closed: boolean;
}
