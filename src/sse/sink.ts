/**
 * Where a stream goes, without the domain knowing it is HTTP. `write` resolves once the frame is handed to the
 * socket and the socket has drained, so a slow reader slows the upstream read instead of growing a buffer.
 */
export interface StreamSink {
  /** Commits the response (status 200 and SSE headers); idempotent. */
  open(headers?: Record<string, string>): void;
  readonly opened: boolean;
  write(frame: string): Promise<void>;
  end(): void;
  /** Aborts the upstream request: the client went away, or the call was cancelled. Its reason says which. */
  readonly signal: AbortSignal;
  /** Nothing can be written any more (the client went away). */
  readonly closed: boolean;
}
