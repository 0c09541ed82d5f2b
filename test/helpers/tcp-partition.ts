import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP relay that can be partitioned: while cut, it keeps every connection open and forwards nothing either way
 * (bytes wait in the relay, as packets would in a network that drops them and is retried), and new connections
 * are accepted but not connected through, and a side that closes does not close its pair (its FIN is lost too).
 * Healed, what waited flows on, and closes reach the other side.
 */
export interface PartitionableRelay {
  port: number;
  /** host:port replaced by the relay's in a connection string. */
  url(target: string): string;
  cut(): void;
  heal(): void;
  close(): Promise<void>;
}

export async function startPartitionableRelay(targetHost: string, targetPort: number): Promise<PartitionableRelay> {
  let partitioned = false;
  const waiting: (() => void)[] = [];
  const sockets = new Set<Socket>();

  /** Sends `data` on `to` now, or once the partition heals. */
  const forward = (to: Socket, data: Buffer) => {
    if (!partitioned) to.write(data);
    else waiting.push(() => to.writable && to.write(data));
  };

  /** A side that closed closes its pair: at once, or, while cut, once healed (its FIN is lost too). */
  const closeAfterPartition = (other: Socket) => {
    if (!partitioned) other.destroy();
    else waiting.push(() => other.destroy());
  };

  const pair = (client: Socket) => {
    const server = connect(targetPort, targetHost);
    sockets.add(server);
    server.on('close', () => sockets.delete(server));
    client.on('data', (data) => forward(server, data));
    server.on('data', (data) => forward(client, data));
    client.on('close', () => closeAfterPartition(server));
    server.on('close', () => closeAfterPartition(client));
    client.on('error', () => closeAfterPartition(server));
    server.on('error', () => closeAfterPartition(client));
  };

  const relay: Server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    if (partitioned) waiting.push(() => !client.destroyed && pair(client));
    else pair(client);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  const port = (relay.address() as { port: number }).port;

  return {
    port,
    url(target) {
      const url = new URL(target);
      url.hostname = '127.0.0.1';
      url.port = String(port);
      return url.toString();
    },
    cut() {
      partitioned = true;
    },
    heal() {
      partitioned = false;
      for (const send of waiting.splice(0)) send();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => relay.close(() => resolve()));
    },
  };
}
