export type UpstreamErrorKind = 'timeout' | 'http' | 'connection' | 'protocol' | 'aborted';

/**
 * An upstream failure as creditgate reports it. The message never carries the upstream's own error text, which
 * can echo URLs or provider credentials; that is `detail`, for the server log only. `code` is what an in-band
 * error event says (`upstream_error`, `upstream_timeout`, or why a call was aborted: `client_disconnected`,
 * `cancelled`, `server_shutting_down`, `slow_reader`...).
 */
export class UpstreamError extends Error {
  readonly code: string;

  constructor(
    message: string,
    readonly kind: UpstreamErrorKind,
    readonly upstreamStatus?: number,
    readonly detail?: unknown,
    code?: string,
  ) {
    super(message);
    this.name = 'UpstreamError';
    this.code = code ?? (kind === 'timeout' ? 'upstream_timeout' : kind === 'aborted' ? 'aborted' : 'upstream_error');
  }

  /** What an aborted `signal` stopped: its reason when creditgate gave one, else a plain abort. */
  static ofAbort(signal: AbortSignal): UpstreamError {
    return signal.reason instanceof UpstreamError ? signal.reason : new UpstreamError('request aborted', 'aborted');
  }

  /** Why creditgate itself stopped a call (the client left, a cancel, a shutdown). */
  static aborted(code: string, message: string): UpstreamError {
    return new UpstreamError(message, 'aborted', undefined, undefined, code);
  }
}
