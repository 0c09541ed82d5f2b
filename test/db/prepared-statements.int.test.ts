import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connectDatabase, type DatabaseHandle } from '../../src/db/client.js';
import { CompiledStatement } from '../../src/db/compiled-statement.js';
import { organizations } from '../../src/db/schema/index.js';
import { createDatabaseFromTemplate } from '../helpers/postgres.js';

/**
 * DB_PREPARED_STATEMENTS: by default the hot statements are named and prepared once per connection; with
 * `preparedStatements: false` (for a transaction pooler without prepared statement support) nothing is left
 * prepared on the server connection, whatever name the caller gave.
 */

const NEXT = new CompiledStatement<{ n: number }>('cg_test_next', (v) => sql`SELECT ${v.n}::int + 1 AS next`);

let database: { url: string; drop(): Promise<void> };
const handles: DatabaseHandle[] = [];

beforeAll(async () => {
  database = await createDatabaseFromTemplate(inject('postgresServerUrl'), inject('postgresTemplate'));
});

afterAll(async () => {
  await Promise.all(handles.map((handle) => handle.close()));
  await database?.drop();
});

/** Runs the compiled statement and a drizzle `.prepare(name)` query twice on a one-connection pool; what did that connection keep prepared? */
async function preparedAfterUse(preparedStatements: boolean | undefined): Promise<string[]> {
  const handle = connectDatabase(database.url, { max: 1, ...(preparedStatements !== undefined && { preparedStatements }) });
  handles.push(handle);
  const organizationIds = handle.db.select({ id: organizations.id }).from(organizations).prepare('cg_test_organizations');
  for (const n of [1, 2]) {
    expect(await NEXT.rows<{ next: number }>(handle.db, { n })).toEqual([{ next: n + 1 }]);
    expect(await organizationIds.execute()).toEqual([]);
  }
  const prepared = await handle.pool.query<{ name: string }>('SELECT name FROM pg_prepared_statements ORDER BY name');
  return prepared.rows.map((row) => row.name);
}

describe('prepared statements', () => {
  it('are named and kept on the connection by default', async () => {
    expect(await preparedAfterUse(undefined)).toEqual(['cg_test_next', 'cg_test_organizations']);
  });

  it('are sent unnamed, leaving nothing on the server connection, when turned off', async () => {
    expect(await preparedAfterUse(false)).toEqual([]);
  });

  it('still work in a transaction when turned off', async () => {
    const handle = connectDatabase(database.url, { max: 1, preparedStatements: false });
    handles.push(handle);
    const rows = await handle.db.transaction((tx) => NEXT.rows<{ next: number }>(tx, { n: 41 }));
    expect(rows).toEqual([{ next: 42 }]);
  });
});
