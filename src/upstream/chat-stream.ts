import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { urlToHttpOptions } from 'node:url';
import { createParser, type EventSourceMessage, type EventSourceParser } from 'eventsource-parser';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { UpstreamError } from './errors.js';

/** One chunk of the upstream's stream: parsed, and the JSON text exactly as it came (to pass on unchanged). */
export interface UpstreamChunk {
  chunk: ChatCompletionChunk;
  data: string;
}

export interface ChatStreamRequest {
  body: Record<string, unknown>;
  /** Names the model in errors. */
  model: string;
  signal: AbortSignal;
  /** Once chunks flow, the longest silence allowed between two reads of the upstream (a paused read is ours). */
  idleTimeoutMs: number;
}

/** Chunks read ahead of the consumer before the upstream socket is paused (a slow client slows the upstream). */
const READ_AHEAD_CHUNKS = 32;
const MAX_ERROR_BODY_BYTES = 16 * 1024;
/** How long the end of a response may lag behind its [DONE] before the socket is dropped instead of reused. */
const END_AFTER_DONE_MS = 1_000;

/**
 * The streaming transport to an OpenAI-compatible upstream: node:http with keep-alive sockets and
 * eventsource-parser, chunk by chunk, with no web streams or async generators per chunk in between (the openai
 * SDK's streaming path cost four times the CPU per stream; see bench/README.md). Non-streamed calls use the SDK.
 */
export class ChatStreamTransport {
  private readonly agent: HttpAgent;
  private readonly send: typeof httpRequest;
  /** Where every request goes, taken apart once: Node would parse a URL object again for each request. */
  private readonly target: RequestOptions;
  /**
   * The headers as name/value pairs, Host included: Node writes such a list as it is, where an object's headers are
   * validated and stored one by one for every request, though they never change.
   */
  private readonly headers: string[];

  constructor(baseURL: string, apiKey: string) {
    const url = new URL(`${baseURL.replace(/\/+$/, '')}/chat/completions`);
    const https = url.protocol === 'https:';
    this.agent = https ? new HttpsAgent({ keepAlive: true, scheduling: 'lifo' }) : new HttpAgent({ keepAlive: true, scheduling: 'lifo' });
    this.send = https ? httpsRequest : httpRequest;
    this.target = { ...urlToHttpOptions(url), method: 'POST', agent: this.agent };
    this.headers = ['Host', url.host, 'Authorization', `Bearer ${apiKey}`, 'Content-Type', 'application/json', 'Accept', 'text/event-stream', 'User-Agent', 'creditgate'];
  }

  /** Resolves once the upstream answered 200 (the chunks are read from the stream); rejects with UpstreamError. */
  open(request: ChatStreamRequest): Promise<UpstreamChunkStream> {
    return this.attempt(request, { payload: JSON.stringify(request.body) }, true);
  }

