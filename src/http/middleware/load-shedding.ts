import type { NextFunction, Request, Response } from 'express';
import type pg from 'pg';
import { AppError } from '../../lib/errors.js';

/**
 * Refuses work the instance cannot take, early and cheaply, so overload degrades into quick 503s with
 * Retry-After instead of timeouts for everyone: too many requests in flight, or too many queries already
 * waiting for a database connection. Mounted on authenticated routes after the credential was checked and before
 * the body is read, so a client without a key cannot take a slot, and a slow body does not hold one; and on public
 * routes that take a body to verify (a webhook), whose sender retries a 503.
 */
export function inflightSlots(options: { maxInflight: number; maxDbWaiting: number; pool: pg.Pool }) {
  let inflight = 0;
  return (_req: Request, res: Response, next: NextFunction) => {
    if (inflight >= options.maxInflight || options.pool.waitingCount >= options.maxDbWaiting) {
      return next(new AppError('unavailable', 'creditgate is overloaded; retry shortly', { reason: 'overloaded' }));
    }
    inflight++;
    res.once('close', () => inflight--);
    next();
  };
}
