import type { Request, Response } from 'express';
import { endStream, type StreamedCall } from '../domain/llm/stream-end.js';
import { SSE_HEADERS } from '../sse/encode.js';
import { openAiFormat, type StreamFormat } from '../sse/formats.js';
import type { StreamSink } from '../sse/sink.js';
import { UpstreamError } from '../upstream/errors.js';
import type { ClientWatch } from './middleware/request-context.js';
import { streamedAnswer, type StreamedAnswer } from './route.js';

const slowReader = (ms: number) => UpstreamError.aborted('slow_reader', `the client read nothing for ${ms} ms`);

/**
 * An express response as a StreamSink: headers on demand, per-frame writes that honour backpressure. Frames
 * written in the same tick (the upstream delivered them in one read) leave in one socket write: node's chunked
 * writes cork the socket until the next tick, and the headers are held back the same way to go with the first frame.
 * The sink is closed as soon as the client is gone (the request's own watch, set up as it arrived), or when the
 * client leaves the socket full for `writeTimeoutMs`: a reader that stopped reading is a client that left.
 *
 * A class, not an object literal: a literal's getters are closures of each request, and V8 keeps them (and all a
 * request's objects they reach) in a hidden class of the sink's own, which young-generation collections treat as
 * alive until the next full collection: every stream's objects were promoted to the old generation (bench/README.md).
 */
export class SseSink implements StreamSink {
  // The request's own watch, not an AbortSignal: each AbortSignal costs Node about 2 µs to make and half a kilobyte
  // that young collections keep (it gets hidden classes of its own), and AbortSignal.any tens of µs.
  private readonly watch: ClientWatch;
  private isOpen = false;

  constructor(
    private readonly req: Request,
    private readonly res: Response,
    private readonly options: { writeTimeoutMs: number },
  ) {
    this.watch = req.clientWatch;
  }

  get opened(): boolean {
    return this.isOpen;
  }

  get closed(): boolean {
    return this.watch.isGone || this.res.destroyed;
  }

  onAbort(listener: (reason: unknown) => void): () => void {
    return this.watch.onGone(listener);
  }

  open(headers: Record<string, string> = {}): void {
    if (this.isOpen) return;
    this.isOpen = true;
    const res = this.res;
    // Small frames must leave at once, not wait for Nagle's algorithm to batch them.
    this.req.socket.setNoDelay(true);
    // The headers leave with the first frame when one follows in the same tick.
    res.cork();
    process.nextTick(() => res.uncork());
    res.writeHead(200, { ...SSE_HEADERS, ...headers });
    res.flushHeaders();
  }

  write(frame: string): Promise<void> | undefined {
    const { watch, res } = this;
    if (watch.isGone) return Promise.reject(new Error('client disconnected'));
    if (res.write(frame)) return undefined;
    const { writeTimeoutMs } = this.options;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        watch.treatAsGone(slowReader(writeTimeoutMs));
        res.destroy();
      }, writeTimeoutMs);
      // Assigned below; onGone calls its listener at once when the client is already gone.
      let stopWatching = (): void => undefined;
      const settle = () => {
        clearTimeout(timer);
        res.off('drain', onDrain);
        stopWatching();
      };
      const onDrain = () => {
        settle();
        resolve();
      };
      const onAbort = () => {
        settle();
        reject(new Error('client disconnected'));
      };
      res.once('drain', onDrain);
      stopWatching = watch.onGone(onAbort);
    });
  }

  end(): void {
    if (!this.res.writableEnded) this.res.end();
  }
}

/**
 * The end of a stream route whose call is recorded: with an Idempotency-Key the answer is stored first (a client
 * retrying the moment it sees [DONE] gets the replay, not a 409), then the error event if any and [DONE].
 */
export async function finishStream(
  sink: StreamSink,
  call: StreamedCall,
  answered: ((body: unknown) => Promise<void>) | undefined,
  format: StreamFormat = openAiFormat,
): Promise<StreamedAnswer> {
  const answer = streamedAnswer(call.callId);
  await answered?.(answer);
  await endStream(sink, format, call);
  return answer;
}
