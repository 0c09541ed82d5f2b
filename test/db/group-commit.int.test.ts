import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { connectDatabase, sqlState, type DatabaseHandle } from '../../src/db/client.js';
import { CompiledStatement } from '../../src/db/compiled-statement.js';
import { GroupCommit, MAX_BATCH } from '../../src/db/group-commit.js';
import { organizations } from '../../src/db/schema/index.js';
import { createLogger } from '../../src/lib/logger.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { setupTeam } from '../helpers/factories.js';
import { expectLedgerConsistent } from '../helpers/ledger.js';
import { createDatabaseFromTemplate, query } from '../helpers/postgres.js';

/**
 * DB_GROUP_COMMIT: executions of a hot statement that arrive while it is busy share one round trip and one
 * commit; each behaves as if it ran alone (it sees the ones before it; when one fails, the batch is run again
 * execution by execution and only that one fails, with its own error), and a lone one is sent at once.
 */

/** An organization named `id`, and how many organizations with the prefix existed when it was written. */
const ADD_ORGANIZATION = new CompiledStatement<{ id: string; prefix: string }>(
  'cg_test_add_organization',
  (v) => sql`WITH added AS (INSERT INTO ${organizations} (id, name) VALUES (${v.id}::text, ${v.id}::text) RETURNING id)
    SELECT added.id, (SELECT count(*) FROM ${organizations} WHERE id LIKE ${v.prefix}::text || '%')::int AS before FROM added`,
  { groupBy: (values) => values.prefix },
);

/** Renames organization `id` (a row that every execution of a batch of one key writes, as a team's balance row). */
const RENAME_ORGANIZATION = new CompiledStatement<{ id: string }>(
  'cg_test_rename_organization',
  (v) => sql`UPDATE ${organizations} SET name = name || '.' WHERE id = ${v.id}::text RETURNING id, name`,
  { groupBy: (values) => values.id },
);

describe('group commit of a statement', () => {
  let database: { url: string; drop(): Promise<void> };
  let handle: DatabaseHandle;
  let groupCommit: GroupCommit;

  beforeAll(async () => {
    database = await createDatabaseFromTemplate(inject('postgresServerUrl'), inject('postgresTemplate'));
    handle = connectDatabase(database.url, { max: 4 });
    groupCommit = await GroupCommit.install(handle.pool, handle.db, createLogger('silent'));
  });

  afterAll(async () => {
    await handle?.close();
    await database?.drop();
  });

  it('sends a lone execution at once, alone', async () => {
    const before = { ...groupCommit.stats };
    expect(await ADD_ORGANIZATION.rows(handle.db, { id: 'lone-1', prefix: 'lone-' })).toEqual([{ id: 'lone-1', before: 0 }]);
    expect(groupCommit.stats).toEqual({ ...before, alone: before.alone + 1 });
  });

  it('batches concurrent executions; each sees the ones before it', async () => {
    const ids = Array.from({ length: 40 }, (_, i) => `burst-${String(i).padStart(2, '0')}`);
    const rows = (await Promise.all(ids.map((id) => ADD_ORGANIZATION.rows<{ id: string; before: number }>(handle.db, { id, prefix: 'burst-' })))).flat();
    expect(groupCommit.stats.batches).toBeGreaterThan(0);
    expect(groupCommit.stats.batchedExecutions).toBeGreaterThan(groupCommit.stats.batches);
    expect(rows.map((row) => row.id).sort()).toEqual(ids);
    // Every execution counted the ones committed or run before it: 0, 1, …, 39 in some order, none twice.
    expect(rows.map((row) => Number(row.before)).sort((a, b) => a - b)).toEqual(ids.map((_, i) => i));
    const [stored] = await query(handle.pool, `SELECT count(*)::int AS n FROM organizations WHERE id LIKE 'burst-%'`);
    expect(stored.n).toBe(40);
  });

  it('a failing execution fails alone, with its own error: its batch is run again execution by execution', async () => {
    const before = { ...groupCommit.stats };
    const ids = Array.from({ length: 40 }, (_, i) => `fail-${String(i).padStart(2, '0')}`);
    // Two executions of one id: the second violates the primary key, in the batch and again when run alone.
    const outcomes = await Promise.allSettled([...ids, 'fail-07'].map((id) => ADD_ORGANIZATION.rows<{ id: string }>(handle.db, { id, prefix: 'fail-' })));
    expect(groupCommit.stats.batchesRetried).toBeGreaterThan(before.batchesRetried);
    const failed = outcomes.filter((outcome) => outcome.status === 'rejected');
    expect(failed).toHaveLength(1);
    expect(sqlState((failed[0] as PromiseRejectedResult).reason)).toBe('23505');
    const rows = outcomes.flatMap((outcome) => (outcome.status === 'fulfilled' ? outcome.value : []));
    expect(rows.map((row) => row.id).sort()).toEqual(ids);
    const [stored] = await query(handle.pool, `SELECT count(*)::int AS n FROM organizations WHERE id LIKE 'fail-%'`);
    expect(stored.n).toBe(40);
  });

  it('puts at most MAX_BATCH executions in one round trip', async () => {
    const before = { ...groupCommit.stats };
    const ids = Array.from({ length: 3 * MAX_BATCH }, (_, i) => `many-${String(i).padStart(3, '0')}`);
    const rows = await Promise.all(ids.map((id) => ADD_ORGANIZATION.rows<{ id: string }>(handle.db, { id, prefix: 'many-' })));
    expect(rows.flat().map((row) => row.id).sort()).toEqual(ids);
    expect(groupCommit.stats.largestBatch).toBe(MAX_BATCH);
    expect(groupCommit.stats.batches - before.batches).toBeGreaterThanOrEqual(3);
  });

  it('a batch that waited for its row leaves no MultiXact on the row’s versions', async () => {
    // A subtransaction per execution made one: the first execution, having waited for the row, locked it before
    // updating it and kept the lock on the new version, so each later update had to record that lock and itself.
    await query(handle.pool, `INSERT INTO organizations (id, name) VALUES ('waiter-a', 'a'), ('waiter-b', 'b')`);
    await query(handle.pool, 'CREATE EXTENSION IF NOT EXISTS pageinspect');
    const holders = [new pg.Client(database.url), new pg.Client(database.url)] as const;
    await Promise.all(holders.map((holder) => holder.connect()));
    try {
      // Row a is held while an execution alone waits for it; row b while the batch queued behind that one waits.
      await holders[0].query(`BEGIN; UPDATE organizations SET name = name || '!' WHERE id = 'waiter-a'`);
      await holders[1].query(`BEGIN; UPDATE organizations SET name = name || '!' WHERE id = 'waiter-b'`);
      const before = { ...groupCommit.stats };
      const alone = RENAME_ORGANIZATION.rows(handle.db, { id: 'waiter-a' });
      await vi.waitFor(() => expect(groupCommit.stats.alone).toBe(before.alone + 1));
      const batched = Array.from({ length: 10 }, () => RENAME_ORGANIZATION.rows(handle.db, { id: 'waiter-b' }));
      await holders[0].query('COMMIT');
      await alone;
      await vi.waitFor(async () => {
        const waiting = await query(handle.pool, `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%cg_batch_%'`);
        expect(waiting).toHaveLength(1);
      });
      await holders[1].query('COMMIT');
      const rows = (await Promise.all(batched)).flat() as { name: string }[];
      expect(rows.map((row) => row.name).sort().at(-1)).toBe('b!..........');
      expect(groupCommit.stats.batches).toBe(before.batches + 1);
    } finally {
      await Promise.all(holders.map((holder) => holder.end()));
    }
    // 4096: HEAP_XMAX_IS_MULTI, the version's xmax is a MultiXact.
    const [versions] = await query(
      handle.pool,
      `SELECT count(*) FILTER (WHERE t_infomask & 4096 <> 0)::int AS multixacts
         FROM generate_series(0, pg_relation_size('organizations') / 8192 - 1) AS page,
              heap_page_items(get_raw_page('organizations', page::int))`,
    );
    expect(versions).toEqual({ multixacts: 0 });
  });

  it('runs in the caller’s transaction, never batched, when given one', async () => {
    const before = { ...groupCommit.stats };
    await expect(
      handle.db.transaction(async (tx) => {
        await ADD_ORGANIZATION.rows(tx, { id: 'in-tx-1', prefix: 'in-tx-' });
        tx.rollback();
      }),
    ).rejects.toThrow();
    expect(groupCommit.stats).toEqual(before);
    const [stored] = await query(handle.pool, `SELECT count(*)::int AS n FROM organizations WHERE id = 'in-tx-1'`);
    expect(stored.n).toBe(0);
  });
});

