import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChatStreamTransport, type UpstreamChunk, type UpstreamChunkStream } from '../../src/upstream/chat-stream.js';
import { UpstreamClient } from '../../src/upstream/client.js';
import { UpstreamError } from '../../src/upstream/errors.js';
import { startSimulatedUpstream, type SimulatedUpstream, type UpstreamScript } from '../../src/upstream/simulated-server.js';
import { sleep } from '../helpers/wait.js';

/**
 * Unit tests of the streaming transport (src/upstream/chat-stream.ts) against a real HTTP upstream on 127.0.0.1:
 * the scriptable simulated upstream, and for the keep-alive case a tiny node:http server that counts connections.
 * No database is needed.
 */

const MODEL = 'sim-small';
const BODY = { model: MODEL, messages: [{ role: 'user', content: 'Hi' }] };

let upstream: SimulatedUpstream;
const transports: { close(): void }[] = [];
const streams: UpstreamChunkStream[] = [];
const servers: Server[] = [];

beforeEach(async () => {
  upstream = await startSimulatedUpstream();
});

afterEach(async () => {
  for (const stream of streams.splice(0)) stream.close();
  for (const transport of transports.splice(0)) transport.close();
  await upstream.close();
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

function newClient(baseURL = upstream.baseURL): UpstreamClient {
  const client = new UpstreamClient({ baseURL, apiKey: 'k', timeoutMs: 5000 });
  transports.push(client);
  return client;
}

function newTransport(baseURL = upstream.baseURL): ChatStreamTransport {
  const transport = new ChatStreamTransport(baseURL, 'k');
  transports.push(transport);
  return transport;
}

/** Opens a stream of `script` through UpstreamClient.stream (stream: true + include_usage). */
async function openScripted(
  script: UpstreamScript,
  options: { idleTimeoutMs?: number; signal?: AbortSignal } = {},
): Promise<UpstreamChunkStream> {
  upstream.enqueue(script);
  const stream = await newClient().stream({
    body: BODY,
    model: MODEL,
    signal: options.signal ?? new AbortController().signal,
    idleTimeoutMs: options.idleTimeoutMs ?? 2000,
  });
  streams.push(stream);
  return stream;
}

async function readAll(stream: UpstreamChunkStream): Promise<UpstreamChunk[]> {
  const items: UpstreamChunk[] = [];
  for (;;) {
    const item = await stream.next();
    if (item === null) return items;
    items.push(item);
  }
}

async function read(stream: UpstreamChunkStream, count: number): Promise<UpstreamChunk[]> {
  const items: UpstreamChunk[] = [];
  for (let i = 0; i < count; i++) {
    const item = await stream.next();
    if (item === null) throw new Error(`stream ended after ${i} of ${count} chunks`);
    items.push(item);
  }
  return items;
}

/**
 * The UpstreamError that `run` rejects (or throws) with; fails the test if it resolves, throws something else, or
 * has not settled within `deadlineMs` (so a missing timeout or abort fails fast instead of hanging the file).
 */
async function upstreamErrorOf(run: () => unknown, deadlineMs = 3000): Promise<UpstreamError> {
  let caught: unknown;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not settled within ${deadlineMs} ms`)), deadlineMs);
  });
  try {
    await Promise.race([(async () => run())(), deadline]);
  } catch (error) {
    caught = error;
  } finally {
    clearTimeout(timer);
  }
  expect(caught).toBeInstanceOf(UpstreamError);
  return caught as UpstreamError;
}

const contentOf = (items: UpstreamChunk[]) => items.map((i) => i.chunk.choices[0]?.delta.content ?? '').join('');

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('ChatStreamTransport: a normal stream', () => {
  it('delivers every chunk in order with its raw JSON text, the usage chunk, then null; sends stream + include_usage + auth', async () => {
    const stream = await openScripted({
      steps: [
        { type: 'content', text: 'Hello' },
        { type: 'content', text: ', ' },
        { type: 'content', text: 'world' },
        { type: 'finish', reason: 'stop' },
      ],
      usage: { prompt_tokens: 7, completion_tokens: 3 },
    });
    const items = await readAll(stream);

    // role chunk, three content chunks, the finish chunk, the usage chunk
    expect(items).toHaveLength(6);
    for (const { chunk, data } of items) {
      expect(typeof data).toBe('string');
      expect(JSON.parse(data)).toEqual(chunk);
    }
    expect(items[0]?.chunk.choices[0]?.delta).toEqual({ role: 'assistant', content: '' });
    expect(items.slice(1, 4).map((i) => i.chunk.choices[0]?.delta.content)).toEqual(['Hello', ', ', 'world']);
    expect(contentOf(items)).toBe('Hello, world');
    expect(items[4]?.chunk.choices[0]?.finish_reason).toBe('stop');
    const usageChunk = items[5]!.chunk;
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage).toEqual({ prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 });
    // All chunks of one completion share its id.
    expect(new Set(items.map((i) => i.chunk.id)).size).toBe(1);

    // Null again after the end, not a hang or an error.
    expect(await stream.next()).toBeNull();

    const [request] = await upstream.waitForRequests(1, 1000);
    expect(request!.path).toBe('/v1/chat/completions');
    expect(request!.body.stream).toBe(true);
    expect(request!.body.stream_options).toEqual({ include_usage: true });
    expect(request!.body.model).toBe(MODEL);
    expect(request!.body.messages).toEqual(BODY.messages);
    expect(request!.headers.authorization).toBe('Bearer k');
    expect(request!.headers.accept).toBe('text/event-stream');
    expect(request!.headers['content-type']).toBe('application/json');
    expect(request!.headers['user-agent']).toBe('creditgate');
    expect(request!.headers.host).toBe(new URL(upstream.baseURL).host);
    expect(Number(request!.headers['content-length'])).toBe(Buffer.byteLength(JSON.stringify(request!.body)));
    await upstream.waitForClosed(request!.id, 1000);
    expect(upstream.requests[0]!.abortedByClient).toBe(false);
  });
});

describe('ChatStreamTransport: keep-alive', () => {
  // 0: [DONE] and the end of the response arrive together; 20: the end lags behind, as with real upstreams.
  it.each([0, 20])(
    'reuses one TCP connection for two streams closed as soon as [DONE] arrives (end %i ms later), passing the JSON text on unchanged',
    async (endLagMs) => {
      // Spacing that JSON.stringify would not produce: `data` must be the text as sent, not a re-serialization.
      const first = '{"id":"c1", "object":"chat.completion.chunk", "created":1, "model":"m", "choices":[{"index":0, "delta":{"content":"x"}, "finish_reason":null}]}';
      const second = '{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}';
      const sse = `data: ${first}\n\ndata: ${second}\n\ndata: [DONE]\n\n`;

      let connections = 0;
      let requestCount = 0;
      const server = createServer((req, res) => {
        requestCount++;
        req.resume();
        req.on('end', () => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          res.write(sse);
          setTimeout(() => res.end(), endLagMs);
        });
      });
      servers.push(server);
      server.on('connection', (_socket: Socket) => {
        connections++;
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;

      const transport = newTransport(baseURL);
      for (let round = 0; round < 2; round++) {
        const stream = await transport.open({ body: { ...BODY, stream: true }, model: MODEL, signal: new AbortController().signal, idleTimeoutMs: 2000 });
        const items = await readAll(stream);
        // What the app does: close the stream the moment it ends.
        stream.close();
        expect(items.map((i) => i.data)).toEqual([first, second]);
        expect(items[0]!.chunk.choices[0]?.delta.content).toBe('x');
        // Let the response's end be processed so its socket is back in the pool before the next request.
        await sleep(endLagMs + 20);
      }
      expect(requestCount).toBe(2);
      expect(connections).toBe(1);
    },
  );

  it('sends a request again, whole, on a new connection when the kept-alive one is reset as it is reused', async () => {
    const sse = `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}\n\ndata: [DONE]\n\n`;
    const bodies: string[] = [];
    const requestsOnSocket = new Map<Socket, number>();
    const server = createServer((req, res) => {
      const seen = (requestsOnSocket.get(req.socket) ?? 0) + 1;
      requestsOnSocket.set(req.socket, seen);
      // The second request on a kept-alive connection: reset, as an upstream that had just closed it would.
      if (seen === 2) {
        req.socket.resetAndDestroy();
        return;
      }
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (part: string) => (text += part));
      req.on('end', () => {
        bodies.push(text);
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.end(sse);
      });
    });
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const transport = newTransport(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`);
    const prompts = ['first', 'second '.repeat(10_000)];
    for (const prompt of prompts) {
      const body = { ...BODY, messages: [{ role: 'user', content: prompt }], stream: true };
      const stream = await transport.open({ body, model: MODEL, signal: new AbortController().signal, idleTimeoutMs: 2000 });
      expect((await readAll(stream)).map((item) => item.chunk.choices[0]?.delta.content)).toEqual(['x']);
      stream.close();
      await sleep(20);
    }
    // The reset request reached nobody; its retry, on a connection of its own, carried the whole body.
    expect(bodies.map((text) => JSON.parse(text).messages[0].content)).toEqual(prompts);
    expect(requestsOnSocket.size).toBe(2);
  });
});

