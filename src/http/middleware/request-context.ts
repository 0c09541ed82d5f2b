import type { NextFunction, Request, Response } from 'express';
import { newId } from '../../lib/ids.js';
import type { Logger } from '../../lib/logger.js';

declare module 'express-serve-static-core' {
  interface Request {
    requestId: string;
    log: Logger;
    /** Whether the client went away before its response finished, whenever that happens. */
    clientWatch: ClientWatch;
  }
}

const CLIENT_REQUEST_ID = /^[\w.:-]{1,128}$/;
const noop = () => undefined;

/**
 * Whether a request's client is gone: its connection closed before the response finished, or the request was
 * declared gone (a client that stopped reading counts as gone). The routes that call the upstream watch it with
 * `onGone`. Not an AbortSignal: Node gives every AbortSignal hidden classes of its own, about 2 µs and half a
 * kilobyte that V8's young collections keep until a full one (bench/README.md), which every request would pay for.
 */
export class ClientWatch {
  private listeners: Set<(reason: unknown) => void> | undefined;
  private gone = false;
  private reason: unknown;

  get isGone(): boolean {
    return this.gone;
  }

  /**
   * Calls `listener` with the reason once the client is gone (at once if it already is); returns what stops it (a
   * WatchClient).
   */
  onGone(listener: (reason: unknown) => void): () => void {
    if (this.gone) {
      listener(this.reason);
      return noop;
    }
    (this.listeners ??= new Set()).add(listener);
    return () => this.listeners?.delete(listener);
  }

  /** The client counts as gone from now on, for `reason` (undefined: its connection closed). */
  treatAsGone(reason?: unknown): void {
    if (this.gone) return;
    this.gone = true;
    this.reason = reason;
    const listeners = this.listeners;
    this.listeners = undefined;
    if (listeners) for (const listener of listeners) listener(reason);
  }
}

/** A response's 'close' listener (one function for all: `this` is the response). */
function onResponseClose(this: Response): void {
  if (!this.writableFinished) this.req.clientWatch.treatAsGone();
}

/**
 * Gives every request an id (the caller's X-Request-Id when sane), a child logger that carries it, and its client
 * watch. The watch is set up here, as the request arrives: a 'close' listener attached later (after the body, the
 * authentication or the hold) would never fire for a client that left in between.
 */
export function requestContext(log: Logger) {
  return (req: Request, res: Response, next: NextFunction) => {
    const incoming = req.get('x-request-id');
    req.requestId = incoming && CLIENT_REQUEST_ID.test(incoming) ? incoming : newId('req');
    req.log = log.child({ request_id: req.requestId });
    req.clientWatch = new ClientWatch();
    res.once('close', onResponseClose);
    res.setHeader('X-Request-Id', req.requestId);
    next();
  };
}
