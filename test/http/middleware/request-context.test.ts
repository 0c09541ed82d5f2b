import { once } from 'node:events';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientWatch, requestContext } from '../../../src/http/middleware/request-context.js';
import { createHttpServer } from '../../../src/http/server.js';

describe('ClientWatch', () => {
  it('tells a listener that came before the client left, with the reason given', () => {
    const watch = new ClientWatch();
    const heard: unknown[] = [];
    watch.onGone((reason) => heard.push(reason));
    expect(watch.isGone).toBe(false);
    expect(heard).toEqual([]);
    const reason = new Error('slow reader');
    watch.treatAsGone(reason);
    expect(watch.isGone).toBe(true);
    expect(heard).toEqual([reason]);
  });

  it('tells a listener that comes after the client left at once, and keeps the first reason', () => {
    const watch = new ClientWatch();
    const first = new Error('first');
    watch.treatAsGone(first);
    watch.treatAsGone(new Error('second'));
    const heard: unknown[] = [];
    watch.onGone((reason) => heard.push(reason));
    expect(heard).toEqual([first]);
  });

  it('tells its listeners once, with the reason, and at once a listener that comes after', () => {
    const watch = new ClientWatch();
    const heard: unknown[] = [];
    const stopped: unknown[] = [];
    watch.onGone((reason) => heard.push(reason));
    const stop = watch.onGone((reason) => stopped.push(reason));
    stop();
    const reason = new Error('gone');
    watch.treatAsGone(reason);
    watch.treatAsGone(new Error('again'));
    expect(heard).toEqual([reason]);
    expect(stopped).toEqual([]);
    expect(watch.isGone).toBe(true);
    const late: unknown[] = [];
    watch.onGone((why) => late.push(why));
    expect(late).toEqual([reason]);
  });

  it('gives no reason when the connection closed without one', () => {
    const watch = new ClientWatch();
    const heard: unknown[] = [];
    watch.onGone((reason) => heard.push(reason));
    watch.treatAsGone();
    expect(watch.isGone).toBe(true);
    expect(heard).toEqual([undefined]);
  });
});

describe('requestContext', () => {
  const app = express();
  const log = pino({ level: 'silent' });
  let seen: ((watch: ClientWatch) => void) | undefined;
  app.use(requestContext(log));
  // Answers only after the client left (never, if it stays): the watch must see the close however late it asks.
  app.get('/hang', (req) => seen?.(req.clientWatch));
  app.get('/quick', (req, res) => {
    seen?.(req.clientWatch);
    res.json({ id: req.requestId });
  });
  const server = createHttpServer(app, { HEADERS_TIMEOUT_MS: 5_000, REQUEST_TIMEOUT_MS: 5_000, MAX_UNAUTHENTICATED_CONNECTIONS_PER_ADDRESS: 100 });

  beforeAll(async () => {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  });
  afterAll(() => {
    server.close();
  });

  const port = () => (server.address() as AddressInfo).port;

  it('sees a client that leaves before its response, though the watch is read only afterwards', async () => {
    const arrived = new Promise<ClientWatch>((resolve) => (seen = resolve));
    const req = request({ port: port(), host: '127.0.0.1', path: '/hang' });
    req.on('error', () => undefined);
    req.end();
    const watch = await arrived;
    req.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(watch.isGone).toBe(true);
  });

  it('does not count a client whose response finished as gone', async () => {
    const arrived = new Promise<ClientWatch>((resolve) => (seen = resolve));
    const req = request({ port: port(), host: '127.0.0.1', path: '/quick', headers: { 'x-request-id': 'req-mine' } });
    req.end();
    const [res] = await once(req, 'response');
    let text = '';
    for await (const part of res) text += String(part);
    expect(JSON.parse(text)).toEqual({ id: 'req-mine' });
    const watch = await arrived;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(watch.isGone).toBe(false);
  });
});
