import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { answerLost, connectDatabase, type DatabaseHandle } from '../../src/db/client.js';
import { startPartitionableRelay, type PartitionableRelay } from '../helpers/tcp-partition.js';
import { poll } from '../helpers/wait.js';

/**
 * DB_QUERY_TIMEOUT_MS and DB_CONNECT_TIMEOUT_MS against a database that stops answering without closing anything
 * (a relay that forwards nothing while cut, closes included): a statement fails as a lost answer, and its connection
 * is closed and dropped by the pool instead of being handed to the next caller still waiting for that statement; a
 * transaction the client can no longer reach is ended by the server, with its locks.
 */
const QUERY_TIMEOUT_MS = 300;

describe('a statement or a connection the database never answers', () => {
  let relay: PartitionableRelay;
  let handle: DatabaseHandle;

  beforeAll(async () => {
    const server = new URL(inject('postgresServerUrl'));
    relay = await startPartitionableRelay(server.hostname, Number(server.port || 5432));
    handle = connectDatabase(relay.url(inject('postgresServerUrl')), { max: 1, queryTimeoutMs: QUERY_TIMEOUT_MS, connectTimeoutMs: QUERY_TIMEOUT_MS });
  });

  afterEach(() => relay.heal());

  afterAll(async () => {
    await handle?.close();
    await relay?.close();
  });

  it('fails a transaction at once as a lost answer, closes its connection, and serves on a new one once healed', async () => {
    await handle.pool.query('SELECT 1');
    const started = performance.now();
    const failure = await handle.db
      .transaction(async (tx) => {
        relay.cut();
        await tx.execute(sql`SELECT 1`);
      })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    const elapsed = performance.now() - started;
    expect(answerLost(failure), String(failure)).toBe(true);
    // The connection left the pool rather than going back to it still waiting for that statement...
    expect(handle.pool.totalCount).toBe(0);
    // ...and the ROLLBACK after it did not wait for a second timeout behind the unanswered statement.
    expect(elapsed).toBeLessThan(2 * QUERY_TIMEOUT_MS);

    relay.heal();
    const { rows } = await handle.pool.query<{ answer: number }>('SELECT 42 AS answer');
    expect(rows).toEqual([{ answer: 42 }]);
  });

  it('fails a new connection whose handshake goes unanswered within the connect timeout', async () => {
    await handle.pool.query('SELECT 1');
    relay.cut();
    // The pooled connection times out first and is dropped; the next statement needs a new one.
    await expect(handle.pool.query('SELECT 1')).rejects.toThrow(/Query read timeout/);
    const started = performance.now();
    await expect(handle.pool.query('SELECT 1')).rejects.toThrow(/timeout/);
    expect(performance.now() - started).toBeLessThan(5 * QUERY_TIMEOUT_MS);
    relay.heal();
    await expect(handle.pool.query('SELECT 1 AS one')).resolves.toMatchObject({ rows: [{ one: 1 }] });
  });

  it('has the server end a transaction whose client was cut off between two statements, releasing its locks', async () => {
    const lock = Math.floor(Math.random() * 1_000_000_000);
    const direct = new pg.Client({ connectionString: inject('postgresServerUrl') });
    await direct.connect();
    try {
      const failure = await handle.db
        .transaction(async (tx) => {
          await tx.execute(sql`SELECT pg_advisory_xact_lock(${lock})`);
          relay.cut();
          await tx.execute(sql`SELECT 1`);
        })
        .then(
          () => undefined,
          (error: unknown) => error,
        );
      expect(answerLost(failure), String(failure)).toBe(true);
      // Still cut: the server never heard the client go, yet the transaction's lock is free once it sat idle too long.
      await poll(
        async () => ((await direct.query<{ free: boolean }>('SELECT pg_try_advisory_lock($1) AS free', [lock])).rows[0]!.free ? true : undefined),
        10 * QUERY_TIMEOUT_MS,
        'the server to end the idle transaction and free its lock',
      );
      await direct.query('SELECT pg_advisory_unlock($1)', [lock]);
    } finally {
      await direct.end();
    }
  });
});
