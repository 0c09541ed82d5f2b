import { readFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { connectDatabase, migrateDatabase, MIGRATIONS_FOLDER, type DatabaseHandle } from '../../src/db/client.js';
import { adminQuery, databaseUrl, uniqueDatabaseName } from '../helpers/postgres.js';

const EXPECTED_TABLES = [
  'organizations',
  'teams',
  'credit_balances',
  'credit_ledger',
  'api_keys',
  'model_groups',
  'model_group_models',
  'team_model_groups',
  'admin_users',
  'instance_secrets',
  'idempotency_keys',
];

const serverUrl = inject('postgresServerUrl');
const createdDatabases: string[] = [];
const handles: DatabaseHandle[] = [];

/** A new, empty database (no template): migrations start from nothing. */
async function emptyDatabase(): Promise<string> {
  const name = uniqueDatabaseName('cg_migrate');
  await adminQuery(serverUrl, `CREATE DATABASE "${name}"`);
  createdDatabases.push(name);
  return databaseUrl(serverUrl, name);
}

function connect(url: string): DatabaseHandle {
  const handle = connectDatabase(url, { max: 2, applicationName: 'creditgate-migration-test' });
  handles.push(handle);
  return handle;
}

async function query<T extends pg.QueryResultRow>(url: string, statement: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(statement)).rows;
  } finally {
    await client.end();
  }
}

async function publicTables(url: string): Promise<string[]> {
  const rows = await query<{ table_name: string }>(
    url,
    `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`,
  );
  return rows.map((row) => row.table_name).sort();
}

async function appliedMigrations(url: string): Promise<{ hash: string; created_at: string }[]> {
  return query(url, 'SELECT hash, created_at::text FROM drizzle.__drizzle_migrations ORDER BY id');
}

async function journalEntryCount(): Promise<number> {
  const journal = JSON.parse(await readFile(path.join(MIGRATIONS_FOLDER, 'meta', '_journal.json'), 'utf8')) as { entries: unknown[] };
  return journal.entries.length;
}

afterAll(async () => {
  await Promise.all(handles.map((handle) => handle.close().catch(() => undefined)));
  for (const name of createdDatabases) await adminQuery(serverUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
});

describe('migrateDatabase', () => {
  it('creates every table on an empty database and is a no-op when run again', async () => {
    const url = await emptyDatabase();
    expect(await publicTables(url)).toEqual([]);

    const database = connect(url);
    await migrateDatabase(database.pool);

    const tables = await publicTables(url);
    expect(tables).toEqual(expect.arrayContaining(EXPECTED_TABLES));
    const expectedCount = await journalEntryCount();
    expect(expectedCount).toBeGreaterThan(0);
    const applied = await appliedMigrations(url);
    expect(applied).toHaveLength(expectedCount);

    // A restart runs the migrator again: nothing new is applied and nothing fails.
    await expect(migrateDatabase(database.pool)).resolves.toBeUndefined();
    expect(await appliedMigrations(url)).toEqual(applied);
    expect(await publicTables(url)).toEqual(tables);

    // Also from a brand-new pool, as a new process would.
    await expect(migrateDatabase(connect(url).pool)).resolves.toBeUndefined();
    expect(await appliedMigrations(url)).toEqual(applied);

    // The advisory lock is released afterwards: no session still holds it.
    const locks = await query<{ n: string }>(
      url,
      `SELECT count(*)::text AS n FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`);
    expect(locks[0]!.n).toBe('0');
  });

  it('applies the migrations exactly once when two instances start at the same time', async () => {
    const url = await emptyDatabase();
    const first = connect(url);
    const second = connect(url);

    const results = await Promise.allSettled([migrateDatabase(first.pool), migrateDatabase(second.pool)]);
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'fulfilled']);

    const applied = await appliedMigrations(url);
    expect(applied).toHaveLength(await journalEntryCount());
    expect(new Set(applied.map((migration) => migration.hash)).size).toBe(applied.length);
    expect(await publicTables(url)).toEqual(expect.arrayContaining(EXPECTED_TABLES));

    // The schema works: the ledger's append-only guard from the second migration is in place.
    const triggers = await query<{ n: string }>(
      url,
      `SELECT count(*)::text AS n FROM information_schema.triggers WHERE event_object_table = 'credit_ledger'`,
    );
    expect(Number(triggers[0]!.n)).toBeGreaterThan(0);
  });
});

describe('cg_bump (the per-key counters of the hold and the settlement)', () => {
  it('moves a key count, drops it at zero, and is inlined into the statement that calls it', async () => {
    const url = await emptyDatabase();
    await migrateDatabase(connect(url).pool);
    const [counts] = await query<Record<string, unknown>>(
      url,
      `SELECT cg_bump('{"k": 1}', 'k', 1) AS up, cg_bump('{"k": 1}', 'k', -1) AS gone, cg_bump('{}', 'k', 1) AS first,
              cg_bump('{"k": 2}', NULL, 1) AS no_key, cg_bump('{"k": 2}', 'k', 0) AS no_change`,
    );
    expect(counts).toEqual({ up: { k: 2 }, gone: {}, first: { k: 1 }, no_key: { k: 2 }, no_change: { k: 2 } });
    // Not inlined (a body less immutable than declared), each call parsed and planned its body again.
    const plan = await query<{ 'QUERY PLAN': string }>(url, `EXPLAIN VERBOSE SELECT cg_bump(key_open_jobs, 'k', 1) FROM credit_balances`);
    const output = plan.map((row) => row['QUERY PLAN']).join('\n');
    expect(output).toContain('jsonb_set');
    expect(output).not.toContain('cg_bump');
  });
});
