/**
 * An upstream failure as creditgate reports it. The message never carries the upstream's own error text, which
 * can echo URLs or provider credentials; that is `detail`, for the server log only.
 */
export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly kind: 'timeout' | 'http' | 'connection' | 'protocol' | 'aborted',
    readonly upstreamStatus?: number,
    readonly detail?: unknown,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}