describe('ChatStreamTransport: HTTP errors before the stream', () => {
  it.each([500, 429])('rejects open() with kind http and status %i, keeping the upstream text out of the message', async (status) => {
    upstream.enqueue({ status, errorMessage: 'SECRET-upstream-text sk-abc123' });
    const error = await upstreamErrorOf(() =>
      newClient().stream({ body: BODY, model: MODEL, signal: new AbortController().signal, idleTimeoutMs: 2000 }),
    );
    expect(error.kind).toBe('http');
    expect(error.upstreamStatus).toBe(status);
    expect(error.message).toContain(String(status));
    expect(error.message).not.toContain('SECRET');
    expect(error.message).not.toContain('sk-abc123');
    expect(String(error.detail)).toContain('SECRET-upstream-text sk-abc123');
  });
});

describe('ChatStreamTransport: failures inside the stream', () => {
  it('returns the chunks before an in-band error event, then rejects with kind protocol', async () => {
    const stream = await openScripted({
      steps: [
        { type: 'content', text: 'partial' },
        { type: 'error', message: 'model overloaded', delayMs: 20 },
      ],
    });
    const items = await read(stream, 2);
    expect(items[1]?.chunk.choices[0]?.delta.content).toBe('partial');
    const error = await upstreamErrorOf(() => stream.next());
    expect(error.kind).toBe('protocol');
    expect(error.message).not.toContain('model overloaded');
    expect(String(error.detail)).toContain('model overloaded');
    // The failure sticks.
    expect((await upstreamErrorOf(() => stream.next())).kind).toBe('protocol');
  });

  it.each([
    ['an `event: error` event whose data looks like a chunk', 'event: error\ndata: {"choices":[],"message":"boom"}', '"boom"'],
    ['a malformed data line', 'data: {not json', '{not json'],
  ])('rejects with kind protocol on %s, after the chunks before it, and closes the upstream request', async (_what, line, detail) => {
    const stream = await openScripted({
      steps: [
        { type: 'content', text: 'a' },
        { type: 'raw', line },
        { type: 'content', text: 'never' },
      ],
    });
    const items = await read(stream, 2);
    expect(items[1]?.chunk.choices[0]?.delta.content).toBe('a');
    const error = await upstreamErrorOf(() => stream.next());
    expect(error.kind).toBe('protocol');
    expect(String(error.detail)).toContain(detail);
    const [request] = await upstream.waitForRequests(1, 1000);
    await upstream.waitForClosed(request!.id, 2000);
  });

  it('rejects with kind connection when the upstream destroys the connection mid-stream, after the chunks received', async () => {
    const stream = await openScripted({
      steps: [
        { type: 'content', text: 'one ' },
        { type: 'content', text: 'two' },
        { type: 'destroy', delayMs: 50 },
      ],
    });
    const items = await read(stream, 3);
    expect(contentOf(items)).toBe('one two');
    const error = await upstreamErrorOf(() => stream.next());
    expect(error.kind).toBe('connection');
  });
});

