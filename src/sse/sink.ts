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
  /** Aborts the upstream request: the client went away, or the call was cancelled. Its reason says which. */
  readonly signal: AbortSignal;
  /** Nothing can be written any more (the client went away). */
  readonly closed: boolean;
}
