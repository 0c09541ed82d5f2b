import type { NextFunction, Request, Response } from 'express';
import { ZodError } from 'zod';
import type { ErrorBody } from '../../contracts/index.js';
import { AppError, ERROR_STATUS, type ErrorCode } from '../../lib/errors.js';

const ERROR_TYPE: Record<ErrorCode, string> = {
  validation_failed: 'invalid_request_error',
  not_found: 'invalid_request_error',
  conflict: 'invalid_request_error',
  payload_too_large: 'invalid_request_error',
  unauthenticated: 'authentication_error',
  forbidden: 'permission_error',
  insufficient_credits: 'billing_error',
  rate_limited: 'rate_limit_error',
  internal: 'api_error',
  unavailable: 'api_error',
  upstream_error: 'upstream_error',
  upstream_timeout: 'upstream_error',
};

/** Turns anything thrown into the contract's error envelope; internal details never reach the client. */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof ZodError) return fromZodError(error);
  const bodyParserType = (error as { type?: unknown })?.type;
  if (bodyParserType === 'entity.too.large') {
    return new AppError('payload_too_large', 'request body is too large', { reason: 'body_too_large' });
  }
  if (bodyParserType === 'entity.parse.failed') {
    return new AppError('validation_failed', 'request body is not valid JSON', { reason: 'invalid_json' });
  }
  // Anything else express or body-parser rejects as the client's fault (a broken %-escape in the path, a body
  // that is not in its declared encoding, an unknown charset) is a 400, never a 500.
  const status = (error as { status?: unknown; statusCode?: unknown })?.status ?? (error as { statusCode?: unknown })?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new AppError('validation_failed', 'the request could not be read (bad encoding or escape)', { reason: 'invalid_request' });
  }
  if (isDatabaseUnavailable(error)) {
    return new AppError('unavailable', 'the database is not reachable; retry shortly', { reason: 'database_unavailable', cause: error });
  }
  return new AppError('internal', 'internal server error', { cause: error });
}

/**
 * Connection failures, and PostgreSQL refusals that pass: shut down or restarting (57P0x), out of connections, disk
 * or memory (53xxx), read-only (25006: a standby, or a database set read-only for maintenance).
 */
const UNAVAILABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', '57P01', '57P02', '57P03', '53100', '53200', '53300', '25006']);

/**
 * Losing the database (refused, closed, or silent past DB_QUERY_TIMEOUT_MS) is transient: the client should retry,
 * not read it as a bug (SQLSTATE class 08 too).
 */
function isDatabaseUnavailable(error: unknown): boolean {
  for (let current = error; current instanceof Error; current = current.cause) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && (UNAVAILABLE.has(code) || code.startsWith('08'))) return true;
    if (/Connection terminated|Query read timeout|Client was closed and is not queryable|timeout exceeded when trying to connect|Client has encountered a connection error|not currently accepting connections|the database system is (starting up|shutting down)/i.test(current.message)) {
      return true;
    }
  }
  return false;
}

function fromZodError(error: ZodError): AppError {
  const issue = error.issues[0]!;
  const keys = issue.code === 'unrecognized_keys' ? issue.keys : [];
  const path = [...issue.path, ...keys.slice(0, 1)].map(String).join('.');
  const reason = issue.code === 'unrecognized_keys' ? 'unknown_parameter' : issue.code === 'invalid_type' ? 'invalid_type' : 'invalid_value';
  return new AppError('validation_failed', path ? `${path}: ${issue.message}` : issue.message, { param: path || null, reason });
}

export function errorBody(error: AppError, requestId?: string): ErrorBody {
  return {
    error: {
      type: ERROR_TYPE[error.code],
      code: error.reason,
      message: error.message,
      param: error.param,
      ...(requestId && { request_id: requestId }),
    },
  };
}

export function errorHandler(error: unknown, req: Request, res: Response, _next: NextFunction): void {
  const appError = toAppError(error);
  if (appError.code === 'internal') req.log.error({ err: appError.cause ?? error }, 'unhandled error');
  if (appError.reason === 'database_unavailable') req.log.warn({ err: appError.cause }, 'database unavailable');
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (appError.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(Math.max(1, Math.ceil(appError.retryAfterSeconds))));
  else if (appError.code === 'unavailable') res.setHeader('Retry-After', '1');
  for (const [name, value] of Object.entries(appError.headers)) res.setHeader(name, value);
  res.status(ERROR_STATUS[appError.code]).json(errorBody(appError, req.requestId));
}