describe('ChatStreamTransport: idle timeout', () => {
  it('rejects with kind timeout after idleTimeoutMs of silence and closes the upstream request', async () => {
    const stream = await openScripted({ steps: [{ type: 'content', text: 'a' }, { type: 'hang' }] }, { idleTimeoutMs: 150 });
    const items = await read(stream, 2);
    expect(items[1]?.chunk.choices[0]?.delta.content).toBe('a');
    const started = Date.now();
    const error = await upstreamErrorOf(() => stream.next());
    const elapsed = Date.now() - started;
    expect(error.kind).toBe('timeout');
    expect(error.message).toContain('150');
    // The timer runs from the last bytes read, which came just before `started`.
    expect(elapsed).toBeGreaterThanOrEqual(100);
    expect(elapsed).toBeLessThan(1000);
    const [request] = await upstream.waitForRequests(1, 1000);
    const closed = await upstream.waitForClosed(request!.id, 1000);
    expect(closed.abortedByClient).toBe(true);
  });

  it('does not time out while the consumer is slow and the reader is paused', async () => {
    const piece = 'x'.repeat(1000);
    const count = 200;
    const stream = await openScripted(
      { steps: Array.from({ length: count }, () => ({ type: 'content' as const, text: piece })), usage: 'none' },
      { idleTimeoutMs: 100 },
    );
    await sleep(400);
    // Chunks were read ahead while we slept: the first one is returned synchronously, not as a promise.
    const first = stream.next();
    expect(first).not.toBeInstanceOf(Promise);
    expect(first).not.toBeNull();
    const items = [first as UpstreamChunk, ...(await readAll(stream))];
    // role chunk + content chunks + finish chunk
    expect(items).toHaveLength(count + 2);
    expect(items.slice(1, count + 1).every((i) => i.chunk.choices[0]?.delta.content === piece)).toBe(true);
    expect(items.at(-1)?.chunk.choices[0]?.finish_reason).toBe('stop');
    const [request] = await upstream.waitForRequests(1, 1000);
    const closed = await upstream.waitForClosed(request!.id, 1000);
    expect(closed.abortedByClient).toBe(false);
  });
});

