import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDatabaseFromTemplate } from '../helpers/postgres.js';

/**
 * Migrations 0020 and 0021: the schema costs the hot statements as little as it can while holding what it held. The
 * balance row's foreign key is checked at commit, once per transaction (a group-commit batch updates one team's row
 * once per job), the sweeper's index keeps open jobs only, and prompts and answers are compressed with lz4 where the
 * server has it.
 */
describe('the constraints, indexes and compression the hot statements pay for', () => {
  let database: { url: string; drop(): Promise<void> };
  let client: pg.Client;

  beforeAll(async () => {
    database = await createDatabaseFromTemplate(inject('postgresServerUrl'), inject('postgresTemplate'));
    client = new pg.Client({ connectionString: database.url });
    await client.connect();
    await client.query(`INSERT INTO organizations (id, name) VALUES ('org-c', 'Org C')`);
    await client.query(`INSERT INTO teams (id, organization_id) VALUES ('team-c', 'org-c')`);
    await client.query(`INSERT INTO credit_balances (team_id) VALUES ('team-c')`);
  });

  afterAll(async () => {
    await client?.end();
    await database?.drop();
  });

  /** Reads of `teams` counted by this session and not yet reported (this transaction's among them): a foreign key check is one. */
  async function teamReadsInTransaction(): Promise<number> {
    const { rows } = await client.query<{ reads: string }>(
      `SELECT (coalesce(seq_scan, 0) + coalesce(idx_scan, 0))::text AS reads FROM pg_stat_xact_user_tables WHERE relname = 'teams'`,
    );
    return Number(rows[0]?.reads ?? 0);
  }

  it("checks a balance row's team once at commit, not again at each update of the row in the same transaction", async () => {
    await client.query('BEGIN');
    try {
      const before = await teamReadsInTransaction();
      for (let i = 0; i < 20; i++) await client.query(`UPDATE credit_balances SET balance_micro = balance_micro + 1 WHERE team_id = 'team-c'`);
      // Checked immediately, updates 2 to 20 would each have read the team (the row was written by this transaction).
      expect((await teamReadsInTransaction()) - before).toBe(0);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK');
      throw error;
    }
    const { rows } = await client.query<{ balance_micro: string }>(`SELECT balance_micro::text FROM credit_balances WHERE team_id = 'team-c'`);
    expect(rows[0]!.balance_micro).toBe('20');
  });

  it('still refuses a balance row for a team that does not exist: its transaction fails at commit, nothing is kept', async () => {
    await client.query('BEGIN');
    await client.query(`INSERT INTO credit_balances (team_id) VALUES ('no-such-team')`);
    await expect(client.query('COMMIT')).rejects.toMatchObject({ code: '23503' });
    const { rows } = await client.query(`SELECT 1 FROM credit_balances WHERE team_id = 'no-such-team'`);
    expect(rows).toHaveLength(0);
  });

  it('compresses prompts and answers with lz4 where PostgreSQL has it, and migrates a server without it all the same', async () => {
    const lz4 = await client.query('CREATE TEMP TABLE lz4_probe (a text COMPRESSION lz4)').then(
      () => true,
      (error: { code?: string }) => {
        if (error.code !== '0A000') throw error;
        return false;
      },
    );
    const { rows } = await client.query<{ column: string; compression: string }>(`
      SELECT attrelid::regclass || '.' || attname AS column, attcompression AS compression FROM pg_attribute
       WHERE (attrelid, attname) IN (('llm_calls'::regclass, 'request_messages'), ('llm_calls'::regclass, 'response_content'),
             ('llm_calls'::regclass, 'tool_calls'), ('queue_requests'::regclass, 'request'), ('idempotency_keys'::regclass, 'response_body'))
       ORDER BY 1`);
    // 'l': lz4; '': the server's default_toast_compression (pglz unless an operator changed it).
    expect(rows).toEqual(
      ['idempotency_keys.response_body', 'llm_calls.request_messages', 'llm_calls.response_content', 'llm_calls.tool_calls', 'queue_requests.request'].map(
        (column) => ({ column, compression: lz4 ? 'l' : '' }),
      ),
    );
  });

  it('keeps only open jobs in the sweeper’s index, and the sweeper’s query is planned on an index of open jobs', async () => {
    const { rows: definition } = await client.query<{ indexdef: string }>(`SELECT indexdef FROM pg_indexes WHERE indexname = 'jobs_open_idx'`);
    expect(definition[0]!.indexdef).toMatch(/WHERE \(status = ANY \(ARRAY\['pending'::job_status, 'in_progress'::job_status\]\)\)/);
    await client.query(`
      INSERT INTO jobs (id, team_id, job_type, status)
      SELECT 'job-' || n, 'team-c', 'test', CASE WHEN n % 100 = 0 THEN 'in_progress'::job_status ELSE 'completed'::job_status END
        FROM generate_series(1, 5000) AS n`);
    await client.query('ANALYZE jobs');
    const { rows: plan } = await client.query<{ 'QUERY PLAN': string }>(
      `EXPLAIN SELECT id FROM jobs WHERE status IN ('pending', 'in_progress') AND updated_at < now() - make_interval(secs => timeout_seconds) LIMIT 100`,
    );
    expect(plan.map((row) => row['QUERY PLAN']).join('\n')).toMatch(/jobs_open_idx|jobs_team_open_idx/);
  });
});
