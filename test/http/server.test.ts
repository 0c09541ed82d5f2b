import { once } from 'node:events';
import { Agent, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpServer } from '../../src/http/server.js';

setFlagsFromString('--allow-natives-syntax');
// V8's own checks, compiled after the flag is set: do two objects have the same hidden class, is an object's a fast
// one (all objects in dictionary mode share one, so the first check alone would pass for them)?
const haveSameShape = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;
const hasFastProperties = new Function('a', 'return %HasFastProperties(a)') as (a: object) => boolean;

const app = express();
const seen: { req: express.Request; res: express.Response }[] = [];
app.post('/echo', express.json(), (req, res) => {
  seen.push({ req, res });
  res.json({ body: req.body as unknown, sameApp: req.app === app });
});
const server = createHttpServer(app, { HEADERS_TIMEOUT_MS: 5_000, REQUEST_TIMEOUT_MS: 5_000, MAX_UNAUTHENTICATED_CONNECTIONS_PER_ADDRESS: 100 });
const agent = new Agent({ keepAlive: true });

async function post(body: unknown): Promise<{ status: number; json: unknown }> {
  const { port } = server.address() as AddressInfo;
  const req = request({ port, host: '127.0.0.1', agent, method: 'POST', path: '/echo', headers: { 'content-type': 'application/json' } });
  req.end(JSON.stringify(body));
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  let text = '';
  for await (const part of res) text += String(part);
  return { status: res.statusCode ?? 0, json: JSON.parse(text) };
}

beforeAll(async () => {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
});
afterAll(() => {
  agent.destroy();
  server.close();
});

describe('the HTTP server', () => {
  it('makes requests and responses with the app prototypes, so express keeps them and they share fast hidden classes', async () => {
    for (let i = 0; i < 4; i++) expect(await post({ i })).toEqual({ status: 200, json: { body: { i }, sameApp: true } });

    const [first, ...later] = seen;
    if (!first) throw new Error('the route saw no request');
    expect(Object.getPrototypeOf(first.req)).toBe(app.request);
    expect(Object.getPrototypeOf(first.res)).toBe(app.response);
    expect(hasFastProperties(first.req)).toBe(true);
    expect(hasFastProperties(first.res)).toBe(true);
    for (const { req, res } of later) {
      expect(haveSameShape(req, first.req)).toBe(true);
      expect(haveSameShape(res, first.res)).toBe(true);
    }
  });
});
