import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { setupTeam, type TeamSetup } from '../helpers/factories.js';
import { query } from '../helpers/postgres.js';
import { postRaw } from '../helpers/sse.js';
import { poll } from '../helpers/wait.js';

/**
 * DB_POOL_MIN connections are opened at start and kept however idle, so a burst after a quiet spell finds them ready;
 * the ones a burst added beyond them close after DB_POOL_IDLE_TIMEOUT_MS.
 */
describe('the database pool between bursts', () => {
  const MIN = 3;
  let app: TestApp;
  let team: TeamSetup;

  beforeAll(async () => {
    app = await createTestApp({ DB_POOL_MIN: String(MIN), DB_POOL_IDLE_TIMEOUT_MS: '300' });
    team = await setupTeam(app, { credits: 100 });
  });

  afterAll(async () => {
    await app?.close();
  });

  /** The instance's pooled connections as the server sees them (the listener has a name of its own). */
  const serverSide = async () => {
    const [row] = await query(app, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'creditgate'`);
    return row.n as number;
  };

  it('keeps DB_POOL_MIN connections open while idle, and closes the rest after the idle timeout', async () => {
    const { pool } = app.deps;
    // Right after start, before any request.
    expect(pool.totalCount).toBeGreaterThanOrEqual(MIN);
    // A burst of slow reads needs a connection each.
    await Promise.all(Array.from({ length: 12 }, () => pool.query('SELECT pg_sleep(0.05)')));
    expect(pool.totalCount, 'the burst opened connections beyond the minimum').toBeGreaterThan(MIN);

    await poll(async () => (pool.totalCount === MIN ? true : undefined), 10_000, 'the pool to shrink back to DB_POOL_MIN');
    await poll(async () => ((await serverSide()) === MIN ? true : undefined), 10_000, 'the server to see DB_POOL_MIN connections');
    // Idle for many times the idle timeout, the minimum stays open.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(pool.totalCount).toBe(MIN);
    expect(await serverSide()).toBe(MIN);
    // And serve the next request on them.
    const response = await postRaw(app, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'after', messages: [{ role: 'user', content: 'hi' }] });
    expect(response.status, response.text).toBe(200);
  });
});
