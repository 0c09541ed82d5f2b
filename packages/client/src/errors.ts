import type { ErrorBody } from './contracts.js';

type ErrorDetail = ErrorBody['error'];

/**
 * Every error the SDK throws. HTTP errors carry the contract's error envelope (`{error: {type, code, message,
 * param, request_id}}`) and the status; network failures, timeouts and aborts have no status.
 */
export class CreditgateError extends Error {
  readonly status: number | undefined;
  readonly type: string | undefined;
  readonly code: string | undefined;
  readonly param: string | null;
  readonly requestId: string | undefined;
  readonly headers: Headers | undefined;

  constructor(
    message: string,
    details: { status?: number; error?: Partial<ErrorDetail>; headers?: Headers; cause?: unknown } = {},
  ) {
    super(message, { cause: details.cause });
    this.name = new.target.name;
    this.status = details.status;
    this.type = details.error?.type;
    this.code = details.error?.code;
    this.param = details.error?.param ?? null;
    this.headers = details.headers;
    this.requestId = details.error?.request_id ?? details.headers?.get('x-request-id') ?? undefined;
  }

  /** The subclass for an HTTP error answer; `body` is whatever the server sent (a proxy may send HTML). */
  static fromResponse(status: number, body: unknown, headers: Headers): CreditgateError {
    const error = isErrorBody(body) ? body.error : undefined;
    const message = error?.message ?? (typeof body === 'string' && body ? body.slice(0, 500) : `HTTP ${status}`);
    const ErrorClass = errorClassFor(status);
    return new ErrorClass(`${status} ${message}`, { status, headers, ...(error && { error }) });
  }
}

export class BadRequestError extends CreditgateError {}
export class AuthenticationError extends CreditgateError {}
export class InsufficientCreditsError extends CreditgateError {}
export class PermissionDeniedError extends CreditgateError {}
export class NotFoundError extends CreditgateError {}
export class ConflictError extends CreditgateError {}
export class RateLimitError extends CreditgateError {}
/** The model provider failed: 502/504 before any byte, or an in-band `data: {"error"}` event mid-stream. */
export class UpstreamError extends CreditgateError {}
export class InternalServerError extends CreditgateError {}
/** The request never got an answer: DNS, refused or reset connection, a stream cut short. */
export class APIConnectionError extends CreditgateError {}
export class APITimeoutError extends APIConnectionError {}
/** The caller's AbortSignal fired, or the stream was aborted. */
export class APIUserAbortError extends CreditgateError {}

function errorClassFor(status: number): typeof CreditgateError {
  switch (status) {
    case 400:
      return BadRequestError;
    case 401:
      return AuthenticationError;
    case 402:
      return InsufficientCreditsError;
    case 403:
      return PermissionDeniedError;
    case 404:
      return NotFoundError;
    case 409:
      return ConflictError;
    case 429:
      return RateLimitError;
    case 502:
    case 504:
      return UpstreamError;
    default:
      return status >= 500 ? InternalServerError : CreditgateError;
  }
}

export function isErrorBody(body: unknown): body is { error: ErrorDetail } {
  const error = (body as { error?: unknown } | null)?.error;
  return typeof error === 'object' && error !== null && typeof (error as { message?: unknown }).message === 'string';
}
