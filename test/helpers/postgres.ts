import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** Connection string for another database on the same server. */
export function databaseUrl(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

export function uniqueDatabaseName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
}

export async function adminQuery(serverUrl: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/** A fresh database cloned from the migrated template: a few milliseconds instead of running migrations. */
export async function createDatabaseFromTemplate(serverUrl: string, template: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = uniqueDatabaseName('cg_test');
  await adminQuery(serverUrl, `CREATE DATABASE "${name}" TEMPLATE "${template}"`);
  return {
    url: databaseUrl(serverUrl, name),
    drop: () => adminQuery(serverUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`),
  };
}

/** Where a test runs its own SQL: a pool of its own, a connection string, or anything with one (a `TestApp`). */
export type Database = pg.Pool | string | { databaseUrl: string };

const sharedPools = new Map<string, pg.Pool>();

/** The pool for `database`: itself, or a small one per connection string, kept until `closeSharedPool`. */
export function poolOf(database: Database): pg.Pool {
  if (database instanceof pg.Pool) return database;
  const url = typeof database === 'string' ? database : database.databaseUrl;
  let pool = sharedPools.get(url);
  if (!pool) {
    pool = new pg.Pool({ connectionString: url, max: 3 });
    // An idle connection ended by the server (the database dropped, an outage) must not crash the test worker.
    pool.on('error', () => undefined);
    sharedPools.set(url, pool);
  }
  return pool;
}

/** Ends the pool `poolOf` keeps for that connection string, if any (`TestApp.close` does, before dropping its database). */
export async function closeSharedPool(url: string): Promise<void> {
  const pool = sharedPools.get(url);
  sharedPools.delete(url);
  await pool?.end();
}

/** The rows of one statement. */
export async function query<T extends pg.QueryResultRow = any>(database: Database, text: string, params: unknown[] = []): Promise<T[]> {
  const { rows } = await poolOf(database).query<T>(text, params);
  return rows;
}
