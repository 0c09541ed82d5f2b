import { is, Param, Placeholder, sql, type Query, type SQL } from 'drizzle-orm';
import { PgDialect, PgTransaction } from 'drizzle-orm/pg-core';
import type { Database, DbOrTx } from './client.js';

const dialect = new PgDialect();

/** The named values of a compiled statement, to write into its SQL where each one goes. */
export type Placeholders<V> = { readonly [K in keyof V]: Placeholder<K & string, V[K]> };

/** A value written into a statement: itself, or the placeholder of a compiled statement. */
export type Bound<T> = T | Placeholder;

/** Runs a pooled (autocommit) execution of a statement, possibly together with other executions of it. */
export interface StatementRunner {
  run<R>(statement: CompiledStatement<any>, values: Record<string, unknown>): Promise<R[]>;
}

const runners = new WeakMap<Database, StatementRunner>();

/** From now on the group-committable statements run on `db` outside a transaction go through `runner`. */
export function routeStatements(db: Database, runner: StatementRunner): void {
  runners.set(db, runner);
}

export interface CompiledStatementOptions<V> {
  /**
   * Set for an autocommit statement that may run in one round trip and one transaction with other executions of
   * it (group commit, see GroupCommit): the key of the row it locks first (its team's balance row). Executions
   * of a batch run in the order of this key, so two batches lock rows in the same order and never deadlock.
   */
  groupBy?: (values: V) => string;
}

/**
 * A statement written once with drizzle's `sql` and rendered to text once, then run as a named prepared
 * statement with only its values changing. The hot path's statements (open a job, settle it) are chains of CTEs
 * whose building cost about a third of a millisecond of CPU per request; PostgreSQL also parses them once per
 * connection. Through PgBouncer in transaction mode that needs 1.21 or later with `max_prepared_statements`; with
 * DB_PREPARED_STATEMENTS=false the pool sends them unnamed instead (see `connectDatabase`).
 */
export class CompiledStatement<V extends Record<string, unknown>> {
  /** Every statement that may be group-committed, for GroupCommit to install. */
  static readonly groupCommitted: CompiledStatement<any>[] = [];
  readonly query: Query;
  /**
   * How each parameter is taken from the values, decided once: drizzle's fillPlaceholders tells a placeholder from
   * a constant by walking each parameter's prototype chain on every call (about 0.6 % of a job's CPU).
   */
  private readonly fillers: ((values: V) => unknown)[];

  constructor(
    readonly name: string,
    build: (values: Placeholders<V>) => SQL,
    readonly options: CompiledStatementOptions<V> = {},
  ) {
    const placeholders = new Proxy({}, { get: (_, key) => sql.placeholder(String(key)) }) as Placeholders<V>;
    this.query = dialect.sqlToQuery(build(placeholders));
    this.fillers = this.query.params.map(parameterFiller<V>);
    if (options.groupBy) CompiledStatement.groupCommitted.push(this);
  }

  /** The statement's parameters ($1, $2, …) for `values`. */
  params(values: V): unknown[] {
    return this.fillers.map((fill) => fill(values));
  }

  async rows<R>(db: DbOrTx, values: V): Promise<R[]> {
    const runner = this.options.groupBy && !(db instanceof PgTransaction) ? runners.get(db as Database) : undefined;
    return runner ? runner.run<R>(this, values) : this.runAlone<R>(db, values);
  }

  /** One execution in a round trip of its own. */
  async runAlone<R>(db: DbOrTx, values: V): Promise<R[]> {
    const result = await db._.session.prepareQuery(this.query, undefined, this.name, false).execute(values);
    return (result as { rows: R[] }).rows;
  }
}

/** As drizzle's fillPlaceholders does for one parameter: a placeholder's value (encoded if the parameter says how), or the constant. */
function parameterFiller<V extends Record<string, unknown>>(param: unknown): (values: V) => unknown {
  const named = (name: string) => (values: V) => {
    if (!(name in values)) throw new Error(`No value for placeholder "${name}" was provided`);
    return values[name];
  };
  if (is(param, Placeholder)) return named(param.name);
  if (is(param, Param) && is(param.value, Placeholder)) {
    const value = named(param.value.name);
    const { encoder } = param;
    return (values) => encoder.mapToDriverValue(value(values));
  }
  return () => param;
}
