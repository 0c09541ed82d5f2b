import type { NextFunction, Request, Response } from 'express';
import { newId } from '../../lib/ids.js';
import type { Logger } from '../../lib/logger.js';

declare module 'express-serve-static-core' {
  interface Request {
    requestId: string;
    log: Logger;
    /** Aborted when the client goes away before its response finished, whenever that happens. */
    clientGone: AbortSignal;
    /** Aborts `clientGone` now for `reason`: a client that stopped reading counts as gone. */
    treatClientAsGone(reason: unknown): void;
  }
}

const CLIENT_REQUEST_ID = /^[\w.:-]{1,128}$/;

/**
 * Gives every request an id (the caller's X-Request-Id when sane), a child logger that carries it, and its
 * client-gone signal. The signal is set up here, as the request arrives: a 'close' listener attached later (after
 * the body, the authentication or the hold) would never fire for a client that left in between.
 */
export function requestContext(log: Logger) {
  return (req: Request, res: Response, next: NextFunction) => {
    const incoming = req.get('x-request-id');
    req.requestId = incoming && CLIENT_REQUEST_ID.test(incoming) ? incoming : newId('req');
    req.log = log.child({ request_id: req.requestId });
    const gone = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    req.clientGone = gone.signal;
    req.treatClientAsGone = (reason) => gone.abort(reason);
    res.setHeader('X-Request-Id', req.requestId);
    next();
  };
}
