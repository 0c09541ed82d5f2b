import type { NextFunction, Request, Response } from 'express';
import type pg from 'pg';
import { AppError } from '../../lib/errors.js';
import type { RouteSpec } from '../route.js';

/** Routes that do work for a caller take a slot: every authenticated one, and a public one that takes a body (a webhook). */
export const takesInflightSlot = (route: RouteSpec): boolean => route.auth !== 'public' || route.rawBody !== undefined;

/**
 * Refuses work the instance cannot take, early and cheaply, so overload degrades into quick 503s with
 * Retry-After instead of timeouts for everyone: too many requests in flight, or too many queries already
 * waiting for a database connection. Mounted on authenticated routes after the credential was checked, and on
 * public routes that take a body to verify (a webhook), whose sender retries a 503.
 *
 * A request takes its slot only once its body has arrived (`take`, after the body is read): a client that sends
 * its body slowly, even with a valid key, holds a connection (until REQUEST_TIMEOUT_MS at most) but no slot, so
 * slow bodies cannot starve other clients. `refuseWhenFull` runs before the body is read, so an instance that is
 * already full answers 503 from the headers without reading bodies it would refuse anyway.
 */
export function inflightSlots(options: { maxInflight: number; maxDbWaiting: number; pool: pg.Pool }) {
  let inflight = 0;
  const overloaded = () =>
    inflight >= options.maxInflight || options.pool.waitingCount >= options.maxDbWaiting
      ? new AppError('unavailable', 'creditgate is overloaded; retry shortly', { reason: 'overloaded' })
      : undefined;
  return {
    refuseWhenFull(_req: Request, _res: Response, next: NextFunction): void {
      next(overloaded());
    },
    take(_req: Request, res: Response, next: NextFunction): void {
      const refusal = overloaded();
      if (refusal) return next(refusal);
      // A response already closed (the client left as its body ended) would never release a slot taken now.
      if (!res.closed) {
        inflight++;
        res.once('close', () => inflight--);
      }
      next();
    },
  };
}
