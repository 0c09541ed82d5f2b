import type { Request, Response } from 'express';
import { SSE_HEADERS } from '../sse/encode.js';
import type { StreamSink } from '../sse/sink.js';

/**
 * An express response as a StreamSink: headers on demand, per-frame writes that honour backpressure. Frames
 * written in the same tick (the upstream delivered them in one read) leave in one socket write: node's chunked
 * writes cork the socket until the next tick, and the headers are held back the same way to go with the first frame.
 */
export function createSseSink(req: Request, res: Response): StreamSink {
  const controller = new AbortController();
  // 'close' before the response finished means the client went away.
  res.on('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  let opened = false;
  return {
    get opened() {
      return opened;
    },
    signal: controller.signal,
    get closed() {
      return controller.signal.aborted;
    },
    open(headers = {}) {
      if (opened) return;
      opened = true;
      // Small frames must leave at once, not wait for Nagle's algorithm to batch them.
      req.socket.setNoDelay(true);
      // The headers leave with the first frame when one follows in the same tick.
      res.cork();
      process.nextTick(() => res.uncork());
      res.writeHead(200, { ...SSE_HEADERS, ...headers });
      res.flushHeaders();
    },
    write(frame) {
      if (controller.signal.aborted) return Promise.reject(new Error('client disconnected'));
      if (res.write(frame)) return undefined;
      return new Promise<void>((resolve, reject) => {
        const onDrain = () => {
          controller.signal.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = () => {
          res.off('drain', onDrain);
          reject(new Error('client disconnected'));
        };
        res.once('drain', onDrain);
        controller.signal.addEventListener('abort', onAbort, { once: true });
      });
    },
    end() {
      if (!res.writableEnded) res.end();
    },
  };
}

/** Aborted when the client of a plain (non-streamed) request goes away, so its upstream call stops too. */
export function clientGone(res: Response): AbortSignal {
  const controller = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  return controller.signal;
}
