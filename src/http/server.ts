import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Express } from 'express';

/**
 * The HTTP server of the app. Requests Node's parser refuses before express sees them (headers over the size
 * limit, malformed HTTP) still get an answer in the contract's JSON error shape.
 */
export function createHttpServer(app: Express): Server {
  const server = createServer(app);
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
