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
  /** Aborted when the client goes away. */
  readonly signal: AbortSignal;
}
