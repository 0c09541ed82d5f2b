import { sql, type Placeholder, type Query, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import type { DbOrTx } from './client.js';

const dialect = new PgDialect();

/** The named values of a compiled statement, to write into its SQL where each one goes. */
export type Placeholders<V> = { readonly [K in keyof V]: Placeholder<K & string, V[K]> };

/** A value written into a statement: itself, or the placeholder of a compiled statement. */
export type Bound<T> = T | Placeholder;

/**
 * A statement written once with drizzle's `sql` and rendered to text once, then run as a named prepared
 * statement with only its values changing. The hot path's statements (open a job, settle it) are chains of CTEs
 * whose building cost about a third of a millisecond of CPU per request; PostgreSQL also parses them once per
 * connection. Through PgBouncer in transaction mode that needs 1.21 or later with `max_prepared_statements`; with
 * DB_PREPARED_STATEMENTS=false the pool sends them unnamed instead (see `connectDatabase`).
 */
export class CompiledStatement<V extends Record<string, unknown>> {
  private readonly query: Query;

  constructor(
    private readonly name: string,
    build: (values: Placeholders<V>) => SQL,
  ) {
    const placeholders = new Proxy({}, { get: (_, key) => sql.placeholder(String(key)) }) as Placeholders<V>;
    this.query = dialect.sqlToQuery(build(placeholders));
  }

  async rows<R>(db: DbOrTx, values: V): Promise<R[]> {
    const result = await db._.session.prepareQuery(this.query, undefined, this.name, false).execute(values);
    return (result as { rows: R[] }).rows;
  }
}
