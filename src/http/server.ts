import { createServer, IncomingMessage, ServerResponse, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Express } from 'express';
import type { Config } from '../config.js';
import { guardConnections } from './connection-guard.js';

/**
 * The HTTP server of the app. Requests Node's parser refuses before express sees them (headers over the size
 * limit, malformed HTTP) still get an answer in the contract's JSON error shape. Slow clients are bounded: the
 * headers must arrive within HEADERS_TIMEOUT_MS and the whole request (its body) within REQUEST_TIMEOUT_MS (the
 * response, a stream, may last as long as it needs), and one address may hold only so many connections that have
 * not authenticated a request.
 */
export function createHttpServer(app: Express, config: Pick<Config, 'HEADERS_TIMEOUT_MS' | 'REQUEST_TIMEOUT_MS' | 'MAX_UNAUTHENTICATED_CONNECTIONS_PER_ADDRESS'>): Server {
  const server = createServer(
    {
      ...shapedLikeTheApp(app),
      headersTimeout: config.HEADERS_TIMEOUT_MS,
      requestTimeout: config.REQUEST_TIMEOUT_MS,
      // Node checks both timeouts only this often (30 s by default): a slow client would get 30 s more than allowed.
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(Math.min(config.HEADERS_TIMEOUT_MS, config.REQUEST_TIMEOUT_MS) / 4))),
    },
    app,
  );
  guardConnections(server, config.MAX_UNAUTHENTICATED_CONNECTIONS_PER_ADDRESS);
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    if (error.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const refusal = CLIENT_ERRORS[error.code ?? ''] ?? MALFORMED;
    const body = JSON.stringify({ error: { type: 'invalid_request_error', code: refusal.code, message: refusal.message, param: null } });
    socket.end(`HTTP/1.1 ${refusal.status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });
  return server;
}

/**
 * The request and response classes of `app`'s server. Express gives each request and response its app's prototype
 * as it arrives (Object.setPrototypeOf); V8 then gives that object, and each property it gains later, hidden classes
 * of its own, so no two requests share one: every property access of Node's HTTP code and creditgate's on them
 * missed its inline cache, and each response carried a kilobyte of descriptors of its own. These classes make them
 * with the app's prototypes from the start (they become the app's prototypes, above express's own), so express's
 * change is a no-op and all requests share their shapes. (A plain function calling Node's constructors on `this`
 * would share them too, but as slow dictionary objects.)
 */
function shapedLikeTheApp(app: Express) {
  class Request extends IncomingMessage {}
  class Response extends ServerResponse {}
  Object.setPrototypeOf(Request.prototype, app.request);
  Object.setPrototypeOf(Response.prototype, app.response);
  app.request = Request.prototype as Express['request'];
  app.response = Response.prototype as Express['response'];
  return { IncomingMessage: Request, ServerResponse: Response };
}

interface ClientErrorAnswer {
  status: string;
  code: string;
  message: string;
}

const MALFORMED: ClientErrorAnswer = { status: '400 Bad Request', code: 'malformed_request', message: 'the request is not valid HTTP' };

/** Node's parser and timeout errors, answered in the contract's error shape. */
const CLIENT_ERRORS: Record<string, ClientErrorAnswer> = {
  HPE_HEADER_OVERFLOW: { status: '431 Request Header Fields Too Large', code: 'headers_too_large', message: 'request headers (or the URL) are too large' },
  ERR_HTTP_REQUEST_TIMEOUT: {
    status: '408 Request Timeout',
    code: 'request_timeout',
    message: 'the request (its headers or its body) did not arrive in time (HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS)',
  },
};
