import type { Server } from 'node:http';
import type { Socket } from 'node:net';

const RELEASE = Symbol('creditgate.unauthenticated');

type GuardedSocket = Socket & { [RELEASE]?: () => void };

/**
 * A cap on connections per client address that have not yet carried an authenticated request: one client with no
 * key cannot hold thousands of sockets open (slow headers, a body that never ends) while a team's clients behind
 * one address keep every connection they authenticated. A connection over the cap is closed at once.
 */
export function guardConnections(server: Server, maxUnauthenticatedPerAddress: number): void {
  const unauthenticated = new Map<string, number>();
  server.on('connection', (socket: GuardedSocket) => {
    const address = socket.remoteAddress ?? 'unknown';
    const count = (unauthenticated.get(address) ?? 0) + 1;
    if (count > maxUnauthenticatedPerAddress) {
      socket.destroy();
      return;
    }
    unauthenticated.set(address, count);
    let counted = true;
    socket[RELEASE] = () => {
      if (!counted) return;
      counted = false;
      const left = (unauthenticated.get(address) ?? 1) - 1;
      if (left > 0) unauthenticated.set(address, left);
      else unauthenticated.delete(address);
    };
    socket.once('close', socket[RELEASE]);
  });
}

/** The connection carried a request with a valid credential: it no longer counts against its address's cap. */
export function markAuthenticated(socket: Socket): void {
  (socket as GuardedSocket)[RELEASE]?.();
}
