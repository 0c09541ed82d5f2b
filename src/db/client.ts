import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import { PgTransaction } from 'drizzle-orm/pg-core';
import * as schema from './schema/index.js';

export type Database = NodePgDatabase<typeof schema>;
export type Transaction = Parameters<Parameters<Database['transaction']>[0]>[0];
export type DbOrTx = Database | Transaction;

export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../migrations', import.meta.url));

// Any constant works as long as every creditgate instance uses the same one.
const MIGRATION_LOCK_ID = 0x63726764;

export interface DatabaseHandle {
  pool: pg.Pool;
  db: Database;
  close(): Promise<void>;
}

export interface ConnectOptions {
  max?: number;
  /** Connections kept open however idle (see openConnections); more close after `idleTimeoutMs` idle. */
  min?: number;
  idleTimeoutMs?: number;
  applicationName?: string;
  /**
   * false: every statement is sent unnamed, whatever name its caller gave it. A transaction pooler (PgBouncer in
   * transaction mode before 1.21, or without `max_prepared_statements`) hands each transaction whichever server
   * connection is free, where a statement prepared on another one does not exist.
   */
  preparedStatements?: boolean;
  /**
   * A statement unanswered this long has its connection closed and fails as a lost answer (see answerLost): a
   * database cut off without closing its connections (a network partition, a frozen host) would otherwise hold
   * the query, its connection and everything queued behind it until the kernel gives the connection up, which
   * takes minutes. A transaction may also sit idle on the server no longer than this between its statements.
   * Unset: no limit (the migrations, whose index builds may take long).
   */
  queryTimeoutMs?: number;
  /** How long opening a connection may take before the attempt fails (unset: no limit). */
  connectTimeoutMs?: number;
}

export function connectDatabase(url: string, options: ConnectOptions = {}): DatabaseHandle {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 20,
    min: Math.min(options.min ?? 0, options.max ?? 20),
    ...(options.idleTimeoutMs !== undefined && { idleTimeoutMillis: options.idleTimeoutMs }),
    application_name: options.applicationName ?? 'creditgate',
    // An idle connection to a host that vanished is noticed by TCP keepalive instead of by the next query.
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_DELAY_MS,
    ...(options.queryTimeoutMs !== undefined && { query_timeout: options.queryTimeoutMs }),
    ...(options.connectTimeoutMs !== undefined && { connectionTimeoutMillis: options.connectTimeoutMs }),
    Client: pooledClient({ unnamedStatements: options.preparedStatements === false, idleInTransactionMs: options.queryTimeoutMs }),
  });
  // A connection lost while idle (pool 'error') or while checked out between two queries (the client's own
  // 'error', which node-postgres throws when nobody listens) must not crash the process: the query in flight
  // fails on its own, and the pool opens a new connection for the next one.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  return { pool, db: drizzle(pool, { schema }), close: () => pool.end() };
}

const KEEPALIVE_DELAY_MS = 10_000;
const READ_TIMEOUT = 'Query read timeout';
const BEGIN = /^\s*begin\s*$/i;

/**
 * The pool's client: what creditgate asks of every connection, whoever sends the statement (drizzle, a
 * CompiledStatement, group commit).
 *
 * - A statement whose read times out (`queryTimeoutMs`) closes its connection. pg's `query_timeout` fails the query
 *   but keeps the connection, still waiting for the unanswered statement: the next query on it (a transaction's
 *   ROLLBACK, the next user of the pooled client) would queue behind that statement and time out in turn. What the
 *   statement did is unknown, so the connection is closed: the pool drops it, and what was queued fails at once.
 * - Each transaction limits how long it may sit idle on the server (`SET LOCAL idle_in_transaction_session_timeout`,
 *   sent with its BEGIN in the same round trip, and scoped to the transaction so it also holds through a transaction
 *   pooler): an instance cut off between two statements of a transaction would otherwise leave it open with its row
 *   locks (a team's balance row) until the server noticed the connection was gone, which TCP alone takes hours to do.
 * - With `unnamedStatements`, names are stripped: pg parses a named statement once per connection and from then on
 *   sends only its name, which through a transaction pooler may reach a server connection that never saw it.
 *   Stripping the name here covers every caller at once; each statement is then parsed in the round trip that runs
 *   it, as every unnamed query is.
 */
