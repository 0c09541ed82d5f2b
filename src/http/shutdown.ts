import type { Server } from 'node:http';
import type { Deps } from '../deps.js';
import { UpstreamError } from '../upstream/errors.js';

/** After the grace period, how long the aborted calls get to be recorded and settled, and their streams to end. */
const RECORD_DEADLINE_MS = 15_000;

function closed(server: Server, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve(true);
    const timer = setTimeout(() => resolve(false), timeoutMs);
    server.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

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
  const serverClosed = closed(server, config.SHUTDOWN_GRACE_MS);
  server.close();
  server.closeIdleConnections();
  if (!(await serverClosed)) {
    log.info({ open_calls: deps.leases.count }, 'grace period over: ending open streams and recording their calls');
    deps.inflight.abortAll(UpstreamError.aborted('server_shutting_down', 'the server is shutting down; retry on another instance'));
    const recorded = await deps.leases.drained(RECORD_DEADLINE_MS);
    if (!recorded) log.error({ open_calls: deps.leases.count }, 'some calls were not recorded before the deadline; the sweeper will bill them at their reservation');
    await closed(server, 1_000);
    server.closeAllConnections();
  }
  await deps.close();
}