describe.each<{ name: string; env: Record<string, string> }>([
  { name: 'with group commit (the default)', env: {} },
  { name: 'with DB_GROUP_COMMIT=false', env: { DB_GROUP_COMMIT: 'false' } },
])('60 concurrent one-shot jobs for a team that can pay for 20, $name', ({ env }) => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp(env);
  });
  afterAll(() => app.close());

  it('sell exactly 20, each charged once, the ledger equal to the balance', async () => {
    const team = await setupTeam(app, { credits: 20 });
    const responses = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        app.request('POST', '/api/jobs/create-and-call', {
          token: team.key,
          body: { team_id: team.teamId, job_type: 'group-commit', user_id: `u${i}`, model: team.group, messages: [{ role: 'user', content: 'Say hello' }] },
        }),
      ),
    );
    const served = responses.filter((response) => response.status === 201);
    expect(served, JSON.stringify(responses.find((response) => ![201, 402].includes(response.status))?.body)).toHaveLength(20);
    expect(responses.filter((response) => response.status === 402)).toHaveLength(40);
    if (env.DB_GROUP_COMMIT === 'false') expect(app.deps.groupCommit).toBeUndefined();
    else expect(app.deps.groupCommit!.stats.batches).toBeGreaterThan(0);
    const charges = await query(
      app,
      `SELECT j.id, j.status::text, (SELECT count(*) FROM credit_ledger l WHERE l.job_id = j.id AND l.entry_type = 'charge')::int AS charges
         FROM jobs j WHERE j.team_id = $1`,
      [team.teamId],
    );
    expect(charges).toHaveLength(20);
    for (const job of charges) expect(job).toMatchObject({ status: 'completed', charges: 1 });
    expect(await expectLedgerConsistent(app, team.teamId, { jobs: true })).toEqual({ balanceMicro: 0, heldMicro: 0 });
    for (const response of served) expect(response.body.costs).toMatchObject({ credits_charged: 1, credit_applied: true });
  });
});
