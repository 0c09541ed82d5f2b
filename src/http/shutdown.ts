import type { Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Deps } from '../deps.js';
import { UpstreamError } from '../upstream/errors.js';

/** After the grace period, how long the aborted calls get to be recorded and settled, and their streams to end. */
const RECORD_DEADLINE_MS = 15_000;
const END_OF_STREAMS_MS = 2_000;

const within = (promise: Promise<void>, ms: number) => Promise.race([promise.then(() => true), sleep(ms, false)]);

/**
 * A graceful stop: no new connections; open requests and streams run to their end for up to SHUTDOWN_GRACE_MS;
 * then every call still running (streams, queued calls) is aborted, which makes its owner send the client an error
 * event and [DONE], record the call and settle its job; only once every call is recorded (or after a deadline) are
 * the connections closed and the database pool, the sweeper and the rest stopped. So a graceful stop leaves no hold
 * behind (open multi-call jobs belong to their clients and stay open).
 */
export async function shutDownGracefully(server: Server, deps: Deps): Promise<void> {
  const { log, config } = deps;
  log.info({ grace_ms: config.SHUTDOWN_GRACE_MS }, 'shutting down: no new connections, open requests may finish');
  const serverClosed = new Promise<void>((resolve) => server.once('close', () => resolve()));
  server.close();
  // A kept-alive connection goes idle when its response ends: close it then, so the server closes with the last one.
  const idleCloser = setInterval(() => server.closeIdleConnections(), 50);
  server.closeIdleConnections();
  try {
    if (!(await within(serverClosed, config.SHUTDOWN_GRACE_MS))) {
      log.info({ open_calls: deps.leases.count }, 'grace period over: ending open streams and recording their calls');
      deps.inflight.abortAll(UpstreamError.aborted('server_shutting_down', 'the server is shutting down; retry on another instance'));
      if (!(await deps.leases.drained(RECORD_DEADLINE_MS))) {
        log.error({ open_calls: deps.leases.count }, 'some calls were not recorded before the deadline; the sweeper will bill them at their reservation');
      }
      await within(serverClosed, END_OF_STREAMS_MS);
      server.closeAllConnections();
    }
  } finally {
    clearInterval(idleCloser);
  }
  await deps.close();
}
