import { createServer, type Server } from 'node:http';
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
  const server = createServer({ headersTimeout: config.HEADERS_TIMEOUT_MS, requestTimeout: config.REQUEST_TIMEOUT_MS }, app);
  guardConnections(server, config.MAX_UNAUTHENTICATED_CONNECTIONS_PER_ADDRESS);
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    if (error.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const tooLarge = error.code === 'HPE_HEADER_OVERFLOW';
    const body = JSON.stringify({
      error: {
        type: 'invalid_request_error',
        code: tooLarge ? 'headers_too_large' : 'malformed_request',
        message: tooLarge ? 'request headers (or the URL) are too large' : 'the request is not valid HTTP',
        param: null,
      },
    });
    socket.end(
      `HTTP/1.1 ${tooLarge ? '431 Request Header Fields Too Large' : '400 Bad Request'}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
  return server;
}
