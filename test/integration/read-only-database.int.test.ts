import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { expectErrorBody } from '../helpers/api.js';
import { setupTeam, type TeamSetup } from '../helpers/factories.js';
import { expectLedgerConsistent, MICRO } from '../helpers/ledger.js';
import { query } from '../helpers/postgres.js';
import { postRaw } from '../helpers/sse.js';
import { poll } from '../helpers/wait.js';

/**
 * The database takes no writes for a while (a failover pointed creditgate at a standby, or an operator set it
 * `default_transaction_read_only` for maintenance), then does again. Meanwhile billed requests are refused as a
 * temporary condition (503, nothing charged); afterwards creditgate serves again by itself, although every
 * connection it opened meanwhile is a read-only session for good.
 */
describe('a database that is read-only for a while', () => {
  let app: TestApp;
  let team: TeamSetup;
  let database: string;

  beforeAll(async () => {
    app = await createTestApp();
    team = await setupTeam(app, { credits: 100 });
    database = new URL(app.databaseUrl).pathname.slice(1);
  });

  afterAll(async () => {
    await query(app, `ALTER DATABASE "${database}" RESET default_transaction_read_only`).catch(() => undefined);
    await app?.close();
  });

  const chat = { messages: [{ role: 'user', content: 'hi' }] };
  const call = () => postRaw(app, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'read-only', ...chat });

  /** Ends the app's connections, so the ones it opens next start as the database now says. */
  const reconnectApp = () => query(app, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'creditgate'`);

  it('refuses billed calls with 503 while read-only, and serves again once writable, without a restart', async () => {
    expect((await call()).status).toBe(200);

    await query(app, `ALTER DATABASE "${database}" SET default_transaction_read_only = on`);
    await reconnectApp();
    // Several calls at once, so the app opens several read-only sessions.
    const refused = await Promise.all(Array.from({ length: 4 }, call));
    for (const response of refused) {
      expectErrorBody({ status: response.status, headers: response.headers, body: JSON.parse(response.text) }, 503, 'database_unavailable');
      expect(response.headers.get('retry-after')).toMatch(/^\d+$/);
    }

    await query(app, `ALTER DATABASE "${database}" RESET default_transaction_read_only`);
    // The sessions opened while read-only stay read-only; the pool drops a connection whose statement failed, so
    // within a few calls every connection in use is a new, writable one.
    const served = await poll(async () => {
      const response = await call();
      return response.status === 200 ? response : undefined;
    }, 10_000, 'a call served once the database takes writes again');
    expect(served.text).toContain('data: [DONE]');
    for (let i = 0; i < 5; i++) expect((await call()).status).toBe(200);

    // Nothing refused was charged or left held: 1 call before, 1 + 5 after.
    const [row] = await query(app, `SELECT count(*)::int AS n FROM jobs WHERE team_id = $1 AND status IN ('pending', 'in_progress')`, [team.teamId]);
    expect(row.n).toBe(0);
    expect(await expectLedgerConsistent(app, team.teamId, { jobs: true })).toEqual({ balanceMicro: (100 - 7) * MICRO, heldMicro: 0 });
  });
});
