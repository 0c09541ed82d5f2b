import type { NextFunction, Request, Response } from 'express';
import type pg from 'pg';
import { AppError } from '../../lib/errors.js';

const EXEMPT = new Set(['/health', '/ready', '/metrics']);

/**
 * Refuses work the instance cannot take, early and cheaply, so overload degrades into quick 503s with
 * Retry-After instead of timeouts for everyone: too many requests in flight, or too many queries already
 * waiting for a database connection. Health and metrics always answer.
 */
export function loadShedding(options: { maxInflight: number; maxDbWaiting: number; pool: pg.Pool }) {
  let inflight = 0;
  return (req: Request, res: Response, next: NextFunction) => {
    if (EXEMPT.has(req.path)) return next();
    if (inflight >= options.maxInflight || options.pool.waitingCount >= options.maxDbWaiting) {
      return next(new AppError('unavailable', 'creditgate is overloaded; retry shortly', { reason: 'overloaded' }));
    }
    inflight++;
    res.once('close', () => inflight--);
    next();
  };
}