  /**
   * `body.payload` is kept for a retry until the upstream answers, then let go: the request's listeners live as
   * long as the stream, and a payload they could reach would hold a second copy of the prompt for all that time
   * (so no listener refers to the executor's `payload` either).
   */
  private attempt(request: ChatStreamRequest, body: { payload?: string }, mayRetry: boolean): Promise<UpstreamChunkStream> {
    const { model, signal } = request;
    if (signal.aborted) return Promise.reject(UpstreamError.ofAbort(signal));
    return new Promise((resolve, reject) => {
      const payload = body.payload ?? '';
      const req = this.send({ ...this.target, headers: [...this.headers, 'Content-Length', String(Buffer.byteLength(payload))] });
      const onAbort = () => {
        req.destroy();
        reject(UpstreamError.ofAbort(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      let responded = false;
      req.on('error', (error: NodeJS.ErrnoException) => {
        // After the response began, its stream reports the failure.
        if (responded) return;
        signal.removeEventListener('abort', onAbort);
        // A kept-alive socket the upstream closed just as it was reused: the request never reached it.
        if (mayRetry && req.reusedSocket && error.code === 'ECONNRESET' && !signal.aborted) {
          this.attempt(request, body, false).then(resolve, reject);
          return;
        }
        reject(new UpstreamError(`model ${model} is unreachable`, 'connection', undefined, error));
      });
      req.on('response', (res) => {
        responded = true;
        body.payload = undefined;
        signal.removeEventListener('abort', onAbort);
        if (res.statusCode !== 200) {
          readErrorBody(res).then((detail) => reject(new UpstreamError(`model ${model} failed with HTTP ${res.statusCode}`, 'http', res.statusCode, detail)));
          return;
        }
        resolve(new UpstreamChunkStream(req, res, request));
      });
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

async function readErrorBody(res: IncomingMessage): Promise<string> {
  let text = '';
  res.setEncoding('utf8');
  try {
    for await (const part of res) {
      if (text.length < MAX_ERROR_BODY_BYTES) text += part as string;
    }
  } catch {
    // The status says enough; the body is only for the log.
  }
  return text.slice(0, MAX_ERROR_BODY_BYTES);
}

type Waiter = { resolve: (chunk: UpstreamChunk | null) => void; reject: (error: UpstreamError) => void };

/**
 * The chunks of one upstream response, read as they arrive. `next()` returns a chunk at once when one is ready
 * (no promise per chunk), else a promise; null after `[DONE]` or the end of the response. Errors are
 * UpstreamErrors: an in-band error event, a malformed line, a broken connection, silence, an abort.
 */
export class UpstreamChunkStream {
  private readonly queue: UpstreamChunk[] = [];
  private head = 0;
  private finished = false;
  private failure: UpstreamError | null = null;
  private waiter: Waiter | null = null;
  private paused = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly parser: EventSourceParser;
  private readonly onAbort: () => void;

  constructor(
    private readonly req: ClientRequest,
    private readonly res: IncomingMessage,
    private readonly request: ChatStreamRequest,
  ) {
    this.parser = createParser({ onEvent: (event) => this.onEvent(event) });
    this.onAbort = () => this.fail(UpstreamError.ofAbort(request.signal));
    request.signal.addEventListener('abort', this.onAbort, { once: true });
    res.setEncoding('utf8');
    res.on('data', (text: string) => {
      this.idleTimer?.refresh();
      this.parser.feed(text);
    });
    res.on('end', () => this.finish());
    res.on('close', () => {
      if (!res.complete) this.fail(new UpstreamError(`model ${request.model} closed the stream early`, 'connection'));
    });
    res.on('error', () => undefined);
  }

  next(): UpstreamChunk | null | Promise<UpstreamChunk | null> {
    if (this.head < this.queue.length) {
      const item = this.queue[this.head++] as UpstreamChunk;
      if (this.head === this.queue.length) {
        this.queue.length = 0;
        this.head = 0;
        if (this.paused) {
          this.paused = false;
          this.res.resume();
        }
      }
      return item;
    }
    if (this.failure) return Promise.reject(this.failure);
    if (this.finished) return null;
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /**
   * Stops reading. After [DONE] the end of the response may still be on its way: it is read (for a moment at
   * most), so the socket goes back to the pool. Any other unfinished response is dropped with its socket.
   */
  close(): void {
    this.stopWatching();
    if (this.res.complete) return;
    if (!this.finished) {
      this.req.destroy();
      return;
    }
    const giveUp = setTimeout(() => this.req.destroy(), END_AFTER_DONE_MS);
    this.res.once('close', () => clearTimeout(giveUp));
  }

  private onEvent(event: EventSourceMessage): void {
    if (this.finished || this.failure) return;
    const { data } = event;
    if (data === '[DONE]') return this.finish();
    let chunk: ChatCompletionChunk & { error?: unknown };
    try {
      chunk = JSON.parse(data) as typeof chunk;
    } catch {
      return this.fail(new UpstreamError(`model ${this.request.model} sent a malformed stream`, 'protocol', undefined, data.slice(0, 500)));
    }
    if (event.event === 'error' || chunk.error !== undefined || !Array.isArray(chunk.choices)) {
      return this.fail(new UpstreamError(`model ${this.request.model} reported an error in its stream`, 'protocol', undefined, data.slice(0, 500)));
    }
    this.idleTimer ??= setTimeout(() => this.onIdle(), this.request.idleTimeoutMs);
    const item = { chunk, data };
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = null;
      waiter.resolve(item);
      return;
    }
    this.queue.push(item);
    if (!this.paused && this.queue.length - this.head >= READ_AHEAD_CHUNKS) {
      this.paused = true;
      this.res.pause();
    }
  }

  private onIdle(): void {
    if (this.finished || this.failure) return;
    // Silence while our reader is paused is the client's slowness, not the upstream's.
    if (this.paused || this.head < this.queue.length) {
      this.idleTimer?.refresh();
      return;
    }
    this.fail(new UpstreamError(`model ${this.request.model} sent nothing for ${this.request.idleTimeoutMs} ms`, 'timeout'));
  }

  private finish(): void {
    if (this.finished || this.failure) return;
    this.finished = true;
    this.stopWatching();
    // Whatever follows [DONE] is read and dropped, so the socket goes back to the pool.
    if (this.paused) this.res.resume();
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.resolve(null);
  }

  private fail(error: UpstreamError): void {
    if (this.finished || this.failure) return;
    this.failure = error;
    this.stopWatching();
    this.req.destroy();
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.reject(error);
  }

  private stopWatching(): void {
    clearTimeout(this.idleTimer);
    this.request.signal.removeEventListener('abort', this.onAbort);
  }
}