describe('ChatStreamTransport: abort', () => {
  it('rejects a pending next() with kind aborted when the signal aborts, and closes the upstream request', async () => {
    const controller = new AbortController();
    const stream = await openScripted({ steps: [{ type: 'content', text: 'a' }, { type: 'hang' }] }, { signal: controller.signal });
    await read(stream, 2);
    const pending = stream.next();
    expect(pending).toBeInstanceOf(Promise);
    setTimeout(() => controller.abort(), 20);
    const error = await upstreamErrorOf(() => pending);
    expect(error.kind).toBe('aborted');
    const [request] = await upstream.waitForRequests(1, 1000);
    const closed = await upstream.waitForClosed(request!.id, 1000);
    expect(closed.abortedByClient).toBe(true);
  });

  it('rejects with the signal reason when it is an UpstreamError', async () => {
    const controller = new AbortController();
    const stream = await openScripted({ steps: [{ type: 'content', text: 'a' }, { type: 'hang' }] }, { signal: controller.signal });
    await read(stream, 2);
    const pending = stream.next();
    const reason = new UpstreamError('deadline passed', 'timeout');
    controller.abort(reason);
    const error = await upstreamErrorOf(() => pending);
    expect(error).toBe(reason);
    const [request] = await upstream.waitForRequests(1, 1000);
    await upstream.waitForClosed(request!.id, 1000);
  });

  it('rejects open() with kind aborted when the signal aborts before the upstream answers', async () => {
    const controller = new AbortController();
    upstream.enqueue({ headersDelayMs: 5000, steps: [{ type: 'content', text: 'late' }] });
    const opening = newClient().stream({ body: BODY, model: MODEL, signal: controller.signal, idleTimeoutMs: 2000 });
    const [request] = await upstream.waitForRequests(1, 1000);
    controller.abort();
    const error = await upstreamErrorOf(() => opening);
    expect(error.kind).toBe('aborted');
    const closed = await upstream.waitForClosed(request!.id, 1000);
    expect(closed.abortedByClient).toBe(true);
  });
});

describe('ChatStreamTransport: connection refused', () => {
  it('rejects open() with kind connection when nothing listens on the port', async () => {
    const port = await freePort();
    const error = await upstreamErrorOf(() =>
      newClient(`http://127.0.0.1:${port}/v1`).stream({ body: BODY, model: MODEL, signal: new AbortController().signal, idleTimeoutMs: 2000 }),
    );
    expect(error.kind).toBe('connection');
    expect(error.upstreamStatus).toBeUndefined();
  });
});
