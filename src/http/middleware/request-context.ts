import type { NextFunction, Request, Response } from 'express';
import { newId } from '../../lib/ids.js';
import type { Logger } from '../../lib/logger.js';

declare module 'express-serve-static-core' {
  interface Request {
    requestId: string;
    log: Logger;
  }
}

const CLIENT_REQUEST_ID = /^[\w.:-]{1,128}$/;

/** Gives every request an id (the caller's X-Request-Id when sane) and a child logger that carries it. */
export function requestContext(log: Logger) {
  return (req: Request, res: Response, next: NextFunction) => {
    const incoming = req.get('x-request-id');
    req.requestId = incoming && CLIENT_REQUEST_ID.test(incoming) ? incoming : newId('req');
    req.log = log.child({ request_id: req.requestId });
    res.setHeader('X-Request-Id', req.requestId);
    next();
  };
}