function pooledClient(options: { unnamedStatements: boolean; idleInTransactionMs: number | undefined }): typeof pg.Client {
  const begin = options.idleInTransactionMs === undefined ? undefined : `BEGIN; SET LOCAL idle_in_transaction_session_timeout = ${Math.round(options.idleInTransactionMs)}`;
  // Not named "...Pool...": drizzle takes any object whose class name contains "Pool" for a pool.
  return class CreditgateClient extends pg.Client {
    override query(...args: any[]): any {
      const [config] = args;
      if (begin !== undefined && typeof config === 'string' && BEGIN.test(config)) args[0] = begin;
      else if (config && typeof config === 'object' && typeof config.submit !== 'function') {
        const values = args[1] ?? config.values;
        if (begin !== undefined && typeof config.text === 'string' && BEGIN.test(config.text) && !(values?.length > 0)) args[0] = { ...config, text: begin };
        if (options.unnamedStatements && typeof config.name === 'string') args[0] = { ...args[0], name: undefined };
      }
      const closeOnTimeout = (error: unknown) => {
        if ((error as Error | null | undefined)?.message === READ_TIMEOUT) closeConnection(this);
      };
      const last = args.at(-1);
      if (typeof last === 'function') {
        args[args.length - 1] = (error: Error | null, result: unknown) => {
          closeOnTimeout(error);
          (last as (error: Error | null, result: unknown) => void)(error, result);
        };
        return (super.query as (...args: unknown[]) => unknown)(...args);
      }
      const result = (super.query as (...args: unknown[]) => unknown)(...args);
      if (result instanceof Promise) result.catch(closeOnTimeout);
      return result;
    }
  };
}

/**
 * Drops a connection at once, whatever it is waiting for: the socket is destroyed, the query in flight and those
 * queued fail as a lost connection, and a pool removes the client. (pg has no public call for this: `end()` waits.)
 */
export function closeConnection(client: pg.Client): void {
  (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
}

/**
 * Opens `count` connections now (at most the pool's size), so the first requests do not wait for them. A pool with
 * `min` keeps that many however idle: a new connection costs a handshake, authentication (SCRAM is deliberately
 * slow), a cold server backend and the statements prepared again, which a burst after a quiet spell would otherwise
 * pay all at once, in its tail.
 */
export async function openConnections(pool: pg.Pool, count: number): Promise<void> {
  const clients = await Promise.all(Array.from({ length: Math.min(count, pool.options.max) }, () => pool.connect()));
  for (const client of clients) client.release();
}

/**
 * Applies pending migrations; an advisory lock lets several instances start at once against one database. The lock
 * is session state: give this a pool on a direct connection, never one through a transaction pooler.
 */
export async function migrateDatabase(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_ID]);
    try {
      await migrate(drizzle(client, { schema }), { migrationsFolder: MIGRATIONS_FOLDER });
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_ID]);
    }
  } finally {
    client.release();
  }
}

const commitEffects = new WeakMap<object, (() => Promise<void>)[]>();

/**
 * Runs `work` in a transaction, or inside the caller's when it already holds one, so callers compose. Effects
 * queued with `afterCommit` run once the outermost transaction committed, and not at all if it rolled back.
 */
export async function withTransaction<T>(db: DbOrTx, work: (tx: Transaction) => Promise<T>): Promise<T> {
  if (db instanceof PgTransaction) return work(db as Transaction);
  const effects: (() => Promise<void>)[] = [];
  const result = await (db as Database).transaction((tx) => {
    commitEffects.set(tx, effects);
    return work(tx);
  });
  for (const effect of effects) await effect();
  return result;
}

/**
 * A side effect of a change (dropping cached copies, telling other instances) runs after the change is committed,
 * never before: before, another reader could reload the old row and cache it as current. Outside a transaction
 * the change is already committed, so it runs now.
 */
export async function afterCommit(db: DbOrTx, effect: () => Promise<void>): Promise<void> {
  const effects = commitEffects.get(db);
  if (effects) effects.push(effect);
  else await effect();
}

/** PostgreSQL SQLSTATE of an error thrown by a query (drizzle wraps the driver's error in `cause`). */
export function sqlState(error: unknown): string | undefined {
  for (let current = error; current instanceof Error; current = current.cause) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

export const UNIQUE_VIOLATION = '23505';

/**
 * The statement was sent and its connection broke before the answer came: it may have committed or not. (An error
 * with a SQLSTATE is PostgreSQL's answer, and a failure to connect or to get a connection means it was never sent.)
 */
export function answerLost(error: unknown): boolean {
  if (sqlState(error) !== undefined) return false;
  for (let current = error; current instanceof Error; current = current.cause) {
    const code = (current as { code?: unknown }).code;
    if (code === 'ECONNRESET' || code === 'EPIPE') return true;
    if (/Connection terminated unexpectedly|Query read timeout/.test(current.message)) return true;
  }
  return false;
}
