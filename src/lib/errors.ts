/** The closed set of error codes every transport maps from; the HTTP status of each lives in one place. */
export const ERROR_STATUS = {
  validation_failed: 400,
  unauthenticated: 401,
  insufficient_credits: 402,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  rate_limited: 429,
  internal: 500,
  upstream_error: 502,
  unavailable: 503,
  upstream_timeout: 504,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class AppError extends Error {
  readonly code: ErrorCode;
  /** A more specific machine-readable reason, e.g. `idempotency_key_reused`; defaults to `code`. */
  readonly reason: string;
  readonly param: string | null;
  /** Sent as `Retry-After`: when the refusal (a throttle, a lock) will have passed. */
  readonly retryAfterSeconds: number | undefined;
  /** Further headers the answer carries (OpenAI's `x-ratelimit-*`). */
  readonly headers: Record<string, string>;

  constructor(
    code: ErrorCode,
    message: string,
    options: { reason?: string; param?: string | null; cause?: unknown; retryAfterSeconds?: number; headers?: Record<string, string> } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.reason = options.reason ?? code;
    this.param = options.param ?? null;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.headers = options.headers ?? {};
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export const notFound = (what: string, param?: string) =>
  new AppError('not_found', `${what} not found`, { param: param ?? null });

export const conflict = (message: string, reason = 'conflict') => new AppError('conflict', message, { reason });

export const validationFailed = (message: string, param?: string, reason = 'invalid_value') =>
  new AppError('validation_failed', message, { param: param ?? null, reason });
