import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renewCallLeases } from '../../src/domain/llm/calls.repository.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { setupTeam } from '../helpers/factories.js';
import { query } from '../helpers/postgres.js';
import { postStream } from '../helpers/sse.js';
import { poll, within } from '../helpers/wait.js';

/**
 * Lease renewal never waits for a call row another transaction holds (a group-commit batch recording that call):
 * a many-row update that waited would take row locks in another order than the batches and deadlock with them,
 * which PostgreSQL resolves only after deadlock_timeout (1 s) while every job behind the batch waits.
 */
describe('renewing call leases', () => {
  let app: TestApp;

  beforeAll(async () => {
    app = await createTestApp();
  });

  afterAll(async () => {
    await app?.close();
  });

  it('renews the calls it can at once and skips one whose row is locked, without waiting for it', async () => {
    const team = await setupTeam(app, { credits: 100 });
    app.upstream.setResponder(() => ({ steps: [{ type: 'content', text: 'x' }, { type: 'hang' }] }));
    const controller = new AbortController();
    const streams = Array.from({ length: 2 }, () =>
      postStream(app, '/api/jobs/create-and-call-stream', team.key, { team_id: team.teamId, job_type: 'lease', messages: [{ role: 'user', content: 'hi' }] }, { signal: controller.signal }).catch(() => undefined),
    );
    const locker = new pg.Client({ connectionString: app.databaseUrl });
    await locker.connect();
    try {
      const calls = await poll(async () => {
        const rows = await query<{ id: string }>(app, `SELECT id FROM llm_calls WHERE team_id = $1 AND status = 'in_progress' ORDER BY id`, [team.teamId]);
        return rows.length === 2 ? rows.map((row) => row.id) : undefined;
      }, 10_000, 'two calls in flight');
      await query(app, `UPDATE llm_calls SET heartbeat_at = now() - interval '1 minute' WHERE id = ANY($1)`, [calls]);

      await locker.query('BEGIN');
      await locker.query('SELECT 1 FROM llm_calls WHERE id = $1 FOR UPDATE', [calls[0]]);
      // It returns without waiting for the locked row.
      await within(renewCallLeases(app.deps.db, calls), 2_000);

      const ages = await query<{ id: string; renewed: boolean }>(app, `SELECT id, heartbeat_at > now() - interval '30 seconds' AS renewed FROM llm_calls WHERE id = ANY($1) ORDER BY id`, [calls]);
      expect(ages).toEqual([
        { id: calls[0], renewed: false },
        { id: calls[1], renewed: true },
      ]);
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      await locker.end();
      controller.abort();
      await Promise.all(streams);
      app.upstream.setResponder(undefined);
    }
  });
});
